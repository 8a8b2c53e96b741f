"""Bernstein polynomial basis (KABN)."""
from __future__ import annotations

import math
from typing import Optional

import torch

from .base import Basis, check_degree, stack_basis


class BernsteinBasis(Basis):
    r"""Bernstein polynomials of :math:`s = \sigma(x)` (logistic sigmoid), a partition of unity on [0, 1].

    .. math:: B_{k,n}(s) = \binom{n}{k}\, s^k (1-s)^{n-k},\qquad k = 0..n

    torch-conv-kan's KABN starts de Casteljau's recursion from all-ones control values, so every one of
    its "basis functions" is the constant 1; kanzoo computes the real basis (docs/compat.md).
    """

    default_base_act = "identity"

    def __init__(self, degree: int = 3, device=None, dtype=None):
        super().__init__()
        self.degree = check_degree(degree)
        self.num_basis = degree + 1
        self.binomials = [float(math.comb(degree, k)) for k in range(degree + 1)]

    def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        s = torch.sigmoid(x)
        r = torch.sigmoid(-x)  # 1 - s without cancellation for large x
        n = self.degree
        s_pows = [torch.ones_like(s)]
        r_pows = [torch.ones_like(r)]
        for _ in range(n):
            s_pows.append(s_pows[-1] * s)
            r_pows.append(r_pows[-1] * r)
        parts = [self.binomials[k] * s_pows[k] * r_pows[n - k] for k in range(n + 1)]
        return stack_basis(parts, prefix)

    def extra_repr(self) -> str:
        return f"degree={self.degree}"
