"""Bases defined by a three-term recurrence (Gram, Legendre, Chebyshev, Jacobi), with a fused backward.

    P_0 = 1,   P_1 = a_1·t + b_1,   P_i = (a_i·t + b_i)·P_{i-1} - c_i·P_{i-2},   B_i = σ(P_i)

While training, :class:`ThreeTermBasis` runs the recurrence without recording an autograd graph and
saves only t. Backward recomputes the P_i and runs the recurrence in reverse (the adjoint), so the
intermediates of the D steps are never held between forward and backward: memory drops to what the
convolution itself needs, and backward costs a few elementwise passes instead of one per recorded op.
Scripting, tracing and export use the plain path (``forward_eager``); both compute the same numbers. Large
float inputs run the recurrence (forward, and the adjoint in backward) as compiled kernels of t
(``KANZOO_BASIS_KERNEL``, :mod:`kanzoo.layers.bases.kernels`); the squash x -> t stays an eager op.
"""
from typing import List, Optional, Tuple

import torch

from .._utils import is_symbolic
from . import kernels as KK
from .base import Basis, stack_basis

_FUSED_ACTS = ("identity", "silu", "gelu")


def _act(p: torch.Tensor, act: str) -> torch.Tensor:
    if act == "silu":
        return torch.nn.functional.silu(p)
    if act == "gelu":
        return torch.nn.functional.gelu(p)
    return p


def _act_backward(g: torch.Tensor, p: torch.Tensor, act: str) -> torch.Tensor:
    """g·σ'(p) as one fused kernel where torch has one."""
    if act == "silu":
        return torch.ops.aten.silu_backward(g, p)
    if act == "gelu":
        return torch.ops.aten.gelu_backward(g, p)
    return g


def _polynomials(t: torch.Tensor, a: List[float], b: List[float], c: torch.Tensor, degree: int) -> List[torch.Tensor]:
    """[P_0, .., P_D]; P_0 is a 0-dim one (broadcast by the callers), the rest are shaped like t."""
    p0 = torch.ones((), dtype=t.dtype, device=t.device)
    out = [p0]
    if degree >= 1:
        p1 = t * a[1] + b[1] if (a[1] != 1.0 or b[1] != 0.0) else t
        out.append(p1)
        for i in range(2, degree + 1):
            rest = p0 * (-c[i]) if b[i] == 0.0 else torch.add(p0 * (-c[i]), p1, alpha=b[i])
            p2 = torch.addcmul(rest, t, p1, value=a[i])
            out.append(p2)
            p0, p1 = p1, p2
    return out


def _stack_acted(polys: List[torch.Tensor], t: torch.Tensor, prefix: Optional[torch.Tensor], act: str) -> torch.Tensor:
    parts = [_act(polys[0], act).expand_as(t)] + [_act(p, act) for p in polys[1:]]
    return stack_basis(parts, prefix)


def _adjoint(t: torch.Tensor, c: torch.Tensor, grad: torch.Tensor, off: int, a: List[float], b: List[float],
             act: str, need_c: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """dL/dt and dL/dc from dL/dB (slots ``off``..``off``+D of axis 2 of ``grad``): the recurrence run in
    reverse over the recomputed P_i."""
    degree = len(a) - 1
    p = _polynomials(t, a, b, c, degree)
    grad_t: Optional[torch.Tensor] = None
    grad_c: List[torch.Tensor] = [torch.zeros((), dtype=c.dtype, device=c.device)] * (degree + 1)
    g1: Optional[torch.Tensor] = None   # adjoint of P_{i+1}
    g2: Optional[torch.Tensor] = None   # adjoint of P_{i+2}
    for i in range(degree, 0, -1):
        g = _act_backward(grad.select(2, off + i), p[i], act)
        if g1 is not None:
            g = torch.addcmul(g + g1 * b[i + 1] if b[i + 1] != 0.0 else g, t, g1, value=a[i + 1])
        if g2 is not None:
            g = torch.addcmul(g, g2, -c[i + 2])
        grad_t = g * a[i] * p[i - 1] if grad_t is None else torch.addcmul(grad_t, g, p[i - 1], value=a[i])
        if need_c and i >= 2:
            grad_c[i] = -(g.sum() if i == 2 else torch.dot(g.reshape(-1), p[i - 2].reshape(-1)))
        g1, g2 = g, g1
    if grad_t is None:
        grad_t = torch.zeros_like(t)
    return grad_t, torch.stack(grad_c).to(c.dtype) if need_c else None


# ------------------------------------------------------------------------------------------------ compiled kernels
# t: (N, C, S) (spatial dims flattened); abc: (3, D+1) rows a, b, c in t's dtype (tensors, so that one graph per
# degree and dtype serves every basis); act: 'identity', 'silu' or 'gelu'; squash: 'tanh' where the kernels take x
# and apply t = tanh(x) themselves (``fused_squash``), else 'identity'. The same recurrence and adjoint as
# _polynomials and _adjoint, without their shortcuts for a_i = 1 and b_i = 0.
def _kernel_polynomials(t: torch.Tensor, abc: torch.Tensor) -> List[torch.Tensor]:
    a, b, c = abc[0], abc[1], abc[2]
    degree = abc.shape[1] - 1
    out = [torch.ones_like(t)]
    if degree >= 1:
        out.append(t * a[1] + b[1])
    for i in range(2, degree + 1):
        out.append((t * a[i] + b[i]) * out[i - 1] - c[i] * out[i - 2])
    return out


def _values_kernel(t: torch.Tensor, abc: torch.Tensor, act: str, squash: str) -> torch.Tensor:
    t = torch.tanh(t) if squash == "tanh" else t
    return torch.stack([_act(p, act) for p in _kernel_polynomials(t, abc)], dim=2)


def _values_prefix_kernel(t: torch.Tensor, prefix: torch.Tensor, abc: torch.Tensor, act: str,
                          squash: str) -> torch.Tensor:
    t = torch.tanh(t) if squash == "tanh" else t
    return torch.stack([prefix] + [_act(p, act) for p in _kernel_polynomials(t, abc)], dim=2)


def _backward_kernel(x: torch.Tensor, grad: torch.Tensor, abc: torch.Tensor, act: str, squash: str):
    """(dL/dx, dL/dc (D+1,)) for grad (N, C, D+1, S), the basis slots only (x is t unless squash is 'tanh')."""
    t = torch.tanh(x) if squash == "tanh" else x
    a, b, c = abc[0], abc[1], abc[2]
    degree = abc.shape[1] - 1
    p = _kernel_polynomials(t, abc)
    grad_t = torch.zeros_like(t)
    grad_c = [torch.zeros((), dtype=t.dtype, device=t.device)] * (degree + 1)
    g1: Optional[torch.Tensor] = None
    g2: Optional[torch.Tensor] = None
    for i in range(degree, 0, -1):
        g = _act_backward(grad[:, :, i], p[i], act)
        if g1 is not None:
            g = g + (t * a[i + 1] + b[i + 1]) * g1
        if g2 is not None:
            g = g - c[i + 2] * g2
        grad_t = grad_t + a[i] * g * p[i - 1]
        if i >= 2:
            grad_c[i] = -(g * p[i - 2]).sum()
        g1, g2 = g, g1
    if squash == "tanh":
        grad_t = grad_t * (1.0 - t * t)
    return grad_t, torch.stack(grad_c)


def _run_values(t: torch.Tensor, abc: torch.Tensor, prefix: Optional[torch.Tensor], act: str, kernel: str,
                squash: str) -> torch.Tensor:
    shape = list(t.shape)
    shape.insert(2, abc.shape[1] + (0 if prefix is None else 1))
    if prefix is None:
        return KK.run(_values_kernel, kernel, KK.flat(t), abc, act, squash).view(shape)
    return KK.run(_values_prefix_kernel, kernel, KK.flat(t), KK.flat(prefix), abc, act, squash).view(shape)


def _coefficients(a: List[float], b: List[float], c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(3, D+1): the rows a, b, c for the kernels, detached, in t's dtype, with a static size."""
    abc = torch.stack([torch.tensor(a, dtype=t.dtype, device=t.device), torch.tensor(b, dtype=t.dtype, device=t.device),
                       c.detach().to(t.dtype)])
    KK.static(abc)
    return abc


class _ThreeTermFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t, c, prefix, a, b, act, kernel=None, squash="identity"):
        degree = len(a) - 1
        ctx.a, ctx.b, ctx.act, ctx.has_prefix, ctx.kernel, ctx.squash = a, b, act, prefix is not None, kernel, squash
        ctx.save_for_backward(t, c)
        if kernel is not None:
            return _run_values(t, _coefficients(a, b, c, t), prefix, act, kernel, squash)
        with torch.no_grad():
            return _stack_acted(_polynomials(t, a, b, c, degree), t, prefix, act)

    @staticmethod
    def backward(ctx, grad):
        t, c = ctx.saved_tensors
        off = 1 if ctx.has_prefix else 0
        need_c = bool(ctx.needs_input_grad[1])
        if ctx.kernel is not None:
            g = grad.narrow(2, off, grad.shape[2] - off)
            g = g.reshape(g.shape[0], g.shape[1], g.shape[2], -1)
            KK.static(g, dims=(2,))
            grad_t, grad_c = KK.run(_backward_kernel, ctx.kernel, KK.flat(t), g.detach(),
                                    _coefficients(ctx.a, ctx.b, c, t), ctx.act, ctx.squash)
            grad_t, grad_c = grad_t.view(t.shape), grad_c.to(c.dtype)
        else:
            grad_t, grad_c = _adjoint(t, c, grad, off, ctx.a, ctx.b, ctx.act, need_c)
        grad_prefix = grad.select(2, 0) if ctx.has_prefix and ctx.needs_input_grad[2] else None
        return grad_t, grad_c if need_c else None, grad_prefix, None, None, None, None, None


def recurrence_flops(a: List[float], b: List[float], c: List[float], learnable_c: bool = False) -> int:
    """FLOPs of P_1 = a_1 t + b_1 and P_i = (a_i t + b_i) P_{i-1} - c_i P_{i-2} for i = 2..D, per scalar
    (multiplying by 1 and adding 0 are free; a learnable c_i is never taken as 0 or 1)."""
    degree = len(a) - 1
    flops = 0
    if degree >= 1:
        flops += (a[1] != 1.0) + (b[1] != 0.0)
    for i in range(2, degree + 1):
        flops += (a[i] != 1.0) + (b[i] != 0.0) + 1          # (a t + b) × P_{i-1}
        if learnable_c or c[i] != 0.0:
            flops += (learnable_c or c[i] != 1.0) + 1       # c × P_{i-2}, subtract
    return int(flops)


class ThreeTermBasis(Basis):
    """Base class of the recurrence bases. Subclasses implement ``squash`` (x -> t), ``recurrence``
    (the a_i, b_i lists and the c_i tensor, index i = 0..degree) and set ``degree`` and ``act_name``."""

    degree: int
    #: 'tanh' where ``squash`` is tanh(x): the compiled kernels then apply it themselves and keep only x
    fused_squash: str = "identity"

    def __init__(self):
        super().__init__()
        self.act: torch.nn.Module = torch.nn.Identity()

    @property
    @torch.jit.unused
    def act_name(self) -> str:
        """'silu', 'gelu' (exact), 'identity', or 'other' (no fused backward)."""
        act = self.act
        if isinstance(act, torch.nn.Identity):
            return "identity"
        if isinstance(act, torch.nn.SiLU):
            return "silu"
        if isinstance(act, torch.nn.GELU) and act.approximate == "none":
            return "gelu"
        return "other"

    def squash(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def recurrence(self, t: torch.Tensor) -> Tuple[List[float], List[float], torch.Tensor]:
        raise NotImplementedError

    def forward_eager(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        t = self.squash(x)
        a, b, c = self.recurrence(t)
        polys = _polynomials(t, a, b, c, self.degree)
        parts = [self.act(polys[0]).expand_as(t)] + [self.act(p) for p in polys[1:]]
        return stack_basis(parts, prefix)

    @torch.jit.unused
    def _forward_fused(self, x: torch.Tensor, prefix: Optional[torch.Tensor]) -> torch.Tensor:
        kernel = KK.basis_kernel_for(x, prefix, self.num_basis)
        squash = self.fused_squash if kernel is not None else "identity"
        t = x if squash == "tanh" else self.squash(x)  # the kernels apply tanh themselves
        a, b, c = self.recurrence(t)
        if kernel is not None and (c.dtype != t.dtype or KK.eager_only(c)):
            kernel, squash = None, "identity"
            t = self.squash(x)
        if not torch.is_grad_enabled():
            if kernel is None:
                return _stack_acted(_polynomials(t, a, b, c, self.degree), t, prefix, self.act_name)
            return _run_values(t, _coefficients(a, b, c, t), prefix, self.act_name, kernel, squash)
        return _ThreeTermFunction.apply(t, c, prefix, a, b, self.act_name, kernel, squash)

    def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        if torch.jit.is_scripting() or torch.jit.is_tracing() or is_symbolic(x):
            return self.forward_eager(x, prefix)
        if self.act_name not in _FUSED_ACTS:
            return self.forward_eager(x, prefix)
        if not torch.is_grad_enabled() and KK.basis_kernel_for(x, prefix, self.num_basis) is None:
            return self.forward_eager(x, prefix)
        return self._forward_fused(x, prefix)

