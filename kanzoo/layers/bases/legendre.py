"""Legendre polynomial basis (KALN), from torch-conv-kan (Drokin, arXiv 2407.01092)."""
from __future__ import annotations

from typing import List, Tuple

import torch

from .base import check_degree
from .recurrence import ThreeTermBasis


class LegendreBasis(ThreeTermBasis):
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

    name = "legendre"
    model_tag = "kaln"
    polynomial = True
    adaptable = True
    upstream_names = {"conv": "KALN", "linear": "KALN-linear"}
    default_base_act = "identity"
    needs_groups = True

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
        self.a = [1.0] + [(2.0 * i - 1.0) / i for i in range(1, degree + 1)]
        self.b = [0.0] * (degree + 1)
        self.c = ([0.0] + [(i - 1.0) / i for i in range(1, degree + 1)])

    def _rescale(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.minmax == "batch":
            xg = x.transpose(0, 1).reshape(self.groups, -1)
            lo, hi = xg.amin(dim=1).view(1, self.groups, 1), xg.amax(dim=1).view(1, self.groups, 1)
        else:
            # amin/amax, not aminmax: torch 2.11 has no aminmax derivative on CUDA
            xg = x.reshape(n, self.groups, -1)
            lo, hi = xg.amin(dim=2).view(n, self.groups, 1), xg.amax(dim=2).view(n, self.groups, 1)
        scale = 2.0 / (hi - lo).clamp_min(self.eps)
        # x̂ = (x - lo)·scale - 1, as one multiply-add over the input
        out = torch.addcmul(-(lo * scale) - 1.0, x.reshape(n, self.groups, -1), scale)
        return out.reshape(x.shape)

    def squash(self, x: torch.Tensor) -> torch.Tensor:
        return self._rescale(x)

    def recurrence(self, t: torch.Tensor) -> Tuple[List[float], List[float], torch.Tensor]:
        return self.a, self.b, torch.tensor(self.c, dtype=t.dtype, device=t.device)

    def extra_repr(self) -> str:
        return f"degree={self.degree}, minmax={self.minmax!r}"

    @classmethod
    def flops(cls, degree: int = 3, **_: object) -> int:
        r"""Min/max rescale (2 comparisons + a multiply-add = 4), then
        :math:`P_i = \frac{2i-1}{i}\hat x P_{i-1} - \frac{i-1}{i} P_{i-2}` (4 each): :math:`4 + 4\max(D-1, 0)`."""
        return 4 + 4 * max(check_degree(degree) - 1, 0)

    def flops_per_scalar(self) -> int:
        return self.flops(self.degree)

    def raised(self, extra: int) -> "LegendreBasis":
        return LegendreBasis(self.degree + extra, groups=self.groups, minmax=self.minmax, eps=self.eps)
