"""KAN bases: one module per family of univariate functions. See :class:`Basis` for the interface."""
from __future__ import annotations

from typing import Callable, Dict, Type, Union

from .base import Basis
from .bernstein import BernsteinBasis
from .bspline import BSplineBasis
from .kernels import get_basis_kernel, set_basis_kernel
from .chebyshev import ChebyshevBasis
from .gram import GramBasis
from .jacobi import JacobiBasis
from .legendre import LegendreBasis
from .rbf import RBFBasis
from .relu import ReLUBasis
from .rswaf import RSWAFBasis
from .wavelet import WaveletBasis, wavelet

_BASES: Dict[str, Type[Basis]] = {
    "gram": GramBasis,
    "legendre": LegendreBasis,
    "chebyshev": ChebyshevBasis,
    "jacobi": JacobiBasis,
    "bernstein": BernsteinBasis,
    "bspline": BSplineBasis,
    "rbf": RBFBasis,
    "relu": ReLUBasis,
    "rswaf": RSWAFBasis,
    "wavelet": WaveletBasis,
}

BasisType = Union[str, Type[Basis], Callable[..., Basis]]


def compile_bases(model, enabled: bool = True) -> int:
    """Turns ``torch.compile`` on (or off) for the bases of ``model`` that support it (B-spline, RBF).

    Returns how many bases were switched. Off by default: the first call per input shape compiles, and
    it needs a working compiler (a C++ toolchain on CPU). See :class:`~kanzoo.layers.bases.base.CompilableValues`.
    """
    from .base import CompilableValues
    n = 0
    for m in model.modules():
        if isinstance(m, CompilableValues):
            m.compile_values = bool(enabled)
            n += 1
    return n


def register_basis(name: str, cls: Type[Basis]) -> None:
    """Makes ``cls`` available to every KAN layer as ``basis=name``."""
    _BASES[name] = cls


def list_bases():
    return sorted(_BASES)


def get_basis_class(basis: BasisType):
    if isinstance(basis, str):
        key = basis.lower()
        if key not in _BASES:
            raise ValueError(f"unknown basis {basis!r}; choose one of {sorted(_BASES)} or pass a Basis class")
        return _BASES[key]
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
    "Basis", "BernsteinBasis", "BSplineBasis", "ChebyshevBasis", "GramBasis", "JacobiBasis", "LegendreBasis",
    "RBFBasis", "ReLUBasis", "RSWAFBasis", "WaveletBasis", "wavelet", "compile_bases", "create_basis", "get_basis_kernel", "set_basis_kernel", "get_basis_class", "list_bases", "register_basis",
]
