"""KAN linear layers: the fully connected counterparts of :class:`~kanzoo.layers.KANConvNd` (Liu et al., "KAN:
Kolmogorov-Arnold Networks", arXiv 2404.19756; the basis variants follow torch-conv-kan's ``kans``)."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._utils import check_probability, is_symbolic
from .bases import BasisType, create_basis, get_basis_class
from .bases.wavelet import check_wavelet, wavelet
from .bottleneck import bottleneck_width
from .create import LayerType, create_act, create_norm, get_act_layer


def check_features(x: torch.Tensor, features: int, name: str) -> None:
    """Raises a ValueError naming expected vs got for a too-small rank or a wrong last-dim size."""
    if is_symbolic(x):
        return
    if x.dim() < 2:
        raise ValueError("{} expects an input of shape (N, ..., {}) with at least 2 dims, got shape {}".format(
            name, features, list(x.shape)))
    if x.shape[-1] != features:
        raise ValueError("{} expects {} input features in the last dim, got {} (input shape {})".format(
            name, features, x.shape[-1], list(x.shape)))


def _check_features_arg(in_features: int, out_features: int) -> None:
    for name, v in (("in_features", in_features), ("out_features", out_features)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def _linear_norm_name(basis_default: LayerType) -> LayerType:
    # a conv's per-sample InstanceNorm becomes a LayerNorm over the features of a linear layer
    return "layer" if basis_default == "instance" else basis_default


def _uniform_(w: torch.Tensor, fan_in: int) -> None:
    bound = math.sqrt(3.0 / max(fan_in, 1))
    nn.init.uniform_(w, -bound, bound)


class KANLinear(nn.Module):
    r"""A Kolmogorov-Arnold fully connected layer over a learnable univariate basis.

    Each input feature i is expanded into F basis functions B_f(x_i), each with its own weight per
    output, next to an ordinary linear map of the base activation:

    .. math::
        y_o = \sigma_{out}\Big(\mathrm{Norm}\big(\textstyle\sum_i W^{base}_{oi}\, b(x_i) + \beta_o
              + \sum_{i,f} W_{oif}\, B_f(x_i)\big)\Big)_o

    In the code both terms are **one** matmul over the stacked tensor ``[b(x), B_0(x), .., B_{F-1}(x)]``
    of shape (N, in, F+1), so a layer costs about one ``nn.Linear`` with (F+1)·in inputs.

    The base activation b, norm and output activation σ_out default to those of the paper that
    introduced each basis (see :class:`~kanzoo.layers.KANConvNd`), except that the conv's
    InstanceNorm default becomes a LayerNorm over the output features here. Chebyshev has no base
    branch; RBF (FastKAN) has no norm and no activation; wavelet uses BatchNorm1d.

    Args:
        in_features, out_features: feature counts.
        basis: a basis name (see :func:`kanzoo.layers.list_bases`) or class; extra kwargs go to it
            (``degree=3``, ``grid_size=5`` ...).
        base_act: activation of the base branch (None: the basis's default; ``'identity'``: none).
        use_base: include the base branch (None: the basis's default).
        bias: add a learnable bias β before the norm.
        norm_layer: ``'layer'``, ``'batch'`` (BatchNorm1d), ``'none'`` or a class (None: the basis's
            default); ``norm_kwargs`` go to it.
        act_layer: output activation (None: the basis's default; ``'prelu'`` has one slope per output).
        basis_norm: optional norm over the input features applied before the basis (FastKAN: ``'layer'``).
        dropout: dropout on the basis input, in training only.

    Shape:
        - Input: (N, \*, in_features), at least 2 dims; leading dims are flattened into the batch
          (they share the statistics of a BatchNorm and of a batch-wide min/max).
        - Output: (N, \*, out_features).

    Attributes:
        weight: base weights (out, in), uniform ±sqrt(3/in); None without a base branch.
        basis_weight: (out, in, F), uniform ±sqrt(3/(in·F)).
        bias: (out,) or None.

    Examples::
        >>> layer = KANLinear(16, 32, basis="gram", degree=3)
        >>> layer(torch.randn(4, 10, 16)).shape
        torch.Size([4, 10, 32])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        basis: BasisType = "gram",
        base_act: LayerType = None,
        use_base: Optional[bool] = None,
        bias: bool = False,
        norm_layer: LayerType = None,
        norm_kwargs: Optional[dict] = None,
        act_layer: LayerType = None,
        basis_norm: LayerType = None,
        dropout: float = 0.0,
        device=None,
        dtype=None,
        **basis_kwargs,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        _check_features_arg(in_features, out_features)
        self.in_features, self.out_features = in_features, out_features

        basis_cls = get_basis_class(basis)
        self.basis = create_basis(basis_cls, in_features, **dd, **basis_kwargs)
        self.num_basis = self.basis.num_basis
        self.use_base = basis_cls.default_use_base if use_base is None else bool(use_base)
        self.base_act = get_act_layer(base_act, basis_cls.default_base_act)()
        norm = _linear_norm_name(basis_cls.default_norm) if norm_layer is None else norm_layer
        self.norm = create_norm(norm, out_features, 0, **dd, **(norm_kwargs or {}))
        self.act = create_act(act_layer, out_features, basis_cls.default_act, **dd)
        self.basis_norm = create_norm(basis_norm, in_features, 0, **dd) if basis_norm is not None else nn.Identity()
        self.dropout = nn.Dropout(check_probability(dropout)) if dropout > 0 else nn.Identity()

        if self.use_base:
            self.weight = nn.Parameter(torch.empty(out_features, in_features, **dd))
        else:
            self.register_parameter("weight", None)
        self.basis_weight = nn.Parameter(torch.empty(out_features, in_features, self.num_basis, **dd))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **dd))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            _uniform_(self.weight, self.in_features)
        _uniform_(self.basis_weight, self.in_features * self.num_basis)
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)
        self.basis.reset_parameters(self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.in_features, "KANLinear")
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        z = self.dropout(self.basis_norm(x))
        if self.weight is not None:
            # base and basis branch as one matmul over [b(x), B_0(x), ..]
            stacked = self.basis(z, self.base_act(x))
            w = torch.cat([self.weight.unsqueeze(2), self.basis_weight], dim=2)
        else:
            stacked = self.basis(z, None)
            w = self.basis_weight
        y = F.linear(stacked.flatten(1), w.flatten(1), self.bias)
        if is_symbolic(x):  # an fx proxy has no list of sizes; reshape below keeps ONNX's dynamic batch
            return self.act(self.norm(y)).unflatten(0, lead)
        return self.act(self.norm(y)).reshape(list(lead) + [self.out_features])

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, use_base={self.use_base}, "
                f"bias={self.bias is not None}")


class BottleneckKANLinear(nn.Module):
    r"""A KAN linear layer whose basis runs at a reduced width I.

    .. math::
        z = W_{in} x + \beta_{in},\qquad
        y = \sigma_{out}\Big(\mathrm{Norm}\big(W^{base} b(x)
            + W_{out} \textstyle\sum_{f} W_f B_f(z) + \beta_{out}\big)\Big)

    with :math:`W_{in}` (I, in), :math:`W_f` (I, I) per basis function and :math:`W_{out}` (out, I).
    The basis costs I·F features instead of in·F. ``I = max(in, out)/dim_reduction``, raised to
    ``min(min_internal, in, out)`` when smaller (torch-conv-kan's ``BottleNeckGRAMLayer`` rule).

    Arguments are those of :class:`KANLinear` (without ``bias`` and ``basis_norm``) plus
    ``dim_reduction`` (default 8) and ``min_internal`` (default 16).

    Shape:
        - Input: (N, \*, in_features); output: (N, \*, out_features).

    Attributes:
        weight: base weights (out, in), or None without a base branch.
        inner_weight (I, in), inner_bias (I,): the squeeze projection.
        basis_weight: (I, I, F).
        outer_weight (out, I), outer_bias (out,): the expand projection.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        basis: BasisType = "gram",
        dim_reduction: float = 8.0,
        min_internal: int = 16,
        base_act: LayerType = None,
        use_base: Optional[bool] = None,
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
        _check_features_arg(in_features, out_features)
        if isinstance(dim_reduction, bool) or not isinstance(dim_reduction, (int, float)) or not dim_reduction > 0:
            raise ValueError(f"dim_reduction must be a number > 0, got {dim_reduction!r}")
        if isinstance(min_internal, bool) or not isinstance(min_internal, int) or min_internal < 1:
            raise ValueError(f"min_internal must be an int >= 1, got {min_internal!r}")
        self.in_features, self.out_features = in_features, out_features
        self.inner_features = bottleneck_width(in_features, out_features, dim_reduction, min_internal)
        inner = self.inner_features

        basis_cls = get_basis_class(basis)
        self.basis = create_basis(basis_cls, inner, **dd, **basis_kwargs)
        self.num_basis = self.basis.num_basis
        self.use_base = basis_cls.default_use_base if use_base is None else bool(use_base)
        self.base_act = get_act_layer(base_act, basis_cls.default_base_act)()
        norm = _linear_norm_name(basis_cls.default_norm) if norm_layer is None else norm_layer
        self.norm = create_norm(norm, out_features, 0, **dd, **(norm_kwargs or {}))
        self.act = create_act(act_layer, out_features, basis_cls.default_act, **dd)
        self.dropout = nn.Dropout(check_probability(dropout)) if dropout > 0 else nn.Identity()

        if self.use_base:
            self.weight = nn.Parameter(torch.empty(out_features, in_features, **dd))
        else:
            self.register_parameter("weight", None)
        self.inner_weight = nn.Parameter(torch.empty(inner, in_features, **dd))
        self.inner_bias = nn.Parameter(torch.empty(inner, **dd))
        self.basis_weight = nn.Parameter(torch.empty(inner, inner, self.num_basis, **dd))
        self.outer_weight = nn.Parameter(torch.empty(out_features, inner, **dd))
        self.outer_bias = nn.Parameter(torch.empty(out_features, **dd))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        inner = self.inner_features
        if self.weight is not None:
            _uniform_(self.weight, self.in_features)
        _uniform_(self.inner_weight, self.in_features)
        _uniform_(self.basis_weight, inner * self.num_basis)
        _uniform_(self.outer_weight, inner)
        nn.init.zeros_(self.inner_bias)
        nn.init.zeros_(self.outer_bias)
        self.basis.reset_parameters(inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.in_features, "BottleneckKANLinear")
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        z = F.linear(self.dropout(x), self.inner_weight, self.inner_bias)
        y = F.linear(self.basis(z, None).flatten(1), self.basis_weight.flatten(1))
        y = F.linear(y, self.outer_weight, self.outer_bias)
        if self.weight is not None:
            y = y + F.linear(self.base_act(x), self.weight)
        if is_symbolic(x):  # an fx proxy has no list of sizes; reshape below keeps ONNX's dynamic batch
            return self.act(self.norm(y)).unflatten(0, lead)
        return self.act(self.norm(y)).reshape(list(lead) + [self.out_features])

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, inner_features={self.inner_features}, "
                f"use_base={self.use_base}")


class WaveletKANLinear(nn.Module):
    r"""Wav-KAN's fully connected layer: every (output, input) edge has its own dilated, translated wavelet.

    .. math::
        u_{noi} = \frac{x_{ni} - \tau_{oi}}{s_{oi}},\qquad
        y_{no} = \sigma_{out}\Big(\mathrm{Norm}\big(\textstyle\sum_i W_{oi}\, w_i\, \psi(u_{noi})
                 + \sum_i W^{base}_{oi}\, b(x_{ni})\big)\Big)

    with ψ one of :func:`kanzoo.layers.bases.wavelet.wavelet` (``mexican_hat``, ``morlet``, ``dog``,
    ``meyer``, ``shannon``). :math:`w_i = 1`, except for ``shannon``, where w is the symmetric Hamming
    window of length ``in_features`` over the input index (as in Wav-KAN and torch-conv-kan). The
    pairwise tensor u is (N, out, in); no larger intermediate is formed. Defaults follow Wav-KAN: SiLU
    base branch, BatchNorm1d, no output activation. For a wavelet basis shared by all outputs, use
    ``KANLinear(basis='wavelet')`` instead.

    Args:
        in_features, out_features: feature counts.
        wavelet_type: the mother wavelet.
        base_act, use_base, norm_layer, norm_kwargs, act_layer, dropout: as in :class:`KANLinear`
            (dropout applies to the wavelet path's input only).

    Shape:
        - Input: (N, \*, in_features); output: (N, \*, out_features).

    Attributes:
        scale (out, in): dilations s, initialised to 1.
        translation (out, in): translations τ, initialised to 0.
        wavelet_weight (out, in): W, uniform ±sqrt(3/in).
        weight (out, in): base weights, or None without a base branch.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        wavelet_type: str = "mexican_hat",
        base_act: LayerType = "silu",
        use_base: bool = True,
        norm_layer: LayerType = "batch",
        norm_kwargs: Optional[dict] = None,
        act_layer: LayerType = None,
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        _check_features_arg(in_features, out_features)
        self.in_features, self.out_features = in_features, out_features
        self.wavelet_type = check_wavelet(wavelet_type)
        self.use_base = bool(use_base)
        self.base_act = get_act_layer(base_act, "silu")()
        self.norm = create_norm(norm_layer, out_features, 0, **dd, **(norm_kwargs or {}))
        self.act = create_act(act_layer, out_features, "identity", **dd)
        self.dropout = nn.Dropout(check_probability(dropout)) if dropout > 0 else nn.Identity()

        self.scale = nn.Parameter(torch.empty(out_features, in_features, **dd))
        self.translation = nn.Parameter(torch.empty(out_features, in_features, **dd))
        self.wavelet_weight = nn.Parameter(torch.empty(out_features, in_features, **dd))
        if self.use_base:
            self.weight = nn.Parameter(torch.empty(out_features, in_features, **dd))
        else:
            self.register_parameter("weight", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.scale)
        nn.init.zeros_(self.translation)
        _uniform_(self.wavelet_weight, self.in_features)
        if self.weight is not None:
            _uniform_(self.weight, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.in_features, "WaveletKANLinear")
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        u = (self.dropout(x).unsqueeze(1) - self.translation) / self.scale  # (N, out, in)
        w = self.wavelet_weight
        if self.wavelet_type == "shannon":
            w = w * torch.hamming_window(self.in_features, periodic=False, dtype=x.dtype, device=x.device)
        y = torch.einsum("noi,oi->no", wavelet(u, self.wavelet_type), w)
        if self.weight is not None:
            y = y + F.linear(self.base_act(x), self.weight)
        if is_symbolic(x):  # an fx proxy has no list of sizes; reshape below keeps ONNX's dynamic batch
            return self.act(self.norm(y)).unflatten(0, lead)
        return self.act(self.norm(y)).reshape(list(lead) + [self.out_features])

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, wavelet_type={self.wavelet_type!r}, "
                f"use_base={self.use_base}")
