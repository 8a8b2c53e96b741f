"""Strict key bookkeeping for converting upstream state dicts.

:func:`load_strict` loads a converted state into a kanzoo module. The reader and the torch-conv-kan per-layer
helpers live with the models that use them (:mod:`kanzoo.models._tck_layers`) and are re-exported here.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch import nn

from ...models._tck_layers import StateReader, channel_major_to_channel, degree_major_to_channel, norm_state
from ...weights import load_state_strict

__all__ = ["StateReader", "channel_major_to_channel", "degree_major_to_channel", "load_strict", "norm_state",
           "build_loaded"]


def load_strict(module: nn.Module, mapped: Dict[str, torch.Tensor]) -> nn.Module:
    """Loads a converted state into ``module`` through kanzoo's one strict loader
    (:func:`kanzoo.weights.load_state_strict`); returns the module."""
    load_state_strict(module, mapped, source="the converted reference state", name=type(module).__name__)
    return module


def build_loaded(build: Callable[..., nn.Module], state_dict: Optional[Dict[str, torch.Tensor]],
                 convert: Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]],
                 dtype: Optional[torch.dtype] = None) -> nn.Module:
    """``build(device=...)`` with ``state_dict`` converted by ``convert`` and loaded strictly, in ``dtype``.

    Without a state dict the module is built and initialised as usual. With one, every tensor is loaded, so the
    module is built on the meta device (no initialisation) and then allocated."""
    if state_dict is None:
        module = build()
        return module.to(dtype) if dtype is not None else module
    module = build(device="meta").to_empty(device="cpu")
    if dtype is not None:
        module = module.to(dtype)
    return load_strict(module, convert(dict(state_dict)))
