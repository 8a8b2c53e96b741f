"""Chebyshev polynomial basis (KACN), from "Chebyshev Polynomial-Based Kolmogorov-Arnold Networks"
(SS et al., arXiv 2405.07200) as used in torch-conv-kan."""
from __future__ import annotations

from typing import Optional

import torch

from .base import Basis, check_degree, stack_basis


class ChebyshevBasis(Basis):
    r"""Chebyshev polynomials of the first kind of :math:`t = \tanh(x)`.

    .. math:: T_0 = 1,\quad T_1 = t,\quad T_{d+1} = 2t\,T_d - T_{d-1}\qquad (= \cos(d \arccos t))

    The three-term recurrence is used instead of ``cos(d·arccos(t))``: it is the same polynomial, costs
    one multiply-add per degree, and its gradient stays finite where tanh saturates (the arccos form
    gives NaN gradients there; torch-conv-kan clamps t to ±(1-1e-7) to avoid them).

    KACN layers have no base branch, no activation and a norm after the convolution.
    """

    default_base_act = "identity"
    default_act = "identity"
    default_use_base = False

    def __init__(self, degree: int = 3, device=None, dtype=None):
        super().__init__()
        self.degree = check_degree(degree)
        self.num_basis = degree + 1

    def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        t = torch.tanh(x)
        p0 = torch.ones_like(t)
        parts = [p0]
        if self.degree >= 1:
            p1 = t
            parts.append(p1)
            t2 = 2.0 * t
            for _ in range(2, self.degree + 1):
                p2 = t2 * p1 - p0
                parts.append(p2)
                p0, p1 = p1, p2
        return stack_basis(parts, prefix)

    def extra_repr(self) -> str:
        return f"degree={self.degree}"
