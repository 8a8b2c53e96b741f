"""ReLU-KAN basis (Qiu et al., "ReLU-KAN: New Kolmogorov-Arnold Networks that Only Need Matrix Addition,
Dot Multiplication, and ReLU", arXiv 2406.02075)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .base import Basis, cat_basis, check_count


class ReLUBasis(Basis):
    r"""Squared products of two ReLUs: smooth bumps with learnable per-channel phases.

    .. math:: B_{c,j}(x) = \big(r\,\mathrm{ReLU}(x - l_{c,j})\,\mathrm{ReLU}(h_{c,j} - x)\big)^2,\quad
              r = \frac{4g^2}{(k+1)^2}

    with initial phases :math:`l_{c,j} = (j-k)/g` and :math:`h_{c,j} = l_{c,j} + (k+1)/g` for
    j = 0..g+k-1 (``num_basis = g + k``), so each bump peaks at 1.

    Args:
        num_channels: input channels C (each has its own phases).
        g: grid intervals; k: bump width in intervals.
        train_phases: learn ``phase_low``/``phase_high`` (shape (C, g+k)).
    """

    name = "relu"
    model_tag = "relukan"
    upstream_names = {"conv": "ReLUKAN", "bottleneck": "BottleNeckReLUKAN", "linear": "ReLUKAN-linear"}
    needs_channels = True

    def __init__(self, num_channels: int, g: int = 5, k: int = 3, train_phases: bool = True,
                 device=None, dtype=None):
        super().__init__()
        for name, v in (("g", g), ("k", k)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ReLU-KAN {name} must be an int >= 1, got {v!r}")
        self.g, self.k = g, k
        self.num_basis = g + k
        self.r = 4.0 * g * g / ((k + 1.0) * (k + 1.0))
        # phases computed in float64, then rounded once to the layer's dtype (float64 layers get exact values)
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        low = torch.arange(-k, g, dtype=torch.float64, device=device) / g
        high = low + (k + 1) / g
        low = low.expand(num_channels, -1).clone().to(dtype)
        high = high.expand(num_channels, -1).clone().to(dtype)
        self.phase_low = nn.Parameter(low, requires_grad=train_phases)
        self.phase_high = nn.Parameter(high, requires_grad=train_phases)

    def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        shape = [1, self.phase_low.shape[0], self.num_basis] + [1] * (x.dim() - 2)
        xe = x.unsqueeze(2)
        a = torch.relu(xe - self.phase_low.view(shape)) * torch.relu(self.phase_high.view(shape) - xe) * self.r
        return cat_basis(a * a, prefix)

    def extra_repr(self) -> str:
        return f"num_channels={self.phase_low.shape[0]}, g={self.g}, k={self.k}"

    @classmethod
    def flops(cls, g: int = 5, k: int = 3, **_: object) -> int:
        r""":math:`(r\,\mathrm{ReLU}(x-l_j)\,\mathrm{ReLU}(h_j-x))^2` for g+k bumps (7 each): :math:`7(g+k)`."""
        return 7 * (check_count("g", g, 1) + check_count("k", k, 1))

    def flops_per_scalar(self) -> int:
        return self.flops(self.g, self.k)
