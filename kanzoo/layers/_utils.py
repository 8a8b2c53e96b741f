"""Argument checks shared by the KAN layers: errors name the argument, echo the value and say what to do."""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch

IntOrTuple = Union[int, Sequence[int]]


def to_ntuple(value: IntOrTuple, n: int, name: str, minimum: int) -> Tuple[int, ...]:
    """Expands an int to an n-tuple and checks every entry is an int >= ``minimum``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    if isinstance(value, int):
        values = (value,) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {value!r}") from None
        if len(values) != n:
            raise ValueError(f"{name} must have {n} entries for a {n}-d layer, got {value!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{name} must be >= {minimum} in every dimension, got {value!r}")
    return values


def is_symbolic(x: torch.Tensor) -> bool:
    """True for a ``torch.fx`` proxy: its sizes are not known while tracing, so eager input checks skip it."""
    if not torch.jit.is_scripting():
        return isinstance(x, torch.fx.Proxy)
    return False


def check_channels(in_channels: int, out_channels: int, groups: int) -> None:
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}; "
            f"pick groups from the common divisors of both"
        )


def check_ndim(ndim: int) -> int:
    if ndim not in (1, 2, 3):
        raise ValueError(f"ndim must be 1, 2 or 3, got {ndim!r}")
    return ndim


def check_probability(p: float, name: str = "dropout") -> float:
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {p!r}")
    return float(p)


def init_conv_geometry(module, in_channels: int, out_channels: int, kernel_size: IntOrTuple, stride: IntOrTuple,
                       padding: IntOrTuple, dilation: IntOrTuple, groups: int, ndim: int) -> None:
    """Checks a conv layer's geometry and stores it on ``module`` (ndim, channels, groups, kernel_size,
    stride, padding, dilation as ndim-tuples)."""
    module.ndim = check_ndim(ndim)
    check_channels(in_channels, out_channels, groups)
    module.in_channels, module.out_channels, module.groups = in_channels, out_channels, groups
    module.kernel_size = to_ntuple(kernel_size, ndim, "kernel_size", 1)
    module.stride = to_ntuple(stride, ndim, "stride", 1)
    module.padding = to_ntuple(padding, ndim, "padding", 0)
    module.dilation = to_ntuple(dilation, ndim, "dilation", 1)


_SHAPES = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def fixed_ndim(base: type, ndim: int, name: str) -> type:
    """A subclass of an N-d layer ``base`` (``__init__(in_channels, out_channels, kernel_size, ..., ndim)``)
    with ``ndim`` fixed: ``KANConv2d = fixed_ndim(KANConvNd, 2, "KANConv2d")``."""

    def __init__(self, in_channels, out_channels, kernel_size, **kwargs):
        base.__init__(self, in_channels, out_channels, kernel_size, ndim=ndim, **kwargs)

    doc = f":class:`{base.__name__}` over {_SHAPES[ndim]} inputs."
    return type(name, (base,), {"__init__": __init__, "__doc__": doc, "__module__": base.__module__})
