"""Gaussian radial basis (FastKAN: Li, "Kolmogorov-Arnold Networks are Radial Basis Function Networks",
arXiv 2405.06721)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .._utils import is_symbolic
from . import kernels as KK
from .base import cat_basis, check_count
from .elementwise import ClosedFormBasis


# ------------------------------------------------------------------------------------------------ compiled kernel
# x: (N, C, S) (spatial dims flattened); grid: the centres (1, 1, G, 1) in x's dtype; inv_width: 1/h.
def _values_kernel(x: torch.Tensor, grid: torch.Tensor, inv_width: float) -> torch.Tensor:
    u = (x.unsqueeze(2) - grid) * inv_width
    return torch.exp(-(u * u))


def _grad_input_kernel(x: torch.Tensor, grad: torch.Tensor, grid: torch.Tensor, inv_width: float) -> torch.Tensor:
    """sum_j grad_j dB_j/dx = sum_j grad_j·B_j·(-2u_j/h) for grad (N, C, G, S)."""
    u = (x.unsqueeze(2) - grid) * inv_width
    return (grad * torch.exp(-(u * u)) * u).sum(dim=2) * (-2.0 * inv_width)


KERNEL = KK.BasisKernel(_values_kernel, _grad_input_kernel)


class RBFBasis(ClosedFormBasis):
    r"""Gaussian bumps on a uniform grid.

    .. math:: B_j(x) = \exp\!\big(-((x - \mu_j)/h)^2\big),\quad \mu = \mathrm{linspace}(lo, hi, G),\
              h = (hi - lo)/(G - 1)

    ``grid`` is a buffer of the G centres. FastKAN layers normalise their input before the basis
    (``basis_norm``), add a SiLU base branch, and have no output norm or activation.

    Large float inputs run the basis as one compiled kernel and its derivative as another, keeping only x for
    backward (``KANZOO_BASIS_KERNEL``, :mod:`kanzoo.layers.bases.kernels`); smaller inputs use the fused
    closed-form backward, and TorchScript, tracing and export the eager formula.
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

    @torch.jit.unused
    def _forward_kernel(self, x: torch.Tensor, prefix: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The compiled kernel where the switch and the input allow it, else None."""
        if self.compile_values:  # compile_bases() asked for torch.compile of values() instead
            return None
        kernel = KK.basis_kernel_for(x, prefix, self.num_basis)
        if kernel is None:
            return None
        g = self.grid
        key = (g._version, g.data_ptr(), g.device, x.dtype)
        cached = self.__dict__.get("_kernel_cache")
        if cached is None or cached[0] != key:
            grid = g.detach().to(x.dtype).view(1, 1, -1, 1).clone()
            KK.static(grid)
            cached = (key, grid)
            self.__dict__["_kernel_cache"] = cached
        return KERNEL(x, prefix, (cached[1], self.inv_width), self.num_basis, kernel)

    def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        # ClosedFormBasis.forward with the compiled kernel first (TorchScript has no super())
        if torch.jit.is_scripting() or torch.jit.is_tracing() or is_symbolic(x):
            return cat_basis(self.values(x), prefix)
        out = self._forward_kernel(x, prefix)
        if out is not None:
            return out
        if not torch.is_grad_enabled() or (not x.requires_grad and (prefix is None or not prefix.requires_grad)):
            return cat_basis(self.evaluate(x), prefix)
        return self._forward_fused(x, prefix)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, grid_range={self.grid_range}"

    @classmethod
    def flops(cls, grid_size: int = 8, **_: object) -> int:
        r""":math:`\exp(-((x-\mu_j)/h)^2)` for G centres (subtract, scale, square, negate, exp): :math:`5G`."""
        return 5 * check_count("grid_size", grid_size, 1)

    def flops_per_scalar(self) -> int:
        return self.flops(self.grid_size)
