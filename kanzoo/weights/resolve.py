"""Where a pretrained cfg's weights come from, and the state dict they hold.

The source is chosen in timm's order: an ``hf-hub:`` name, a ``local-dir:`` folder, an in-memory
``state_dict``, a local ``file``, the cfg's ``hf_hub_id`` (``org/repo`` or ``org/repo@revision``), a ``url``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch

from ..errors import WeightsNotFoundError
from .download import download_weights
from .files import load_state_file

__all__ = ["weight_source", "resolve_pretrained_state"]


def _cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    return cfg.get(key, default) if isinstance(cfg, dict) else getattr(cfg, key, default)


def weight_source(cfg: Any) -> Tuple[str, Any]:
    """Where a pretrained cfg's weights come from, in timm's order: ``('hf-hub', id)``, ``('local-dir', dir)``,
    ``('state_dict', sd)``, ``('file', path)``, ``('hf-hub', id)`` from ``hf_hub_id``, ``('url', url)`` or
    ``('', None)``."""
    source = _cfg_get(cfg, "source") or ""
    if source == "hf-hub" and _cfg_get(cfg, "hf_hub_id"):
        return "hf-hub", _cfg_get(cfg, "hf_hub_id")
    if source == "local-dir":
        return "local-dir", _cfg_get(cfg, "file")
    for key, kind in (("state_dict", "state_dict"), ("file", "file"), ("hf_hub_id", "hf-hub"), ("url", "url")):
        value = _cfg_get(cfg, key)
        if value:
            return kind, value
    return "", None


def resolve_pretrained_state(cfg: Any, model_name: Optional[str] = None, cache_dir: Optional[str] = None
                             ) -> Optional[Dict[str, torch.Tensor]]:
    """The state dict a pretrained cfg points to, fetched and verified; ``None`` for a ``url`` source (left to
    timm, which downloads it with ``weights_only=True``).

    Raises :class:`WeightsNotFoundError` when the cfg has no weight source at all (timm would only log a
    warning and keep the random initialisation).
    """
    kind, where = weight_source(cfg)
    if kind == "state_dict":
        return where
    if kind in ("file", "local-dir"):
        return load_state_file(where)
    if kind == "hf-hub":
        path = download_weights(where, filename=_cfg_get(cfg, "hf_hub_filename"), sha256=_cfg_get(cfg, "sha256"),
                                cache_dir=cache_dir, model_name=model_name)
        return load_state_file(path)
    if kind == "url":
        return None
    raise WeightsNotFoundError(
        f"{model_name or 'this model'} has no pretrained weights: its pretrained cfg names no hf_hub_id, file or "
        f"url. Use pretrained=False, a tag with weights (`kanzoo list --pretrained`), or a local file with "
        f"pretrained_cfg_overlay=dict(file=...)")
