"""Reflectional switch activation functions (RSWAF), the basis of FasterKAN (Delis, "FasterKAN", 2024), used by the
KAN experts of MLP-KAN (He et al., "MLP-KAN: Unifying Deep Representation and Function Learning",
arXiv 2410.03027).

The basis has three implementations of one function (values within a few float ulps of each other):

* the **compiled kernel** (default for large inputs): a custom autograd function whose forward (the G values per
  input, with the optional prefix slot) and backward (dB/dx reduced against the incoming gradient) are each one
  ``torch.compile``-d elementwise kernel (inductor emits C++ on CPU, Triton on GPU). Training saves only the
  input and recomputes one exponential per input in backward.
* the **eager exponential form**: the same formula in eager torch ops (a few passes over the (N, C, G) output),
  whose training path keeps the derivatives;
* the **tanh formula** ``1 - tanh²``: TorchScript, tracing, ONNX and ``torch.export``, an outer
  ``torch.compile``, the meta device, dispatch modes (FLOP counting), half precision and very wide grids.

The switch between the first two is ``KANZOO_BASIS_KERNEL`` (``auto``, ``compiled``, ``eager``), shared with
the B-spline basis: see :mod:`kanzoo.layers.bases.kernels`.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from .._utils import is_symbolic
from . import kernels as K
from .base import cat_basis, check_count
from .elementwise import ClosedFormBasis


def _compiling() -> bool:
    return bool(torch.compiler.is_compiling())


# ------------------------------------------------------------------------------------------------ fused kernel
# x: (N, C, S) (spatial dims flattened); k4, ki4: (1, 1, G, 1) = (k/4, 1/(4k)) with k_j = exp(-2r g_j); scale = 2r;
# bound = 60 + max_j |2r g_j| (see RSWAFBasis._exp_form). The kernels see plain tensors of one rank, always
# without grad mode, so that one dynamic-shape graph per dtype serves every layer.
def _kernel_values(x: torch.Tensor, k4: torch.Tensor, ki4: torch.Tensor, scale: float, bound: float):
    e = torch.exp((x * scale).clamp(-bound, bound)).unsqueeze(2)
    ei = torch.reciprocal(e)
    return e, torch.reciprocal((e * k4 + 0.5) + ei * ki4)


def _values_kernel(x: torch.Tensor, k4: torch.Tensor, ki4: torch.Tensor, scale: float, bound: float):
    return _kernel_values(x, k4, ki4, scale, bound)[1]


def _grad_input_kernel(x: torch.Tensor, grad: torch.Tensor, k4: torch.Tensor, ki4: torch.Tensor, scale: float,
                       bound: float) -> torch.Tensor:
    """sum_j grad_j dB_j/dx for grad (N, C, G, S) (the basis slots only)."""
    e, v = _kernel_values(x, k4, ki4, scale, bound)
    pos = e * (4.0 * k4)  # e^{2u_j}
    # B' = -2r tanh(u) sech²(u) = -scale (e^{2u} - 1)/(e^{2u} + 1) sech²(u)
    deriv = (pos - 1.0) / (pos + 1.0) * v * (-scale)
    return (grad * deriv).sum(dim=2)


KERNEL = K.BasisKernel(_values_kernel, _grad_input_kernel)


class _RSWAFFunction(torch.autograd.Function):
    """RSWAF values and their derivatives from one exponential per input; backward is one multiply-add pass
    (the derivatives are kept instead of x, sparing backward the exponential and the basis passes)."""

    @staticmethod
    def forward(ctx, x, prefix, basis, parts):
        with torch.no_grad():
            e, ei, k4, ki4 = parts
            values = basis._sech2(e, ei, k4, ki4)
            pos = e * (4.0 * k4)  # e^{2u_j}
            deriv = (pos - 1.0).div_(pos + 1.0).mul_(values).mul_(-2.0 * basis.inv_denominator)
        ctx.has_prefix = prefix is not None
        ctx.save_for_backward(deriv)
        return cat_basis(values, prefix)

    @staticmethod
    def backward(ctx, grad):
        (deriv,) = ctx.saved_tensors
        off = 1 if ctx.has_prefix else 0
        grad_x = (grad.narrow(2, off, grad.shape[2] - off) * deriv).sum(dim=2) if ctx.needs_input_grad[0] else None
        grad_prefix = grad.select(2, 0) if ctx.has_prefix and ctx.needs_input_grad[1] else None
        return grad_x, grad_prefix, None, None


class RSWAFBasis(ClosedFormBasis):
    r"""Switch-shaped bumps 1 - tanh² on a uniform grid of centres.

    .. math:: B_j(x) = 1 - \tanh^2\!\big((x - g_j)\, r\big),\qquad
              g = \mathrm{linspace}(lo, hi, G),\quad r = 1 / \mathrm{denominator}

    ``denominator`` (FasterKAN: 0.33) sets the width of each bump, independently of the grid spacing.
    The derivative is :math:`B_j'(x) = -2 r \tanh(u_j) (1 - \tanh^2(u_j))` with
    :math:`u_j = (x - g_j) r`; training uses it in a fused backward that keeps only x (see
    :class:`~kanzoo.layers.bases.elementwise.ClosedFormBasis`).

    FasterKAN layers normalise their input with a LayerNorm before the basis and have no base branch, no
    norm and no activation after the weights: those are this basis's layer defaults.

    Args:
        grid_size: number of centres G (FasterKAN: 8).
        grid_range: (lo, hi), the first and last centre (FasterKAN: (-2, 2)).
        denominator: bump width; the basis multiplies by its reciprocal (a Python float), as FasterKAN does.

    The centres are the ``grid`` buffer (float32 values, so float64 runs see FasterKAN's float32 grid).
    In eager float32 and float64 the values are computed as :math:`4/(e^{2u} + e^{-2u} + 2)` from one
    exponential per input (see ``_exp_form``), within a few ulps of ``1 - tanh²``; TorchScript, tracing (ONNX),
    ``torch.compile`` and half precision use the tanh formula. Large inputs run the same exponential form as one
    compiled kernel (module docstring; ``KANZOO_BASIS_KERNEL``).
    """

    name = "rswaf"
    default_base_act = "silu"
    default_use_base = False
    default_act = "identity"
    default_norm = None

    def __init__(self, grid_size: int = 8, grid_range: Sequence[float] = (-2.0, 2.0), denominator: float = 0.33,
                 device=None, dtype=None):
        super().__init__()
        if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 1:
            raise ValueError(f"grid_size must be an int >= 1, got {grid_size!r}")
        if len(grid_range) != 2 or not float(grid_range[0]) <= float(grid_range[1]):
            raise ValueError(f"grid_range must be (lo, hi) with lo <= hi, got {grid_range!r}")
        if isinstance(denominator, bool) or not isinstance(denominator, (int, float)) or not denominator > 0:
            raise ValueError(f"denominator must be a number > 0 (the bump width), got {denominator!r}")
        self.grid_size = grid_size
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        self.num_basis = grid_size
        self.denominator = float(denominator)
        self.inv_denominator = 1.0 / self.denominator
        centres = torch.linspace(self.grid_range[0], self.grid_range[1], grid_size, dtype=torch.float32,
                                 device=device)
        self.register_buffer("grid", centres.to(dtype) if dtype is not None else centres)

    def _tanh(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1, 1, -1] + [1] * (x.dim() - 2)
        return torch.tanh((x.unsqueeze(2) - self.grid.to(x.dtype).view(shape)) * self.inv_denominator)

    @torch.jit.unused
    def _exp_constants(self, dtype: torch.dtype, ndim: int) -> Optional[Tuple[float, torch.Tensor, torch.Tensor]]:
        """``(c, k/4, 1/(4k))`` for :meth:`_exp_form` (cached until the grid changes), or None for wide grids."""
        g = self.grid
        key = (g._version, g.data_ptr(), g.device, dtype)
        cached = self.__dict__.get("_exp_cache")
        if cached is None or cached[0] != key:
            g2r = g.detach().double() * (2.0 * self.inv_denominator)
            c = float(g2r.abs().max()) if g2r.numel() else 0.0
            value = None if c > 14.0 else (c, (0.25 * torch.exp(-g2r)).to(dtype), (0.25 * torch.exp(g2r)).to(dtype))
            cached = (key, value)
            self.__dict__["_exp_cache"] = cached
        if cached[1] is None:
            return None
        c, k4, ki4 = cached[1]
        shape = [1, 1, -1] + [1] * (ndim - 2)
        return c, k4.view(shape), ki4.view(shape)

    @torch.jit.unused
    def _exp_form(self, x: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(E, 1/E, k/4, 1/(4k))`` with E = exp(2rx) (shape of x with a basis axis of 1) and k_j = exp(-2r g_j),
        so that exp(2u_j) = E·k_j; None in half precision or where the products could leave float32's range
        (grids wider than |2r g| <= 14): the basis then uses tanh directly.

        1 - tanh²(u) = 4/(e^{2u} + e^{-2u} + 2): one exp per input instead of a tanh per input and centre, and no
        cancellation (every term is positive). 2rx is clamped to ±(60 + c), c = max_j |2r g_j|: where the clamp
        acts, every basis value is below 4e^-60.
        """
        if is_symbolic(x) or x.dtype not in (torch.float32, torch.float64) or x.is_meta or torch.jit.is_tracing() \
                or _compiling():
            return None  # tracing, export and torch.compile take the plain tanh formula
        consts = self._exp_constants(x.dtype, x.dim())
        if consts is None:
            return None
        c, k4, ki4 = consts
        e = torch.exp((x * (2.0 * self.inv_denominator)).clamp_(-60.0 - c, 60.0 + c)).unsqueeze(2)
        return e, torch.reciprocal(e), k4, ki4

    def _sech2(self, e: torch.Tensor, ei: torch.Tensor, k4: torch.Tensor, ki4: torch.Tensor) -> torch.Tensor:
        """1/((E k + 1/(E k))/4 + 1/2) in three passes over the output."""
        half = torch.full((1,), 0.5, dtype=e.dtype, device=e.device)
        return torch.addcmul(torch.addcmul(half, e, k4), ei, ki4).reciprocal_()

    def values(self, x: torch.Tensor) -> torch.Tensor:
        parts = None if torch.jit.is_scripting() else self._exp_form(x)
        if parts is None:
            t = self._tanh(x)
            return 1.0 - t * t
        return self._sech2(*parts)

    def derivatives(self, x: torch.Tensor) -> torch.Tensor:
        parts = None if torch.jit.is_scripting() else self._exp_form(x)
        if parts is None:
            t = self._tanh(x)
            return (1.0 - t * t) * t * (-2.0 * self.inv_denominator)
        e, ei, k4, ki4 = parts
        pos = e * (4.0 * k4)  # e^{2u_j}
        # B' = -2r tanh(u) sech²(u), tanh(u) = (e^{2u} - 1)/(e^{2u} + 1), sech²(u) = 4/(e^{2u} + e^{-2u} + 2)
        return (pos - 1.0) / (pos + 1.0) * self._sech2(e, ei, k4, ki4) * (-2.0 * self.inv_denominator)

    @torch.jit.unused
    def _forward_exp(self, x: torch.Tensor, prefix: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if not torch.is_grad_enabled() or not (x.requires_grad or (prefix is not None and prefix.requires_grad)):
            return None
        parts = self._exp_form(x)
        return None if parts is None else _RSWAFFunction.apply(x, prefix, self, parts)

    @torch.jit.unused
    def _forward_kernel(self, x: torch.Tensor, prefix: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The compiled kernel where the switch and the input allow it, else None."""
        kernel = K.basis_kernel_for(x, prefix, self.grid_size)
        if kernel is None:
            return None
        consts = self._exp_constants(x.dtype, 3)
        if consts is None:
            return None
        c, k4, ki4 = consts
        K.static(k4, ki4)  # the basis size G: unrolled in the kernel
        return KERNEL(x, prefix, (k4, ki4, 2.0 * self.inv_denominator, 60.0 + c), self.grid_size, kernel)

    def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        # ClosedFormBasis.forward, with the compiled kernel and the exponential form's own fused function first
        # (TorchScript has no super())
        if torch.jit.is_scripting() or torch.jit.is_tracing() or is_symbolic(x):
            return cat_basis(self.values(x), prefix)
        out = self._forward_kernel(x, prefix)
        if out is not None:
            return out
        if not torch.is_grad_enabled():
            return cat_basis(self.values(x), prefix)
        out = self._forward_exp(x, prefix)
        if out is not None:
            return out
        if not x.requires_grad and (prefix is None or not prefix.requires_grad):
            return cat_basis(self.evaluate(x), prefix)
        return self._forward_fused(x, prefix)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, grid_range={self.grid_range}, denominator={self.denominator}"

    @classmethod
    def flops(cls, grid_size: int = 8, **_: object) -> int:
        r""":math:`1 - \tanh^2((x-g_j)\,r)` for G centres (subtract, scale, tanh 6, square, subtract): :math:`10G`."""
        return 10 * check_count("grid_size", grid_size, 1)

    def flops_per_scalar(self) -> int:
        return self.flops(self.grid_size)
