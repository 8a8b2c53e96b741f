"""KAN bases: one module per family of univariate functions. See :class:`Basis` for the interface.

Each basis module declares its own facts on its class (name, model tag, FLOPs, adapter rules, upstream names);
importing it registers the class. Adding a basis is one new module here, imported below.
"""
from __future__ import annotations

from typing import Callable, Type, Union

from .base import (
    ACT_FLOPS,
    Basis,
    CompilableValues,
    act_flops,
    basis_classes,
    basis_tags,
    cat_basis,
    list_bases,
    polynomial_bases,
    register_basis,
    stack_basis,
    unregister_basis,
)
from .bernstein import BernsteinBasis
from .bspline import BSplineBasis
from .chebyshev import ChebyshevBasis
from .gram import GramBasis
from .jacobi import JacobiBasis
from .kernels import get_basis_kernel, set_basis_kernel
from .legendre import LegendreBasis
from .rbf import RBFBasis
from .relu import ReLUBasis
from .rswaf import RSWAFBasis
from .wavelet import WaveletBasis, wavelet

BasisType = Union[str, Type[Basis], Callable[..., Basis]]


def compile_bases(model, enabled: bool = True) -> int:
    """Turns ``torch.compile`` on (or off) for the bases of ``model`` that support it (B-spline, RBF).

    Returns how many bases were switched. Off by default: the first call per input shape compiles, and
    it needs a working compiler (a C++ toolchain on CPU). See :class:`~kanzoo.layers.bases.base.CompilableValues`.
    """
    n = 0
    for m in model.modules():
        if isinstance(m, CompilableValues):
            m.compile_values = bool(enabled)
            n += 1
    return n


def get_basis_class(basis: BasisType):
    if isinstance(basis, str):
        bases = basis_classes()
        key = basis.lower()
        if key not in bases:
            raise ValueError(f"unknown basis {basis!r}; choose one of {sorted(bases)} or pass a Basis class")
        return bases[key]
    if callable(basis):
        return basis
    raise TypeError(f"basis must be a name or a Basis class, got {type(basis).__name__}")


def create_basis(basis: BasisType, num_channels: int, device=None, dtype=None, groups: int = 1, **kwargs) -> Basis:
    """Builds a basis by name (``'gram'``, ``'bspline'``, ...) for a layer with ``num_channels`` inputs in
    ``groups`` channel groups."""
    cls = get_basis_class(basis)
    if getattr(cls, "needs_channels", False):
        kwargs["num_channels"] = num_channels
    if getattr(cls, "needs_groups", False):
        kwargs.setdefault("groups", groups)
    try:
        return cls(device=device, dtype=dtype, **kwargs)
    except TypeError as e:
        raise TypeError(f"{getattr(cls, '__name__', cls)} got an argument it does not take: {e}") from None


__all__ = [
    "ACT_FLOPS", "Basis", "BernsteinBasis", "BSplineBasis", "ChebyshevBasis", "GramBasis", "JacobiBasis",
    "LegendreBasis", "RBFBasis", "ReLUBasis", "RSWAFBasis", "WaveletBasis", "act_flops", "basis_classes",
    "basis_tags", "cat_basis", "compile_bases", "create_basis", "get_basis_class", "get_basis_kernel", "list_bases",
    "polynomial_bases", "register_basis", "set_basis_kernel", "stack_basis", "unregister_basis", "wavelet",
]
