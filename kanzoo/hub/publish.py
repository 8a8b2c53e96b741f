"""Saving a model in the Hub layout and publishing it.

A kanzoo repo holds ``model.safetensors`` (kanzoo's own keys), ``config.json`` in timm's format
(``architecture``, ``num_classes``, ``model_args``, ``pretrained_cfg``) and a ``README.md`` model card. Because
the config is timm's, ``timm.create_model('hf-hub:REPO')`` loads it once ``kanzoo`` is imported, and
``kanzoo.create_model('hf-hub:REPO')`` always does.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

from huggingface_hub import HfApi
from safetensors.torch import save_model
from timm.models import is_model
from timm.models._hub import save_config_for_hf
from torch import nn

from .._version import __version__
from ..io import file_mode
from ..models._base import architecture_defaults
from .cards import model_card

#: the files :func:`save_pretrained` writes
REPO_FILES = ("model.safetensors", "config.json", "README.md")


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module) or not isinstance(getattr(model, "pretrained_cfg", None), dict):
        raise TypeError(f"expected a model built by kanzoo.create_model (an nn.Module with a pretrained_cfg), "
                        f"got {type(model).__name__}")
    arch = model.pretrained_cfg.get("architecture")
    if not arch or not is_model(arch):
        raise ValueError(f"the model's pretrained_cfg names architecture {arch!r}, which is not registered; only "
                         f"registered architectures can be rebuilt from config.json")
    meta = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    if meta:
        raise ValueError(f"the model has tensors on the meta device ({meta[0]}, ...): it holds no weights to save; "
                         f"build it on a real device or load weights first")


#: config.json fields that live at the top level and so never repeat in ``model_args`` (transformers' TimmWrapper
#: passes ``num_classes`` itself, and a second copy in ``model_args`` is a TypeError there)
TOP_LEVEL_FIELDS = ("num_classes",)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values (a tuple default equals the list that JSON gives back)."""
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except (TypeError, ValueError):
        return False


def export_model_args(model: nn.Module, recorded: Dict[str, Any]) -> Dict[str, Any]:
    """The ``model_args`` of a config.json: the arguments timm recorded for ``model`` less the top-level fields and
    less what equals the architecture's defaults, so that the file says only what differs."""
    defaults = architecture_defaults(model.pretrained_cfg["architecture"], type(model))
    return {k: v for k, v in recorded.items()
            if k not in TOP_LEVEL_FIELDS and not (k in defaults and _same(defaults[k], v))}


def _write_config(model: nn.Module, path: Path, model_args: Optional[Dict[str, Any]],
                  label_names: Optional[list]) -> None:
    """timm's ``config.json`` (``save_config_for_hf``: architecture, num_classes, num_features, global_pool, label
    names, pretrained_cfg), with ``model_args`` trimmed by :func:`export_model_args`."""
    model_config = {"label_names": list(label_names)} if label_names else None
    save_config_for_hf(model, str(path), model_config=model_config, model_args=model_args)
    config = json.loads(path.read_text())
    args = export_model_args(model, config.pop("model_args", {}))
    if args:
        config["model_args"] = args
    config["pretrained_cfg"] = config.pop("pretrained_cfg")  # timm's key order: pretrained_cfg after model_args
    config["library"] = "kanzoo"  # informational: timm reads only its own keys
    path.write_text(json.dumps(config, indent=2) + "\n")


def save_pretrained(model: nn.Module, save_dir: Union[str, Path], model_args: Optional[Dict[str, Any]] = None,
                    card: Optional[str] = None, label_names: Optional[list] = None,
                    card_kwargs: Optional[Dict[str, Any]] = None) -> Path:
    """Writes ``model.safetensors``, ``config.json`` and ``README.md`` into ``save_dir``.

    The files are written into a temporary folder first and moved into ``save_dir`` one by one with
    ``os.replace``, so a failure never leaves a half-written file. ``model_args`` adds architecture arguments
    that the factory did not record (e.g. a raised degree after merging an adapter).
    """
    _check_model(model)
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".kanzoo-save-", dir=save_dir))
    try:
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _write_config(model, tmp / "config.json", model_args, label_names)
        (tmp / "README.md").write_text(card if card is not None else model_card(model, **(card_kwargs or {})),
                                       encoding="utf-8")
        for name in REPO_FILES:
            os.chmod(tmp / name, file_mode())
            os.replace(tmp / name, save_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return save_dir


def push_to_hub(model: nn.Module, repo_id: str, commit_message: Optional[str] = None,
                private: Optional[bool] = None, token: Optional[str] = None, revision: Optional[str] = None,
                create_pr: bool = False, model_args: Optional[Dict[str, Any]] = None, card: Optional[str] = None,
                label_names: Optional[list] = None, card_kwargs: Optional[Dict[str, Any]] = None) -> str:
    """Publishes ``model`` to the Hub repo ``repo_id`` (created if needed) and returns the commit URL.

    Writes the files of :func:`save_pretrained` into a temporary folder and uploads them in one commit with
    ``HfApi.create_repo`` and ``HfApi.upload_folder`` (``HF_ENDPOINT`` and ``HF_TOKEN`` apply).
    """

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id must look like 'user-or-org/name', got {repo_id!r}")
    _check_model(model)
    api = HfApi(token=token, library_name="kanzoo", library_version=__version__)
    with tempfile.TemporaryDirectory(prefix="kanzoo-push-") as tmp:
        save_pretrained(model, tmp, model_args=model_args, card=card, label_names=label_names,
                        card_kwargs=card_kwargs)
        api.create_repo(repo_id, private=private, exist_ok=True)
        arch = model.pretrained_cfg["architecture"]
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision, create_pr=create_pr,
                                 commit_message=commit_message or f"Upload {arch} with kanzoo {__version__}",
                                 allow_patterns=list(REPO_FILES))
    return info.commit_url if hasattr(info, "commit_url") else str(info)
