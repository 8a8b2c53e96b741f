"""Jacobi polynomial basis (KAJN), as used in torch-conv-kan (Drokin, arXiv 2407.01092)."""
from __future__ import annotations

from typing import List, Tuple

import torch

from .base import check_degree
from .recurrence import ThreeTermBasis, recurrence_flops


def jacobi_coefficients(degree: int, a: float, b: float) -> List[Tuple[float, float, float]]:
    """(A_i, B_i, C_i) for i = 2..degree of P_i = (A_i·t + B_i)·P_{i-1} - C_i·P_{i-2}."""
    out = []
    for i in range(2, degree + 1):
        s = 2 * i + a + b
        den = 2 * i * (i + a + b)
        out.append((
            s * (s - 1) / den,
            (s - 1) * (a * a - b * b) / (den * (s - 2)),
            (i + a - 1) * (i + b - 1) * s / (i * (i + a + b) * (s - 2)),
        ))
    return out


class JacobiBasis(ThreeTermBasis):
    r"""Jacobi polynomials :math:`P^{(a,b)}_i` of :math:`t = \tanh(x)`.

    .. math::
        P_0 = 1,\quad P_1 = \tfrac{1}{2}\big((a-b) + (a+b+2)\,t\big),\quad
        P_i = (A_i t + B_i)\,P_{i-1} - C_i\,P_{i-2}

    with :math:`A_i = \frac{(2i+a+b)(2i+a+b-1)}{2i(i+a+b)}`,
    :math:`B_i = \frac{(2i+a+b-1)(a^2-b^2)}{2i(i+a+b)(2i+a+b-2)}` and
    :math:`C_i = \frac{(i+a-1)(i+b-1)(2i+a+b)}{i(i+a+b)(2i+a+b-2)}`. a = b = 1 by default.
    """

    name = "jacobi"
    model_tag = "kajn"
    polynomial = True
    adaptable = True
    upstream_names = {"conv": "KAJN", "linear": "KAJN-linear"}
    default_base_act = "identity"

    def __init__(self, degree: int = 3, a: float = 1.0, b: float = 1.0, device=None, dtype=None):
        super().__init__()
        self.degree = check_degree(degree)
        self.num_basis = degree + 1
        if a <= -1 or b <= -1:
            raise ValueError(f"Jacobi parameters need a > -1 and b > -1, got a={a!r}, b={b!r}")
        self.a = float(a)
        self.b = float(b)
        coefficients = jacobi_coefficients(degree, self.a, self.b)
        self.ra = [1.0, (self.a + self.b + 2.0) / 2.0] + [ca for ca, _, _ in coefficients]
        self.rb = [0.0, (self.a - self.b) / 2.0] + [cb for _, cb, _ in coefficients]
        self.c = ([0.0, 0.0] + [cc for _, _, cc in coefficients])[: degree + 1]

    def squash(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)

    def recurrence(self, t: torch.Tensor) -> Tuple[List[float], List[float], torch.Tensor]:
        c = torch.tensor(self.c, dtype=t.dtype, device=t.device)
        return self.ra[: self.degree + 1], self.rb[: self.degree + 1], c

    def extra_repr(self) -> str:
        return f"degree={self.degree}, a={self.a}, b={self.b}"

    @classmethod
    def flops(cls, degree: int = 3, a: float = 1.0, b: float = 1.0, **_: object) -> int:
        """tanh (6) plus the three-term recurrence (4 per degree >= 2 when a = b, 5 otherwise; P_1 costs 1-2)."""
        return cls(check_degree(degree), a, b).flops_per_scalar()

    def flops_per_scalar(self) -> int:
        d = self.degree
        return 6 + recurrence_flops(self.ra[: d + 1], self.rb[: d + 1], self.c)

    def raised(self, extra: int) -> "JacobiBasis":
        return JacobiBasis(self.degree + extra, a=self.a, b=self.b)
