"""Strict key bookkeeping for converting upstream state dicts.

:func:`load_strict` loads a converted state into a kanzoo module. The reader and the torch-conv-kan per-layer
helpers live with the models that use them (:mod:`kanzoo.models._tck_layers`) and are re-exported here.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from ...models._tck_layers import StateReader, channel_major_to_channel, degree_major_to_channel, norm_state

__all__ = ["StateReader", "channel_major_to_channel", "degree_major_to_channel", "load_strict", "norm_state"]


def load_strict(module: nn.Module, mapped: Dict[str, torch.Tensor]) -> nn.Module:
    """Loads ``mapped`` into ``module`` strictly, with shapes checked and an error that lists the keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    if missing or unexpected:
        raise KeyError(f"conversion produced a state that does not fit the kanzoo module: "
                       f"missing {missing[:20]}, unexpected {unexpected[:20]}")
    for k, v in mapped.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise ValueError(f"shape mismatch for {k!r}: kanzoo {tuple(own[k].shape)} vs converted {tuple(v.shape)}")
    module.load_state_dict(mapped, strict=True)
    return module
