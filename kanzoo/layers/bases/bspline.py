"""B-spline basis (the original KAN: Liu et al., "KAN: Kolmogorov-Arnold Networks", arXiv 2404.19756)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .base import Basis, CompilableValues, cat_basis


def uniform_knots(grid_size: int, spline_order: int, grid_range: Sequence[float], device=None) -> torch.Tensor:
    """Knots t_0..t_{G+2K}: G intervals over ``grid_range`` extended by K intervals on both sides (float32)."""
    lo, hi = float(grid_range[0]), float(grid_range[1])
    h = (hi - lo) / grid_size
    return torch.linspace(lo - spline_order * h, hi + spline_order * h, grid_size + 2 * spline_order + 1,
                          dtype=torch.float32, device=device)


class BSplineBasis(Basis, CompilableValues):
    r"""B-splines of order K on a uniform grid (Cox-de Boor recursion).

    .. math::
        B_{j,0}(x) = [t_j \le x < t_{j+1}],\qquad
        B_{j,k}(x) = \frac{x - t_j}{t_{j+k} - t_j} B_{j,k-1}(x)
                   + \frac{t_{j+k+1} - x}{t_{j+k+1} - t_{j+1}} B_{j+1,k-1}(x)

    giving ``num_basis = grid_size + spline_order`` functions that are zero outside
    ``[t_0, t_last)``. The knots live in the ``grid`` buffer (float32 values, so they follow
    ``.to(device)``) and the knot differences are rounded to float32 as in the original code, which makes
    float64 runs agree with float32-trained checkpoints bit for bit in the basis.

    Args:
        grid_size: number of grid intervals G inside ``grid_range``.
        spline_order: K (3 = cubic).
        grid_range: (lo, hi).
    """

    default_base_act = "gelu"
    default_act = "prelu"

    def __init__(self, grid_size: int = 5, spline_order: int = 3, grid_range: Sequence[float] = (-1.0, 1.0),
                 device=None, dtype=None):
        super().__init__()
        if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 1:
            raise ValueError(f"grid_size must be an int >= 1, got {grid_size!r}")
        if isinstance(spline_order, bool) or not isinstance(spline_order, int) or spline_order < 0:
            raise ValueError(f"spline_order must be an int >= 0, got {spline_order!r}")
        if len(grid_range) != 2 or not float(grid_range[0]) < float(grid_range[1]):
            raise ValueError(f"grid_range must be (lo, hi) with lo < hi, got {grid_range!r}")
        self.grid_size = grid_size
        self.spline_order = spline_order
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        self.num_basis = grid_size + spline_order
        knots = uniform_knots(grid_size, spline_order, self.grid_range, device=device)
        self.register_buffer("grid", knots.to(dtype) if dtype is not None else knots)

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
        # knot differences rounded to float32, as the original KAN computes them
        g = self.grid.float()
        return (g[k:-1] - g[: -(k + 1)]).to(dtype), (g[k + 1:] - g[1:-k]).to(dtype)

    def values(self, x: torch.Tensor) -> torch.Tensor:
        return self._levels(x, self.spline_order)

    def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        # plain autograd: measured faster here than a fused derivative pass (benchmarks/layers.py)
        return cat_basis(self.evaluate(x), prefix)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, spline_order={self.spline_order}, grid_range={self.grid_range}"
