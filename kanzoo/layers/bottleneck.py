"""Bottleneck KAN convolutions: squeeze with a 1×1 conv, apply the KAN basis conv at the narrow width, then
expand (Drokin, arXiv 2407.01092, section "Bottleneck convolutions")."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from ._utils import IntOrTuple, check_probability, fixed_ndim, init_conv_geometry
from .bases import BasisType, create_basis, get_basis_class
from .conv import _DROPOUT, check_dtype, check_input, check_spatial, conv_nd
from .create import LayerType, create_act, create_norm, get_act_layer


def bottleneck_width(in_per_group: int, out_per_group: int, dim_reduction: float, min_internal: int) -> int:
    """Inner width I per group: max(C_in, C_out)/r, raised to ``min(min_internal, C_in, C_out)`` if smaller."""
    inner = int(max(in_per_group / dim_reduction, out_per_group / dim_reduction))
    if inner < min_internal:
        inner = min(min_internal, in_per_group, out_per_group)
    return inner


class _BottleneckConv(nn.Module):
    r"""What the bottleneck KAN convolutions share: the geometry, the inner width I, the base branch
    :math:`W_{base} \star b(x)`, the 1×1 projections :math:`W_{in}` (C_in → I·groups) and :math:`W_{out}`
    (I·groups → C_out), the norm, the output activation and the dropout on :math:`W_{in}`'s input.

    A subclass supplies the basis convolution at width I between the projections: its own ``basis`` and
    ``basis_weight`` (:class:`BottleneckKANConvNd`) or a mixture of experts
    (:class:`~kanzoo.layers.MoEBottleneckKANConvNd`).
    """

    def _init_bottleneck(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple, stride: IntOrTuple,
                         padding: IntOrTuple, dilation: IntOrTuple, groups: int, ndim: int, basis: BasisType,
                         dim_reduction: float, min_internal: int, base_act: LayerType, norm_layer: LayerType,
                         norm_kwargs: Optional[dict], act_layer: LayerType, dropout: float, dd: dict,
                         basis_kwargs: Optional[dict]) -> None:
        """Sets everything but the subclass's basis convolution. With ``basis_kwargs`` (a dict, possibly empty)
        the layer also gets its own ``basis`` over I·groups channels and ``basis_weight`` (groups·I, I, F, *k);
        with None it gets neither. Modules and parameters are created in a fixed order (state-dict and
        optimizer order): [basis], base_act, norm, act, dropout; weight, inner_weight, [basis_weight],
        outer_weight."""
        init_conv_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, ndim)
        if not dim_reduction > 0:
            raise ValueError(f"dim_reduction must be > 0, got {dim_reduction!r}")
        cig, cog = in_channels // groups, out_channels // groups
        self.inner_channels = inner = bottleneck_width(cig, cog, dim_reduction, min_internal)

        basis_cls = get_basis_class(basis)
        if basis_kwargs is not None:
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
        if basis_kwargs is not None:
            self.basis_weight = nn.Parameter(
                torch.empty((inner * groups, inner, self.num_basis) + self.kernel_size, **dd))
        self.outer_weight = nn.Parameter(torch.empty((out_channels, inner) + ones, **dd))

    def _reset_kernels(self, *inner_kernels: Tuple[torch.Tensor, int]) -> None:
        """Uniform ±sqrt(3/fan_in) (Kaiming, gain 1) for ``weight``, ``inner_weight``, each ``(kernel, fan_in)``
        of ``inner_kernels`` and ``outer_weight``, drawn in that order."""
        cig = self.in_channels // self.groups
        fans = [(self.weight, cig * math.prod(self.kernel_size)), (self.inner_weight, cig), *inner_kernels,
                (self.outer_weight, self.inner_channels)]
        for w, fan_in in fans:
            bound = math.sqrt(3.0 / fan_in)
            nn.init.uniform_(w, -bound, bound)

    def _base_and_inner(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""The base branch :math:`W_{base} \star b(x)` and the squeezed input :math:`z = W_{in} \ast x`."""
        ones, zeros = [1] * self.ndim, [0] * self.ndim
        base = conv_nd(self.base_act(x), self.weight, self.stride, self.padding, self.dilation, self.groups,
                       self.ndim)
        z = conv_nd(self.dropout(x), self.inner_weight, ones, zeros, ones, self.groups, self.ndim)
        return base, z

    def _expand(self, y: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        r""":math:`\sigma_{out}(\mathrm{Norm}(W_{out} \ast y + \text{base}))` for the inner output y."""
        ones, zeros = [1] * self.ndim, [0] * self.ndim
        y = conv_nd(y, self.outer_weight, ones, zeros, ones, self.groups, self.ndim)
        return self.act(self.norm(y + base))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"inner_channels={self.inner_channels}")


class BottleneckKANConvNd(_BottleneckConv):
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
        self._init_bottleneck(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, ndim, basis,
                              dim_reduction, min_internal, base_act, norm_layer, norm_kwargs, act_layer, dropout,
                              dict(device=device, dtype=dtype), basis_kwargs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        k = math.prod(self.kernel_size)
        self._reset_kernels((self.basis_weight, self.inner_channels * self.num_basis * k))
        self.basis.reset_parameters(self.inner_channels * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.ndim, self.in_channels, "BottleneckKANConvNd")
        check_spatial(x, self.kernel_size, self.padding, self.dilation, "BottleneckKANConvNd")
        check_dtype(x, self.basis_weight, "BottleneckKANConvNd")
        base, z = self._base_and_inner(x)
        y = conv_nd(self.basis(z, None).flatten(1, 2), self.basis_weight.flatten(1, 2), self.stride, self.padding,
                    self.dilation, self.groups, self.ndim)
        return self._expand(y, base)


BottleneckKANConv1d = fixed_ndim(BottleneckKANConvNd, 1, "BottleneckKANConv1d")
BottleneckKANConv2d = fixed_ndim(BottleneckKANConvNd, 2, "BottleneckKANConv2d")
BottleneckKANConv3d = fixed_ndim(BottleneckKANConvNd, 3, "BottleneckKANConv3d")
