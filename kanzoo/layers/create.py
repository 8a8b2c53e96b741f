"""Name -> layer factories for norms and activations.

Layer choices are taken as strings (``norm_layer='batch'``) so that model arguments stay JSON-serialisable
(timm writes them to ``config.json``). Classes and callables are passed through unchanged.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import nn

LayerType = Union[str, Callable[..., nn.Module], None]

_ACTS = {
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "prelu": nn.PReLU,
    "identity": nn.Identity,
    "none": nn.Identity,
}

_CONV_NORMS = {
    "batch": {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d},
    "instance": {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d},
}


def _norm_name(obj) -> Optional[str]:
    """Maps torch norm classes to kanzoo's names (so upstream configs that name classes still work)."""
    for name, by_dim in _CONV_NORMS.items():
        if obj in by_dim.values():
            return name
    if obj is nn.LayerNorm:
        return "layer"
    if obj is nn.GroupNorm:
        return "group"
    return None


def _unknown(kind: str, value, choices) -> ValueError:
    return ValueError(
        f"unknown {kind} {value!r}; choose one of {sorted(choices)} or pass an nn.Module class"
    )


def get_act_layer(act: LayerType, default: Optional[str] = None, name: str = "act_layer") -> Callable[..., nn.Module]:
    """Returns an activation class for a name ('silu', 'gelu', 'prelu', 'identity', ...).

    ``None`` gives ``default`` (or identity when there is no default).
    """
    if act is None:
        act = default if default is not None else "identity"
    if isinstance(act, str):
        key = act.lower()
        if key not in _ACTS:
            raise _unknown(f"{name} activation", act, _ACTS)
        return _ACTS[key]
    if callable(act):
        return act
    raise TypeError(f"{name} must be a name or an nn.Module class, got {type(act).__name__}")


def create_act(act: LayerType, num_features: int, default: Optional[str] = None, name: str = "act_layer",
               device=None, dtype=None) -> nn.Module:
    """Builds an output activation; ``'prelu'`` gets one learnable slope per feature (``num_features``)."""
    cls = get_act_layer(act, default, name=name)
    return cls(num_parameters=num_features, device=device, dtype=dtype) if cls is nn.PReLU else cls()


def act_name(act: LayerType) -> Optional[str]:
    """The canonical name of an activation given as a class or name; None if it has none."""
    if act is None or isinstance(act, str):
        return act
    for name, cls in _ACTS.items():
        if act is cls:
            return name
    return None


def create_norm(
    norm: LayerType,
    num_features: int,
    ndim: int,
    device=None,
    dtype=None,
    name: str = "norm_layer",
    **kwargs,
) -> nn.Module:
    """Builds the norm that follows a KAN conv (``ndim`` 1-3) or KAN linear (``ndim`` 0).

    Names: ``'batch'``, ``'instance'`` (per sample and channel), ``'group'`` (GroupNorm, ``num_groups``
    kwarg, default 1), ``'layer'`` (linear layers: LayerNorm over features; convs: LayerNorm over channels
    at each position), ``'none'``/``None``. Extra kwargs (e.g. ``affine=True``, ``eps``) go to the norm.
    """
    dd = dict(device=device, dtype=dtype)
    if norm is None:
        return nn.Identity()
    if not isinstance(norm, str):
        name = _norm_name(norm)
        if name is None:
            return norm(num_features, **kwargs, **dd)
        norm = name
    key = norm.lower()
    if key in ("none", "identity"):
        return nn.Identity()
    if key in _CONV_NORMS:
        if ndim == 0:
            if key == "batch":
                return nn.BatchNorm1d(num_features, **kwargs, **dd)
            raise ValueError(f"{name}={norm!r} needs spatial dims; for a KAN linear layer use 'layer' or 'batch'")
        return _CONV_NORMS[key][ndim](num_features, **kwargs, **dd)
    if key == "group":
        kwargs.setdefault("num_groups", 1)
        return nn.GroupNorm(num_channels=num_features, **kwargs, **dd)
    if key == "layer":
        if ndim == 0:
            return nn.LayerNorm(num_features, **kwargs, **dd)
        return ChannelLayerNorm(num_features, **kwargs, **dd)
    raise _unknown(name, norm, list(_CONV_NORMS) + ["group", "layer", "none"])


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis (dim 1) of an (N, C, *spatial) tensor, at each position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1)
