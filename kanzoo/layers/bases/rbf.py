"""Gaussian radial basis (FastKAN: Li, "Kolmogorov-Arnold Networks are Radial Basis Function Networks",
arXiv 2405.06721)."""
from __future__ import annotations

from typing import Sequence

import torch

from .base import check_count
from .elementwise import ClosedFormBasis


class RBFBasis(ClosedFormBasis):
    r"""Gaussian bumps on a uniform grid.

    .. math:: B_j(x) = \exp\!\big(-((x - \mu_j)/h)^2\big),\quad \mu = \mathrm{linspace}(lo, hi, G),\
              h = (hi - lo)/(G - 1)

    ``grid`` is a buffer of the G centres. FastKAN layers normalise their input before the basis
    (``basis_norm``), add a SiLU base branch, and have no output norm or activation.
    """

    name = "rbf"
    model_tag = "fastkan"
    adaptable = True
    upstream_names = {"conv": "FastKAN", "linear": "FastKAN-linear"}
    default_base_act = "silu"
    default_act = "identity"
    default_norm = None

    def __init__(self, grid_size: int = 8, grid_range: Sequence[float] = (-2.0, 2.0), device=None, dtype=None):
        super().__init__()
        if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 2:
            raise ValueError(f"grid_size must be an int >= 2 for an RBF grid, got {grid_size!r}")
        if len(grid_range) != 2 or not float(grid_range[0]) < float(grid_range[1]):
            raise ValueError(f"grid_range must be (lo, hi) with lo < hi, got {grid_range!r}")
        self.grid_size = grid_size
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        self.num_basis = grid_size
        self.inv_width = (grid_size - 1) / (self.grid_range[1] - self.grid_range[0])
        centres = torch.linspace(self.grid_range[0], self.grid_range[1], grid_size, dtype=torch.float32, device=device)
        self.register_buffer("grid", centres.to(dtype) if dtype is not None else centres)

    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1, 1, -1] + [1] * (x.dim() - 2)
        return (x.unsqueeze(2) - self.grid.to(x.dtype).view(shape)) * self.inv_width

    def values(self, x: torch.Tensor) -> torch.Tensor:
        u = self._scaled(x)
        return torch.exp(-(u * u))

    def derivatives(self, x: torch.Tensor) -> torch.Tensor:
        u = self._scaled(x)
        return torch.exp(-(u * u)) * u * (-2.0 * self.inv_width)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, grid_range={self.grid_range}"

    @classmethod
    def flops(cls, grid_size: int = 8, **_: object) -> int:
        r""":math:`\exp(-((x-\mu_j)/h)^2)` for G centres (subtract, scale, square, negate, exp): :math:`5G`."""
        return 5 * check_count("grid_size", grid_size, 1)

    def flops_per_scalar(self) -> int:
        return self.flops(self.grid_size)
