"""ReLU-KAN basis (Qiu et al., "ReLU-KAN: New Kolmogorov-Arnold Networks that Only Need Matrix Addition,
Dot Multiplication, and ReLU", arXiv 2406.02075)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from . import kernels as KK
from .base import Basis, KernelFirst, cat_basis, check_count


# ------------------------------------------------------------------------------------------------ compiled kernel
# x: (N, C, S) (spatial dims flattened); low, high: the phases as (1, C, F, 1); r: the bump scale.
def _values_kernel(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, r: float) -> torch.Tensor:
    xe = x.unsqueeze(2)
    a = torch.relu(xe - low) * torch.relu(high - xe) * r
    return a * a


def _backward_kernel(x: torch.Tensor, grad: torch.Tensor, low: torch.Tensor, high: torch.Tensor, r: float):
    """With p = ReLU(x - l), q = ReLU(h - x), a = r·p·q and w = grad·2a·r (zero wherever p or q is):
    dL/dx = sum_j w (q - p), dL/dl = -sum_{n,s} w q, dL/dh = sum_{n,s} w p."""
    xe = x.unsqueeze(2)
    p = torch.relu(xe - low)
    q = torch.relu(high - xe)
    w = grad * (p * q * r) * (2.0 * r)
    return (w * (q - p)).sum(dim=2), -(w * q).sum(dim=(0, 3), keepdim=True), (w * p).sum(dim=(0, 3), keepdim=True)


KERNEL = KK.ParamBasisKernel(_values_kernel, _backward_kernel)


class ReLUBasis(KernelFirst, Basis):
    r"""Squared products of two ReLUs: smooth bumps with learnable per-channel phases.

    .. math:: B_{c,j}(x) = \big(r\,\mathrm{ReLU}(x - l_{c,j})\,\mathrm{ReLU}(h_{c,j} - x)\big)^2,\quad
              r = \frac{4g^2}{(k+1)^2}

    with initial phases :math:`l_{c,j} = (j-k)/g` and :math:`h_{c,j} = l_{c,j} + (k+1)/g` for
    j = 0..g+k-1 (``num_basis = g + k``), so each bump peaks at 1.

    Args:
        num_channels: input channels C (each has its own phases).
        g: grid intervals; k: bump width in intervals.
        train_phases: learn ``phase_low``/``phase_high`` (shape (C, g+k)).

    Large float inputs run the basis as one compiled kernel and its gradients (input and phases) as another,
    keeping only x and the phases for backward (``KANZOO_BASIS_KERNEL``, :mod:`kanzoo.layers.bases.kernels`);
    TorchScript, tracing and export take the eager formula.
    """

    name = "relu"
    model_tag = "relukan"
    upstream_names = {"conv": "ReLUKAN", "bottleneck": "BottleNeckReLUKAN", "linear": "ReLUKAN-linear"}
    needs_channels = True

    def __init__(self, num_channels: int, g: int = 5, k: int = 3, train_phases: bool = True,
                 device=None, dtype=None):
        super().__init__()
        for name, v in (("g", g), ("k", k)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ReLU-KAN {name} must be an int >= 1, got {v!r}")
        self.g, self.k = g, k
        self.num_basis = g + k
        self.r = 4.0 * g * g / ((k + 1.0) * (k + 1.0))
        # phases computed in float64, then rounded once to the layer's dtype (float64 layers get exact values)
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        low = torch.arange(-k, g, dtype=torch.float64, device=device) / g
        high = low + (k + 1) / g
        low = low.expand(num_channels, -1).clone().to(dtype)
        high = high.expand(num_channels, -1).clone().to(dtype)
        self.phase_low = nn.Parameter(low, requires_grad=train_phases)
        self.phase_high = nn.Parameter(high, requires_grad=train_phases)

    @torch.jit.unused
    def _forward_kernel(self, x: torch.Tensor, prefix: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The compiled kernel where the switch and the input allow it, else None."""
        kernel = KK.basis_kernel_for(x, prefix, self.num_basis)
        low, high = self.phase_low, self.phase_high
        if kernel is None or low.dtype != x.dtype or KK.eager_only(low):
            return None
        return KERNEL(x, prefix, (low, high), (self.r,), self.num_basis, kernel)

    def forward_eager(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The basis by the eager formula (TorchScript, tracing, export, small inputs)."""
        shape = [1, self.phase_low.shape[0], self.num_basis] + [1] * (x.dim() - 2)
        xe = x.unsqueeze(2)
        a = torch.relu(xe - self.phase_low.view(shape)) * torch.relu(self.phase_high.view(shape) - xe) * self.r
        return cat_basis(a * a, prefix)

    def extra_repr(self) -> str:
        return f"num_channels={self.phase_low.shape[0]}, g={self.g}, k={self.k}"

    @classmethod
    def flops(cls, g: int = 5, k: int = 3, **_: object) -> int:
        r""":math:`(r\,\mathrm{ReLU}(x-l_j)\,\mathrm{ReLU}(h_j-x))^2` for g+k bumps (7 each): :math:`7(g+k)`."""
        return 7 * (check_count("g", g, 1) + check_count("k", k, 1))

    def flops_per_scalar(self) -> int:
        return self.flops(self.g, self.k)
