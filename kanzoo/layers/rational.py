"""Group-rational activation: the learnable activation of GR-KAN, the channel mixer of the Kolmogorov-Arnold
Transformer (KAT; Yang & Wang, "Kolmogorov-Arnold Transformer", arXiv 2409.10594).

Each channel c of group g is mapped elementwise by the rational function

    F_g(x) = P(x) / Q_g(x),
    P(x)   = a_0 + a_1 x + ... + a_m x^m                      (one numerator, shared by all groups)
    Q_g(x) = 1 + |b_g0|·|x| + |b_g1|·|x|^2 + ... + |b_g,n-1|·|x|^n   (one denominator per group)

with (m, n) = (5, 4) by default. Q ≥ 1, so F has no poles. This is the form of the reference's CUDA and Triton
kernels, which trained the published checkpoints; the reference's pure-PyTorch CPU fallback drops |x| in Q and
computes a different function (see docs/compat.md). Gradients follow the kernels, with sgn(0) = +1::

    dF/dx    = (P'(x) − sgn(x)·Q'(|x|)·F) / Q
    dF/da_i  = x^i / Q                          (summed over every group: the numerator is shared)
    dF/db_gj = −sgn(b_gj)·|x|^(j+1)·F / Q

Two implementations of one formula:

* the **fused kernel** (default): a custom autograd function whose forward and backward are each one
  ``torch.compile``-d elementwise/reduction kernel (inductor emits C++ on CPU and Triton on GPU). The backward
  saves only the input and recomputes P and Q; the coefficient gradients are sums over a [rows, G, K] view
  (per row, then over rows), which inductor lowers to ordinary reductions: no atomic adds, deterministic.
* the **formula** path: plain torch ops, used for TorchScript, tracing, ONNX and ``torch.export``, inside an
  outer ``torch.compile``, on the meta device and under dispatch modes (FLOP counting). Its autograd gives the
  same gradients, because |t| is written ``where(t < 0, -t, t)`` (derivative +1 at 0).

The switch: ``GroupRational(kernel=...)`` per layer, :func:`set_rational_kernel` or the environment variable
``KANZOO_RATIONAL_KERNEL`` process-wide (a :class:`~kanzoo.layers.bases.kernels.KernelSwitch`, the mechanism of
the compiled bases, with its own setting and fallback), each one of

* ``"auto"`` (default): the compiled kernel where a compiler works, for inputs of at least
  ``MIN_COMPILED_NUMEL`` (65,536) elements (smaller ones run eagerly: compiling costs seconds, and a few
  thousand elements take microseconds either way); on the first compiler failure kanzoo warns once and uses
  the eager kernel from then on;
* ``"compiled"``: the compiled kernel, errors propagate;
* ``"eager"``: the same custom autograd function with eager torch ops (no compiler needed; slower);
* ``"formula"``: the formula path with plain autograd: supports double backward and ``torch.func`` transforms
  (the fused kernel's backward is once-differentiable), at the cost of saving every intermediate;
* ``"triton"``: hand-written Triton kernels (:mod:`kanzoo.layers.triton_rational`): the same function and
  gradients, half-precision inputs read as they are with float32 accumulation, coefficient gradients reduced
  per program and then summed by torch (no atomics, deterministic). CUDA tensors, or CPU tensors under
  ``TRITON_INTERPRET=1`` (set before importing kanzoo); anywhere else it raises a one-line RuntimeError. Opt-in:
  "auto" does not pick it until it is measured faster than the compiled kernel on a GPU.
"""
import json
import math
from functools import lru_cache
from importlib import resources
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from timm.layers import register_notrace_module
from torch import nn

from .bases.kernels import (
    MIN_COMPILED_NUMEL,  # noqa: F401  ("auto" compiles from this size; importable here too)
    KernelSwitch,
    compiled,
    eager_context,
)
from .triton_rational import triton_group_rational

__all__ = ["GroupRational", "GRKANMlp", "group_rational", "fused_group_rational", "rational_init_modes",
           "rational_init", "set_rational_kernel", "get_rational_kernel"]

KERNELS = ("auto", "compiled", "eager", "formula", "triton")
RATIONAL_KERNEL = KernelSwitch("KANZOO_RATIONAL_KERNEL", KERNELS, "kanzoo GroupRational", "kernel")
_state = RATIONAL_KERNEL.state


# ------------------------------------------------------------------------------------------------ init data
@lru_cache(maxsize=1)
def _init_table() -> Dict[str, Dict[str, List[float]]]:
    text = resources.files("kanzoo.layers").joinpath("data", "rational_init.json").read_text(encoding="utf-8")
    return json.loads(text)["modes"]


def rational_init_modes() -> List[str]:
    """Names of the shipped initial fits (``identity``, ``gelu``, ``swish``, ...)."""
    return list(_init_table())


def rational_init(mode: str, order: Tuple[int, int] = (5, 4)) -> Tuple[List[float], List[float]]:
    """(numerator a_0..a_m, denominator b_0..b_{n-1}) of a named fit.

    ``identity`` exists for every order (F(x) = x); the other fits are of order (5, 4).
    """
    m, n = order
    if mode == "identity":
        return [0.0, 1.0] + [0.0] * (m - 1), [0.0] * n
    table = _init_table()
    if mode not in table:
        raise ValueError(f"unknown rational init mode {mode!r}; choose one of {sorted(table)}")
    if tuple(order) != (5, 4):
        raise ValueError(f"the {mode!r} fit has order (5, 4), not {tuple(order)}; use mode='identity' for other "
                         f"orders or load your own coefficients")
    return list(table[mode]["numerator"]), list(table[mode]["denominator"])


# ------------------------------------------------------------------------------------------------ the switch
def set_rational_kernel(kernel: Optional[str]) -> None:
    """Sets the process-wide default kernel of layers built with ``kernel=None`` ("auto", "compiled", "eager",
    "formula", "triton"; None: back to ``$KANZOO_RATIONAL_KERNEL`` or "auto")."""
    RATIONAL_KERNEL.set(kernel)


def get_rational_kernel() -> str:
    """The process-wide default kernel (see :func:`set_rational_kernel`)."""
    return RATIONAL_KERNEL.get()


# ------------------------------------------------------------------------------------------------ formula path
def _abs(t: torch.Tensor) -> torch.Tensor:
    """|t| with d|t|/dt = +1 at t = 0 (the kernels' sgn(0) convention; torch.abs has 0 there)."""
    return torch.where(t < 0, -t, t)


def _check_input(x: torch.Tensor, num_groups: int, dim: int) -> int:
    """Validates ``x`` and returns ``dim`` as a non-negative index."""
    if x.dim() == 0:
        raise ValueError("GroupRational needs an input with a channel dimension, got a 0-d tensor")
    if dim < -x.dim() or dim >= x.dim():
        raise ValueError("GroupRational dim=" + str(dim) + " is out of range for an input of shape "
                         + str(list(x.shape)) + "; use dim=-1 for channels-last or dim=1 for NCHW")
    d = dim % x.dim()
    if not torch.jit.is_tracing() and x.shape[d] % num_groups != 0:
        raise ValueError("GroupRational: " + str(x.shape[d]) + " channels (dim " + str(dim) + " of input shape "
                         + str(list(x.shape)) + ") are not divisible by num_groups=" + str(num_groups)
                         + "; use a num_groups that divides the channel count")
    if not x.is_floating_point():
        raise TypeError("GroupRational needs a floating-point input, got " + str(x.dtype))
    return d


def _check_coefficients(weight_numerator: torch.Tensor, weight_denominator: torch.Tensor, num_groups: int) -> None:
    if weight_numerator.numel() < 2 or weight_denominator.dim() != 2 or weight_denominator.shape[0] != num_groups \
            or weight_denominator.shape[1] < 1:
        raise ValueError("GroupRational coefficients must be a numerator of at least 2 values and a (num_groups, n) "
                         "denominator with n >= 1; got " + str(list(weight_numerator.shape)) + " and "
                         + str(list(weight_denominator.shape)) + " for num_groups=" + str(num_groups))


def group_rational(x: torch.Tensor, weight_numerator: torch.Tensor, weight_denominator: torch.Tensor,
                   num_groups: int, dim: int = -1) -> torch.Tensor:
    """The group-rational function in plain torch ops (scriptable, traceable, exportable).

    Args:
        x: input of any rank, channels on ``dim``.
        weight_numerator: (1, m+1) shared numerator a_0..a_m.
        weight_denominator: (G, n) per-group denominators.
        num_groups: G; group g owns the contiguous channels [g·C/G, (g+1)·C/G).

    Half-precision inputs are computed in float32 and returned in their own dtype.
    """
    d = _check_input(x, num_groups, dim)
    if not torch.jit.is_tracing():
        _check_coefficients(weight_numerator, weight_denominator, num_groups)
    out_dtype = x.dtype
    if x.dtype == torch.float16 or x.dtype == torch.bfloat16:
        x = x.float()
    channels = x.shape[d]
    view = [1] * x.dim()
    view[d] = channels
    a = weight_numerator.reshape(-1).to(x.dtype)
    # per-channel denominators: (G, n) -> (C, n)
    b = _abs(weight_denominator.to(x.dtype)).repeat_interleave(channels // num_groups, dim=0)
    m = a.shape[0] - 1
    n = b.shape[1]
    ax = _abs(x)
    p = a[m] * x + a[m - 1]
    for i in range(m - 2, -1, -1):
        p = p * x + a[i]
    q = b[:, n - 1].reshape(view) * ax
    for j in range(n - 2, -1, -1):
        q = (q + b[:, j].reshape(view)) * ax
    return (p / (q + 1.0)).to(out_dtype)


# ------------------------------------------------------------------------------------------------ kernel math
# x is viewed as [M, G, K]: rows, groups, the K = C/G·(trailing size) elements of a group in a row.
def _num_den(x: torch.Tensor, a: torch.Tensor, ab: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    m = a.shape[0] - 1
    n = ab.shape[1]
    ax = x.abs()
    p = a[m] * x + a[m - 1]
    for i in range(m - 2, -1, -1):
        p = p * x + a[i]
    q = ab[:, n - 1:n] * ax
    for j in range(n - 2, -1, -1):
        q = (q + ab[:, j:j + 1]) * ax
    return p, q + 1.0


def _forward_kernel(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a.to(x.dtype)
    p, q = _num_den(x, a, b.to(x.dtype).abs())
    return p / q


def _backward_kernel(x: torch.Tensor, gy: torch.Tensor, a: torch.Tensor, b: torch.Tensor, coefs: bool):
    a = a.to(x.dtype)
    b = b.to(x.dtype)
    ab = b.abs()
    m = a.shape[0] - 1
    n = ab.shape[1]
    ax = x.abs()
    p, q = _num_den(x, a, ab)
    # P'(x) = Σ i·a_i·x^(i-1) and Q'(|x|) = Σ (j+1)·|b_j|·|x|^j, by Horner
    dp = m * a[m]
    for i in range(m - 1, 0, -1):
        dp = dp * x + i * a[i]
    dq = n * ab[:, n - 1:n]
    for j in range(n - 2, -1, -1):
        dq = dq * ax + (j + 1) * ab[:, j:j + 1]
    t = gy / q
    y = p / q
    sx = 1.0 - 2.0 * (x < 0).to(x.dtype)  # sgn(x), +1 at 0
    gx = t * (dp - sx * dq * y)
    if not coefs:
        return gx, None, None
    # dL/da_i = Σ gy·x^i/Q ; dL/db_j = −sgn(b_j)·Σ_group gy·F/Q·|x|^(j+1). Each row's K elements are summed
    # first, then the rows: inductor then parallelises the big reduction over all M·G rows rather than over the G
    # groups of a single (rows, K) reduction (2-3x faster on 2 CPU threads)
    ga: List[torch.Tensor] = []
    w = t
    for i in range(m + 1):
        ga.append(w.sum(dim=2).sum(dim=0))
        if i < m:
            w = w * x
    gb: List[torch.Tensor] = []
    w = t * y * ax
    for j in range(n):
        gb.append(w.sum(dim=2).sum(dim=0))
        if j < n - 1:
            w = w * ax
    grad_a = torch.stack(ga, dim=1).sum(dim=0)
    sb = 1.0 - 2.0 * (b < 0).to(b.dtype)
    grad_b = -sb * torch.stack(gb, dim=1)
    return gx, grad_a, grad_b


_KERNEL_FNS = {"fwd": _forward_kernel, "bwd": _backward_kernel}


def _compiled(kind: str):
    """The compiled kernel ``kind`` ("fwd" or "bwd")."""
    return compiled(_KERNEL_FNS[kind])


def _run(kind: str, requested: str, *args):
    """Runs kernel ``kind`` as the switch resolves ``requested`` for the input ``args[0]`` (compiled, falling back
    to eager once, with a warning, when ``requested`` is "auto")."""
    eager = _KERNEL_FNS[kind]
    if RATIONAL_KERNEL.resolve(requested, args[0].numel()) == "eager":
        return eager(*args)
    return RATIONAL_KERNEL.call(lambda *a: _compiled(kind)(*a), eager, requested, *args)


class _GroupRationalFunction(torch.autograd.Function):
    """Fused group-rational on a [M, G, K] view; saves only its inputs and recomputes P, Q in backward."""

    @staticmethod
    def forward(ctx, x, a, b, kernel: str):
        ctx.save_for_backward(x, a, b)
        ctx.kernel = kernel
        # detached: the compiled kernels then see plain tensors (no view base, no parameter, no requires_grad),
        # so one dynamic-shape graph serves every input size and group count
        return _run("fwd", kernel, x.detach(), a.detach(), b.detach())

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        x, a, b = ctx.saved_tensors
        coefs = bool(ctx.needs_input_grad[1] or ctx.needs_input_grad[2])
        gx, ga, gb = _run("bwd", ctx.kernel, x.detach(), gy.contiguous().detach(), a.detach(), b.detach(), coefs)
        if ga is not None:
            ga = ga.to(a.dtype)
            gb = gb.to(b.dtype)
        return (gx if ctx.needs_input_grad[0] else None), ga, gb, None


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def fused_group_rational(x: torch.Tensor, weight_numerator: torch.Tensor, weight_denominator: torch.Tensor,
                         num_groups: int, dim: int = -1, kernel: str = "auto") -> torch.Tensor:
    """:func:`group_rational` through the fused kernel (same values; the gradients of the kernels).

    Under autocast it computes in float32 and returns float32, like the reference; half-precision inputs
    outside autocast are computed in float32 and returned in their dtype.
    """
    if kernel == "formula":
        return group_rational(x, weight_numerator, weight_denominator, num_groups, dim)
    d = _check_input(x, num_groups, dim)
    _check_coefficients(weight_numerator, weight_denominator, num_groups)
    out_dtype = x.dtype
    if _autocast_enabled(x.device.type):
        out_dtype = torch.float32
    shape = x.shape
    rows = math.prod(shape[:d])
    k = (shape[d] // num_groups) * math.prod(shape[d + 1:])
    if kernel == "triton":  # reads half precision as it is and accumulates in float32
        y = triton_group_rational(x.reshape(rows, num_groups, k), weight_numerator, weight_denominator, out_dtype)
        return y.view(shape)
    if x.dtype in (torch.float16, torch.bfloat16) or out_dtype == torch.float32:
        x = x.float()
    x3 = x.reshape(rows, num_groups, k)
    # coefficients in the compute dtype (autograd casts their gradients back), so each dtype compiles once
    a = weight_numerator.reshape(-1).to(x.dtype)
    b = weight_denominator.to(x.dtype)
    if torch.is_grad_enabled() and (x3.requires_grad or a.requires_grad or b.requires_grad):
        y = _GroupRationalFunction.apply(x3, a, b, kernel)
    else:  # inference: the forward kernel alone
        y = _run("fwd", kernel, x3, a, b)
    return y.view(shape).to(out_dtype)


# ------------------------------------------------------------------------------------------------ the layer
@register_notrace_module  # picks the compiled kernel by size and grad mode: FX calls it as one op
class GroupRational(nn.Module):
    """Group-rational activation of GR-KAN (Yang & Wang, "Kolmogorov-Arnold Transformer", arXiv 2409.10594).

    ``F_g(x) = (a_0 + a_1 x + ... + a_m x^m) / (1 + Σ_j |b_gj|·|x|^(j+1))`` for the channels of group g, with a
    numerator shared by all groups and one denominator per group (module docstring: math and gradients).

    Args:
        num_groups: G; the C channels form G contiguous groups of C/G (C must be divisible by G).
        mode: initial fit, one of :func:`rational_init_modes` (``identity``, ``gelu``, ``swish``, ...).
        order: (m, n), the degrees of numerator and denominator; the named fits are (5, 4).
        dim: the channel dimension: -1 for channels-last ``[..., C]``, 1 for ``[N, C, *spatial]``.
        kernel: "auto", "compiled", "eager", "formula", "triton" or None (the process default); see the module
            docstring.

    Parameters (names and shapes of the reference ``KAT_Group``, so its checkpoints load as they are):
        weight_numerator: (1, m+1).
        weight_denominator: (G, n).
    """

    def __init__(self, num_groups: int = 8, mode: str = "gelu", order: Sequence[int] = (5, 4), dim: int = -1,
                 kernel: Optional[str] = None, device=None, dtype=None):
        super().__init__()
        if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
            raise ValueError(f"num_groups must be a positive int, got {num_groups!r}")
        order = tuple(order)
        if len(order) != 2 or any(isinstance(o, bool) or not isinstance(o, int) or o < 1 for o in order):
            raise ValueError(f"order must be two ints (m, n) >= 1, got {order!r}")
        RATIONAL_KERNEL.check(kernel)
        rational_init(mode, order)  # validates mode and order
        self.num_groups = num_groups
        self.mode = mode
        self.order = order
        self.dim = dim
        self.kernel = kernel if kernel is not None else ""
        dd = dict(device=device, dtype=dtype)
        self.weight_numerator = nn.Parameter(torch.empty(1, order[0] + 1, **dd))
        self.weight_denominator = nn.Parameter(torch.empty(num_groups, order[1], **dd))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Sets the coefficients to the ``mode`` fit (its denominator copied to every group)."""
        num, den = rational_init(self.mode, self.order)
        if self.weight_numerator.device.type == "meta":
            return
        # the fits are rounded to float32 first, as in the reference's parameters
        with torch.no_grad():
            self.weight_numerator.copy_(torch.tensor([num], dtype=torch.float32))
            self.weight_denominator.copy_(torch.tensor([den], dtype=torch.float32).expand_as(self.weight_denominator))

    def init_weights(self) -> None:
        """timm's init hook (``VisionTransformer.init_weights`` calls it): the ``mode`` fit."""
        self.reset_parameters()

    @torch.jit.unused
    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel or get_rational_kernel()
        return fused_group_rational(x, self.weight_numerator, self.weight_denominator, self.num_groups, self.dim,
                                    kernel)

    @torch.jit.unused
    def _formula_only(self, x: torch.Tensor) -> bool:
        return eager_context(x) or (self.kernel or get_rational_kernel()) == "formula"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting() or self._formula_only(x):
            return group_rational(x, self.weight_numerator, self.weight_denominator, self.num_groups, self.dim)
        return self._fused(x)

    def extra_repr(self) -> str:
        s = f"num_groups={self.num_groups}, mode={self.mode!r}, order={self.order}"
        if self.dim != -1:
            s += f", dim={self.dim}"
        if self.kernel:
            s += f", kernel={self.kernel!r}"
        return s


class GRKANMlp(nn.Module):
    """GR-KAN channel mixer of KAT (Yang & Wang, arXiv 2409.10594), a drop-in ``mlp_layer`` for timm's ViT blocks.

    Two KAN layers, each "a group-rational φ on every input edge, then a weighted sum"::

        y = fc2(act2(fc1(act1(x))))

    ``act1`` starts as the identity and ``act2`` as the ``act_init`` fit; both have ``num_groups`` groups.
    Keys: ``fc1.*``, ``act1.*``, ``act2.*``, ``fc2.*`` in that order, the reference ``KAN``'s.

    Dropout follows timm's ``Mlp``: ``drop1`` on the hidden features (after ``act2``), ``drop2`` on the output
    (the reference puts them after ``act1`` and ``act2``; every published model uses 0). ``norm_layer`` (timm's
    ``scale_mlp_norm``) normalises the hidden features before ``fc2`` (the reference builds it and never applies
    it). ``act_layer`` is accepted for timm's ``Block`` and ignored: the activations are the rationals.
    """

    def __init__(self, in_features: int, hidden_features: Optional[int] = None, out_features: Optional[int] = None,
                 act_layer=None, norm_layer=None, bias=True, drop=0.0, act_init: str = "gelu", num_groups: int = 8,
                 order: Sequence[int] = (5, 4), kernel: Optional[str] = None, use_conv: bool = False,
                 device=None, dtype=None):
        super().__init__()
        if use_conv:
            raise ValueError("GRKANMlp works on channels-last tokens; use_conv=True is not supported (apply it to "
                             "x.permute(0, 2, 3, 1) instead)")
        dd = dict(device=device, dtype=dtype)
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        for what, c in (("in_features", in_features), ("hidden_features", hidden_features)):
            if c % num_groups:
                raise ValueError(f"GRKANMlp {what}={c} is not divisible by num_groups={num_groups}; every rational "
                                 f"splits its channels into num_groups equal groups")
        bias = bias if isinstance(bias, (tuple, list)) else (bias, bias)
        drop = drop if isinstance(drop, (tuple, list)) else (drop, drop)
        rk = dict(num_groups=num_groups, order=order, kernel=kernel, **dd)
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias[0], **dd)
        self.act1 = GroupRational(mode="identity", **rk)
        self.act2 = GroupRational(mode=act_init, **rk)
        self.drop1 = nn.Dropout(drop[0])
        self.norm = norm_layer(hidden_features, **dd) if norm_layer is not None else nn.Identity()
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias[1], **dd)
        self.drop2 = nn.Dropout(drop[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(self.act1(x))
        x = self.drop1(self.act2(x))
        return self.drop2(self.fc2(self.norm(x)))
