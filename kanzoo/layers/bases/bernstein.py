"""Bernstein polynomial basis (KABN)."""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch

from . import kernels as KK
from .base import Basis, KernelFirst, check_degree, stack_basis


# ------------------------------------------------------------------------------------------------ compiled kernel
# x: (N, C, S) (spatial dims flattened); coef: the binomials (1, 1, n+1, 1) in x's dtype. Values as in
# BernsteinBasis.forward_eager; the derivative is dB_k/dx = B_k·(k·r - (n-k)·s), since ds/dx = s·r = -dr/dx.
def _kernel_parts(x: torch.Tensor, coef: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor, torch.Tensor]:
    """([B_0, .., B_n], s, r)."""
    n = coef.shape[2] - 1
    s = torch.sigmoid(x)
    r = torch.sigmoid(-x)
    s_pows = [torch.ones_like(s)]
    r_pows = [torch.ones_like(r)]
    for _ in range(n):
        s_pows.append(s_pows[-1] * s)
        r_pows.append(r_pows[-1] * r)
    return [coef[:, :, k] * s_pows[k] * r_pows[n - k] for k in range(n + 1)], s, r


def _values_kernel(x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    return torch.stack(_kernel_parts(x, coef)[0], dim=2)


def _grad_input_kernel(x: torch.Tensor, grad: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """sum_k grad_k dB_k/dx for grad (N, C, n+1, S)."""
    b, s, r = _kernel_parts(x, coef)
    n = len(b) - 1
    acc = torch.zeros_like(x)
    for k in range(n + 1):
        acc = acc + grad[:, :, k] * b[k] * (k * r - (n - k) * s)
    return acc


KERNEL = KK.BasisKernel(_values_kernel, _grad_input_kernel)


class BernsteinBasis(KernelFirst, Basis):
    r"""Bernstein polynomials of :math:`s = \sigma(x)` (logistic sigmoid), a partition of unity on [0, 1].

    .. math:: B_{k,n}(s) = \binom{n}{k}\, s^k (1-s)^{n-k},\qquad k = 0..n

    torch-conv-kan's KABN starts de Casteljau's recursion from all-ones control values, so every one of
    its "basis functions" is the constant 1; kanzoo computes the real basis (docs/compat.md).

    Large float inputs run the basis as one compiled kernel and its derivative
    :math:`B_k'(x) = B_k\,(k(1-s) - (n-k)s)` as another, keeping only x for backward
    (``KANZOO_BASIS_KERNEL``, :mod:`kanzoo.layers.bases.kernels`); TorchScript, tracing and export take the
    eager formula.
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

    @torch.jit.unused
    def _forward_kernel(self, x: torch.Tensor, prefix: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The compiled kernel where the switch and the input allow it, else None."""
        kernel = KK.basis_kernel_for(x, prefix, self.num_basis)
        if kernel is None:
            return None
        key = (x.dtype, x.device)
        cached = self.__dict__.get("_kernel_cache")
        if cached is None or cached[0] != key:
            coef = torch.tensor(self.binomials, dtype=x.dtype, device=x.device).view(1, 1, -1, 1)
            KK.static(coef)
            cached = (key, coef)
            self.__dict__["_kernel_cache"] = cached
        return KERNEL(x, prefix, (cached[1],), self.num_basis, kernel)

    def forward_eager(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The basis by the eager formula (TorchScript, tracing, export, small inputs)."""
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
