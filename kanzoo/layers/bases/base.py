"""The basis interface that every KAN layer in kanzoo is built on."""

from typing import List, Optional

import torch
from torch import nn


class Basis(nn.Module):
    """A family of univariate functions B_0..B_{F-1} applied elementwise to a KAN layer's input.

    ``forward(x, prefix)`` maps ``x`` of shape (N, C, *spatial) to (N, C, F, *spatial): the basis axis is
    inserted right after the channel axis, so for channel c the F values are contiguous ("channel-major").
    When ``prefix`` (shape of ``x``) is given it is placed in slot 0 and the basis fills slots 1..F; KAN
    layers use this to run their base branch and their basis branch as one convolution.

    Subclasses set ``num_basis`` and the defaults of the layer built around them (``default_base_act``,
    ``default_act``, ``default_use_base``, ``default_norm``), which follow the paper that introduced them.
    """

    num_basis: int
    default_base_act: Optional[str] = "silu"
    default_act: Optional[str] = "silu"
    default_use_base: bool = True
    default_norm: Optional[str] = "instance"
    #: True where the basis holds per-channel parameters and takes ``num_channels`` in its constructor.
    needs_channels: bool = False
    #: True where the basis treats the layer's channel groups separately and takes ``groups``.
    needs_groups: bool = False

    def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError

    def reset_parameters(self, fan_in: int = 1) -> None:
        """Re-initialises learnable basis parameters; ``fan_in`` is the input count of the owning layer."""

    def extra_repr(self) -> str:
        return f"num_basis={self.num_basis}"


class CompilableValues(nn.Module):
    """Mixin for bases computed by one elementwise function ``values(x)`` (B-spline, RBF).

    With ``compile_values = True`` (see :func:`kanzoo.layers.compile_bases`) that function runs through
    ``torch.compile``: inductor fuses the whole basis into one loop (C++ on CPU, Triton on GPU) and
    derives its backward, instead of one pass over (N, C, F, ...) per elementary op. The first call per
    input shape compiles (seconds); scripting, tracing and export always use the eager function.
    """

    def __init__(self):
        super().__init__()
        self.compile_values = False

    def values(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.jit.unused
    def _compiled_values(self, x: torch.Tensor) -> torch.Tensor:
        fn = self.__dict__.get("_compiled_fn")
        if fn is None:
            fn = torch.compile(self.values, dynamic=False)
            self.__dict__["_compiled_fn"] = fn
        return fn(x)

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting() or torch.jit.is_tracing() or not self.compile_values:
            return self.values(x)
        return self._compiled_values(x)


def stack_basis(parts: List[torch.Tensor], prefix: Optional[torch.Tensor]) -> torch.Tensor:
    """Stacks per-function tensors (each shaped like the input) on a new axis 2, with ``prefix`` first."""
    if prefix is not None:
        parts = [prefix] + parts
    return torch.stack(parts, dim=2)


def cat_basis(values: torch.Tensor, prefix: Optional[torch.Tensor]) -> torch.Tensor:
    """Like :func:`stack_basis` for a basis computed at once as (N, C, F, *spatial)."""
    if prefix is None:
        return values
    return torch.cat([prefix.unsqueeze(2), values], dim=2)


def unsqueeze_basis_axis(x: torch.Tensor) -> torch.Tensor:
    """(N, C, *spatial) -> (N, C, 1, *spatial), for broadcasting against (C, F, 1, ...) parameters."""
    return x.unsqueeze(2)


def check_degree(degree: int) -> int:
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise ValueError(f"degree must be an integer >= 0, got {degree!r}")
    return degree
