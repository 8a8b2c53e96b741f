"""The B-spline KAN linear layer of efficient-kan (Blealtan/efficient-kan), as U-KAN uses it (Li et al., "U-KAN
Makes Strong Backbone for Medical Image Segmentation and Generation", arXiv 2406.02918; KAN: Liu et al.,
arXiv 2404.19756)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._utils import is_symbolic
from .bases.bspline import BSplineBasis
from .create import LayerType, get_act_layer
from .linear import _check_features_arg, check_features


class SplineKANLinear(nn.Module):
    r"""A B-spline KAN linear layer with a base branch and a standalone spline scale per edge (efficient-kan).

    .. math::
        y_o = \sum_i W^{base}_{oi}\, b(x_i) + \sum_i S_{oi} \sum_{j=0}^{G+K-1} W^{spline}_{oij}\, B_{j,K}(x_i)

    with b the base activation (SiLU) and :math:`B_{j,K}` the order-K B-splines over G intervals of
    ``grid_range`` extended by K knots on both sides (:class:`~kanzoo.layers.bases.BSplineBasis` with
    efficient-kan's float32 knots, ``knot_rule='arange'``, and knot differences in the input dtype). No bias.
    The spline matmul accumulates onto the base branch's output (``addmm``). The basis is evaluated
    locally (``local=True``): only the K+1 nonzero splines per input, same values as the full recursion,
    and training keeps only the input for the basis's backward.

    Compared with :class:`~kanzoo.layers.KANLinear` (``basis='bspline'``), this layer keeps efficient-kan's
    parametrisation, so checkpoints and training recipes of efficient-kan/U-KAN carry over: the spline
    coefficient of edge (o, i) is ``spline_weight[o, i] * spline_scaler[o, i]``, and there is no norm or
    output activation.

    Args:
        in_features, out_features: feature counts.
        grid_size: G, intervals inside ``grid_range`` (U-KAN: 5).
        spline_order: K (U-KAN: 3).
        grid_range: (lo, hi) (U-KAN: (-1, 1)).
        base_act: base activation (default SiLU).
        scale_noise, scale_base, scale_spline: initialisation scales (efficient-kan's): ``spline_weight`` is
            the least-squares spline through uniform noise of amplitude ``scale_noise / G`` at the G+1 grid
            points; ``base_weight`` and ``spline_scaler`` are Kaiming-uniform with a = √5·scale.
        local: local B-spline evaluation (default); ``False`` runs the full Cox-de Boor recursion.

    Shape:
        - Input: (N, \*, in_features), at least 2 dims.
        - Output: (N, \*, out_features).

    Attributes:
        base_weight: (out, in).
        spline_weight: (out, in, G+K).
        spline_scaler: (out, in).
        basis: the :class:`~kanzoo.layers.bases.BSplineBasis`, with the knots in its ``grid`` buffer (G+2K+1,).

    Examples::
        >>> layer = SplineKANLinear(16, 32)
        >>> layer(torch.randn(4, 10, 16)).shape
        torch.Size([4, 10, 32])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: Sequence[float] = (-1.0, 1.0),
        base_act: LayerType = "silu",
        scale_noise: float = 0.1,
        scale_base: float = 1.0,
        scale_spline: float = 1.0,
        local: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        _check_features_arg(in_features, out_features)
        self.in_features, self.out_features = in_features, out_features
        self.basis = BSplineBasis(grid_size, spline_order, grid_range, knot_rule="arange", float32_differences=False,
                                  local=local, device=device)
        self.num_basis = self.basis.num_basis
        self.base_act = get_act_layer(base_act, "silu", name="base_act")()
        self.scale_noise, self.scale_base = float(scale_noise), float(scale_base)
        self.scale_spline = float(scale_spline)
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features, **dd))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, self.num_basis, **dd))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features, **dd))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5) * self.scale_base)
        nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5) * self.scale_spline)
        if self.spline_weight.is_meta:
            return
        with torch.no_grad():
            # least-squares spline through noise sampled at the G+1 grid points t_K .. t_{K+G}
            b = self.basis
            pts = b.grid[b.spline_order:b.grid.shape[0] - b.spline_order].double()
            A = b.values(pts.view(-1, 1)).squeeze(1)  # (G+1, F)
            noise = (torch.rand(pts.shape[0], self.in_features * self.out_features, dtype=torch.float64,
                                device=pts.device) - 0.5) * (self.scale_noise / b.grid_size)
            coef = torch.linalg.pinv(A) @ noise  # (F, in·out), the minimum-norm least-squares solution
            w = coef.view(self.num_basis, self.in_features, self.out_features).permute(2, 1, 0)
            self.spline_weight.copy_(w)

    def scaled_spline_weight(self) -> torch.Tensor:
        """The spline coefficients the forward uses: ``spline_weight * spline_scaler[..., None]``."""
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.in_features, "SplineKANLinear")
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        base = F.linear(self.base_act(x), self.base_weight)
        bases = self.basis(x).flatten(1)  # (N, in·F), feature-major: i·F + j
        y = torch.addmm(base, bases, self.scaled_spline_weight().flatten(1).t())
        if is_symbolic(x):  # an fx proxy has no list of sizes; reshape below keeps ONNX's dynamic batch
            return y.unflatten(0, lead)
        return y.reshape(list(lead) + [self.out_features])

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, local={self.basis.local}"
