"""Bases defined by a three-term recurrence (Gram, Legendre, Chebyshev, Jacobi), with a fused backward.

    P_0 = 1,   P_1 = a_1·t + b_1,   P_i = (a_i·t + b_i)·P_{i-1} - c_i·P_{i-2},   B_i = σ(P_i)

While training, :class:`ThreeTermBasis` runs the recurrence without recording an autograd graph and
saves only t. Backward recomputes the P_i and runs the recurrence in reverse (the adjoint), so the
intermediates of the D steps are never held between forward and backward: memory drops to what the
convolution itself needs, and backward costs a few elementwise passes instead of one per recorded op.
Scripting, tracing, export and no-grad inference use the plain path (``forward_eager``); both compute
the same numbers.
"""
from typing import List, Optional, Tuple

import torch

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


class _ThreeTermFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t, c, prefix, a, b, act):
        degree = len(a) - 1
        ctx.a, ctx.b, ctx.act, ctx.has_prefix = a, b, act, prefix is not None
        ctx.save_for_backward(t, c)
        with torch.no_grad():
            return _stack_acted(_polynomials(t, a, b, c, degree), t, prefix, act)

    @staticmethod
    def backward(ctx, grad):
        t, c = ctx.saved_tensors
        a, b, act = ctx.a, ctx.b, ctx.act
        degree = len(a) - 1
        off = 1 if ctx.has_prefix else 0
        p = _polynomials(t, a, b, c, degree)
        grad_t: Optional[torch.Tensor] = None
        grad_c = torch.zeros_like(c) if ctx.needs_input_grad[1] else None
        g1: Optional[torch.Tensor] = None   # adjoint of P_{i+1}
        g2: Optional[torch.Tensor] = None   # adjoint of P_{i+2}
        for i in range(degree, 0, -1):
            g = _act_backward(grad.select(2, off + i), p[i], act)
            if g1 is not None:
                g = torch.addcmul(g + g1 * b[i + 1] if b[i + 1] != 0.0 else g, t, g1, value=a[i + 1])
            if g2 is not None:
                g = torch.addcmul(g, g2, -c[i + 2])
            grad_t = g * a[i] * p[i - 1] if grad_t is None else torch.addcmul(grad_t, g, p[i - 1], value=a[i])
            if grad_c is not None and i >= 2:
                grad_c[i] = -(g.sum() if i == 2 else torch.dot(g.reshape(-1), p[i - 2].reshape(-1)))
            g1, g2 = g, g1
        if grad_t is None:
            grad_t = torch.zeros_like(t)
        grad_prefix = grad.select(2, 0) if ctx.has_prefix and ctx.needs_input_grad[2] else None
        return grad_t, grad_c, grad_prefix, None, None, None


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
        t = self.squash(x)
        a, b, c = self.recurrence(t)
        return _ThreeTermFunction.apply(t, c, prefix, a, b, self.act_name)

    def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        if torch.jit.is_scripting() or torch.jit.is_tracing() or not torch.is_grad_enabled():
            return self.forward_eager(x, prefix)
        if self.act_name not in _FUSED_ACTS:
            return self.forward_eager(x, prefix)
        return self._forward_fused(x, prefix)

