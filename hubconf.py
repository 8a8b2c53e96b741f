"""torch.hub entrypoints for kanzoo: one per registered kanzoo architecture, generated from the registry.

    model = torch.hub.load('<org>/kanzoo', 'vgg_kagn11_v4', pretrained=True, trust_repo=True)
    model = torch.hub.load('/path/to/kanzoo', 'resnet_kagn18', source='local', num_classes=10)

Every entrypoint is ``name(pretrained=False, **kwargs)`` and calls ``kanzoo.create_model(name, ...)``, so the
keyword arguments are timm's (``num_classes``, ``in_chans``, ``drop_rate``, ``features_only``, ...) and the
model's own. Weights come from the Hugging Face Hub through timm. Helpers here start with ``_`` so that
``torch.hub.list`` shows only models.
"""
import os as _os
import sys as _sys

dependencies = ["torch", "timm", "huggingface_hub", "safetensors"]

_REPO_DIR = _os.path.dirname(_os.path.abspath(__file__))


def _import_kanzoo():
    """Imports kanzoo from this checkout (torch.hub may hand us a downloaded copy of the repo)."""
    if "kanzoo" not in _sys.modules and _os.path.isdir(_os.path.join(_REPO_DIR, "kanzoo")):
        if _REPO_DIR not in _sys.path:
            _sys.path.insert(0, _REPO_DIR)
        else:  # ahead of any installed kanzoo
            _sys.path.remove(_REPO_DIR)
            _sys.path.insert(0, _REPO_DIR)
    import kanzoo

    here = _os.path.join(_REPO_DIR, "kanzoo")
    if _os.path.isdir(here) and _os.path.dirname(_os.path.abspath(kanzoo.__file__)) != here:
        import warnings

        warnings.warn(f"hubconf.py in {_REPO_DIR} uses the kanzoo already imported from {kanzoo.__file__}; "
                      f"the two checkouts may differ", stacklevel=2)
    return kanzoo


_kanzoo = _import_kanzoo()


def _docstring(name: str) -> str:
    import inspect

    from timm.models import get_pretrained_cfg, model_entrypoint

    doc = inspect.cleandoc(model_entrypoint(name).__doc__ or f"{name}: a kanzoo model.")
    lines = [doc, ""]
    cfg = get_pretrained_cfg(name)
    if cfg is not None:
        lines.append(f"Defaults: input size {tuple(cfg.input_size)}, num_classes={cfg.num_classes}.")
    weights = _kanzoo.list_pretrained(f"{name}.*")
    if weights:
        ids = [f"{w} (hf_hub_id {get_pretrained_cfg(w).hf_hub_id})" for w in weights]
        lines.append("Pretrained weights (pretrained=True loads the first): " + "; ".join(ids) + ".")
    else:
        lines.append("No pretrained weights: pretrained=True raises an error.")
    lines += ["",
              "Args:",
              "    pretrained: load the default weights from the Hugging Face Hub.",
              "    **kwargs: passed to kanzoo.create_model (num_classes, in_chans, drop_rate, features_only, ...).",
              ]
    return "\n".join(lines)


def _make_entrypoint(name: str):
    def entrypoint(pretrained: bool = False, **kwargs):
        return _kanzoo.create_model(name, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = _docstring(name)
    return entrypoint


for _name in _kanzoo.list_models():
    globals()[_name] = _make_entrypoint(_name)
del _name
