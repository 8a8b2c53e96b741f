"""Legendre polynomial basis (KALN), from torch-conv-kan (Drokin, arXiv 2407.01092)."""
from __future__ import annotations

from typing import Optional

import torch

from .base import Basis, check_degree, stack_basis


class LegendreBasis(Basis):
    r"""Legendre polynomials of the input rescaled to [-1, 1] by its min and max.

    .. math::
        \hat x = 2\,\frac{x - \min x}{\max x - \min x} - 1,\quad
        P_0 = 1,\ P_1 = \hat x,\ P_{n+1} = \frac{(2n+1)\,\hat x\,P_n - n\,P_{n-1}}{n+1}

    The min and max are taken **per sample** over the channels of each group and all positions
    (``minmax='sample'``), so one sample's output never depends on the rest of the batch.
    torch-conv-kan takes them over the whole batch; ``minmax='batch'`` reproduces that for checkpoint
    parity (see docs/compat.md).

    Args:
        degree: highest degree D (``num_basis = D + 1``).
        groups: channel groups that each get their own min and max (the layer sets this).
        minmax: ``'sample'`` (default) or ``'batch'``.
        eps: floor of max - min, so a constant input gives x̂ = -1 instead of NaN.
    """

    default_base_act = "identity"

    def __init__(self, degree: int = 3, groups: int = 1, minmax: str = "sample", eps: float = 1e-12,
                 device=None, dtype=None):
        super().__init__()
        self.degree = check_degree(degree)
        self.num_basis = degree + 1
        if minmax not in ("sample", "batch"):
            raise ValueError(f"minmax must be 'sample' or 'batch', got {minmax!r}")
        self.groups = groups
        self.minmax = minmax
        self.eps = eps

    def _rescale(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], x.shape[1]
        if self.minmax == "batch":
            xg = x.transpose(0, 1).reshape(self.groups, -1)
            lo = xg.amin(dim=1).view([1, self.groups, 1] + [1] * (x.dim() - 2))
            hi = xg.amax(dim=1).view([1, self.groups, 1] + [1] * (x.dim() - 2))
        else:
            xg = x.reshape(n, self.groups, -1)
            lo = xg.amin(dim=2).view([n, self.groups, 1] + [1] * (x.dim() - 2))
            hi = xg.amax(dim=2).view([n, self.groups, 1] + [1] * (x.dim() - 2))
        shape = [n, self.groups, c // self.groups] + list(x.shape[2:])
        xv = x.reshape(shape)
        out = 2.0 * (xv - lo) / (hi - lo).clamp_min(self.eps) - 1.0
        return out.reshape(x.shape)

    def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        t = self._rescale(x)
        p0 = torch.ones_like(t)
        parts = [p0]
        if self.degree >= 1:
            p1 = t
            parts.append(p1)
            for n in range(1, self.degree):
                p2 = ((2.0 * n + 1.0) * t * p1 - n * p0) / (n + 1.0)
                parts.append(p2)
                p0, p1 = p1, p2
        return stack_basis(parts, prefix)

    def extra_repr(self) -> str:
        return f"degree={self.degree}, minmax={self.minmax!r}"
