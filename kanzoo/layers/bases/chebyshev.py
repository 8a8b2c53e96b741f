"""Chebyshev polynomial basis (KACN), from "Chebyshev Polynomial-Based Kolmogorov-Arnold Networks"
(SS et al., arXiv 2405.07200) as used in torch-conv-kan."""
from __future__ import annotations

from typing import List, Tuple

import torch

from .base import check_degree
from .recurrence import ThreeTermBasis


class ChebyshevBasis(ThreeTermBasis):
    r"""Chebyshev polynomials of the first kind of :math:`t = \tanh(x)`.

    .. math:: T_0 = 1,\quad T_1 = t,\quad T_{d+1} = 2t\,T_d - T_{d-1}\qquad (= \cos(d \arccos t))

    The three-term recurrence is used instead of ``cos(d·arccos(t))``: it is the same polynomial, costs
    one multiply-add per degree, and its gradient stays finite where tanh saturates (the arccos form
    gives NaN gradients there; torch-conv-kan clamps t to ±(1-1e-7) to avoid them).

    KACN layers have no base branch, no activation and a norm after the convolution.
    """

    name = "chebyshev"
    model_tag = "kacn"
    polynomial = True
    adaptable = True
    upstream_names = {"conv": "KACN", "linear": "KACN-linear"}
    default_base_act = "identity"
    default_act = "identity"
    default_use_base = False
    fused_squash = "tanh"

    def __init__(self, degree: int = 3, device=None, dtype=None):
        super().__init__()
        self.degree = check_degree(degree)
        self.num_basis = degree + 1
        self.a = ([1.0, 1.0] + [2.0] * (degree - 1))[: degree + 1]
        self.b = [0.0] * (degree + 1)
        self.c = ([0.0, 0.0] + [1.0] * (degree - 1))[: degree + 1]

    def squash(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)

    def recurrence(self, t: torch.Tensor) -> Tuple[List[float], List[float], torch.Tensor]:
        return self.a, self.b, torch.tensor(self.c, dtype=t.dtype, device=t.device)

    def extra_repr(self) -> str:
        return f"degree={self.degree}"

    @classmethod
    def flops(cls, degree: int = 3, **_: object) -> int:
        r"""tanh (6), then :math:`T_{i} = 2t\,T_{i-1} - T_{i-2}` (3 each): :math:`6 + 3\max(D-1, 0)`."""
        return 6 + 3 * max(check_degree(degree) - 1, 0)

    def flops_per_scalar(self) -> int:
        return self.flops(self.degree)

    def raised(self, extra: int) -> "ChebyshevBasis":
        return ChebyshevBasis(self.degree + extra)
