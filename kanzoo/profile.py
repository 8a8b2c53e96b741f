r"""Parameters and FLOPs of any model, KAN basis evaluation included, and budget matching.

``torch.utils.flop_counter.FlopCounterMode`` counts the dense work of a network (convolutions, matmuls,
attention) but none of the elementwise work, and in a KAN most of the extra cost is elementwise: evaluating
the basis B_f(x) for every input scalar. :func:`count` adds that by formula, per layer:

* **dense** ops: measured by ``FlopCounterMode`` during one forward (1 FLOP per add and per multiply, so a
  multiply-accumulate is 2);
* **basis evaluation**: every :class:`~kanzoo.layers.Basis` module's forward is hooked and charged
  ``basis_flops(basis) × (scalars it was evaluated at)``, with kanzoo's per-basis formulas
  (:func:`bspline_flops`, :func:`gram_flops`, ...; derived in docs/profile.md);
* **elementwise** ops (activations, norms) at fixed per-element costs (:data:`ACT_FLOPS`, KANbeFair's
  table) when ``elementwise=True``; off by default, like ``FlopCounterMode``.

``convention="kanbefair"`` instead reproduces the accounting of KANbeFair (Yu, Yu, Wang, "KAN or MLP: A
Fairer Comparison", arXiv 2407.16674): B-spline KAN layers are charged :func:`kanbefair_flops` /
:func:`kanbefair_params` exactly (a pykan edge-wise layer, whatever kanzoo actually computes), activations
and norms are always counted, and B-spline activations elsewhere cost :func:`kanbefair_bspline_act_flops`
per scalar. docs/profile.md lists where that accounting and the real tensor count differ.

:func:`match` finds the width of an MLP (or CNN) factory with the same parameter or FLOP budget as a
given model.

Conventions: FLOPs are for one forward pass at batch size 1 (``batch_size`` scales them), in eval mode;
parameters are trainable and frozen ``nn.Parameter`` elements (buffers such as B-spline grids excluded).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = [
    "ACT_FLOPS", "COUNTED_OPS", "FLOPS_MAP", "LayerProfile", "MatchResult", "Profile", "basis_flops",
    "basis_module_flops", "bernstein_flops", "bspline_flops", "chebyshev_flops", "count", "count_macs",
    "gram_flops", "jacobi_flops", "kan_linear_flops", "kan_linear_params", "kanbefair_bspline_act_flops",
    "kanbefair_flops", "kanbefair_layer", "kanbefair_params", "kanbefair_total", "legendre_flops", "match",
    "rbf_flops", "relu_flops", "rswaf_flops", "wavelet_flops", "rational_flops",
]

#: what torch.utils.flop_counter counts, of the ops kanzoo's models run
COUNTED_OPS = "convolutions, matmuls (mm/addmm/bmm/baddbmm) and attention"

#: KANbeFair's per-element cost of each activation (``FLOPs_MAP`` in its ``src/models/utils.py``): the
#: number of arithmetic operations with exp counted as 1 (sigmoid = neg, exp, add, div = 4; silu = 5;
#: tanh = 6; gelu's tanh approximation = 14)
FLOPS_MAP: Dict[str, int] = {
    "zero": 0, "identity": 0, "relu": 1, "square_relu": 2, "sigmoid": 4, "silu": 5, "tanh": 6, "gelu": 14,
    "polynomial2": 5, "polynomial3": 9, "polynomial5": 20,
}

#: per-element FLOPs of the activation and norm modules counted with ``elementwise=True``: KANbeFair's table,
#: plus PReLU/LeakyReLU (compare + multiply), BatchNorm in eval (KANbeFair's 4: subtract, divide, scale,
#: shift) and norms that compute statistics at run time (8: +1 mean, +3 variance)
ACT_FLOPS: Dict[type, int] = {
    nn.Identity: 0, nn.Dropout: 0, nn.ReLU: 1, nn.ReLU6: 2, nn.LeakyReLU: 2, nn.PReLU: 2, nn.Sigmoid: 4, nn.SiLU: 5,
    nn.Tanh: 6, nn.GELU: 14,
    nn.BatchNorm1d: 4, nn.BatchNorm2d: 4, nn.BatchNorm3d: 4,
    nn.LayerNorm: 8, nn.GroupNorm: 8, nn.InstanceNorm1d: 8, nn.InstanceNorm2d: 8, nn.InstanceNorm3d: 8,
}

_ACT_NAMES = {nn.Identity: "identity", nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.SiLU: "silu", nn.Tanh: "tanh",
              nn.GELU: "gelu"}


def _check_int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    return v


def _shortcut_cost(shortcut: Union[str, int]) -> int:
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
    _check_int("G", G, 1), _check_int("K", K, 0)
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
    _check_int("d_in", d_in, 1), _check_int("d_out", d_out, 1)
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
    _check_int("d_in", d_in, 1), _check_int("d_out", d_out, 1), _check_int("G", G, 1), _check_int("K", K, 0)
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
# docstring: +, -, ×, ÷, comparisons, exp, sin, cos, |·| cost 1; tanh 6, sigmoid 4, SiLU 5, GELU 14 (the
# KANbeFair table); multiplying by 1 or adding 0 is free; per-layer constants (Gram's c_i·β_{i-1}) are not
# per-scalar work. Derivations: docs/profile.md.

def bspline_flops(grid_size: int = 5, spline_order: int = 3) -> int:
    r"""Cox-de Boor on G intervals, order K: :math:`3(G+2K) + 7\sum_{k=1}^{K}(G+2K-k)`.

    Order 0 tests the G+2K knot intervals (2 comparisons and an AND each); level k forms G+2K-k functions
    of 7 operations (2 subtractions, 2 divisions, 2 multiplications, 1 addition).
    """
    G, K = _check_int("grid_size", grid_size, 1), _check_int("spline_order", spline_order, 0)
    return 3 * (G + 2 * K) + 7 * (K * (G + 2 * K) - K * (K + 1) // 2)


def _recurrence_flops(a: Sequence[float], b: Sequence[float], c: Sequence[float], learnable_c: bool = False) -> int:
    """Cost of P_1 = a_1 t + b_1 and P_i = (a_i t + b_i) P_{i-1} - c_i P_{i-2} for i = 2..D."""
    degree = len(a) - 1
    flops = 0
    if degree >= 1:
        flops += (a[1] != 1.0) + (b[1] != 0.0)
    for i in range(2, degree + 1):
        flops += (a[i] != 1.0) + (b[i] != 0.0) + 1          # (a t + b) × P_{i-1}
        if learnable_c or c[i] != 0.0:
            flops += (learnable_c or c[i] != 1.0) + 1       # c × P_{i-2}, subtract
    return flops


def chebyshev_flops(degree: int = 3) -> int:
    r"""tanh (6), then :math:`T_{i} = 2t\,T_{i-1} - T_{i-2}` (3 each): :math:`6 + 3\max(D-1, 0)`."""
    d = _check_int("degree", degree, 0)
    return 6 + 3 * max(d - 1, 0)


def gram_flops(degree: int = 3, act: str = "silu") -> int:
    r"""tanh (6), :math:`P_i = t P_{i-1} - c_i\beta_{i-1} P_{i-2}` (3 each), the activation on
    :math:`P_1..P_D` (σ(P_0) is a constant): :math:`6 + 3\max(D-1,0) + F_{act} D`."""
    d = _check_int("degree", degree, 0)
    return 6 + 3 * max(d - 1, 0) + _shortcut_cost(act) * d


def legendre_flops(degree: int = 3) -> int:
    r"""Min/max rescale (2 comparisons + a multiply-add = 4), then
    :math:`P_i = \frac{2i-1}{i}\hat x P_{i-1} - \frac{i-1}{i} P_{i-2}` (4 each): :math:`4 + 4\max(D-1, 0)`."""
    d = _check_int("degree", degree, 0)
    return 4 + 4 * max(d - 1, 0)


def jacobi_flops(degree: int = 3, a: float = 1.0, b: float = 1.0) -> int:
    r"""tanh (6) plus the three-term recurrence of :class:`~kanzoo.layers.JacobiBasis` (4 per degree ≥ 2 when
    a = b, 5 otherwise; P_1 costs 1-2)."""
    from .layers.bases import JacobiBasis
    basis = JacobiBasis(_check_int("degree", degree, 0), a, b)
    return 6 + _recurrence_flops(basis.ra[: degree + 1], basis.rb[: degree + 1], basis.c)


def bernstein_flops(degree: int = 3) -> int:
    r"""σ(x) (4) and σ(-x) (5), the powers :math:`s^2..s^D` and :math:`r^2..r^D`, and
    :math:`\binom{D}{k}s^k r^{D-k}` for 0 < k < D (2 each): :math:`9 + 4\max(D-1, 0)`."""
    d = _check_int("degree", degree, 0)
    return 9 + 4 * max(d - 1, 0)


def rbf_flops(grid_size: int = 8) -> int:
    r""":math:`\exp(-((x-\mu_j)/h)^2)` for G centres (subtract, scale, square, negate, exp): :math:`5G`."""
    return 5 * _check_int("grid_size", grid_size, 1)


def relu_flops(g: int = 5, k: int = 3) -> int:
    r""":math:`(r\,\mathrm{ReLU}(x-l_j)\,\mathrm{ReLU}(h_j-x))^2` for g+k bumps (7 each): :math:`7(g+k)`."""
    return 7 * (_check_int("g", g, 1) + _check_int("k", k, 1))


def rswaf_flops(grid_size: int = 8) -> int:
    r""":math:`1 - \tanh^2((x-g_j)\,r)` for G centres (subtract, scale, tanh 6, square, subtract): :math:`10G`."""
    return 10 * _check_int("grid_size", grid_size, 1)


def rational_flops(order: Tuple[int, int] = (5, 4)) -> int:
    r"""Group-rational activation :math:`P(x)/Q(x)` (:class:`~kanzoo.layers.GroupRational`, order (m, n)) per
    element: P by Horner (m multiply-adds), :math:`Q = 1 + \sum_j |b_j||x|^j` by Horner in :math:`|x|` (the
    abs, n multiply-adds), the division: :math:`2m + 2n + 2` (20 at (5, 4)). The coefficients' ``|b_j|`` are
    per group, not per element, and are not counted."""
    m, n = order
    return 2 * _check_int("m", m, 0) + 2 * _check_int("n", n, 0) + 2


#: FLOPs of the mother wavelet ψ(u) at one point (see :func:`kanzoo.layers.bases.wavelet.wavelet`)
WAVELET_FLOPS = {"mexican_hat": 6, "morlet": 6, "dog": 5, "meyer": 22, "shannon": 3}


def wavelet_flops(num_wavelets: int = 4, wavelet_type: str = "mexican_hat") -> int:
    r""":math:`\psi((x-\tau_j)/s_j)` for n wavelets: :math:`n(2 + F_\psi)`, with :math:`F_\psi` from
    :data:`WAVELET_FLOPS` (mexican hat 6: u², -1, ×C, ×-½, exp, ×)."""
    if wavelet_type not in WAVELET_FLOPS:
        raise ValueError(f"unknown wavelet_type {wavelet_type!r}; choose one of {sorted(WAVELET_FLOPS)}")
    return _check_int("num_wavelets", num_wavelets, 1) * (2 + WAVELET_FLOPS[wavelet_type])


BASIS_FLOPS: Dict[str, Callable[..., int]] = {
    "bspline": bspline_flops, "chebyshev": chebyshev_flops, "gram": gram_flops, "legendre": legendre_flops,
    "jacobi": jacobi_flops, "bernstein": bernstein_flops, "rbf": rbf_flops, "relu": relu_flops,
    "wavelet": wavelet_flops, "rswaf": rswaf_flops,
}


def basis_flops(basis: Union[str, nn.Module], **basis_kwargs: Any) -> int:
    """kanzoo's FLOPs per input scalar of a basis, by name and constructor kwargs (``basis_flops('gram',
    degree=5)``) or for a built :class:`~kanzoo.layers.Basis` module."""
    if isinstance(basis, nn.Module):
        return basis_module_flops(basis)
    key = str(basis).lower()
    if key not in BASIS_FLOPS:
        raise ValueError(f"no FLOP formula for basis {basis!r}; formulas exist for {sorted(BASIS_FLOPS)}")
    kwargs = dict(basis_kwargs)
    if key == "gram" and "act_layer" in kwargs:
        kwargs["act"] = kwargs.pop("act_layer")
    return BASIS_FLOPS[key](**kwargs)


def _module_act_name(m: nn.Module) -> str:
    for cls, name in _ACT_NAMES.items():
        if type(m) is cls:
            return name
    raise ValueError(f"no FLOP cost known for activation {type(m).__name__}")


def basis_module_flops(m: nn.Module) -> int:
    """kanzoo's FLOPs per input scalar of a built basis module (reads its degree, grid, wavelet ...).
    A custom basis can define ``flops_per_scalar()``."""
    from .layers import bases as B
    if hasattr(m, "flops_per_scalar"):
        return int(m.flops_per_scalar())
    if isinstance(m, B.BSplineBasis):
        return bspline_flops(m.grid_size, m.spline_order)
    if isinstance(m, B.ChebyshevBasis):
        return chebyshev_flops(m.degree)
    if isinstance(m, B.GramBasis):
        return gram_flops(m.degree, _module_act_name(m.act))
    if isinstance(m, B.LegendreBasis):
        return legendre_flops(m.degree)
    if isinstance(m, B.JacobiBasis):
        return 6 + _recurrence_flops(m.ra[: m.degree + 1], m.rb[: m.degree + 1], m.c)
    if isinstance(m, B.BernsteinBasis):
        return bernstein_flops(m.degree)
    if isinstance(m, B.RBFBasis):
        return rbf_flops(m.grid_size)
    if isinstance(m, B.ReLUBasis):
        return relu_flops(m.g, m.k)
    if isinstance(m, B.WaveletBasis):
        return wavelet_flops(m.num_basis, m.wavelet_type)
    if type(m).__name__ == "RSWAFBasis":  # FasterKAN's basis (MLP-KAN experts)
        return rswaf_flops(m.grid_size)
    raise ValueError(f"no FLOP formula for basis {type(m).__name__}; give it a flops_per_scalar() method")


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
    from .layers.bases import create_basis
    m = create_basis(basis, d_in, device="meta", **basis_kwargs)
    f = m.num_basis + int(bool(use_base))
    flops = 2 * d_in * f * d_out + basis_module_flops(m) * d_in
    if base_act is not None and use_base:
        flops += _shortcut_cost(base_act) * d_in
    return flops


# ------------------------------------------------------------------------------------------- counting
@dataclasses.dataclass
class LayerProfile:
    """One row of :class:`Profile`: a KAN layer (a module that owns a basis, or a selectable/pruned KAN
    layer) or a leaf module, with everything inside it.

    Attributes:
        name: module name (``'<other>'`` for ops outside every layer, e.g. a functional pooling).
        kind: the module's class name.
        params: parameters under the convention; ``tensor_params`` what the tensors hold.
        flops: dense + basis + elementwise (or the KANbeFair formula value).
        dense_flops: measured by FlopCounterMode; basis_flops: basis-evaluation formula;
        elementwise_flops: activations, norms and the layer's own extra terms (S-KAN mixing).
        formula: how the row was counted (``'measured+basis'``, ``'kanbefair'`` ...).
    """

    name: str
    kind: str
    params: int = 0
    tensor_params: int = 0
    flops: int = 0
    dense_flops: int = 0
    basis_flops: int = 0
    elementwise_flops: int = 0
    formula: str = "measured"


@dataclasses.dataclass
class Profile:
    """The result of :func:`count`: per-layer rows and totals (FLOPs for ``batch_size`` samples)."""

    layers: List[LayerProfile]
    convention: str
    input_size: Tuple[int, ...]
    batch_size: int
    elementwise: bool
    warnings: List[str] = dataclasses.field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def tensor_params(self) -> int:
        return sum(r.tensor_params for r in self.layers)

    @property
    def flops(self) -> int:
        return sum(r.flops for r in self.layers)

    @property
    def dense_flops(self) -> int:
        return sum(r.dense_flops for r in self.layers)

    @property
    def basis_flops(self) -> int:
        return sum(r.basis_flops for r in self.layers)

    @property
    def elementwise_flops(self) -> int:
        return sum(r.elementwise_flops for r in self.layers)

    @property
    def macs(self) -> float:
        """Dense MACs (``dense_flops / 2``), what :func:`count_macs` reports."""
        return self.dense_flops / 2

    def to_dict(self) -> Dict[str, Any]:
        return dict(convention=self.convention, input_size=list(self.input_size), batch_size=self.batch_size,
                    elementwise=self.elementwise, params=self.params, tensor_params=self.tensor_params,
                    flops=self.flops, dense_flops=self.dense_flops, basis_flops=self.basis_flops,
                    elementwise_flops=self.elementwise_flops, warnings=list(self.warnings),
                    layers=[dataclasses.asdict(r) for r in self.layers])

    def table(self, max_rows: Optional[int] = None) -> str:
        """A markdown table of the rows (the largest ``max_rows`` by FLOPs) and the totals."""
        rows = self.layers
        if max_rows is not None and len(rows) > max_rows:
            rows = sorted(rows, key=lambda r: -r.flops)[:max_rows]
        out = ["| layer | type | params | FLOPs | dense | basis | elementwise | counted by |",
               "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            out.append(f"| `{r.name}` | {r.kind} | {r.params:,} | {r.flops:,} | {r.dense_flops:,} | "
                       f"{r.basis_flops:,} | {r.elementwise_flops:,} | {r.formula} |")
        out.append(f"| **total** | | **{self.params:,}** | **{self.flops:,}** | {self.dense_flops:,} | "
                   f"{self.basis_flops:,} | {self.elementwise_flops:,} | {self.convention} |")
        return "\n".join(out)

    def __str__(self) -> str:
        return (f"Profile({self.convention}: {self.params:,} params, {self.flops:,} FLOPs "
                f"[dense {self.dense_flops:,} + basis {self.basis_flops:,} + elementwise "
                f"{self.elementwise_flops:,}] at input {self.input_size}, batch {self.batch_size})")


def _is_kan_unit(m: nn.Module) -> bool:
    from .layers.bases import Basis
    from .layers.selectable import SELECTABLE_LAYERS, _PrunedBase
    if isinstance(m, Basis):
        return False
    if isinstance(m, SELECTABLE_LAYERS + (_PrunedBase,)) or hasattr(m, "_profile_flops"):
        return True
    return any(isinstance(c, Basis) for c in m.children())


def _units(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Top-down: a KAN layer (owns a basis, or is a selectable/pruned layer, or has ``_profile_flops``) or a
    leaf module is a unit, and nothing below it is."""
    units: List[Tuple[str, nn.Module]] = []

    def visit(name: str, m: nn.Module) -> None:
        children = list(m.named_children())
        if _is_kan_unit(m) or not children:
            units.append((name, m))
            return
        for cn, c in children:
            visit(f"{name}.{cn}" if name else cn, c)

    visit("", model)
    return units


def _owner(name: str, unit_names: List[str]) -> Optional[str]:
    """The unit that contains module ``name`` (the longest matching prefix)."""
    best = None
    for u in unit_names:
        if u == "" or name == u or name.startswith(u + "."):
            if best is None or len(u) > len(best):
                best = u
    return best


def _kanbefair_unit(m: nn.Module) -> Optional[Tuple[str, Dict[str, Any]]]:
    """('linear'|'conv', settings) when ``m`` is a kanzoo B-spline KAN layer that KANbeFair's formula covers."""
    from .layers import KANConvNd, KANLinear
    from .layers.bases import BSplineBasis
    if not isinstance(getattr(m, "basis", None), BSplineBasis):
        return None
    if type(m).forward is not KANLinear.forward and type(m).forward is not KANConvNd.forward:
        return None
    b = m.basis
    if m.weight is None:
        shortcut = "zero"
    else:
        shortcut = _module_act_name(m.base_act)
    settings = dict(G=b.grid_size, K=b.spline_order, shortcut=shortcut)
    return ("linear" if isinstance(m, KANLinear) else "conv"), settings


def _model_device_dtype(model: nn.Module):
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device, torch.get_default_dtype()
    return torch.device("cpu"), torch.get_default_dtype()


def count(model: nn.Module, input_size: Optional[Sequence[int]] = None, convention: str = "kanzoo",
          elementwise: Optional[bool] = None, batch_size: int = 1,
          inputs: Optional[Union[torch.Tensor, Tuple[torch.Tensor, ...]]] = None) -> Profile:
    r"""Per-layer and total parameters and FLOPs of one forward of ``model``.

    Args:
        model: any ``nn.Module``; it runs once in eval mode under ``no_grad`` on its own device (the meta
            device works: nothing is computed). Its train/eval mode is restored.
        input_size: the input shape without the batch dim, e.g. ``(3, 32, 32)`` or ``(64,)``.
        convention: ``'kanzoo'`` (dense ops measured, basis evaluation by kanzoo's formulas) or
            ``'kanbefair'`` (B-spline KAN layers by KANbeFair's formulas, activations and norms counted).
        elementwise: count activations and norms (:data:`ACT_FLOPS`); default False for ``'kanzoo'``
            (so dense models give exactly FlopCounterMode's total) and True for ``'kanbefair'``.
        batch_size: samples in the forward (FLOPs scale with it; parameters do not).
        inputs: a tensor (or tuple) to run instead of ``randn(batch_size, *input_size)``.

    Returns:
        a :class:`Profile`; ``profile.flops``, ``profile.params`` are the totals, ``profile.layers`` the rows.
        A row ``'<other>'`` holds what no layer owns (parameters on the model itself, functional ops).

    Rows are the model's KAN layers (a module that owns a :class:`~kanzoo.layers.Basis`, a selectable or
    pruned S-KAN layer, or a module defining ``_profile_flops(inputs, output, convention) -> int`` for work
    that neither FlopCounterMode nor a basis shows) and its leaf modules. Under ``'kanbefair'``, a
    :class:`~kanzoo.layers.KANLinear` over a B-spline basis is charged
    ``kanbefair_flops(in, out, G, K, shortcut)`` per sample, and a B-spline
    :class:`~kanzoo.layers.KANConvNd` that formula per output position with
    :math:`d_{in} = C_{in}/g \cdot \prod k`, :math:`d_{out} = C_{out}/g`, times g groups (the unfold view of
    a conv, an extrapolation: KANbeFair has no conv layers); other bases keep kanzoo's formulas.
    """
    from torch.utils.flop_counter import FlopCounterMode
    from .layers.bases import Basis, BSplineBasis

    if convention not in ("kanzoo", "kanbefair"):
        raise ValueError(f"convention must be 'kanzoo' or 'kanbefair', got {convention!r}")
    if elementwise is None:
        elementwise = convention == "kanbefair"
    _check_int("batch_size", batch_size, 1)
    device, dtype = _model_device_dtype(model)
    if inputs is None:
        if input_size is None:
            raise ValueError("give input_size (the input shape without the batch dim, e.g. (3, 32, 32)) or inputs")
        input_size = tuple(int(s) for s in input_size)
        inputs = (torch.randn(batch_size, *input_size, device=device, dtype=dtype),)
    elif isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    shape = tuple(inputs[0].shape[1:]) if input_size is None else tuple(input_size)

    units = _units(model)
    unit_names = [n for n, _ in units]
    unit_of = dict(units)
    root = type(model).__name__
    rows = {n: LayerProfile(name=n or "<model>", kind=type(m).__name__) for n, m in units}
    warnings: List[str] = []
    formula_units: Dict[str, Tuple[str, Dict[str, Any]]] = {}
    if convention == "kanbefair":
        for n, m in units:
            spec = _kanbefair_unit(m)
            if spec is not None:
                formula_units[n] = spec

    names = {id(m): n for n, m in model.named_modules()}
    basis_names = [n for n, m in model.named_modules() if isinstance(m, Basis)]
    unit_shapes: Dict[str, Tuple[torch.Size, torch.Size]] = {}
    hooks = []

    def basis_hook(m, args, out):
        n = names[id(m)]
        owner = _owner(n, unit_names)
        if owner in formula_units:
            return
        x = args[0]
        if convention == "kanbefair" and isinstance(m, BSplineBasis):
            f = kanbefair_bspline_act_flops(m.grid_size, m.spline_order)
            rows[owner].formula = "measured+kanbefair spline"
        else:
            try:
                f = basis_module_flops(m)
            except ValueError as e:
                warnings.append(f"{n}: {e}; its basis evaluation is not counted")
                return
        rows[owner].basis_flops += f * x.numel()

    def elementwise_hook(m, args, out):
        n = names[id(m)]
        if any(n == b or n.startswith(b + ".") for b in basis_names):
            return  # inside a basis (Gram's activation): part of the basis formula
        owner = _owner(n, unit_names)
        if owner in formula_units and n == (f"{owner}.base_act" if owner else "base_act"):
            return  # the formula's shortcut term
        if isinstance(out, torch.Tensor):
            rows[owner].elementwise_flops += ACT_FLOPS[type(m)] * out.numel()

    def unit_hook(m, args, out):
        n = names[id(m)]
        if args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
            unit_shapes[n] = (args[0].shape, out.shape)
        extra = getattr(m, "_profile_flops", None)
        if extra is not None:
            rows[n].elementwise_flops += int(extra(args, out, convention))

    def rational_hook(m, args, out):
        rows[_owner(names[id(m)], unit_names)].basis_flops += rational_flops(tuple(m.order)) * args[0].numel()

    from .layers.rational import GroupRational
    for n, m in model.named_modules():
        if isinstance(m, Basis):
            hooks.append(m.register_forward_hook(basis_hook))
        elif isinstance(m, GroupRational):
            hooks.append(m.register_forward_hook(rational_hook))
        elif elementwise and type(m) in ACT_FLOPS:
            hooks.append(m.register_forward_hook(elementwise_hook))
        if n in unit_of:
            hooks.append(m.register_forward_hook(unit_hook))
    from .layers.selectable import SELECTABLE_LAYERS
    for n, m in units:
        if isinstance(m, SELECTABLE_LAYERS):
            rows[n].formula = "measured+basis+mixing"

    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    flop_counts = counter.get_flop_counts()

    def measured(n: str) -> int:
        key = root if n == "" else f"{root}.{n}"
        return int(sum(flop_counts.get(key, {}).values()))

    total_measured = int(counter.get_total_flops())
    for n, m in units:
        r = rows[n]
        r.tensor_params = sum(p.numel() for p in m.parameters())
        r.params = r.tensor_params
        if n in formula_units:
            kind, s = formula_units[n]
            x_shape, y_shape = unit_shapes[n]
            if kind == "linear":
                samples = math.prod(x_shape[:-1])
                r.dense_flops = 0
                r.basis_flops = samples * kanbefair_flops(m.in_features, m.out_features, **s)
                r.params = kanbefair_params(m.in_features, m.out_features, **s)
            else:
                g = m.groups
                d_in = m.in_channels // g * math.prod(m.kernel_size)
                d_out = m.out_channels // g
                positions = y_shape[0] * math.prod(y_shape[2:])
                r.dense_flops = 0
                r.basis_flops = positions * g * kanbefair_flops(d_in, d_out, **s)
                r.params = g * kanbefair_params(d_in, d_out, **s)
            r.params += sum(p.numel() for name, p in m.named_parameters()
                            if name.startswith(("norm.", "act.")))
            r.formula = "kanbefair"
        else:
            r.dense_flops = measured(n)
            if r.formula == "measured" and r.basis_flops:
                r.formula = "measured+basis"
        r.flops = r.dense_flops + r.basis_flops + r.elementwise_flops

    counted_dense = sum(measured(n) for n in unit_names)
    other_dense = total_measured - counted_dense if "" not in unit_of else 0
    all_params = sum(p.numel() for p in model.parameters())
    other_params = all_params - sum(rows[n].tensor_params for n in unit_names)
    layers = [rows[n] for n in unit_names]
    if other_dense or other_params:
        layers.append(LayerProfile(name="<other>", kind="-", params=other_params, tensor_params=other_params,
                                   flops=other_dense, dense_flops=other_dense, formula="measured"))
    layers = [r for r in layers if r.params or r.flops or r.tensor_params]
    return Profile(layers=layers, convention=convention, input_size=shape, batch_size=int(inputs[0].shape[0]),
                   elementwise=bool(elementwise), warnings=warnings)


def count_macs(model: nn.Module, input_size, device: str = "meta"):
    """MACs (FLOPs / 2) of one batch-1 forward at ``input_size`` (C, H, W), by torch.utils.flop_counter.

    Counts only the ops FlopCounterMode has formulas for: convolutions, matmuls (mm/addmm/bmm/baddbmm) and
    attention. The basis expansion, norms, activations and pooling are elementwise and not counted (see
    :func:`count` for those). On the meta device nothing is computed or allocated. Returns
    ``(macs, {op: flops})``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, *input_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    per_op = {str(k).replace("aten.", ""): v for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return counter.get_total_flops() / 2, per_op


# ------------------------------------------------------------------------------------------- matching
@dataclasses.dataclass
class MatchResult:
    """The result of :func:`match`.

    Attributes:
        width: the width whose budget is closest to ``target``; model: the model built at that width.
        budget: its budget; target: the budget matched; by: ``'params'`` or ``'flops'``.
        lower, upper: ``(width, budget)`` of the widest model at or under the target and the narrowest at
            or over it (``upper[0] - lower[0] <= step`` for a budget that grows with the width).
    """

    width: int
    model: nn.Module
    budget: int
    target: int
    by: str
    lower: Tuple[int, int]
    upper: Tuple[int, int]

    @property
    def rel_error(self) -> float:
        return (self.budget - self.target) / self.target if self.target else 0.0


def match(kan_model: Optional[nn.Module], mlp_factory: Callable[[int], nn.Module], by: str = "params",
          input_size: Optional[Sequence[int]] = None, convention: str = "kanzoo", target: Optional[int] = None,
          min_width: int = 1, step: int = 1, max_width: int = 1 << 20,
          elementwise: Optional[bool] = None) -> MatchResult:
    """Finds the width w for which ``mlp_factory(w)`` has the budget of ``kan_model``.

    Args:
        kan_model: the model whose budget is matched (or None with ``target``).
        mlp_factory: width -> model; its budget must not decrease with the width (an MLP's hidden width, a
            CNN's channel multiplier ...).
        by: ``'params'`` (parameters under ``convention``) or ``'flops'`` (:func:`count`'s total).
        input_size: input shape without the batch dim (needed for FLOPs; parameters also run a forward).
        convention, elementwise: passed to :func:`count` for both models.
        target: a budget to match instead of ``kan_model``'s.
        min_width, step, max_width: the widths tried are ``min_width + i·step`` up to ``max_width``.

    Searches by doubling and bisection (about 2·log2(w) factory calls). The returned width is the one of
    the two neighbours around the target whose budget is closer, so it is within one width step of the
    budget. Raises ValueError when even ``min_width`` is over the target or ``max_width`` is under it.
    """
    if by not in ("params", "flops"):
        raise ValueError(f"by must be 'params' or 'flops', got {by!r}")
    _check_int("min_width", min_width, 1), _check_int("step", step, 1), _check_int("max_width", max_width, min_width)
    if target is None:
        if kan_model is None:
            raise ValueError("give kan_model or target")
        target = getattr(count(kan_model, input_size, convention, elementwise), by)
    cache: Dict[int, Tuple[int, nn.Module]] = {}

    def budget(i: int) -> int:
        if i not in cache:
            w = min_width + i * step
            m = mlp_factory(w)
            cache[i] = (getattr(count(m, input_size, convention, elementwise), by), m)
        return cache[i][0]

    if budget(0) > target:
        raise ValueError(f"the narrowest model (width {min_width}) already has {by}={budget(0):,} > target "
                         f"{target:,}; lower min_width or change the factory")
    max_i = (max_width - min_width) // step
    hi = 1
    while budget(min(hi, max_i)) < target:
        if hi >= max_i:
            raise ValueError(f"even width {min_width + max_i * step} has {by}={budget(max_i):,} < target "
                             f"{target:,}; raise max_width")
        hi *= 2
    hi = min(hi, max_i)
    lo = 0
    while hi - lo > 1:  # invariant: budget(lo) < target <= budget(hi), or lo == 0 with budget(0) <= target
        mid = (lo + hi) // 2
        if budget(mid) < target:
            lo = mid
        else:
            hi = mid
    if budget(lo) >= target:
        hi = lo
    best = lo if abs(budget(lo) - target) <= abs(budget(hi) - target) else hi
    w = lambda i: min_width + i * step  # noqa: E731
    return MatchResult(width=w(best), model=cache[best][1], budget=budget(best), target=int(target), by=by,
                       lower=(w(lo), budget(lo)), upper=(w(hi), budget(hi)))
