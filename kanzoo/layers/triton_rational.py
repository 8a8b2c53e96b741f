"""Hand-written Triton kernels of the group-rational activation (GR-KAN, KAT: arXiv 2409.10594): the ``"triton"``
choice of ``KANZOO_RATIONAL_KERNEL`` (:mod:`kanzoo.layers.rational` has the math and the gradients).

The input is viewed as [M, G, K] (rows, groups, the K elements of a group in a row). Both kernels run on a
(ceil(M·K / BLOCK), G) grid: program (p, g) takes BLOCK consecutive elements of group g, so its coefficients
a_0..a_m, |b_g0|..|b_g,n-1| are scalars loaded once per program.

* forward: y = P(x) / Q_g(x) by Horner, one read and one write per element;
* backward: recomputes P, Q, P', Q' from the saved input and writes
  ``dx = gy·(P'(x) − sgn(x)·Q'(|x|)·F) / Q``; the coefficient gradients are reduced **without atomics**:
  program (p, g) sums its block of ``gy·x^i / Q`` and ``gy·F·|x|^(j+1) / Q`` (a fixed tree reduction in
  registers) and stores the m+1+n sums in row p of a [num_programs, G, m+1+n] buffer; torch then sums that
  buffer over programs (and over groups for the shared numerator). Every sum has a fixed order: two backward
  passes give bitwise-equal gradients.

Inputs may be float32, bfloat16 or float16 (computed in float32) or float64 (computed in float64); the
output is written in the dtype asked for (the input's, or float32 under autocast), dx in the input's dtype and the
coefficient gradients in the parameters' dtype.

The kernels run CUDA tensors, or CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1`` in the
environment before kanzoo is imported: ``triton.jit`` picks the interpreter when it decorates). Nobody has
measured them against the compiled (inductor) kernel on a GPU yet, so they are opt-in, never the "auto" choice.
"""
from typing import Optional, Tuple

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover  (kanzoo runs without triton; only kernel="triton" needs it)
    triton = None
    tl = None

__all__ = ["triton_group_rational", "triton_available"]

#: elements of one group per program
BLOCK = 1024


if triton is not None:
    @triton.jit
    def _num_den(x, ax, a_ptr, b_ptr, DEG_P: tl.constexpr, DEG_Q: tl.constexpr):
        """P(x) and Q(x) = 1 + Σ_j |b_j|·|x|^(j+1), by Horner."""
        p = tl.load(a_ptr + DEG_P).to(x.dtype) * x + tl.load(a_ptr + DEG_P - 1).to(x.dtype)
        for k in tl.static_range(DEG_P - 1):
            p = p * x + tl.load(a_ptr + DEG_P - 2 - k).to(x.dtype)
        q = tl.abs(tl.load(b_ptr + DEG_Q - 1).to(x.dtype)) * ax
        for k in tl.static_range(DEG_Q - 1):
            q = (q + tl.abs(tl.load(b_ptr + DEG_Q - 2 - k).to(x.dtype))) * ax
        return p, q + 1.0

    @triton.jit
    def _offsets(numel_g, G, K, BLOCK: tl.constexpr):
        """Element offsets of this program's block of group ``program_id(1)`` in the [M, G, K] tensor."""
        e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        r = e // K
        return r * G * K + tl.program_id(1).to(tl.int64) * K + (e - r * K), e < numel_g

    @triton.jit
    def _rational_fwd(x_ptr, a_ptr, b_ptr, y_ptr, numel_g, G, K, DEG_P: tl.constexpr, DEG_Q: tl.constexpr,
                      ACC: tl.constexpr, BLOCK: tl.constexpr):
        off, mask = _offsets(numel_g, G, K, BLOCK)
        x = tl.load(x_ptr + off, mask=mask, other=0.0).to(ACC)
        p, q = _num_den(x, tl.abs(x), a_ptr, b_ptr + tl.program_id(1) * DEG_Q, DEG_P, DEG_Q)
        tl.store(y_ptr + off, (p / q).to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _rational_bwd(x_ptr, gy_ptr, a_ptr, b_ptr, gx_ptr, part_ptr, numel_g, G, K, DEG_P: tl.constexpr,
                      DEG_Q: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr, GRAD_X: tl.constexpr,
                      GRAD_COEF: tl.constexpr):
        g = tl.program_id(1)
        off, mask = _offsets(numel_g, G, K, BLOCK)
        # masked lanes: x = 0, gy = 0, so every term below is 0 there
        x = tl.load(x_ptr + off, mask=mask, other=0.0).to(ACC)
        gy = tl.load(gy_ptr + off, mask=mask, other=0.0).to(ACC)
        b_ptr = b_ptr + g * DEG_Q
        ax = tl.abs(x)
        p, q = _num_den(x, ax, a_ptr, b_ptr, DEG_P, DEG_Q)
        t = gy / q
        y = p / q
        if GRAD_X:
            # P'(x) = Σ i·a_i·x^(i-1), Q'(|x|) = Σ (j+1)·|b_j|·|x|^j
            dp = tl.zeros_like(x) + DEG_P * tl.load(a_ptr + DEG_P).to(ACC)
            for k in tl.static_range(DEG_P - 1):
                dp = dp * x + (DEG_P - 1 - k) * tl.load(a_ptr + DEG_P - 1 - k).to(ACC)
            dq = tl.zeros_like(x) + DEG_Q * tl.abs(tl.load(b_ptr + DEG_Q - 1).to(ACC))
            for k in tl.static_range(DEG_Q - 1):
                dq = dq * ax + (DEG_Q - 1 - k) * tl.abs(tl.load(b_ptr + DEG_Q - 2 - k).to(ACC))
            sx = tl.where(x < 0, -1.0, 1.0).to(ACC)  # sgn(x), +1 at 0
            tl.store(gx_ptr + off, (t * (dp - sx * dq * y)).to(gx_ptr.dtype.element_ty), mask=mask)
        if GRAD_COEF:
            # this program's sums of gy·x^i/Q (i = 0..m) and gy·F·|x|^(j+1)/Q (j = 0..n-1): one row of the buffer
            part = part_ptr + (tl.program_id(0).to(tl.int64) * G + g) * (DEG_P + 1 + DEG_Q)
            w = t
            for i in tl.static_range(DEG_P + 1):
                tl.store(part + i, tl.sum(w, axis=0))
                w = w * x
            w = t * y * ax
            for j in tl.static_range(DEG_Q):
                tl.store(part + DEG_P + 1 + j, tl.sum(w, axis=0))
                w = w * ax


def _interpreted() -> bool:
    """Whether the kernels were decorated for Triton's interpreter (``TRITON_INTERPRET=1`` at import)."""
    return triton is not None and not isinstance(_rational_fwd, triton.runtime.JITFunction)


def triton_available(device: torch.device) -> Optional[str]:
    """None where the Triton kernels can run on ``device``, else the reason they cannot (one line)."""
    if triton is None:
        return "GroupRational kernel='triton' needs the triton package (pip install triton); choose kernel='auto'"
    if device.type == "cuda" or _interpreted():
        return None
    if device.type == "cpu":
        return ("GroupRational kernel='triton' runs CUDA tensors, or CPU tensors only under Triton's interpreter: "
                "set TRITON_INTERPRET=1 before importing kanzoo, or choose kernel='auto'")
    return f"GroupRational kernel='triton' runs CUDA tensors, got a tensor on {device.type}; choose kernel='auto'"


def _check(x: torch.Tensor) -> None:
    reason = triton_available(x.device)
    if reason is not None:
        raise RuntimeError(reason)
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise TypeError(f"GroupRational kernel='triton' needs a float16/bfloat16/float32/float64 input, got {x.dtype}")


def _acc(x: torch.Tensor) -> Tuple[torch.dtype, "tl.dtype"]:
    """The compute dtype: float64 for float64 inputs, float32 otherwise."""
    return (torch.float64, tl.float64) if x.dtype == torch.float64 else (torch.float32, tl.float32)


def _grid(x: torch.Tensor):
    m, g, k = x.shape
    return (triton.cdiv(m * k, BLOCK), g), m * k


def rational_forward(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """F(x) of a contiguous [M, G, K] input with numerator ``a`` (m+1,) and denominators ``b`` (G, n)."""
    acc, acc_tl = _acc(x)
    y = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    if x.numel():
        grid, numel_g = _grid(x)
        _rational_fwd[grid](x, a.to(acc).contiguous(), b.to(acc).contiguous(), y, numel_g, x.shape[1], x.shape[2],
                            DEG_P=a.numel() - 1, DEG_Q=b.shape[1], ACC=acc_tl, BLOCK=BLOCK)
    return y


def rational_backward(x: torch.Tensor, gy: torch.Tensor, a: torch.Tensor, b: torch.Tensor, grad_x: bool,
                      grad_coef: bool):
    """(dx in x's dtype or None, da (m+1,) and db (G, n) in the compute dtype or None) for contiguous x, gy."""
    acc, acc_tl = _acc(x)
    m, n, groups = a.numel() - 1, b.shape[1], x.shape[1]
    grid, numel_g = _grid(x)
    gx = torch.empty_like(x) if grad_x else None
    part = torch.zeros(grid[0], groups, m + 1 + n, dtype=acc, device=x.device) if grad_coef else None
    b_acc = b.to(acc).contiguous()
    if x.numel():
        _rational_bwd[grid](x, gy, a.to(acc).contiguous(), b_acc, gx if grad_x else x, part if grad_coef else x,
                            numel_g, groups, x.shape[2], DEG_P=m, DEG_Q=n, ACC=acc_tl, BLOCK=BLOCK,
                            GRAD_X=grad_x, GRAD_COEF=grad_coef)
    if not grad_coef:
        return gx, None, None
    sums = part.sum(dim=0)  # (G, m+1+n): a fixed-order reduction over programs
    ga = sums[:, :m + 1].sum(dim=0)
    gb = -torch.where(b_acc < 0, -1.0, 1.0).to(acc) * sums[:, m + 1:]
    return gx, ga, gb


class _TritonGroupRational(torch.autograd.Function):
    """The Triton kernels under autograd: saves only the inputs; backward recomputes P and Q."""

    @staticmethod
    def forward(ctx, x, a, b, out_dtype):
        ctx.save_for_backward(x, a, b)
        return rational_forward(x.detach(), a.detach(), b.detach(), out_dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        x, a, b = ctx.saved_tensors
        grad_coef = bool(ctx.needs_input_grad[1] or ctx.needs_input_grad[2])
        gx, ga, gb = rational_backward(x.detach(), gy.contiguous(), a.detach(), b.detach(),
                                       bool(ctx.needs_input_grad[0]), grad_coef)
        if grad_coef:
            ga = ga.to(a.dtype).view(a.shape)
            gb = gb.to(b.dtype)
        return gx, ga, gb, None


def triton_group_rational(x: torch.Tensor, weight_numerator: torch.Tensor, weight_denominator: torch.Tensor,
                          out_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """The group-rational function of an [M, G, K] input through the Triton kernels.

    Args:
        x: [M, G, K], float16/bfloat16/float32 (computed in float32) or float64.
        weight_numerator: m+1 values a_0..a_m (any shape).
        weight_denominator: (G, n).
        out_dtype: the output's dtype (default: x's).
    """
    _check(x)
    if x.dim() != 3 or weight_denominator.dim() != 2 or weight_denominator.shape[0] != x.shape[1]:
        raise ValueError(f"triton_group_rational needs x of shape [M, G, K] and a (G, n) denominator, got "
                         f"{list(x.shape)} and {list(weight_denominator.shape)}")
    out_dtype = out_dtype or x.dtype
    x = x.contiguous()
    a = weight_numerator.reshape(-1)
    if torch.is_grad_enabled() and (x.requires_grad or a.requires_grad or weight_denominator.requires_grad):
        return _TritonGroupRational.apply(x, a, weight_denominator, out_dtype)
    return rational_forward(x, a, weight_denominator, out_dtype)
