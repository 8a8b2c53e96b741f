"""B-spline basis (the original KAN: Liu et al., "KAN: Kolmogorov-Arnold Networks", arXiv 2404.19756)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .._utils import is_symbolic
from . import kernels as KK
from .base import Basis, CompilableValues, cat_basis, check_count

#: how the knots t_0..t_{G+2K} are computed: ``'linspace'`` (torch.linspace over the extended range, torch-conv-kan)
#: or ``'arange'`` (float32 (j - K)·h + lo, efficient-kan and pykan, hence U-KAN)
KNOT_RULES = ("linspace", "arange")


def uniform_knots(grid_size: int, spline_order: int, grid_range: Sequence[float], device=None,
                  rule: str = "linspace") -> torch.Tensor:
    """Knots t_0..t_{G+2K}: G intervals over ``grid_range`` extended by K intervals on both sides (float32).

    The two rules give the same decimal knots but not the same float32 values (they differ by an ulp here and
    there); ``'arange'`` is efficient-kan's ``arange(-K, G+K+1)·h + lo`` evaluated in float32 with the Python
    double h = (hi - lo)/G.
    """
    lo, hi = float(grid_range[0]), float(grid_range[1])
    h = (hi - lo) / grid_size
    if rule == "arange":
        return torch.arange(-spline_order, grid_size + spline_order + 1, dtype=torch.float32, device=device) * h + lo
    if rule != "linspace":
        raise ValueError(f"knot_rule must be one of {KNOT_RULES}, got {rule!r}")
    return torch.linspace(lo - spline_order * h, hi + spline_order * h, grid_size + 2 * spline_order + 1,
                          dtype=torch.float32, device=device)


class _LocalBSplineFunction(torch.autograd.Function):
    """The local B-spline basis. Forward keeps the interval of each input and the K+1 derivatives of its window
    (computed alongside the values); backward is then one gather and K+1 multiply-adds."""

    @staticmethod
    def forward(ctx, x, prefix, basis):
        ctx.basis, ctx.has_prefix = basis, prefix is not None
        with torch.no_grad():
            i, valid, b, db = basis._local(x, derivative=True)
            ctx.save_for_backward(i.to(torch.int16) if basis.grid.numel() < 2 ** 15 else i, valid, *db)
            return basis._assemble(i, valid, b, prefix)

    @staticmethod
    def backward(ctx, grad):
        i, valid, *db = ctx.saved_tensors
        off = 1 if ctx.has_prefix else 0
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = ctx.basis._window_grad(i.long(), valid, db, grad.narrow(2, off, grad.shape[2] - off))
        grad_prefix = grad.select(2, 0) if ctx.has_prefix and ctx.needs_input_grad[1] else None
        return grad_x, grad_prefix, None


# ------------------------------------------------------------------------------------------------ compiled kernel
# x: (N, C, S) (spatial dims flattened); t: the knots (M,) in x's dtype; dens: the knot differences of
# BSplineBasis._denominators for k = 1..K, as [left_1, right_1, left_2, right_2, ..]. The values are the full
# Cox-de Boor recursion of BSplineBasis._levels, op for op; inductor fuses it into one loop over the output.
def _kernel_levels(x: torch.Tensor, t: torch.Tensor, dens: List[torch.Tensor], derivative: bool):
    s = [1, 1, -1, 1]
    xe = x.unsqueeze(2)
    b = ((xe >= t[:-1].view(s)) & (xe < t[1:].view(s))).to(x.dtype)
    db: Optional[torch.Tensor] = None
    for k in range(1, len(dens) // 2 + 1):
        ld, rd = dens[2 * k - 2].view(s), dens[2 * k - 1].view(s)
        left = (xe - t[: -(k + 1)].view(s)) / ld
        right = (t[k + 1:].view(s) - xe) / rd
        bl, br = b[:, :, :-1], b[:, :, 1:]
        if derivative:  # d/dx of the same expression: bl/ld + left·dbl - br/rd + right·dbr
            ndb = bl / ld - br / rd
            if db is not None:
                ndb = ndb + left * db[:, :, :-1] + right * db[:, :, 1:]
            db = ndb
        b = left * bl + right * br
    return b, db


def _values_kernel(x: torch.Tensor, t: torch.Tensor, dens: List[torch.Tensor]) -> torch.Tensor:
    return _kernel_levels(x, t, dens, False)[0]


def _grad_input_kernel(x: torch.Tensor, grad: torch.Tensor, t: torch.Tensor, dens: List[torch.Tensor]) -> torch.Tensor:
    """sum_j grad_j dB_{j,K}/dx for grad (N, C, F, S) (the basis slots only)."""
    _, db = _kernel_levels(x, t, dens, True)
    if db is None:  # order 0: piecewise constant
        return torch.zeros_like(x)
    return (grad * db).sum(dim=2)


KERNEL = KK.BasisKernel(_values_kernel, _grad_input_kernel)


class BSplineBasis(Basis, CompilableValues):
    r"""B-splines of order K on a uniform grid (Cox-de Boor recursion).

    .. math::
        B_{j,0}(x) = [t_j \le x < t_{j+1}],\qquad
        B_{j,k}(x) = \frac{x - t_j}{t_{j+k} - t_j} B_{j,k-1}(x)
                   + \frac{t_{j+k+1} - x}{t_{j+k+1} - t_{j+1}} B_{j+1,k-1}(x)

    giving ``num_basis = grid_size + spline_order`` functions that are zero outside
    ``[t_0, t_last)``. The knots live in the ``grid`` buffer (float32 values, so they follow
    ``.to(device)``). By default the knot differences are rounded to float32 as in the original code
    (torch-conv-kan keeps its knots in a float32 tensor attribute), which makes float64 runs agree with
    float32-trained checkpoints bit for bit in the basis; ``float32_differences=False`` computes them in the
    input's dtype instead, as efficient-kan (U-KAN) does once its ``grid`` buffer follows ``.double()``.

    **Local evaluation** (``local=True``, the default). Only K+1 functions are nonzero at any x: those of the interval
    :math:`t_i \le x < t_{i+1}`, found by a binary search over the stored knots. The recursion then runs on
    that window only (K+1 values instead of G+2K per level), with the same expression and the same knot
    values as the full recursion, so the two agree to the last bit; the window is scattered into the
    (N, C, F, ...) output. In training, the forward keeps only x; backward reruns the window recursion with
    its derivative carried alongside (the derivative autograd would take through the full recursion, with
    the same knot differences), so none of the recursion's intermediates are stored. TorchScript, tracing
    and ONNX export run the same local recursion through plain autograd (``torch.onnx`` export falls back to
    the full recursion, which needs no search);
    double backward needs ``local=False``.

    Args:
        grid_size: number of grid intervals G inside ``grid_range``.
        spline_order: K (3 = cubic).
        grid_range: (lo, hi).
        knot_rule: ``'linspace'`` (default) or ``'arange'`` (efficient-kan's float32 knots, see
            :func:`uniform_knots`).
        float32_differences: round knot differences to float32 (default, torch-conv-kan) or compute them in
            the input dtype (efficient-kan, U-KAN).
        local: evaluate only the K+1 nonzero functions per input (default; same values, faster and lighter
            in training). Large inputs then run the full recursion as one compiled kernel instead (and its
            derivative as another, keeping only x): see :mod:`kanzoo.layers.bases.kernels`
            (``KANZOO_BASIS_KERNEL``). ``False`` runs the full recursion under plain autograd (needed for
            double backward).
    """

    name = "bspline"
    model_tag = "kan"
    adaptable = True
    upstream_names = {"conv": "KANConv", "linear": "KAN-linear"}
    default_base_act = "gelu"
    default_act = "prelu"

    def __init__(self, grid_size: int = 5, spline_order: int = 3, grid_range: Sequence[float] = (-1.0, 1.0),
                 knot_rule: str = "linspace", float32_differences: bool = True, local: bool = True,
                 device=None, dtype=None):
        super().__init__()
        if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 1:
            raise ValueError(f"grid_size must be an int >= 1, got {grid_size!r}")
        if isinstance(spline_order, bool) or not isinstance(spline_order, int) or spline_order < 0:
            raise ValueError(f"spline_order must be an int >= 0, got {spline_order!r}")
        if len(grid_range) != 2 or not float(grid_range[0]) < float(grid_range[1]):
            raise ValueError(f"grid_range must be (lo, hi) with lo < hi, got {grid_range!r}")
        if knot_rule not in KNOT_RULES:
            raise ValueError(f"knot_rule must be one of {KNOT_RULES}, got {knot_rule!r}")
        self.grid_size = grid_size
        self.spline_order = spline_order
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        self.num_basis = grid_size + spline_order
        self.knot_rule = knot_rule
        self.float32_differences = bool(float32_differences)
        self.local = bool(local)
        knots = uniform_knots(grid_size, spline_order, self.grid_range, device=device, rule=knot_rule)
        self.register_buffer("grid", knots.to(dtype) if dtype is not None else knots)

    @classmethod
    def flops(cls, grid_size: int = 5, spline_order: int = 3, **_: object) -> int:
        r"""Cox-de Boor on G intervals, order K: :math:`3(G+2K) + 7\sum_{k=1}^{K}(G+2K-k)`.

        Order 0 tests the G+2K knot intervals (2 comparisons and an AND each); level k forms G+2K-k functions
        of 7 operations (2 subtractions, 2 divisions, 2 multiplications, 1 addition).
        """
        G, K = check_count("grid_size", grid_size, 1), check_count("spline_order", spline_order, 0)
        return 3 * (G + 2 * K) + 7 * (K * (G + 2 * K) - K * (K + 1) // 2)

    def flops_per_scalar(self) -> int:
        return self.flops(self.grid_size, self.spline_order)

    def _levels(self, x: torch.Tensor, order: int) -> torch.Tensor:
        """B_{j,order}(x) for every j, shape (N, C, G+2K-order, ...)."""
        shape = [1, 1, -1] + [1] * (x.dim() - 2)
        t = self.grid.to(x.dtype)
        xe = x.unsqueeze(2)
        b = ((xe >= t[:-1].view(shape)) & (xe < t[1:].view(shape))).to(x.dtype)
        for k in range(1, order + 1):
            left_den, right_den = self._denominators(k, x.dtype)
            b = (xe - t[: -(k + 1)].view(shape)) / left_den.view(shape) * b[:, :, :-1] \
                + (t[k + 1:].view(shape) - xe) / right_den.view(shape) * b[:, :, 1:]
        return b

    def _denominators(self, k: int, dtype: torch.dtype):
        # knot differences t_{j+k} - t_j and t_{j+k+1} - t_{j+1}, rounded to float32 unless asked otherwise
        g = self.grid.float() if self.float32_differences else self.grid.to(dtype)
        return (g[k:-1] - g[: -(k + 1)]).to(dtype), (g[k + 1:] - g[1:-k]).to(dtype)

    # ---------------------------------------------------------------------------------------- local evaluation
    @torch.jit.unused
    def _uniform_spacing(self) -> Optional[Tuple[float, float]]:
        """``(t_0, 1/h)`` when every knot lies within h/4 of the straight line from t_0 to t_last (spacing h),
        so that ``floor((x - t_0)/h)`` is off the true interval by at most one; else None. Cached until the
        grid buffer changes (``load_state_dict``, ``.to()``, in-place edits)."""
        g = self.grid
        key = (g._version, g.data_ptr(), g.device, g.dtype)
        cached = self.__dict__.get("_spacing_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        t = g.detach().double().cpu()
        n = t.numel() - 1
        h = float(t[-1] - t[0]) / n
        line = float(t[0]) + h * torch.arange(n + 1, dtype=torch.float64)
        value = (float(t[0]), 1.0 / h) if h > 0 and float((t - line).abs().max()) <= 0.25 * h else None
        self.__dict__["_spacing_cache"] = (key, value)
        return value

    def _interval(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """i with t_i <= x < t_{i+1} (clamped into 0..G+2K-1) and whether t_0 <= x < t_last. On a (nearly)
        uniform grid: a floor estimate corrected by one comparison with the stored knots each way (exact, and
        several times cheaper than the binary search used otherwise)."""
        m = t.shape[0]
        if not torch.jit.is_scripting() and not torch.jit.is_tracing() and not _compiling() and not t.is_meta:
            spacing = self._uniform_spacing()
            if spacing is not None:
                j = ((x - spacing[0]) * spacing[1]).floor_().clamp_(0, m - 2).long()
                j = j.add(x >= t.take(j + 1)).add_(x < t.take(j), alpha=-1)  # bool corrections, no casts
                return j.clamp_(0, m - 2), (x >= t[0]) & (x < t[m - 1])
        i = torch.searchsorted(t, x.contiguous(), right=True) - 1
        return i.clamp(0, m - 2), (i >= 0) & (i <= m - 2)

    def _local(self, x: torch.Tensor, derivative: bool = False
               ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        """The K+1 nonzero functions at each x (de Boor's triangular scheme on the interval of x).

        Returns ``(i, valid, b, db)``: i (shape of x) the interval t_i <= x < t_{i+1}, clamped into
        0..G+2K-1; ``valid`` whether t_0 <= x < t_last; ``b[m] = B_{i-K+m,K}(x)`` for m = 0..K (each shaped
        like x; garbage where not ``valid``); with ``derivative``, ``db[m]`` = dB_{i-K+m,K}/dx, carried along
        the recursion (the derivative autograd takes through the full recursion). The knot differences are
        those of the stored knots (rounded to float32 with ``float32_differences``), so the values are the
        full recursion's up to the last bits.
        """
        K = self.spline_order
        g = self.grid
        t = g.to(x.dtype)
        i, valid = self._interval(x, t)
        if K == 0:
            return i, valid, [torch.ones_like(x)], [torch.zeros_like(x)]
        # knots t_{i+d}, d = 1-K..K, gathered from a per-interval table: the grid continued by K knots on each
        # side (spacing of the end intervals) so that every clamped i has them (the continued knots feed only
        # functions outside 0..F-1)
        steps = torch.arange(1, K + 1, device=g.device, dtype=g.dtype)
        ext = torch.cat([g[0] - (g[1] - g[0]) * steps.flip(0), g, g[-1] + (g[-1] - g[-2]) * steps])
        rows = torch.arange(1, 2 * K + 1, device=g.device).unsqueeze(1) + torch.arange(t.shape[0] - 1,
                                                                                      device=g.device)
        table = ext[rows]  # (2K, intervals): row r holds t_{i+r+1-K}
        flat = i.reshape(-1)
        shape: List[int] = [2 * K] + list(x.shape)
        knots = table.to(x.dtype).index_select(1, flat).view(shape).unbind(0)
        round32 = self.float32_differences and x.dtype != torch.float32
        dknots = table.float().index_select(1, flat).view(shape).unbind(0) if round32 else knots
        left = [x - knots[K - j] for j in range(1, K + 1)]  # left[j-1] = x - t_{i+1-j}
        right = [knots[K + j - 1] - x for j in range(1, K + 1)]  # right[j-1] = t_{i+j} - x
        # order 1 from B_{i,0} = 1: (t_{i+1} - x)/d and (x - t_i)/d, derivatives -1/d and 1/d
        d = (dknots[K] - dknots[K - 1]).to(x.dtype)
        b = [right[0] / d, left[0] / d]
        db: List[torch.Tensor] = []
        if derivative:
            inv = torch.reciprocal(d)
            db = [-inv, inv]
        for k in range(2, K + 1):
            nb: List[torch.Tensor] = []
            ndb: List[torch.Tensor] = []
            saved, dsaved = b[0], b[0]  # placeholders: r = 0 starts from zero
            for r in range(k):
                d = (dknots[K + r] - dknots[K + r - k]).to(x.dtype)  # t_{i+r+1} - t_{i+r+1-k}
                temp = b[r] / d  # B_{i-k+1+r,k-1} / d
                nb.append(right[r] * temp if r == 0 else saved + right[r] * temp)
                if derivative:
                    dtemp = db[r] / d
                    ndb.append(right[r] * dtemp - temp if r == 0 else dsaved - temp + right[r] * dtemp)
                    dsaved = temp + left[k - r - 1] * dtemp
                saved = left[k - r - 1] * temp
            nb.append(saved)
            if derivative:
                ndb.append(dsaved)
            b, db = nb, ndb
        return i, valid, b, db

    def _assemble(self, i: torch.Tensor, valid: torch.Tensor, vals: List[torch.Tensor],
                  prefix: Optional[torch.Tensor]) -> torch.Tensor:
        """The (N, C, [1+]F, ...) basis from the window values ``vals[m]`` (functions i-K+m): functions outside
        0..F-1 and inputs outside the knots are dropped; ``prefix`` goes to slot 0."""
        K, nf = self.spline_order, self.num_basis
        off = 0 if prefix is None else 1
        shape = list(i.shape)
        shape.insert(2, nf + 2 * K)
        buf = torch.zeros(shape, dtype=vals[0].dtype, device=vals[0].device)
        for m, v in enumerate(vals):  # padded slot of function i-K+m: i+m
            buf.scatter_(2, (i + m).unsqueeze(2), torch.where(valid, v, 0.0).unsqueeze(2))
        shape[2] = nf + off
        out = torch.empty(shape, dtype=buf.dtype, device=buf.device)
        out.narrow(2, off, nf).copy_(buf.narrow(2, K, nf))
        if prefix is not None:
            out.select(2, 0).copy_(prefix)
        return out

    def _local_dense(self, x: torch.Tensor, prefix: Optional[torch.Tensor]) -> torch.Tensor:
        """The full (N, C, [1+]F, ...) basis (``prefix`` in slot 0) from the local window."""
        i, valid, b, _ = self._local(x)
        return self._assemble(i, valid, b, prefix)

    def _window_grad(self, i: torch.Tensor, valid: torch.Tensor, db: List[torch.Tensor],
                     grad: torch.Tensor) -> torch.Tensor:
        """sum_j grad_j · dB_{j,K}/dx for ``grad`` (N, C, F, ...), from the window derivatives."""
        K = self.spline_order
        pad = [0, 0] * (grad.dim() - 3) + [K, K]
        gp = F.pad(grad, pad)  # padded slot of function i-K+m: i+m
        acc = torch.zeros_like(db[0])
        for m, d in enumerate(db):
            acc = acc + gp.gather(2, (i + m).unsqueeze(2)).squeeze(2) * d
        return torch.where(valid, acc, 0.0)

    def values(self, x: torch.Tensor) -> torch.Tensor:
        if self.local and not _in_onnx_export() and not is_symbolic(x):
            return self._local_dense(x, None)
        return self._levels(x, self.spline_order)

    @torch.jit.unused
    def _forward_local_fused(self, x: torch.Tensor, prefix: Optional[torch.Tensor]) -> torch.Tensor:
        return _LocalBSplineFunction.apply(x, prefix, self)

    @torch.jit.unused
    def _forward_kernel(self, x: torch.Tensor, prefix: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The compiled kernel (see :mod:`kanzoo.layers.bases.kernels`) where the switch and the input allow it,
        else None."""
        kernel = KK.basis_kernel_for(x, prefix, self.num_basis)
        if kernel is None:
            return None
        g = self.grid
        key = (g._version, g.data_ptr(), g.device, x.dtype)
        cached = self.__dict__.get("_kernel_cache")
        if cached is None or cached[0] != key:
            dens: List[torch.Tensor] = []
            for k in range(1, self.spline_order + 1):
                dens.extend(d.contiguous() for d in self._denominators(k, x.dtype))
            t = g.detach().to(x.dtype).clone()
            KK.static(t, *dens)
            cached = (key, t, dens)
            self.__dict__["_kernel_cache"] = cached
        return KERNEL(x, prefix, (cached[1], cached[2]), self.num_basis, kernel)

    def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.local and not self.compile_values and not _in_onnx_export() and not is_symbolic(x):
            if not torch.jit.is_scripting() and not torch.jit.is_tracing():
                out = self._forward_kernel(x, prefix)
                if out is not None:
                    return out
            if not torch.jit.is_scripting() and not torch.jit.is_tracing() and torch.is_grad_enabled() \
                    and (x.requires_grad or (prefix is not None and prefix.requires_grad)):
                return self._forward_local_fused(x, prefix)
            return self._local_dense(x, prefix)
        # plain autograd for the full recursion: measured faster here than a fused derivative pass
        return cat_basis(self.evaluate(x), prefix)

    def extra_repr(self) -> str:
        extra = "" if self.knot_rule == "linspace" else f", knot_rule={self.knot_rule!r}"
        if not self.float32_differences:
            extra += ", float32_differences=False"
        if not self.local:
            extra += ", local=False"
        return f"grid_size={self.grid_size}, spline_order={self.spline_order}, grid_range={self.grid_range}{extra}"


def _compiling() -> bool:
    if torch.jit.is_scripting():
        return False
    return _is_compiling()


@torch.jit.unused
def _is_compiling() -> bool:
    return bool(torch.compiler.is_compiling())


def _in_onnx_export() -> bool:
    """True inside ``torch.onnx.export`` (ONNX has no binary search: the full recursion is exported)."""
    if torch.jit.is_scripting():
        return False
    return _onnx_exporting()


@torch.jit.unused
def _onnx_exporting() -> bool:
    try:
        import torch.onnx
        if torch.onnx.is_in_onnx_export():
            return True
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.compiler.is_exporting())
