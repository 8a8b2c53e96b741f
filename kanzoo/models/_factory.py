"""``kanzoo.create_model`` and the listing functions, on top of timm's registry."""
from __future__ import annotations

import difflib
import fnmatch
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import timm
import torch
from timm.models import get_pretrained_cfg, is_model, model_entrypoint, split_model_name_tag
from timm.models._registry import get_arch_pretrained_cfgs

from ..errors import NoPretrainedWeightsError, UnknownModelError, WeightsFileError, WeightsNotFoundError
from ..weights import fetch_file, load_state_file, split_hub_id, unwrap_checkpoint
from ._compile import compile_model, compile_options

#: python modules whose registered models are kanzoo's
_KANZOO_MODULE_PREFIX = "kanzoo.models."


def _is_kanzoo(name: str) -> bool:
    entry = timm.models._registry._model_entrypoints.get(name)
    return entry is not None and getattr(entry, "__module__", "").startswith(_KANZOO_MODULE_PREFIX)


def list_models(pattern: Union[str, List[str]] = "*", pretrained: bool = False) -> List[str]:
    """kanzoo's registered architectures matching ``pattern`` (fnmatch globs); ``pretrained=True`` lists
    only those with weights, as ``name.tag`` entries."""
    names = [n for n in timm.list_models(pretrained=pretrained) if _is_kanzoo(split_model_name_tag(n)[0])]
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    return sorted(n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns))


def list_pretrained(pattern: Union[str, List[str]] = "*") -> List[str]:
    """``name.tag`` entries of kanzoo models that have weights."""
    return list_models(pattern, pretrained=True)


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, list_models(), n=5, cutoff=0.5)
    if not close:
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    return f"; closest registered names: {', '.join(close)}" if close else ""


def _cfg_names(value: Any) -> List[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def infer_model_shape(model_name: str, state: Dict[str, Any]) -> Dict[str, int]:
    """``num_classes`` and ``in_chans`` read from a state dict's classifier and input-conv weights (the
    architecture's pretrained cfg names them); only what can be read is returned."""
    cfg = get_pretrained_cfg(model_name) or get_pretrained_cfg(split_model_name_tag(model_name)[0])
    out: Dict[str, int] = {}
    if cfg is None:
        return out
    for clf in _cfg_names(cfg.classifier)[:1]:
        w = state.get(f"{clf}.weight")
        if isinstance(w, torch.Tensor) and w.dim() >= 1:
            out["num_classes"] = int(w.shape[0])
    for conv in _cfg_names(cfg.first_conv)[:1]:
        w = state.get(f"{conv}.weight")
        if isinstance(w, torch.Tensor) and w.dim() >= 2:
            out["in_chans"] = int(w.shape[1])
    return out


def _create_from_checkpoint(model_name: str, checkpoint_path: Any, **kwargs: Any):
    """``model_name`` with the weights of a local file, through the same loader as pretrained weights: the file
    is read safely and unwrapped, ``num_classes``/``in_chans`` are read from it unless given, and every key
    must fit."""
    state = unwrap_checkpoint(load_state_file(checkpoint_path))
    for key, value in infer_model_shape(model_name, state).items():
        kwargs.setdefault(key, value)
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {}, state_dict=state, file=str(checkpoint_path),
                   hf_hub_id=None, url=None)
    if kwargs.get("num_classes") is not None:
        overlay["num_classes"] = kwargs["num_classes"]  # the file's head is the model's head: load it strictly
    return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)


def create_model(model_name: str, pretrained: bool = False, checkpoint_path: Any = None, compile: Any = False,
                 **kwargs: Any):
    """Builds a kanzoo (or any timm) model by name, like ``timm.create_model``.

    ``model_name`` may carry a pretrained tag (``'vgg_kagn11_v4.tck_in1k'``) or be ``'hf-hub:org/repo'``.
    Keyword arguments go to the model (``num_classes``, ``in_chans``, ``drop_rate``, ``features_only``...)
    and to timm's factory (``pretrained_cfg_overlay=dict(file=...)``...). ``checkpoint_path`` loads a local
    weight file (safetensors, or a torch file read with ``weights_only=True``; training checkpoints are
    unwrapped) through the same strict loader as pretrained weights, with ``num_classes`` and ``in_chans`` read
    from the file unless given.

    ``compile=True`` (or a dict of ``torch.compile`` arguments, e.g. ``dict(mode="reduce-overhead")``) returns
    the model compiled in place with ``model.compile(...)``: same class and ``state_dict`` keys, and calling it
    runs the compiled forward (see ``docs/compile.md``).
    """
    compile_options(compile)  # a bad argument fails before anything is built
    return compile_model(_create(model_name, pretrained, checkpoint_path, **kwargs), compile)


def _create(model_name: str, pretrained: bool, checkpoint_path: Any, **kwargs: Any):
    if checkpoint_path is not None:
        if pretrained:
            raise ValueError("give pretrained=True or checkpoint_path, not both: the checkpoint replaces every weight")
        if not isinstance(model_name, str) or ":" in model_name:
            raise ValueError(f"checkpoint_path needs a registered model name, got {model_name!r}")
        _check_name(model_name)
        return _create_from_checkpoint(model_name, checkpoint_path, **kwargs)
    _check_name(model_name)
    if pretrained and ":" not in model_name:
        _check_has_weights(model_name, kwargs)
    if model_name.startswith("hf-hub:"):
        return _create_from_hub(model_name, pretrained, **kwargs)
    if model_name.startswith("local-dir:"):
        _check_local_dir(model_name[len("local-dir:"):])
    return timm.create_model(model_name, pretrained=pretrained, **kwargs)


def _check_name(model_name: Any) -> None:
    """Unknown names and tags: a :class:`~kanzoo.errors.UnknownModelError` with the closest registered names."""
    if not isinstance(model_name, str) or not model_name:
        raise UnknownModelError(f"model_name must be a non-empty string, got {model_name!r}")
    if ":" in model_name:
        return
    arch, tag = split_model_name_tag(model_name)
    if not is_model(arch):
        raise UnknownModelError(f"unknown model {arch!r}{_suggest(arch)}. `kanzoo list` shows all models")
    tags = [c.split(".", 1)[1] for c in get_arch_pretrained_cfgs(arch) if "." in c] if tag else []
    if tag and tag not in tags:
        raise UnknownModelError(f"unknown pretrained tag {tag!r} for {arch!r}; its tags are {tags}")


def _check_has_weights(model_name: str, kwargs: Dict[str, Any]) -> None:
    """``pretrained=True`` for a name whose cfg has no weights (and no overlay giving some): a
    :class:`~kanzoo.errors.NoPretrainedWeightsError` that names the tags that do have weights."""
    arch, tag = split_model_name_tag(model_name)
    cfg = get_pretrained_cfg(model_name)
    if (cfg is not None and cfg.has_weights) or kwargs.get("pretrained_cfg_overlay") or kwargs.get("pretrained_cfg"):
        return
    with_weights = list_models(f"{arch}.*", pretrained=True)
    hint = (f"tags with weights: {with_weights}" if with_weights else
            f"no {arch} tag has weights; models that do: {list_pretrained()[:10]}")
    if cfg is not None and cfg.notes:  # e.g. an architecture inferred for a checkpoint kanzoo ships no tag for
        hint += f" ({'; '.join(cfg.notes)})"
    if tag and cfg is not None and getattr(cfg, "metrics", None):
        family = model_entrypoint(arch).__module__.rsplit(".", 1)[-1].replace("_", "")  # as the model cards
        hint = (f"its published weights are not on the Hub yet (see model_cards/{model_name}.md): convert the "
                f"authors' checkpoint with `kanzoo convert --from {family} FILE OUT --tag {tag}` and load "
                f"'local-dir:OUT'")
    raise NoPretrainedWeightsError(f"{model_name!r} has no pretrained weights; {hint}. Use pretrained=False, or give "
                                   f"a file with pretrained_cfg_overlay=dict(file=...)")


def _repo_architecture(path: Path, where: str) -> Optional[str]:
    """The ``architecture`` a repo's ``config.json`` (at ``path``) names, after checking the file is timm's layout:
    JSON, and ``model_args`` only beside a ``pretrained_cfg`` (timm reads a config without one as the cfg itself,
    and its unknown keys as a TypeError)."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsNotFoundError(f"the config.json of {where} cannot be read as JSON ({e}); it is not a "
                                   f"timm/kanzoo model repo") from e
    if not isinstance(config, dict):
        raise WeightsFileError(f"the config.json of {where} holds a {type(config).__name__}, not timm's config "
                               f"object")
    if "model_args" in config and not isinstance(config.get("pretrained_cfg"), dict):
        raise WeightsFileError(f"the config.json of {where} has model_args but no pretrained_cfg; timm's layout "
                               f"keeps both (architecture, num_classes, model_args, pretrained_cfg): write it with "
                               f"kanzoo.save_pretrained, or add \"pretrained_cfg\": {{}}")
    arch = config.get("architecture")
    return arch if isinstance(arch, str) else None


def _hub_architecture(repo_id: str, revision: Optional[str], cache_dir: Any) -> Optional[str]:
    """The ``architecture`` a Hub repo's ``config.json`` names (timm's own download of it then hits the cache)."""
    path = fetch_file(repo_id, "config.json", revision=revision, cache_dir=cache_dir,
                      missing_hint=f", so it is not a timm/kanzoo model repo; load its weights into a named "
                                   f"architecture with pretrained_cfg_overlay=dict(hf_hub_id={repo_id!r})")
    return _repo_architecture(path, repr(repo_id))


def _check_local_dir(folder: str) -> None:
    """A ``local-dir:`` folder holds a readable timm ``config.json`` naming a registered architecture."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        raise WeightsNotFoundError(f"local-dir:{folder} has no config.json; give a folder written by "
                                   f"kanzoo.save_pretrained or `kanzoo train`, or load a weight file with "
                                   f"pretrained_cfg_overlay=dict(file=...)")
    arch = _repo_architecture(config, repr(folder))
    if arch is not None and not is_model(arch):
        raise UnknownModelError(f"local-dir:{folder}: its config.json names architecture {arch!r}, which is not "
                                f"registered; it needs a newer kanzoo or another timm plugin")


def _create_from_hub(model_name: str, pretrained: bool, **kwargs: Any):
    """``timm.create_model('hf-hub:org/repo')``, with the Hub's errors for its ``config.json`` turned into
    kanzoo's clear ones (the weights themselves go through :mod:`kanzoo.weights`)."""
    repo_id, revision = split_hub_id(model_name[len("hf-hub:"):])
    arch = _hub_architecture(repo_id, revision, kwargs.get("cache_dir"))
    if arch is not None and not is_model(arch):
        raise UnknownModelError(f"{model_name}: its config.json names architecture {arch!r}, which is not registered; "
                                f"it needs a newer kanzoo or another timm plugin")
    return timm.create_model(model_name, pretrained=pretrained, **kwargs)
