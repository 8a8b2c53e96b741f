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

    name = "bernstein"
    model_tag = "kabn"
    polynomial = True
    adaptable = True
    nested = False
    upstream_names = {"conv": "KABN", "linear": "KABN-linear"}
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

    @classmethod
    def flops(cls, degree: int = 3, **_: object) -> int:
        r"""σ(x) (4) and σ(-x) (5), the powers :math:`s^2..s^D` and :math:`r^2..r^D`, and
        :math:`\binom{D}{k}s^k r^{D-k}` for 0 < k < D (2 each): :math:`9 + 4\max(D-1, 0)`."""
        return 9 + 4 * max(check_degree(degree) - 1, 0)

    def flops_per_scalar(self) -> int:
        return self.flops(self.degree)

    def raised(self, extra: int) -> "BernsteinBasis":
        return BernsteinBasis(self.degree + extra)

    @classmethod
    def elevate(cls, coefficients: torch.Tensor, degree: int, extra: int) -> torch.Tensor:
        r"""Degree elevation on axis 2, in float64. Bernstein polynomials of degree n+1 are a different basis of
        a larger space; from :math:`B_{k,n} = \frac{n+1-k}{n+1} B_{k,n+1} + \frac{k+1}{n+1} B_{k+1,n+1}`, one
        step is :math:`c'_k = \frac{k}{n+1} c_{k-1} + \frac{n+1-k}{n+1} c_k`, k = 0..n+1 (with
        :math:`c_{-1} = c_{n+1} = 0`)."""
        c = coefficients.double()
        shape = [1] * c.dim()
        for n in range(degree, degree + extra):
            zero = c.narrow(2, 0, 1) * 0.0
            left = torch.cat([zero, c], dim=2)      # c_{k-1}
            right = torch.cat([c, zero], dim=2)     # c_k
            shape[2] = n + 2
            k = torch.arange(n + 2, dtype=torch.float64, device=c.device).view(shape)
            c = left * (k / (n + 1)) + right * ((n + 1 - k) / (n + 1))
        return c.to(coefficients.dtype)
