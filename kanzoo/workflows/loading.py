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

from timm.data import ImageNetInfo, infer_imagenet_subset
from timm.models import get_pretrained_cfg, split_model_name_tag
from torch import nn

from .. import peft
from ..errors import NoPretrainedWeightsError, UnknownModelError, WeightsMismatchError, WorkflowError
from ..io import PathLike, read_json
from ..models import create_model, list_models, list_pretrained
from ..weights import download_weights, fetch_file, load_state_file, load_state_strict, split_hub_id, unwrap_checkpoint

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
    return split_model_name_tag(name)[0]


def _create(name: str, **kwargs: Any) -> nn.Module:
    """``kanzoo.create_model``, with a name that has no published weights pointed at ``--checkpoint``."""
    try:
        return create_model(name, **kwargs)
    except NoPretrainedWeightsError as e:
        raise WorkflowError(f"{e}; or pass --checkpoint FILE") from None


def classifier_key(name: str) -> Optional[str]:
    """The state-dict key of the classifier weight of architecture ``name`` (from its pretrained cfg)."""
    cfg = get_pretrained_cfg(name) or get_pretrained_cfg(_arch(name))
    clf = getattr(cfg, "classifier", None) if cfg is not None else None
    if isinstance(clf, (list, tuple)):
        clf = clf[0] if clf else None
    return f"{clf}.weight" if clf else None


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
    load_state_strict(model, unwrap_checkpoint(ckpt["state_dict"]), str(path), arch)
    labels = ckpt.get("label_names")
    return LoadedModel(model, arch, list(labels) if labels else None, str(path))


def _from_file(name: str, path: Path, model_kwargs: Dict[str, Any], device) -> LoadedModel:
    raw = load_state_file(path)
    if isinstance(raw.get("state_dict"), dict) and "arch" in raw:
        return _from_training_checkpoint(name, path, device)
    try:
        model = _create(name, checkpoint_path=path, device=device, **model_kwargs)
    except WeightsMismatchError as e:
        hint = _config_hint(path)
        raise type(e)(str(e).replace("model arguments;", f"model arguments{hint};", 1) if hint else str(e),
                      e.missing, e.unexpected, e.shapes) from None
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


def apply_adapter(loaded: LoadedModel, adapter: PathLike) -> LoadedModel:
    """Merges the basis adapter in folder ``adapter`` into ``loaded.model``; class names come from the
    adapter run's ``config.json`` when it has them."""
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
    subset = infer_imagenet_subset(model) if n else None
    if subset:
        info = ImageNetInfo(subset)
        return Labels([info.index_to_label_name(i) for i in range(n)],
                      [info.index_to_description(i) for i in range(n)])
    return None


# ------------------------------------------------------------------------------ weight sources the commands name
def load_model_with_adapter_base(name: Optional[str], pretrained: bool = False,
                                 checkpoint: Optional[PathLike] = None, adapter: Optional[PathLike] = None,
                                 model_kwargs: Optional[Dict[str, Any]] = None, device: Any = "cpu") -> LoadedModel:
    """:func:`load_model`; an ``adapter`` given without ``pretrained`` or ``checkpoint`` is merged into the base
    weights it was trained on, as its run folder's ``args.json`` records them (:func:`adapter_base`)."""
    if adapter and not (pretrained or checkpoint):
        pretrained, checkpoint = adapter_base(adapter)
        if not (pretrained or checkpoint):
            raise WorkflowError(f"--adapter {adapter} needs the base weights it was trained on: add --pretrained or "
                                f"--checkpoint FILE")
    return load_model(name, pretrained=pretrained, checkpoint=checkpoint, adapter=adapter,
                      model_kwargs=model_kwargs, device=device)


def published_weights_cfg(name: str):
    """The pretrained cfg of ``name`` (``arch.tag``; the default tag for a bare ``arch``) whose weights are on the
    Hub; :class:`~kanzoo.errors.UnknownModelError` for an unknown architecture or a tag without weights."""
    arch = _arch(name)
    if arch not in list_models(arch):
        raise UnknownModelError(f"unknown model {arch!r}; `kanzoo list` shows all models")
    cfg = get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise UnknownModelError(f"{name!r} has no weights on the Hub; tags that do: {list_pretrained()}")
    return cfg


def download_pretrained(name: str, revision: Optional[str] = None, cache_dir: Optional[PathLike] = None) -> Path:
    """Fetches and verifies the weights of ``name`` into the Hugging Face cache and returns the weight file.

    ``name`` is ``arch.tag`` (its cfg's Hub repo, file and sha256) or ``hf-hub:org/repo[@revision]`` (whose
    ``config.json`` is fetched too, so that ``create_model`` works offline later); ``revision`` replaces the
    one the cfg or the name gives."""
    if name.startswith("hf-hub:"):
        repo_id, named_revision = split_hub_id(name[len("hf-hub:"):])
        fetch_file(repo_id, "config.json", revision=revision or named_revision, cache_dir=cache_dir, model_name=name)
        return download_weights(repo_id, revision=revision or named_revision, cache_dir=cache_dir, model_name=name)
    cfg = published_weights_cfg(name)
    return download_weights(cfg.hf_hub_id, filename=cfg.hf_hub_filename, revision=revision,
                            sha256=getattr(cfg, "sha256", None), cache_dir=cache_dir, model_name=name)


def saved_model_args(config: Dict[str, Any]) -> Dict[str, Any]:
    """The architecture arguments a saved ``config.json`` records (its ``model_args``, less the pretrained cfg
    overlay)."""
    return {k: v for k, v in (config.get("model_args") or {}).items() if k != "pretrained_cfg_overlay"}


def create_model_code(name: str, folder: PathLike, config: Dict[str, Any]) -> str:
    """The ``kanzoo.create_model(...)`` call that loads the ``model.safetensors`` saved in ``folder`` (with its
    ``config.json`` content ``config``) under the registered ``name`` (``arch`` or ``arch.tag``).

    The overlay repeats what differs from the registered cfg: timm drops a classifier whose ``num_classes``
    differs from the cfg's, and the input size drives the preprocessing."""
    registered, written = get_pretrained_cfg(name), config.get("pretrained_cfg") or {}
    overlay = f"file='{Path(folder) / 'model.safetensors'}'"
    for key in ("num_classes", "input_size"):
        value, default = written.get(key), getattr(registered, key, None)
        if isinstance(value, list):
            value = tuple(value)
        if value is not None and value != (tuple(default) if isinstance(default, list) else default):
            overlay += f", {key}={value!r}"
    margs = "".join(f", {k}={v!r}" for k, v in saved_model_args(config).items())
    return f"kanzoo.create_model('{name}', pretrained=True, pretrained_cfg_overlay=dict({overlay}){margs})"
