"""What an adapter may do with each KAN basis: count its degrees, grow it, and rewrite coefficients.

A :class:`BasisRule` answers, for one basis class:

* ``degree(basis)``: the highest degree D (polynomial bases) or None (B-spline, RBF: a fixed grid);
* ``raised(basis, extra)``: a new basis of degree D + extra with the same settings;
* ``elevate(coefficients, degree, extra)``: coefficients over the old basis written over the new one
  (axis 2 is the basis axis), so that Σ_f W_f B_f is the same function;
* for the Gram basis, which recurrence weight shapes which degree (``beta_index``).

For Gram, Legendre, Chebyshev and Jacobi the first D+1 functions of the raised basis *are* the old
basis (a three-term recurrence only appends), so elevation pads zeros. Bernstein polynomials of degree
D+1 are a different basis of a larger space; elevation uses the identity
:math:`B_{k,n} = \frac{n+1-k}{n+1} B_{k,n+1} + \frac{k+1}{n+1} B_{k+1,n+1}`.
"""
from __future__ import annotations

import copy
from typing import Dict, Optional, Type

import torch

from ..layers.bases import (
    Basis, BernsteinBasis, BSplineBasis, ChebyshevBasis, GramBasis, JacobiBasis, LegendreBasis, RBFBasis,
)

__all__ = ["BasisRule", "get_basis_rule", "register_basis_rule", "bernstein_elevate"]


class BasisRule:
    """Adapter rules of one basis family (see the module docstring). Subclass and register to add one."""

    #: short name used in messages and adapter_config.json
    name: str = ""
    #: the basis has degrees (extra degrees allowed); False for grid bases
    polynomial: bool = True
    #: the raised basis starts with the old basis functions (pad-with-zeros elevation)
    nested: bool = True
    #: name of a learnable per-degree recurrence parameter (Gram: ``beta_weights``), or None
    shape_param: Optional[str] = None

    def degree(self, basis: Basis) -> Optional[int]:
        return int(basis.degree) if self.polynomial else None

    def raised(self, basis: Basis, extra: int) -> Basis:
        raise ValueError(f"the {self.name} basis has a fixed grid of {basis.num_basis} functions; extra_degrees "
                         f"applies to polynomial bases only (gram, legendre, chebyshev, jacobi, bernstein)")

    def elevate(self, coefficients: torch.Tensor, degree: int, extra: int) -> torch.Tensor:
        """(O, I, D+1, *k) coefficients over the degree-D basis -> (O, I, D+1+extra, *k) over degree D+extra."""
        pad = list(coefficients.shape)
        pad[2] = extra
        return torch.cat([coefficients, coefficients.new_zeros(pad)], dim=2)

    def beta_index(self, degree: int) -> Optional[int]:
        """Index of the shape parameter that builds degree ``degree`` (None when none does)."""
        return None


class _GramRule(BasisRule):
    name = "gram"
    shape_param = "beta_weights"

    def raised(self, basis: GramBasis, extra: int) -> GramBasis:
        beta = basis.beta_weights
        new = GramBasis(basis.degree + extra, device=beta.device, dtype=beta.dtype)
        new.act = copy.deepcopy(basis.act)
        return new

    def beta_index(self, degree: int) -> Optional[int]:
        # P_d = t·P_{d-1} - c_d·β_{d-1}·P_{d-2} for d >= 2; P_0 and P_1 have no β
        return degree - 1 if degree >= 2 else None


class _LegendreRule(BasisRule):
    name = "legendre"

    def raised(self, basis: LegendreBasis, extra: int) -> LegendreBasis:
        return LegendreBasis(basis.degree + extra, groups=basis.groups, minmax=basis.minmax, eps=basis.eps)


class _ChebyshevRule(BasisRule):
    name = "chebyshev"

    def raised(self, basis: ChebyshevBasis, extra: int) -> ChebyshevBasis:
        return ChebyshevBasis(basis.degree + extra)


class _JacobiRule(BasisRule):
    name = "jacobi"

    def raised(self, basis: JacobiBasis, extra: int) -> JacobiBasis:
        return JacobiBasis(basis.degree + extra, a=basis.a, b=basis.b)


def bernstein_elevate(coefficients: torch.Tensor, degree: int, extra: int) -> torch.Tensor:
    """Degree elevation of Bernstein coefficients on axis 2, computed in float64.

    One step from n to n+1: :math:`c'_k = \\frac{k}{n+1} c_{k-1} + \\frac{n+1-k}{n+1} c_k`, k = 0..n+1
    (with :math:`c_{-1} = c_{n+1} = 0`), so that :math:`\\sum_k c_k B_{k,n} = \\sum_k c'_k B_{k,n+1}`.
    """
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


class _BernsteinRule(BasisRule):
    name = "bernstein"
    nested = False

    def raised(self, basis: BernsteinBasis, extra: int) -> BernsteinBasis:
        return BernsteinBasis(basis.degree + extra)

    def elevate(self, coefficients: torch.Tensor, degree: int, extra: int) -> torch.Tensor:
        return bernstein_elevate(coefficients, degree, extra)


class _GridRule(BasisRule):
    polynomial = False

    def __init__(self, name: str):
        self.name = name


_RULES: Dict[Type[Basis], BasisRule] = {
    GramBasis: _GramRule(),
    LegendreBasis: _LegendreRule(),
    ChebyshevBasis: _ChebyshevRule(),
    JacobiBasis: _JacobiRule(),
    BernsteinBasis: _BernsteinRule(),
    BSplineBasis: _GridRule("bspline"),
    RBFBasis: _GridRule("rbf"),
}


def register_basis_rule(basis_cls: Type[Basis], rule: BasisRule) -> None:
    """Lets adapters handle layers built on ``basis_cls`` (an exact class match)."""
    _RULES[basis_cls] = rule


def get_basis_rule(basis: Basis) -> Optional[BasisRule]:
    """The rule for ``basis`` (exact class match: a subclass may compute something else), or None."""
    return _RULES.get(type(basis))
