"""KAN convolutions: one N-d layer over any basis (Drokin, "Kolmogorov-Arnold Convolutions: Design
Principles and Empirical Studies", arXiv 2407.01092)."""
from __future__ import annotations

import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._utils import IntOrTuple, check_probability, fixed_ndim, init_conv_geometry, is_symbolic
from .bases import BasisType, create_basis, get_basis_class
from .create import LayerType, create_act, create_norm, get_act_layer

_DROPOUT = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}


def conv_nd(x: torch.Tensor, weight: torch.Tensor, stride: List[int], padding: List[int],
            dilation: List[int], groups: int, ndim: int) -> torch.Tensor:
    """``F.conv{ndim}d`` without bias."""
    if ndim == 1:
        return F.conv1d(x, weight, None, stride, padding, dilation, groups)
    if ndim == 2:
        return F.conv2d(x, weight, None, stride, padding, dilation, groups)
    return F.conv3d(x, weight, None, stride, padding, dilation, groups)


def check_input(x: torch.Tensor, ndim: int, channels: int, name: str) -> None:
    """Raises a ValueError naming expected vs got for the wrong rank or channel count."""
    if is_symbolic(x):
        return
    if x.dim() != ndim + 2:
        raise ValueError(
            "{} expects a {}-d input (N, C, {}), got shape {}".format(
                name, ndim + 2, ", ".join(["L", "H, W", "D, H, W"][ndim - 1].split(", ")), list(x.shape)))
    if x.shape[1] != channels:
        raise ValueError("{} expects {} input channels, got {} (input shape {})".format(
            name, channels, x.shape[1], list(x.shape)))


def check_dtype(x: torch.Tensor, weight: torch.Tensor, name: str) -> None:
    """Raises a TypeError saying what to do when a floating input's dtype is not the weights' (outside autocast,
    which casts for itself); torch's own message (``expected scalar type Half but found Float``) names neither."""
    if not torch.jit.is_scripting():
        if isinstance(x, torch.fx.Proxy) or x.dtype == weight.dtype or not x.is_floating_point():
            return
        if torch.is_autocast_enabled(x.device.type):
            return
        raise TypeError(f"{name} got a {str(x.dtype)[6:]} input but its weights are {str(weight.dtype)[6:]}: convert "
                        f"the input (x.to({weight.dtype})) or the model (model.to({x.dtype})), or run under "
                        f"torch.autocast")


def check_spatial(x: torch.Tensor, kernel_size: List[int], padding: List[int], dilation: List[int],
                  name: str) -> None:
    """Raises a ValueError when an input is smaller than the (dilated, padded) kernel."""
    if is_symbolic(x):
        return
    for i in range(len(kernel_size)):
        need = dilation[i] * (kernel_size[i] - 1) + 1 - 2 * padding[i]
        if x.shape[2 + i] < need:
            raise ValueError("{} input spatial size {} is smaller than its kernel allows: dim {} needs at least {} "
                             "(kernel_size {}, dilation {}, padding {}); use a larger input or more padding".format(
                                 name, list(x.shape[2:]), i, need, kernel_size, dilation, padding))


class KANConvNd(nn.Module):
    r"""A Kolmogorov-Arnold convolution over a learnable univariate basis.

    Each input channel c is expanded into F basis functions B_f(x_c) and convolved with its own kernels,
    next to an ordinary convolution of the base activation:

    .. math::
        y = \sigma_{out}\Big(\mathrm{Norm}\big(W_{base} \star b(x) + \sum_{f} W_f \star B_f(x)\big)\Big)

    where :math:`\star` is a (grouped) convolution with the layer's stride, padding and dilation.
    In the code both terms run as **one** grouped convolution over the stacked tensor
    ``[b(x), B_0(x), .., B_{F-1}(x)]``, so a layer costs about one convolution with (F+1)·C_in inputs.

    The basis, base activation b, norm and output activation σ_out default to those of the paper that
    introduced each basis: Gram (KAGN): SiLU/SiLU/InstanceNorm; Legendre, Jacobi, Bernstein: identity
    base, SiLU out; Chebyshev: no base, no activation; B-spline: GELU base, PReLU out; RBF (FastKAN):
    SiLU base, no norm or activation, with ``basis_norm`` on its input; ReLU-KAN: SiLU/SiLU.

    Args:
        in_channels, out_channels: channel counts; both divisible by ``groups``.
        kernel_size, stride, padding, dilation: as in :class:`torch.nn.Conv2d` (zero padding).
        groups: channel groups; ``groups == in_channels`` is depthwise.
        ndim: 1, 2 or 3 spatial dims.
        basis: a basis name (see :func:`kanzoo.layers.list_bases`) or class; extra kwargs go to it
            (``degree=3``, ``grid_size=5`` ...).
        base_act: activation of the base branch (None: the basis's default; ``'identity'``: none).
        use_base: include the base branch (None: the basis's default).
        norm_layer: ``'instance'``, ``'batch'``, ``'group'``, ``'layer'``, ``'none'`` or a class
            (None: the basis's default); ``norm_kwargs`` go to it (e.g. ``affine=True``).
        act_layer: output activation (None: the basis's default).
        basis_norm: optional norm (over input channels) applied before the basis, as FastKAN does.
        dropout: channel dropout on the basis input, in training only.
        basis_layout: ``'channel'`` (kanzoo; each group sees its own channels' basis) or
            ``'degree_global'`` (torch-conv-kan's KAGN v2 layout, kept for its checkpoints; see
            docs/compat.md).

    Shape:
        - Input: (N, C_in, *S), S of length ``ndim``.
        - Output: (N, C_out, *S_out), with S_out = floor((S + 2p - d(k-1) - 1)/s + 1).

    Attributes:
        weight: base kernels (C_out, C_in/groups, *k), Kaiming-uniform (gain 1).
        basis_weight: basis kernels (C_out, C_in/groups, F, *k), Kaiming-uniform over C_in/groups·F·k.

    Examples::
        >>> layer = KANConvNd(16, 32, 3, padding=1, basis="gram", degree=3)
        >>> layer(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 32, 8, 8])
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
        base_act: LayerType = None,
        use_base: Optional[bool] = None,
        norm_layer: LayerType = None,
        norm_kwargs: Optional[dict] = None,
        act_layer: LayerType = None,
        basis_norm: LayerType = None,
        dropout: float = 0.0,
        basis_layout: str = "channel",
        device=None,
        dtype=None,
        **basis_kwargs,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        init_conv_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, ndim)
        if basis_layout not in ("channel", "degree_global"):
            raise ValueError(f"basis_layout must be 'channel' or 'degree_global', got {basis_layout!r}")
        self.basis_layout = basis_layout

        basis_cls = get_basis_class(basis)
        self.basis = create_basis(basis_cls, in_channels, groups=groups, **dd, **basis_kwargs)
        self.num_basis = self.basis.num_basis
        self.use_base = basis_cls.default_use_base if use_base is None else bool(use_base)
        self.base_act = get_act_layer(base_act, basis_cls.default_base_act, name="base_act")()
        norm = basis_cls.default_norm if norm_layer is None else norm_layer
        self.norm = create_norm(norm, out_channels, ndim, **dd, **(norm_kwargs or {}))
        self.act = create_act(act_layer, out_channels, basis_cls.default_act, **dd)
        self.basis_norm = (create_norm(basis_norm, in_channels, ndim, name="basis_norm", **dd) if basis_norm is not None
                           else nn.Identity())
        self.dropout = _DROPOUT[ndim](check_probability(dropout)) if dropout > 0 else nn.Identity()

        cig = in_channels // groups
        if self.use_base:
            self.weight = nn.Parameter(torch.empty((out_channels, cig) + self.kernel_size, **dd))
        else:
            self.register_parameter("weight", None)
        self.basis_weight = nn.Parameter(torch.empty((out_channels, cig, self.num_basis) + self.kernel_size, **dd))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        k = math.prod(self.kernel_size)
        cig = self.in_channels // self.groups
        if self.weight is not None:
            nn.init.uniform_(self.weight, -math.sqrt(3.0 / (cig * k)), math.sqrt(3.0 / (cig * k)))
        bound = math.sqrt(3.0 / (cig * self.num_basis * k))
        nn.init.uniform_(self.basis_weight, -bound, bound)
        self.basis.reset_parameters(cig * k)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return conv_nd(x, weight, self.stride, self.padding, self.dilation, self.groups, self.ndim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.ndim, self.in_channels, "KANConvNd")
        check_spatial(x, self.kernel_size, self.padding, self.dilation, "KANConvNd")
        check_dtype(x, self.basis_weight, "KANConvNd")
        z = self.dropout(self.basis_norm(x))
        w = self.basis_weight
        if self.weight is not None and self.basis_layout == "channel":
            # base and basis branch as one grouped conv over [b(x), B_0(x), ..]
            stacked = self.basis(z, self.base_act(x))
            w = torch.cat([self.weight.unsqueeze(2), w], dim=2)
            y = self._conv(stacked.flatten(1, 2), w.flatten(1, 2))
        else:
            stacked = self.basis(z, None)
            if self.basis_layout == "degree_global":
                stacked = stacked.transpose(1, 2)
            y = self._conv(stacked.flatten(1, 2), w.flatten(1, 2))
            if self.weight is not None:
                y = y + self._conv(self.base_act(x), self.weight)
        return self.act(self.norm(y))

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, use_base={self.use_base}")
        if self.basis_layout != "channel":
            s += f", basis_layout={self.basis_layout!r}"
        return s


KANConv1d = fixed_ndim(KANConvNd, 1, "KANConv1d")
KANConv2d = fixed_ndim(KANConvNd, 2, "KANConv2d")
KANConv3d = fixed_ndim(KANConvNd, 3, "KANConv3d")
