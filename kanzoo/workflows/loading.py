"""Which model a command works on: a name with random, ``--pretrained`` or ``--checkpoint`` weights, and
optionally a basis adapter (``--adapter``) merged on top; plus the model's class names.

``--checkpoint`` takes a weight file (safetensors or a torch state dict, read safely by
:func:`kanzoo.hub.load_state_file`), a training checkpoint written by ``kanzoo train`` (``checkpoint.pth``), or
a run folder (``config.json`` + ``model.safetensors``, as :func:`kanzoo.save_pretrained` writes it). A file
that does not fit the architecture is reported key by key, not with torch's traceback.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from ._common import PathLike, WorkflowError, read_json

#: the training checkpoint ``kanzoo train`` writes into its run folder each epoch
CHECKPOINT_NAME = "checkpoint.pth"
#: the training settings ``kanzoo train`` writes into its run folder
ARGS_NAME = "args.json"


@dataclass
class LoadedModel:
    """A model plus what the commands need to describe its outputs."""

    model: nn.Module
    arch: str
    label_names: Optional[List[str]]
    source: str  # 'random', 'pretrained', or where the weights came from


def _arch(name: str) -> str:
    from timm.models import split_model_name_tag
    return split_model_name_tag(name)[0]


def _create(name: str, **kwargs: Any) -> nn.Module:
    """``kanzoo.create_model`` with its 'no weights' RuntimeError turned into a :class:`WorkflowError`."""
    from ..hub.download import PretrainedWeightsError
    from ..models import UnknownModelError, create_model

    try:
        return create_model(name, **kwargs)
    except (UnknownModelError, PretrainedWeightsError):
        raise
    except RuntimeError as e:
        if "no pretrained weights" in str(e):
            raise WorkflowError(f"{e}; or pass --checkpoint FILE") from None
        raise


def classifier_key(name: str) -> Optional[str]:
    """The state-dict key of the classifier weight of architecture ``name`` (from its pretrained cfg)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name) or get_pretrained_cfg(_arch(name))
    clf = getattr(cfg, "classifier", None) if cfg is not None else None
    if isinstance(clf, (list, tuple)):
        clf = clf[0] if clf else None
    return f"{clf}.weight" if clf else None


def _infer_num_classes(name: str, state: Dict[str, torch.Tensor]) -> Optional[int]:
    key = classifier_key(name)
    w = state.get(key) if key else None
    return int(w.shape[0]) if isinstance(w, torch.Tensor) and w.dim() >= 1 else None


def describe_mismatch(model: nn.Module, state: Dict[str, torch.Tensor], source: str, name: str,
                      hint: str = "") -> str:
    """A one-paragraph account of why ``state`` does not load into ``model``."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} of {name}'s {len(own)} tensors are missing from it ({', '.join(missing[:3])}"
                     f"{', ...' if len(missing) > 3 else ''})")
    if unexpected:
        parts.append(f"{len(unexpected)} of its tensors have no place in {name} ({', '.join(unexpected[:3])}"
                     f"{', ...' if len(unexpected) > 3 else ''})")
    if shapes:
        parts.append(f"{len(shapes)} shapes differ ({'; '.join(shapes[:2])}{'; ...' if len(shapes) > 2 else ''})")
    what = "; ".join(parts) or "torch refused it"
    return (f"checkpoint {source!r} does not fit {name}: {what}. It was saved for another architecture or other "
            f"model arguments{hint}; give the matching model name, --model-kwargs, or the run folder")


def load_state_strict(model: nn.Module, state: Dict[str, torch.Tensor], source: str, name: str,
                      hint: str = "") -> None:
    """``model.load_state_dict(state)``, strictly; a mismatch raises a :class:`WorkflowError` that lists it."""
    own = model.state_dict()
    fits = set(own) == set(state) and all(
        isinstance(state[k], torch.Tensor) and tuple(state[k].shape) == tuple(v.shape) for k, v in own.items())
    if not fits:
        raise WorkflowError(describe_mismatch(model, state, source, name, hint))
    model.load_state_dict(state)


def _config_hint(path: Path) -> str:
    cfg = path / "config.json" if path.is_dir() else path.parent / "config.json"
    if cfg.is_file():
        try:
            arch = read_json(cfg).get("architecture")
        except WorkflowError:
            return ""
        if arch:
            return f" (the config.json beside it names {arch!r})"
    return ""


def read_training_checkpoint(path: PathLike) -> Dict[str, Any]:
    """A ``checkpoint.pth`` written by ``kanzoo train`` (read with ``weights_only=True``)."""
    from ..hub.download import load_state_file

    ckpt = load_state_file(path)
    if not isinstance(ckpt.get("state_dict"), dict) or "arch" not in ckpt:
        raise WorkflowError(f"{os.fspath(path)!r} is not a kanzoo training checkpoint (no 'state_dict' and 'arch'); "
                            f"give the run folder that `kanzoo train` wrote")
    return ckpt


def _from_run_dir(name: Optional[str], run: Path, device) -> LoadedModel:
    """A run folder: ``config.json`` + weights (a finished run), else its ``checkpoint.pth`` (an unfinished one)."""
    if (run / "config.json").is_file() and any((run / f).is_file() for f in ("model.safetensors", "pytorch_model.bin")):
        config = read_json(run / "config.json")
        arch = config.get("architecture")
        if name and arch and _arch(name) != arch:
            raise WorkflowError(f"run folder {str(run)!r} holds a {arch}, not a {_arch(name)}; use NAME {arch}")
        model = _create(f"local-dir:{run}", pretrained=True, device=device)
        labels = model.pretrained_cfg.get("label_names") or config.get("label_names")
        return LoadedModel(model, arch or _arch(name), list(labels) if labels else None, str(run))
    if (run / CHECKPOINT_NAME).is_file():
        return _from_training_checkpoint(name, run / CHECKPOINT_NAME, device)
    raise WorkflowError(f"folder {str(run)!r} holds neither config.json with model.safetensors (a finished run) "
                        f"nor {CHECKPOINT_NAME} (a run in progress)")


def _from_training_checkpoint(name: Optional[str], path: Path, device) -> LoadedModel:
    ckpt = read_training_checkpoint(path)
    arch = ckpt["arch"]
    if name and _arch(name) != arch:
        raise WorkflowError(f"checkpoint {str(path)!r} holds a {arch}, not a {_arch(name)}; use NAME {arch}")
    if ckpt.get("peft"):
        raise WorkflowError(f"{str(path)!r} is the checkpoint of an unfinished adapter run; finish or resume it "
                            f"(`kanzoo finetune --resume {path.parent}`), then use the run folder")
    model = _create(arch, **dict(ckpt.get("model_args") or {}), device=device)
    load_state_strict(model, ckpt["state_dict"], str(path), arch)
    labels = ckpt.get("label_names")
    return LoadedModel(model, arch, list(labels) if labels else None, str(path))


def _from_file(name: str, path: Path, model_kwargs: Dict[str, Any], device) -> LoadedModel:
    from ..hub.download import load_state_file
    from ..models._base import unwrap_checkpoint

    raw = load_state_file(path)
    if isinstance(raw.get("state_dict"), dict) and "arch" in raw:
        return _from_training_checkpoint(name, path, device)
    state = unwrap_checkpoint(raw)
    kwargs = dict(model_kwargs)
    n = _infer_num_classes(name, state)
    if n is not None and "num_classes" not in kwargs:
        kwargs["num_classes"] = n
    overlay = dict(state_dict=state, num_classes=kwargs.get("num_classes"))
    overlay = {k: v for k, v in overlay.items() if v is not None}
    try:  # timm's loader: the family's checkpoint filter (unwrapping, stem adaptation) applies
        model = _create(name, pretrained=True, pretrained_cfg_overlay=overlay, device=device, **kwargs)
    except (RuntimeError, KeyError) as e:
        if isinstance(e, RuntimeError) and "state_dict" not in str(e) and "size mismatch" not in str(e):
            raise
        probe = _create(name, device="meta", **kwargs)
        raise WorkflowError(describe_mismatch(probe, state, str(path), _arch(name), _config_hint(path))) from None
    labels = None
    cfg_file = path.parent / "config.json"
    if cfg_file.is_file():
        config = read_json(cfg_file)
        if config.get("architecture") == _arch(name) and config.get("num_classes") == model.num_classes:
            labels = config.get("label_names")
    model.pretrained_cfg = dict(model.pretrained_cfg, num_classes=model.num_classes)
    for k in ("state_dict", "file"):
        model.pretrained_cfg.pop(k, None)
    return LoadedModel(model, _arch(name), list(labels) if labels else None, str(path))


def load_model(name: Optional[str], pretrained: bool = False, checkpoint: Optional[PathLike] = None,
               adapter: Optional[PathLike] = None, model_kwargs: Optional[Dict[str, Any]] = None,
               device: Any = "cpu") -> LoadedModel:
    """Builds ``name`` with its weights: random, ``pretrained`` (the registry's), or a ``checkpoint`` (file,
    training checkpoint or run folder); then merges a basis ``adapter`` folder when given. Returns the model
    in eval mode."""
    model_kwargs = dict(model_kwargs or {})
    if pretrained and checkpoint:
        raise WorkflowError("give --pretrained or --checkpoint, not both")
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise WorkflowError(f"checkpoint {str(path)!r} does not exist; give a weight file (.safetensors, .pth) "
                                f"or a run folder written by `kanzoo train`")
        if path.is_dir():
            loaded = _from_run_dir(name, path, device)
        else:
            if not name:
                raise WorkflowError("a weight file needs the model NAME it was saved for")
            loaded = _from_file(name, path, model_kwargs, device)
    else:
        if not name:
            raise WorkflowError("give a model NAME")
        model = _create(name, pretrained=pretrained, device=device, **model_kwargs)
        loaded = LoadedModel(model, _arch(name), None, "pretrained" if pretrained else "random")
    if adapter is not None:
        loaded = apply_adapter(loaded, adapter)
    loaded.model.eval()
    return loaded


def peft_module():
    """:mod:`kanzoo.peft`, or a clear error when this kanzoo has no adapter support."""
    try:
        from .. import peft
    except ImportError as e:  # pragma: no cover - kanzoo.peft ships with kanzoo
        raise WorkflowError(f"basis adapters need kanzoo.peft, which this installation lacks ({e})") from None
    return peft


def apply_adapter(loaded: LoadedModel, adapter: PathLike) -> LoadedModel:
    """Merges the basis adapter in folder ``adapter`` into ``loaded.model``; class names come from the
    adapter run's ``config.json`` when it has them."""
    peft = peft_module()
    adir = Path(adapter)
    if not adir.is_dir():
        raise WorkflowError(f"adapter folder {str(adir)!r} does not exist; give the folder that "
                            f"`kanzoo finetune --peft` wrote (adapter_config.json + adapter_model.safetensors)")
    if not (adir / peft.CONFIG_NAME).is_file():
        raise WorkflowError(f"folder {str(adir)!r} has no {peft.CONFIG_NAME}: it is not an adapter folder")
    model = peft.load_adapter(loaded.model, adir, merge=True)
    labels = loaded.label_names
    if (adir / "config.json").is_file():
        labels = read_json(adir / "config.json").get("label_names") or labels
    if labels is not None and len(labels) != getattr(model, "num_classes", len(labels)):
        labels = None
    return LoadedModel(model, loaded.arch, labels, f"{loaded.source} + adapter {adir}")


def adapter_base(adapter: PathLike) -> Tuple[bool, Optional[str]]:
    """(pretrained, checkpoint) the adapter in run folder ``adapter`` was trained on, from its ``args.json``;
    (False, None) when unknown."""
    args_file = Path(adapter) / ARGS_NAME
    if not args_file.is_file():
        return False, None
    args = read_json(args_file)
    return bool(args.get("pretrained")), args.get("checkpoint")


@dataclass
class Labels:
    """Class ids (what a dataset folder of that class is called: a synset for ImageNet) and readable names."""

    ids: List[str]
    names: List[str]

    def name(self, i: int) -> str:
        return self.names[i] if 0 <= i < len(self.names) else f"class {i}"


def model_labels(model: nn.Module, label_names: Optional[List[str]] = None) -> Optional[Labels]:
    """The class names of ``model``: ``label_names`` (a finetuned run's class folders), those in its pretrained
    cfg, or ImageNet's (``timm.data.ImageNetInfo``) for a 1k/21k classifier; None when unknown."""
    n = getattr(model, "num_classes", None)
    names = label_names or (getattr(model, "pretrained_cfg", {}) or {}).get("label_names")
    if names and (n is None or len(names) == n):
        names = [str(x) for x in names]
        descriptions = (getattr(model, "pretrained_cfg", {}) or {}).get("label_descriptions") or {}
        return Labels(list(names), [descriptions.get(x, x) for x in names])
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(model) if n else None
    if subset:
        info = ImageNetInfo(subset)
        return Labels([info.index_to_label_name(i) for i in range(n)],
                      [info.index_to_description(i) for i in range(n)])
    return None
