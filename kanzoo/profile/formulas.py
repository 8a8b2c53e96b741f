r"""FLOP and parameter formulas: KANbeFair's accounting and kanzoo's per-basis and per-layer counts.

* **KANbeFair** (Yu, Yu, Wang, "KAN or MLP: A Fairer Comparison", arXiv 2407.16674): the cost of a B-spline
  activation value (:func:`kanbefair_bspline_act_flops`), of a pykan edge-wise KAN layer
  (:func:`kanbefair_flops`, :func:`kanbefair_params`), of one layer or a whole network of its MLP / KAN /
  BSpline-MLP models (:func:`kanbefair_layer`, :func:`kanbefair_total`), with its activation table
  :data:`FLOPS_MAP`.
* **kanzoo's per-basis formulas**: FLOPs to evaluate all F basis values at one input scalar. Each registered
  basis declares its own (``Basis.flops(**constructor_kwargs)``, ``basis.flops_per_scalar()``; derivations in
  docs/profile.md); :func:`basis_flops` and :func:`basis_module_flops` read them, and the named functions
  (:func:`bspline_flops`, :func:`gram_flops`, ...) call them with their usual arguments. The group-rational
  activation of KAT is not a basis: :func:`rational_flops`.
* **per-layer formulas** of a :class:`~kanzoo.layers.KANLinear`: :func:`kan_linear_params`,
  :func:`kan_linear_flops`.
* :data:`ACT_FLOPS`: the per-element cost of the activation and norm modules that :func:`~kanzoo.profile.count`
  charges with ``elementwise=True``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

from torch import nn

from ..layers.bases import (
    ACT_FLOPS as ACT_FLOPS_BY_NAME,
)
from ..layers.bases import (
    BernsteinBasis,
    BSplineBasis,
    ChebyshevBasis,
    GramBasis,
    JacobiBasis,
    LegendreBasis,
    RBFBasis,
    ReLUBasis,
    RSWAFBasis,
    WaveletBasis,
    act_flops,
    basis_classes,
    create_basis,
)
from ..layers.bases.base import check_count
from ..layers.bases.wavelet import WAVELET_FLOPS  # noqa: F401  (importable from kanzoo.profile, as before)

__all__ = [
    "ACT_FLOPS", "BASIS_FLOPS", "FLOPS_MAP", "basis_flops", "basis_module_flops", "bernstein_flops", "bspline_flops",
    "chebyshev_flops", "gram_flops", "jacobi_flops", "kan_linear_flops", "kan_linear_params",
    "kanbefair_bspline_act_flops", "kanbefair_flops", "kanbefair_layer", "kanbefair_params", "kanbefair_total",
    "legendre_flops", "rational_flops", "rbf_flops", "relu_flops", "rswaf_flops", "wavelet_flops",
]

#: KANbeFair's per-element cost of each activation (``FLOPs_MAP`` in its ``src/models/utils.py``): the
#: number of arithmetic operations with exp counted as 1 (sigmoid = neg, exp, add, div = 4; silu = 5;
#: tanh = 6; gelu's tanh approximation = 14). The activations are the bases' table
#: (:data:`kanzoo.layers.bases.ACT_FLOPS`); the polynomial activations are KANbeFair's own.
FLOPS_MAP: Dict[str, int] = {**ACT_FLOPS_BY_NAME, "polynomial2": 5, "polynomial3": 9, "polynomial5": 20}

#: per-element FLOPs of the activation and norm modules counted with ``elementwise=True``: KANbeFair's table,
#: plus PReLU/LeakyReLU (compare + multiply), BatchNorm in eval (KANbeFair's 4: subtract, divide, scale,
#: shift) and norms that compute statistics at run time (8: +1 mean, +3 variance)
ACT_FLOPS: Dict[type, int] = {
    **{cls: act_flops(cls()) for cls in (nn.Identity, nn.ReLU, nn.Sigmoid, nn.SiLU, nn.Tanh, nn.GELU)},
    nn.Dropout: 0, nn.ReLU6: 2, nn.LeakyReLU: 2, nn.PReLU: 2,
    nn.BatchNorm1d: 4, nn.BatchNorm2d: 4, nn.BatchNorm3d: 4,
    nn.LayerNorm: 8, nn.GroupNorm: 8, nn.InstanceNorm1d: 8, nn.InstanceNorm2d: 8, nn.InstanceNorm3d: 8,
}


def _shortcut_cost(shortcut: Union[str, int]) -> int:
    """Per-element FLOPs of a KANbeFair shortcut/activation, by :data:`FLOPS_MAP` name or as an int."""
    if isinstance(shortcut, int) and not isinstance(shortcut, bool):
        return shortcut
    if shortcut not in FLOPS_MAP:
        raise ValueError(f"unknown shortcut {shortcut!r}; choose one of {sorted(FLOPS_MAP)} or give its "
                         f"per-element FLOPs as an int")
    return FLOPS_MAP[shortcut]


# ------------------------------------------------------------------------------------ KANbeFair's formulas
def kanbefair_bspline_act_flops(G: int, K: int) -> int:
    r"""KANbeFair's FLOPs of one B-spline activation value (order K, G intervals), per input scalar:
    :math:`9K(G + 1.5K) + 2G - 2.5K - 1` (always an integer)."""
    check_count("G", G, 1), check_count("K", K, 0)
    return (18 * K * G + 27 * K * K + 4 * G - 5 * K - 2) // 2


def kanbefair_flops(d_in: int, d_out: int, G: int = 5, K: int = 3, shortcut: Union[str, int] = "silu") -> int:
    r"""FLOPs of one KAN layer for one sample, exactly as KANbeFair counts them (arXiv 2407.16674; code
    ``KANbeFair.layer_flops``):

    .. math::
        d_{in} d_{out}\,[9K(G + 1.5K) + 2G - 2.5K + 1] + \big(F_{sc}\, d_{in} + 2 d_{in} d_{out}\big)

    the last term only when ``shortcut != 'zero'``; :math:`F_{sc}` is the shortcut's cost in
    :data:`FLOPS_MAP` (or an int). The spline is evaluated per **edge** (pykan), hence the
    :math:`d_{in} d_{out}` factor on the whole bracket.
    """
    check_count("d_in", d_in, 1), check_count("d_out", d_out, 1)
    flops = d_in * d_out * (kanbefair_bspline_act_flops(G, K) + 2)
    if shortcut != "zero":
        flops += _shortcut_cost(shortcut) * d_in + 2 * d_in * d_out
    return flops


def kanbefair_params(d_in: int, d_out: int, G: int = 5, K: int = 3, shortcut: Union[str, int] = "silu") -> int:
    r"""Parameters of one KAN layer as KANbeFair counts them (``KANbeFair.layer_parameters``):

    .. math:: d_{in} d_{out} (G + K + 2) + d_{out} + [\text{shortcut} \ne \text{zero}]\; d_{in} d_{out}

    i.e. :math:`d_{in} d_{out}(G+K+3) + d_{out}` with a shortcut. pykan's tensors hold
    :math:`d_{in} d_{out}(G+K+2) + d_{out}` (coef, scale_sp, scale_base, bias): the shortcut weight is
    ``scale_base``, already in the +2, so the formula counts it twice (docs/profile.md).
    """
    check_count("d_in", d_in, 1), check_count("d_out", d_out, 1), check_count("G", G, 1), check_count("K", K, 0)
    params = d_in * d_out * (G + K + 2) + d_out
    if shortcut != "zero":
        _shortcut_cost(shortcut)
        params += d_in * d_out
    return params


def kanbefair_layer(kind: str, d_in: int, d_out: int, G: int = 5, K: int = 3, act: str = "relu",
                    shortcut: str = "silu", batchnorm: bool = False) -> Tuple[int, int]:
    """``(params, flops)`` of one layer of a KANbeFair model, as its code counts them.

    ``kind``: ``'kan'`` (:func:`kanbefair_params`/:func:`kanbefair_flops`), ``'mlp'`` (Linear + activation:
    :math:`2 d_{in} d_{out} + F_{act} d_{out}` FLOPs, :math:`(d_{in}+1) d_{out}` params),
    ``'bspline_mlp'`` (Linear + a per-channel B-spline activation on the output: + :math:`d_{out}
    (G+K)` params and :math:`d_{out}` × :func:`kanbefair_bspline_act_flops`) or ``'bspline_first_mlp'``
    (the spline on the input side, :math:`d_{in}` in place of :math:`d_{out}`). ``batchnorm`` adds
    :math:`2 d_{out}` params and :math:`4 d_{out}` FLOPs (not for ``'kan'``).
    """
    if kind == "kan":
        return kanbefair_params(d_in, d_out, G, K, shortcut), kanbefair_flops(d_in, d_out, G, K, shortcut)
    if kind == "mlp":
        params, flops = (d_in + 1) * d_out, 2 * d_in * d_out + _shortcut_cost(act) * d_out
    elif kind in ("bspline_mlp", "bspline_first_mlp"):
        n = d_out if kind == "bspline_mlp" else d_in
        params = (d_in + 1) * d_out + n * (G + K)
        flops = 2 * d_in * d_out + n * kanbefair_bspline_act_flops(G, K)
    else:
        raise ValueError(f"kind must be 'kan', 'mlp', 'bspline_mlp' or 'bspline_first_mlp', got {kind!r}")
    if batchnorm:
        params, flops = params + 2 * d_out, flops + 4 * d_out
    return params, flops


def kanbefair_total(kind: str, widths: Sequence[int], G: int = 5, K: int = 3, act: str = "relu",
                    shortcut: str = "silu", batchnorm: bool = False, as_released: bool = False) -> Tuple[int, int]:
    """``(params, flops)`` of a whole KANbeFair network with layer widths ``[d_in, *hidden, d_out]``.

    The MLPs' last layer is a plain Linear (no activation, norm or spline): counted so here. With
    ``as_released=True`` the totals reproduce KANbeFair's code, which charges the activation (MLP) or the
    B-spline activation (BSpline_MLP), and the BatchNorm, to the last layer as well: the final-layer
    overcount listed in docs/profile.md.
    """
    widths = list(widths)
    if len(widths) < 2:
        raise ValueError(f"widths needs at least [d_in, d_out], got {widths!r}")
    params = flops = 0
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        last = i == len(widths) - 2
        layer_kind = kind
        bn = batchnorm
        if last and kind in ("mlp", "bspline_mlp") and not as_released:
            layer_kind, bn = "mlp", False
            p, f = kanbefair_layer("mlp", a, b, G, K, "identity", shortcut, False)
        else:
            p, f = kanbefair_layer(layer_kind, a, b, G, K, act, shortcut, bn)
        params, flops = params + p, flops + f
    return params, flops


# -------------------------------------------------------------------------- kanzoo's per-basis formulas
# FLOPs to evaluate all F basis values of ONE input scalar, counting the math as written in each basis's
# docstring: +, -, ×, ÷, comparisons, exp, sin, cos, |·| cost 1; activations as in ACT_FLOPS; multiplying by 1
# or adding 0 is free; per-layer constants (Gram's c_i·β_{i-1}) are not per-scalar work. Each formula is the
# basis class's ``flops`` classmethod; derivations: docs/profile.md.

def bspline_flops(grid_size: int = 5, spline_order: int = 3) -> int:
    r"""B-spline (Cox-de Boor), :math:`3(G+2K) + 7\sum_{k=1}^{K}(G+2K-k)`: :meth:`BSplineBasis.flops`."""
    return BSplineBasis.flops(grid_size=grid_size, spline_order=spline_order)


def chebyshev_flops(degree: int = 3) -> int:
    r"""Chebyshev, :math:`6 + 3\max(D-1, 0)`: :meth:`ChebyshevBasis.flops`."""
    return ChebyshevBasis.flops(degree=degree)


def gram_flops(degree: int = 3, act: str = "silu") -> int:
    r"""Gram, :math:`6 + 3\max(D-1,0) + F_{act} D`: :meth:`GramBasis.flops` (``act`` is its ``act_layer``)."""
    return GramBasis.flops(degree=degree, act_layer=act)


def legendre_flops(degree: int = 3) -> int:
    r"""Legendre, :math:`4 + 4\max(D-1, 0)`: :meth:`LegendreBasis.flops`."""
    return LegendreBasis.flops(degree=degree)


def jacobi_flops(degree: int = 3, a: float = 1.0, b: float = 1.0) -> int:
    r"""Jacobi, tanh (6) plus its three-term recurrence: :meth:`JacobiBasis.flops`."""
    return JacobiBasis.flops(degree=degree, a=a, b=b)


def bernstein_flops(degree: int = 3) -> int:
    r"""Bernstein, :math:`9 + 4\max(D-1, 0)`: :meth:`BernsteinBasis.flops`."""
    return BernsteinBasis.flops(degree=degree)


def rbf_flops(grid_size: int = 8) -> int:
    r"""Gaussian RBF, :math:`5G`: :meth:`RBFBasis.flops`."""
    return RBFBasis.flops(grid_size=grid_size)


def relu_flops(g: int = 5, k: int = 3) -> int:
    r"""ReLU-KAN bumps, :math:`7(g+k)`: :meth:`ReLUBasis.flops`."""
    return ReLUBasis.flops(g=g, k=k)


def rswaf_flops(grid_size: int = 8) -> int:
    r"""RSWAF (FasterKAN), :math:`10G`: :meth:`RSWAFBasis.flops`."""
    return RSWAFBasis.flops(grid_size=grid_size)


def wavelet_flops(num_wavelets: int = 4, wavelet_type: str = "mexican_hat") -> int:
    r"""Wavelets, :math:`n(2 + F_\psi)` with :math:`F_\psi` from :data:`WAVELET_FLOPS`: :meth:`WaveletBasis.flops`."""
    return WaveletBasis.flops(num_wavelets=num_wavelets, wavelet_type=wavelet_type)


def rational_flops(order: Tuple[int, int] = (5, 4)) -> int:
    r"""Group-rational activation :math:`P(x)/Q(x)` (:class:`~kanzoo.layers.GroupRational`, order (m, n)) per
    element: P by Horner (m multiply-adds), :math:`Q = 1 + \sum_j |b_j||x|^j` by Horner in :math:`|x|` (the
    abs, n multiply-adds), the division: :math:`2m + 2n + 2` (20 at (5, 4)). The coefficients' ``|b_j|`` are
    per group, not per element, and are not counted."""
    m, n = order
    return 2 * check_count("m", m, 0) + 2 * check_count("n", n, 0) + 2


#: ``{basis name: its FLOPs per scalar from constructor kwargs}`` of the bases registered when kanzoo.profile
#: was imported (:func:`basis_flops` reads the registry itself, so later registrations count too)
BASIS_FLOPS: Dict[str, Callable[..., int]] = {name: cls.flops for name, cls in basis_classes().items()}


def basis_flops(basis: Union[str, nn.Module], **basis_kwargs: Any) -> int:
    """kanzoo's FLOPs per input scalar of a basis, by registered name and constructor kwargs
    (``basis_flops('gram', degree=5)``) or for a built :class:`~kanzoo.layers.Basis` module."""
    if isinstance(basis, nn.Module):
        return basis_module_flops(basis)
    classes = basis_classes()
    key = str(basis).lower()
    if key not in classes:
        raise ValueError(f"no FLOP formula for basis {basis!r}; formulas exist for {sorted(classes)}")
    return int(classes[key].flops(**basis_kwargs))


def basis_module_flops(m: nn.Module) -> int:
    """kanzoo's FLOPs per input scalar of a built basis module: its ``flops_per_scalar()``."""
    return int(m.flops_per_scalar())


# -------------------------------------------------------------------------------- per-layer formulas
def kan_linear_params(d_in: int, d_out: int, num_basis: int, use_base: bool = True, bias: bool = False) -> int:
    r"""Parameters of a :class:`~kanzoo.layers.KANLinear` without norm/activation parameters:
    :math:`d_{in} d_{out} (F + [\text{base}]) + [\text{bias}]\, d_{out}` (+ the basis's own parameters,
    e.g. Gram's D+1 β, not included)."""
    return d_in * d_out * (num_basis + int(bool(use_base))) + (d_out if bias else 0)


def kan_linear_flops(d_in: int, d_out: int, basis: str = "bspline", use_base: bool = True,
                     base_act: Optional[str] = None, **basis_kwargs: Any) -> int:
    r"""kanzoo-convention FLOPs of a :class:`~kanzoo.layers.KANLinear` for one sample:
    :math:`2 d_{in}(F + [\text{base}]) d_{out} + F_{basis}\, d_{in}` (one matmul over the stacked
    base and basis values, the basis evaluated once per input), plus :math:`F_{act} d_{in}` for
    ``base_act`` when given (the elementwise part, counted with ``elementwise=True``)."""
    m = create_basis(basis, d_in, device="meta", **basis_kwargs)
    f = m.num_basis + int(bool(use_base))
    flops = 2 * d_in * f * d_out + basis_module_flops(m) * d_in
    if base_act is not None and use_base:
        flops += _shortcut_cost(base_act) * d_in
    return flops
