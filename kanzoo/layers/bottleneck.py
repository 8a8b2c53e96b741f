"""Bottleneck KAN convolutions: squeeze with a 1×1 conv, apply the KAN basis conv at the narrow width, then
expand (Drokin, arXiv 2407.01092, section "Bottleneck convolutions")."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ._utils import IntOrTuple, check_probability, fixed_ndim, init_conv_geometry
from .bases import BasisType, create_basis, get_basis_class
from .conv import _DROPOUT, check_input, check_spatial, conv_nd
from .create import LayerType, create_act, create_norm, get_act_layer


def bottleneck_width(in_per_group: int, out_per_group: int, dim_reduction: float, min_internal: int) -> int:
    """Inner width I per group: max(C_in, C_out)/r, raised to ``min(min_internal, C_in, C_out)`` if smaller."""
    inner = int(max(in_per_group / dim_reduction, out_per_group / dim_reduction))
    if inner < min_internal:
        inner = min(min_internal, in_per_group, out_per_group)
    return inner


class BottleneckKANConvNd(nn.Module):
    r"""A KAN convolution computed at a reduced width I.

    .. math::
        z = W_{in} \ast x,\qquad
        y = \sigma_{out}\Big(\mathrm{Norm}\big(W_{base} \star b(x)
            + W_{out} \ast \textstyle\sum_f W_f \star B_f(z)\big)\Big)

    where :math:`\ast` is a grouped 1×1 conv (C_in → I·groups → C_out) and :math:`\star` a grouped conv
    with the layer's kernel, stride, padding and dilation. The basis costs I·F channels instead of
    C_in·F. ``I = max(C_in, C_out)/groups/dim_reduction``, at least ``min(min_internal, C_in/groups,
    C_out/groups)``.

    Arguments are those of :class:`~kanzoo.layers.KANConvNd` plus ``dim_reduction`` and ``min_internal``.

    Attributes:
        weight: base kernels (C_out, C_in/groups, *k).
        inner_weight: (groups·I, C_in/groups, 1, ..); outer_weight: (C_out, I, 1, ..).
        basis_weight: (groups·I, I, F, *k).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        ndim: int = 2,
        basis: BasisType = "gram",
        dim_reduction: float = 4.0,
        min_internal: int = 16,
        base_act: LayerType = None,
        norm_layer: LayerType = None,
        norm_kwargs: Optional[dict] = None,
        act_layer: LayerType = None,
        dropout: float = 0.0,
        device=None,
        dtype=None,
        **basis_kwargs,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        init_conv_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, ndim)
        if not dim_reduction > 0:
            raise ValueError(f"dim_reduction must be > 0, got {dim_reduction!r}")
        cig, cog = in_channels // groups, out_channels // groups
        self.inner_channels = bottleneck_width(cig, cog, dim_reduction, min_internal)
        inner = self.inner_channels

        basis_cls = get_basis_class(basis)
        self.basis = create_basis(basis_cls, inner * groups, groups=groups, **dd, **basis_kwargs)
        self.num_basis = self.basis.num_basis
        self.base_act = get_act_layer(base_act, basis_cls.default_base_act or "identity")()
        norm = basis_cls.default_norm if norm_layer is None else norm_layer
        self.norm = create_norm(norm, out_channels, ndim, **dd, **(norm_kwargs or {}))
        self.act = create_act(act_layer, out_channels, basis_cls.default_act, **dd)
        self.dropout = _DROPOUT[ndim](check_probability(dropout)) if dropout > 0 else nn.Identity()

        ones = (1,) * ndim
        self.weight = nn.Parameter(torch.empty((out_channels, cig) + self.kernel_size, **dd))
        self.inner_weight = nn.Parameter(torch.empty((inner * groups, cig) + ones, **dd))
        self.basis_weight = nn.Parameter(torch.empty((inner * groups, inner, self.num_basis) + self.kernel_size, **dd))
        self.outer_weight = nn.Parameter(torch.empty((out_channels, inner) + ones, **dd))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        k = math.prod(self.kernel_size)
        cig = self.in_channels // self.groups
        for w, fan_in in ((self.weight, cig * k), (self.inner_weight, cig),
                          (self.basis_weight, self.inner_channels * self.num_basis * k),
                          (self.outer_weight, self.inner_channels)):
            bound = math.sqrt(3.0 / fan_in)
            nn.init.uniform_(w, -bound, bound)
        self.basis.reset_parameters(self.inner_channels * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.ndim, self.in_channels, "BottleneckKANConvNd")
        check_spatial(x, self.kernel_size, self.padding, self.dilation, "BottleneckKANConvNd")
        ones = [1] * self.ndim
        zeros = [0] * self.ndim
        base = conv_nd(self.base_act(x), self.weight, self.stride, self.padding, self.dilation, self.groups, self.ndim)
        z = conv_nd(self.dropout(x), self.inner_weight, ones, zeros, ones, self.groups, self.ndim)
        y = conv_nd(self.basis(z, None).flatten(1, 2), self.basis_weight.flatten(1, 2), self.stride, self.padding,
                    self.dilation, self.groups, self.ndim)
        y = conv_nd(y, self.outer_weight, ones, zeros, ones, self.groups, self.ndim)
        return self.act(self.norm(y + base))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"inner_channels={self.inner_channels}")


BottleneckKANConv1d = fixed_ndim(BottleneckKANConvNd, 1, "BottleneckKANConv1d")
BottleneckKANConv2d = fixed_ndim(BottleneckKANConvNd, 2, "BottleneckKANConv2d")
BottleneckKANConv3d = fixed_ndim(BottleneckKANConvNd, 3, "BottleneckKANConv3d")
