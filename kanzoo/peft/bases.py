"""What an adapter may do with each KAN basis, read from the basis class itself.

Every basis declares its adapter facts (:class:`~kanzoo.layers.bases.Basis`: ``adaptable``, ``polynomial``,
``nested``, ``shape_param``, ``raised``, ``elevate``, ``shape_param_index``). :class:`BasisRule` is the view of
those facts the adapter layers use:

* ``degree(basis)``: the highest degree D (polynomial bases) or None (B-spline, RBF: a fixed grid);
* ``raised(basis, extra)``: a new basis of degree D + extra with the same settings;
* ``elevate(coefficients, degree, extra)``: coefficients over the old basis written over the new one
  (axis 2 is the basis axis), so that Σ_f W_f B_f is the same function;
* which entry of a learnable per-degree parameter shapes which degree (``beta_index``; Gram's β).

For Gram, Legendre, Chebyshev and Jacobi the first D+1 functions of the raised basis *are* the old basis (a
three-term recurrence only appends), so elevation pads zeros; Bernstein elevates by its own identity
(:meth:`kanzoo.layers.BernsteinBasis.elevate`).
"""
from __future__ import annotations

import warnings
from typing import Dict, Optional, Type

import torch

from ..layers.bases import Basis, BernsteinBasis

__all__ = ["BasisRule", "get_basis_rule", "register_basis_rule", "bernstein_elevate"]


class BasisRule:
    """The adapter facts of one basis class (see the module docstring)."""

    def __init__(self, basis_cls: Type[Basis]):
        self.basis_cls = basis_cls

    @property
    def name(self) -> str:
        """Short name used in messages and adapter_config.json."""
        return self.basis_cls.name or self.basis_cls.__name__

    @property
    def polynomial(self) -> bool:
        return self.basis_cls.polynomial

    @property
    def nested(self) -> bool:
        return self.basis_cls.nested

    @property
    def shape_param(self) -> Optional[str]:
        return self.basis_cls.shape_param

    def degree(self, basis: Basis) -> Optional[int]:
        return int(basis.degree) if self.polynomial else None

    def raised(self, basis: Basis, extra: int) -> Basis:
        return basis.raised(extra)

    def elevate(self, coefficients: torch.Tensor, degree: int, extra: int) -> torch.Tensor:
        """(O, I, D+1, *k) coefficients over the degree-D basis -> (O, I, D+1+extra, *k) over degree D+extra."""
        return self.basis_cls.elevate(coefficients, degree, extra)

    def beta_index(self, degree: int) -> Optional[int]:
        """Index of the shape parameter that builds degree ``degree`` (None when none does)."""
        return self.basis_cls.shape_param_index(degree)


_OVERRIDES: Dict[Type[Basis], BasisRule] = {}


def register_basis_rule(basis_cls: Type[Basis], rule: BasisRule) -> None:
    """Deprecated: declare the adapter facts on the basis class instead (``adaptable = True`` and, for a
    polynomial basis, ``raised``). Overrides the rule of ``basis_cls`` (an exact class match)."""
    warnings.warn("register_basis_rule is deprecated: declare adaptable/polynomial/raised/elevate on the Basis class",
                  DeprecationWarning, stacklevel=2)
    _OVERRIDES[basis_cls] = rule


def get_basis_rule(basis: Basis) -> Optional[BasisRule]:
    """The rule for ``basis``, or None when its class is not ``adaptable``. The match is on the exact class:
    a subclass may compute something else, so it declares ``adaptable`` itself."""
    cls = type(basis)
    if cls in _OVERRIDES:
        return _OVERRIDES[cls]
    return BasisRule(cls) if cls.__dict__.get("adaptable", False) else None


def bernstein_elevate(coefficients: torch.Tensor, degree: int, extra: int) -> torch.Tensor:
    """Degree elevation of Bernstein coefficients on axis 2 (:meth:`kanzoo.layers.BernsteinBasis.elevate`)."""
    return BernsteinBasis.elevate(coefficients, degree, extra)
