"""The selectable KAN layers and what pruning turns them into (the math: :mod:`kanzoo.layers.selectable`).

:class:`SelectableKANLinear` and :class:`SelectableKANConvNd` mix a pool of KAN layers with learnt weights α
per output channel; :class:`PrunedKANLinear` and :class:`PrunedKANConvNd` are what their ``prune()`` returns
when the channels chose different bases. Operations on a whole model live in
:mod:`kanzoo.layers.selectable.ops`.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ...errors import NotPrunedError
from .._utils import IntOrTuple, check_probability, fixed_ndim, init_conv_geometry
from ..bases import get_basis_class
from ..conv import KANConvNd, check_input
from ..create import LayerType, create_act, create_norm
from ..linear import KANLinear, _check_features_arg, check_features

__all__ = [
    "ALPHA_MODES", "DEFAULT_POOL", "PoolType", "PrunedKANConvNd", "PrunedKANLinear", "SELECTABLE_LAYERS",
    "SelectableKANConv1d", "SelectableKANConv2d", "SelectableKANConv3d", "SelectableKANConvNd", "SelectableKANLinear",
    "parse_pool",
]

#: the candidate bases when ``pool`` is not given: B-spline, Chebyshev, Gram, Gaussian RBF and a wavelet
#: (the families the S-KAN abstract names, plus Gram, kanzoo's strongest conv basis)
DEFAULT_POOL: Tuple[str, ...] = ("bspline", "chebyshev", "gram", "rbf", "wavelet")

PoolType = Union[Sequence[Union[str, Tuple[str, Mapping[str, Any]]]], Mapping[str, Mapping[str, Any]]]
ALPHA_MODES = ("softmax", "raw")


def parse_pool(pool: Optional[PoolType]) -> List[Tuple[str, str, Dict[str, Any]]]:
    """Normalises a pool to ``[(label, basis_name, basis_kwargs), ...]``.

    A pool is a sequence of basis names or ``(basis, kwargs)`` pairs (``["gram", ("bspline", {"grid_size":
    8})]``), or a mapping ``{basis: kwargs}``. A label is the basis name, suffixed ``_2``, ``_3`` ... when a
    basis appears more than once (``[("gram", {"degree": 3}), ("gram", {"degree": 5})]`` gives ``gram`` and
    ``gram_2``).
    """
    if pool is None:
        pool = DEFAULT_POOL
    if isinstance(pool, str):
        raise ValueError(f"pool must be a sequence of basis names, got the string {pool!r}; "
                         f"write pool=[{pool!r}] for a one-member pool")
    entries = list(pool.items()) if isinstance(pool, Mapping) else list(pool)
    if not entries:
        raise ValueError("pool is empty; give at least one basis name, e.g. pool=('gram', 'bspline')")
    out: List[Tuple[str, str, Dict[str, Any]]] = []
    seen: Dict[str, int] = {}
    for entry in entries:
        if isinstance(entry, str):
            basis, kwargs = entry, {}
        elif isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str) \
                and isinstance(entry[1], Mapping):
            basis, kwargs = entry[0], dict(entry[1])
        else:
            raise ValueError(f"pool entry {entry!r} is neither a basis name nor a (basis, kwargs) pair")
        get_basis_class(basis)  # raises with the list of known bases
        basis = basis.lower()
        seen[basis] = seen.get(basis, 0) + 1
        label = basis if seen[basis] == 1 else f"{basis}_{seen[basis]}"
        out.append((label, basis, kwargs))
    return out


def _check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0 \
            or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


class _SelectableMixin:
    """The selection state shared by :class:`SelectableKANLinear` and :class:`SelectableKANConvNd`."""

    __jit_unused_properties__ = ["num_members", "is_selected"]

    def _init_selection(self, num_out: int, alpha_mode: str, temperature: float, dd: Dict[str, Any]) -> None:
        if alpha_mode not in ALPHA_MODES:
            raise ValueError(f"alpha_mode must be one of {list(ALPHA_MODES)}, got {alpha_mode!r}")
        self.alpha_mode = alpha_mode
        self.temperature = _check_temperature(temperature)
        m = len(self.labels)
        self.alpha = nn.Parameter(torch.empty(num_out, m, **dd))
        # which members each output channel may use; persistent, so a selective-phase checkpoint keeps it
        self.register_buffer("selected", torch.ones(num_out, m, dtype=torch.bool, device=dd.get("device")))
        self.reset_alpha()

    def reset_alpha(self) -> None:
        """α uniform over the pool: logits 0 (softmax) or 1/M (raw)."""
        with torch.no_grad():
            self.alpha.fill_(0.0 if self.alpha_mode == "softmax" else 1.0 / len(self.labels))

    @property
    def num_members(self) -> int:
        return len(self.labels)

    def mixing_weights(self) -> torch.Tensor:
        r"""α, shape (out, M): ``softmax(alpha / T)`` over each channel's selected members (0 elsewhere), or
        ``alpha`` masked to the selection in ``'raw'`` mode."""
        if self.alpha_mode == "softmax":
            logits = (self.alpha / self.temperature).masked_fill(~self.selected, float("-inf"))
            return torch.softmax(logits, dim=1)
        return self.alpha * self.selected.to(self.alpha.dtype)

    def _scores(self) -> torch.Tensor:
        w = self.mixing_weights().detach()
        return w.abs() if self.alpha_mode == "raw" else w

    @property
    def is_selected(self) -> bool:
        """True once :meth:`select` has narrowed the selection below the whole pool."""
        return bool((~self.selected).any())

    def select(self, top_k: int = 1, mask: Optional[torch.Tensor] = None) -> "_SelectableMixin":
        """Freezes each channel's selection to its ``top_k`` members by α (among those still selected).

        Or, with ``mask`` (bool, (out, M), at least one True per row), to exactly that selection (used to
        restore a checkpoint's selection). The other members stop contributing; in ``'softmax'`` mode α is
        renormalised over the kept ones, so with ``top_k=1`` the kept member's α is exactly 1. Returns self.
        """
        n_out, m = self.selected.shape
        if mask is not None:
            mask = torch.as_tensor(mask, device=self.selected.device)
            if mask.dtype != torch.bool or tuple(mask.shape) != (n_out, m):
                raise ValueError(f"mask must be a bool tensor of shape {(n_out, m)} (out, pool size), got "
                                 f"{mask.dtype} {tuple(mask.shape)}")
            if not bool(mask.any(dim=1).all()):
                raise ValueError("mask leaves some output channel with no basis; every row needs a True")
            self.selected.copy_(mask)
            return self
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        have = int(self.selected.sum(dim=1).min())
        if top_k > have:
            raise ValueError(f"top_k={top_k} but some channel has only {have} selected member(s) left "
                             f"(pool: {self.labels}); pick top_k <= {have}")
        scores = self._scores().masked_fill(~self.selected, float("-inf"))
        idx = scores.topk(top_k, dim=1).indices
        new = torch.zeros_like(self.selected).scatter_(1, idx, True)
        self.selected.copy_(new)
        return self

    def selection(self) -> List[List[str]]:
        """Per output channel, the labels of its selected members (strongest first)."""
        scores = self._scores().masked_fill(~self.selected, float("-inf")).cpu()
        sel = self.selected.cpu()
        out = []
        for o in range(sel.shape[0]):
            order = scores[o].argsort(descending=True).tolist()
            out.append([self.labels[i] for i in order if bool(sel[o, i])])
        return out

    def selection_counts(self, top_k: Optional[int] = None) -> Dict[str, int]:
        """How many output channels use each member: the current selection, or (``top_k``) each channel's
        top-k members by α (what ``select(top_k)`` would keep)."""
        if top_k is None:
            counts = self.selected.sum(dim=0).tolist()
        else:
            scores = self._scores().masked_fill(~self.selected, float("-inf"))
            k = min(int(top_k), self.num_members)
            idx = scores.topk(k, dim=1).indices
            counts = torch.zeros(self.num_members, dtype=torch.long).index_add_(
                0, idx.flatten().cpu(), torch.ones(idx.numel(), dtype=torch.long)).tolist()
        return {label: int(c) for label, c in zip(self.labels, counts)}

    def _profile_flops(self, args, out, convention: str) -> int:
        """What :func:`kanzoo.profile.count` adds for the mixing: M multiplies and M-1 adds per output."""
        return (2 * self.num_members - 1) * out.numel()

    @torch.jit.unused
    def check_exportable(self) -> None:
        """Raises :class:`NotPrunedError`: an unpruned selectable layer is never exported (it runs every
        candidate basis and its selection is not final). ONNX export through ``torch.onnx.export`` calls
        this from ``forward``; kanzoo's exporters call :func:`~kanzoo.layers.selectable.ops.check_exportable`
        on the whole model."""
        raise NotPrunedError(
            f"{type(self).__name__} with pool {self.labels} is not pruned: it runs all {self.num_members} "
            f"candidate bases and its basis selection is not final. Prune it before exporting: "
            f"model = kanzoo.layers.prune_model(model) (or layer.prune()).")

    def _export_guard(self) -> None:
        if not torch.jit.is_scripting():
            if torch.onnx.is_in_onnx_export():
                self.check_exportable()

    def _prune_mask(self, top_k: Optional[int]) -> torch.Tensor:
        if top_k is not None:
            saved = self.selected.clone()
            try:
                return self.select(top_k).selected.clone()
            finally:
                self.selected.copy_(saved)
        if not self.is_selected and self.num_members > 1:
            return self._prune_mask(1)
        return self.selected.clone()

    def _prune_plan(self, top_k: Optional[int]):
        """(mask, α) for pruning, checked to be on a real device."""
        if self.alpha.device.type == "meta":
            raise ValueError("cannot prune a selectable layer on the meta device: the selection depends on "
                             "the values of alpha; build it on a real device (cpu/cuda)")
        mask = self._prune_mask(top_k)
        with torch.no_grad():
            saved = self.selected.clone()
            self.selected.copy_(mask)
            alpha = self.mixing_weights().detach().clone()
            self.selected.copy_(saved)
        return mask, alpha

    def _member_state(self, i: int, channels: torch.Tensor, scale: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Member i's state dict restricted to ``channels`` of the output, with α folded into its weights."""
        state = {k: v.clone() for k, v in self.members[i].state_dict().items()}
        for key in ("weight", "basis_weight", "bias"):
            if key in state:
                w = state[key].index_select(0, channels)
                state[key] = w * scale.view([-1] + [1] * (w.dim() - 1)).to(w.dtype)
        return state

    def _branches(self, mask: torch.Tensor, alpha: torch.Tensor, build) -> Tuple[nn.ModuleList, List[str],
                                                                                    torch.Tensor, bool]:
        """One KAN layer per used member with only its channels, and the gather index that puts every
        channel's member outputs back in place: index (k, out) into the concatenated branch outputs."""
        n_out, m = mask.shape
        branches, labels = nn.ModuleList(), []
        position = torch.full((n_out, m), -1, dtype=torch.long)
        offset = 0
        mask_cpu = mask.cpu()
        for i in range(m):
            channels = mask_cpu[:, i].nonzero().flatten()
            if channels.numel() == 0:
                continue
            dev = self.alpha.device
            branch = build(i, channels.numel())
            branch.load_state_dict(self._member_state(i, channels.to(dev), alpha[channels.to(dev), i]))
            branches.append(branch)
            labels.append(self.labels[i])
            position[channels, i] = torch.arange(offset, offset + channels.numel())
            offset += channels.numel()
        counts = mask_cpu.sum(dim=1)
        k = int(counts.max())
        pad = bool((counts < k).any())
        index = torch.full((k, n_out), offset, dtype=torch.long)  # `offset` = the zero column (pad only)
        for o in range(n_out):
            used = position[o][position[o] >= 0]
            index[: used.numel(), o] = used
        return branches, labels, index.to(self.alpha.device), pad


class SelectableKANLinear(_SelectableMixin, nn.Module):
    r"""A KAN linear layer whose every output feature learns which basis it uses (S-KAN, arXiv 2408.08338).

    .. math::
        y_o = \sigma_{out}\Big(\mathrm{Norm}\big(\textstyle\sum_m \alpha_{om}\,
              \mathrm{KANLinear}_m(x)_o + \beta_o\big)\Big),\qquad
        \alpha_{o\cdot} = \mathrm{softmax}\big(a_{o\cdot}/T\big)\ \text{over the selected members}

    Each member is a :class:`~kanzoo.layers.KANLinear` over one basis of ``pool`` with its paper's base
    branch (``use_base``/``base_act`` override all members), no norm and no activation.

    Args:
        in_features, out_features: feature counts.
        pool: candidate bases (see :func:`parse_pool`); default :data:`DEFAULT_POOL`.
        temperature: T of the softmax (> 0).
        alpha_mode: ``'softmax'`` (default) or ``'raw'`` (α = ``alpha`` itself, initialised to 1/M).
        base_act, use_base, basis_norm, dropout: passed to every member (None: each basis's default).
        bias: a learnable bias β on the mixture.
        norm_layer, norm_kwargs, act_layer: the norm and activation applied once to the mixture
            (default none/identity, as in a plain KAN).

    Shape:
        - Input: (N, \*, in_features); output: (N, \*, out_features).

    Attributes:
        members: ModuleList of KANLinear, one per pool entry (labels in ``labels``).
        alpha: (out, M) mixing logits, initialised so that α is uniform.
        selected: bool buffer (out, M), the members each feature may use (all, until :meth:`select`).
        bias: (out,) or None.

    Examples::
        >>> layer = SelectableKANLinear(8, 4, pool=("gram", "bspline"))
        >>> layer(torch.randn(2, 8)).shape
        torch.Size([2, 4])
        >>> plain = layer.select(1).prune()   # a KANLinear, or a PrunedKANLinear if both bases were chosen
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        pool: Optional[PoolType] = None,
        temperature: float = 1.0,
        alpha_mode: str = "softmax",
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
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        _check_features_arg(in_features, out_features)
        self.in_features, self.out_features = in_features, out_features
        check_probability(dropout)
        spec = parse_pool(pool)
        self.labels = [label for label, _, _ in spec]
        self.bases = [basis for _, basis, _ in spec]
        common = dict(base_act=base_act, use_base=use_base, bias=False, norm_layer="none", act_layer="identity",
                      basis_norm=basis_norm, dropout=dropout)
        self._member_kwargs: List[Dict[str, Any]] = [dict(common, basis=b, **kw) for _, b, kw in spec]
        self.members = nn.ModuleList([KANLinear(in_features, out_features, **dd, **kw) for kw in self._member_kwargs])
        self._init_selection(out_features, alpha_mode, temperature, dd)
        self.bias = nn.Parameter(torch.zeros(out_features, **dd)) if bias else None
        self.norm = create_norm(norm_layer or "none", out_features, 0, **dd, **(norm_kwargs or {}))
        self.act = create_act(act_layer, out_features, "identity", **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._export_guard()
        check_features(x, self.in_features, "SelectableKANLinear")
        alpha = self.mixing_weights()
        y = torch.zeros(0)
        for i, member in enumerate(self.members):
            term = alpha[:, i] * member(x)
            y = term if i == 0 else y + term
        if self.bias is not None:
            y = y + self.bias
        shape = y.shape
        y = self.norm(y.reshape(-1, self.out_features))
        return self.act(y).reshape(shape)

    def prune(self, top_k: Optional[int] = None) -> nn.Module:
        """A plain module with only the chosen members, computing the same function at the selection.

        Uses the current selection (``top_k``: select first, on a copy of the mask; a layer never narrowed
        by :meth:`select` keeps each feature's top-1). If every feature chose the same single basis, the
        result is a :class:`~kanzoo.layers.KANLinear` (this layer's norm, activation and bias moved in, the
        basis label in its ``selected_basis`` attribute); otherwise a :class:`PrunedKANLinear`. α is folded
        into the member weights; self is unchanged.
        """
        mask, alpha = self._prune_plan(top_k)
        dev, dt = self.alpha.device, self.alpha.dtype

        def build(i: int, n: int) -> KANLinear:
            return KANLinear(self.in_features, n, device=dev, dtype=dt, **self._member_kwargs[i])

        branches, labels, index, pad = self._branches(mask, alpha, build)
        norm, act = copy.deepcopy(self.norm), copy.deepcopy(self.act)
        bias = None if self.bias is None else self.bias.detach().clone()
        if len(branches) == 1 and index.shape[0] == 1 and not pad:
            layer = branches[0]  # every channel chose it, in order: the member itself is the layer
            layer.selected_basis = labels[0]
            if bias is not None:
                layer.bias = nn.Parameter(bias)
            layer.norm, layer.act = norm, act
            return layer
        return PrunedKANLinear(self.in_features, self.out_features, branches, labels, index, pad, bias, norm, act)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, pool={self.labels}, alpha_mode={self.alpha_mode!r}, "
                f"temperature={self.temperature}")


class SelectableKANConvNd(_SelectableMixin, nn.Module):
    r"""A KAN convolution whose every output channel learns which basis it uses (S-ConvKAN, arXiv 2408.08338).

    .. math::
        y_o = \sigma_{out}\Big(\mathrm{Norm}\big(\textstyle\sum_m \alpha_{om}\,
              \mathrm{KANConv}_m(x)_o\big)\Big),\qquad
        \alpha_{o\cdot} = \mathrm{softmax}\big(a_{o\cdot}/T\big)\ \text{over the selected members}

    Each member is a :class:`~kanzoo.layers.KANConvNd` (the torch-conv-kan style: the basis is applied to
    the input once and convolved, not unfolded per patch) over one basis of ``pool``, with its paper's
    base branch, no norm and no activation; the norm and activation act on the mixture.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, ndim: as in
            :class:`~kanzoo.layers.KANConvNd`. Only ``groups=1``: pruning regroups output channels by
            basis, which a grouped convolution cannot express.
        pool, temperature, alpha_mode: see :class:`SelectableKANLinear`.
        base_act, use_base, basis_norm, dropout: passed to every member (None: each basis's default).
        norm_layer, norm_kwargs, act_layer: applied once to the mixture (default BatchNorm and SiLU).

    Shape:
        - Input: (N, C_in, \*S); output: (N, C_out, \*S_out), as :class:`~kanzoo.layers.KANConvNd`.

    Attributes:
        members: ModuleList of KANConvNd, one per pool entry (labels in ``labels``).
        alpha: (C_out, M) mixing logits; selected: bool buffer (C_out, M).

    Examples::
        >>> layer = SelectableKANConvNd(3, 8, 3, padding=1, pool=("gram", "chebyshev", "rbf"))
        >>> layer(torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
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
        pool: Optional[PoolType] = None,
        temperature: float = 1.0,
        alpha_mode: str = "softmax",
        base_act: LayerType = None,
        use_base: Optional[bool] = None,
        norm_layer: LayerType = "batch",
        norm_kwargs: Optional[dict] = None,
        act_layer: LayerType = "silu",
        basis_norm: LayerType = None,
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        init_conv_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, ndim)
        if groups != 1:
            raise ValueError(f"SelectableKANConvNd supports groups=1 only, got groups={groups}: pruning regroups "
                             f"output channels by their chosen basis, which a grouped convolution cannot express")
        check_probability(dropout)
        spec = parse_pool(pool)
        self.labels = [label for label, _, _ in spec]
        self.bases = [basis for _, basis, _ in spec]
        common = dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=1, ndim=self.ndim,
                      base_act=base_act, use_base=use_base, norm_layer="none", act_layer="identity",
                      basis_norm=basis_norm, dropout=dropout)
        self._member_kwargs: List[Dict[str, Any]] = [dict(common, basis=b, **kw) for _, b, kw in spec]
        self.members = nn.ModuleList([KANConvNd(in_channels, out_channels, self.kernel_size, **dd, **kw)
                                      for kw in self._member_kwargs])
        self._init_selection(out_channels, alpha_mode, temperature, dd)
        self.norm = create_norm(norm_layer or "none", out_channels, self.ndim, **dd, **(norm_kwargs or {}))
        self.act = create_act(act_layer, out_channels, "identity", **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._export_guard()
        check_input(x, self.ndim, self.in_channels, "SelectableKANConvNd")
        alpha = self.mixing_weights()
        shape = [1, self.out_channels] + [1] * self.ndim
        y = torch.zeros(0)
        for i, member in enumerate(self.members):
            term = alpha[:, i].reshape(shape) * member(x)
            y = term if i == 0 else y + term
        return self.act(self.norm(y))

    def prune(self, top_k: Optional[int] = None) -> nn.Module:
        """A plain module with only the chosen members (see :meth:`SelectableKANLinear.prune`): a
        :class:`~kanzoo.layers.KANConvNd` when every channel chose the same single basis, otherwise a
        :class:`PrunedKANConvNd`. Exact wherever α is one-hot; self is unchanged."""
        mask, alpha = self._prune_plan(top_k)
        dev, dt = self.alpha.device, self.alpha.dtype

        def build(i: int, n: int) -> KANConvNd:
            return KANConvNd(self.in_channels, n, self.kernel_size, device=dev, dtype=dt, **self._member_kwargs[i])

        branches, labels, index, pad = self._branches(mask, alpha, build)
        norm, act = copy.deepcopy(self.norm), copy.deepcopy(self.act)
        if len(branches) == 1 and index.shape[0] == 1 and not pad:
            layer = branches[0]
            layer.selected_basis = labels[0]
            layer.norm, layer.act = norm, act
            return layer
        return PrunedKANConvNd(self.in_channels, self.out_channels, self.ndim, branches, labels, index, pad, norm, act)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, pool={self.labels}, "
                f"alpha_mode={self.alpha_mode!r}, temperature={self.temperature}")


SelectableKANConv1d = fixed_ndim(SelectableKANConvNd, 1, "SelectableKANConv1d")
SelectableKANConv2d = fixed_ndim(SelectableKANConvNd, 2, "SelectableKANConv2d")
SelectableKANConv3d = fixed_ndim(SelectableKANConvNd, 3, "SelectableKANConv3d")


class _PrunedBase(nn.Module):
    """Shared pieces of the pruned containers."""

    def counts(self) -> Dict[str, int]:
        """Output channels computed by each kept basis (a channel with k members counts k times)."""
        return {label: int(_out_size(b)) for label, b in zip(self.labels, self.branches)}


def _out_size(layer: nn.Module) -> int:
    return getattr(layer, "out_channels", None) or getattr(layer, "out_features")


class PrunedKANConvNd(_PrunedBase):
    r"""What :meth:`SelectableKANConvNd.prune` returns when the channels chose different bases.

    One :class:`~kanzoo.layers.KANConvNd` per kept basis computes only the channels that chose it; their
    outputs are concatenated and put back in channel order by a fixed gather:

    .. math::
        z = [\mathrm{KANConv}_{m_1}(x), \ldots, \mathrm{KANConv}_{m_B}(x)],\qquad
        y = \sigma_{out}\Big(\mathrm{Norm}\big(\textstyle\sum_{j<k} z_{:, \mathrm{index}_j}\big)\Big)

    with k the members per channel (1 after ``select(1)``). α is already folded into the branch weights.
    Plain tensor ops only (conv, cat, index_select), so it scripts, traces and exports.

    Attributes:
        branches: ModuleList of KANConvNd (norm none, activation identity), labels in ``labels``.
        index: long buffer (k, C_out) into the concatenated branch outputs (plus one zero column when
            channels have different member counts, ``pad``).
    """

    def __init__(self, in_channels: int, out_channels: int, ndim: int, branches: nn.ModuleList, labels: List[str],
                 index: torch.Tensor, pad: bool, norm: nn.Module, act: nn.Module):
        super().__init__()
        self.in_channels, self.out_channels, self.ndim = in_channels, out_channels, ndim
        self.branches = branches
        self.labels = list(labels)
        self.pad = bool(pad)
        self.register_buffer("index", index)
        self.norm, self.act = norm, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.ndim, self.in_channels, "PrunedKANConvNd")
        outs: List[torch.Tensor] = []
        for branch in self.branches:
            outs.append(branch(x))
        z = torch.cat(outs, dim=1)
        if self.pad:
            z = torch.cat([z, torch.zeros_like(z[:, :1])], dim=1)
        y = z.index_select(1, self.index[0])
        for j in range(1, self.index.shape[0]):
            y = y + z.index_select(1, self.index[j])
        return self.act(self.norm(y))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kept={self.counts()}, "
                f"members_per_channel={self.index.shape[0]}")


class PrunedKANLinear(_PrunedBase):
    r"""What :meth:`SelectableKANLinear.prune` returns when the features chose different bases: one
    :class:`~kanzoo.layers.KANLinear` per kept basis over only its features, concatenated and gathered back
    into place (see :class:`PrunedKANConvNd`), plus the bias, norm and activation of the mixture."""

    def __init__(self, in_features: int, out_features: int, branches: nn.ModuleList, labels: List[str],
                 index: torch.Tensor, pad: bool, bias: Optional[torch.Tensor], norm: nn.Module, act: nn.Module):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.branches = branches
        self.labels = list(labels)
        self.pad = bool(pad)
        self.register_buffer("index", index)
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.norm, self.act = norm, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.in_features, "PrunedKANLinear")
        outs: List[torch.Tensor] = []
        for branch in self.branches:
            outs.append(branch(x))
        z = torch.cat(outs, dim=-1)
        if self.pad:
            z = torch.cat([z, torch.zeros_like(z[..., :1])], dim=-1)
        y = z.index_select(-1, self.index[0])
        for j in range(1, self.index.shape[0]):
            y = y + z.index_select(-1, self.index[j])
        if self.bias is not None:
            y = y + self.bias
        shape = y.shape
        y = self.norm(y.reshape(-1, self.out_features))
        return self.act(y).reshape(shape)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, kept={self.counts()}, "
                f"members_per_channel={self.index.shape[0]}")


SELECTABLE_LAYERS = (SelectableKANLinear, SelectableKANConvNd)
