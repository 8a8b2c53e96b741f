r"""Selectable KAN layers: every output channel learns which basis it uses.

S-KAN / S-ConvKAN (Yang, Zhang, Luo, Lu, Shen, "Activation Space Selectable Kolmogorov-Arnold Networks",
arXiv 2408.08338) give each KAN node a pool of candidate activation families (B-spline, Chebyshev, wavelet,
RBF, ...), train them in a learnable weighted combination, keep the strongest and prune the rest. The paper
publishes no code; what kanzoo implements, and which parts are its own choices, is written down in
docs/selectable.md. In short, for a pool of M kanzoo bases:

.. math::
    y_o = \sigma_{out}\Big(\mathrm{Norm}\big(\textstyle\sum_{m=1}^{M} \alpha_{om}\,\mathrm{KAN}_m(x)_o\big)\Big),
    \qquad \alpha_{o\cdot} = \mathrm{softmax}\big(a_{o\cdot} / T\big)

where every :math:`\mathrm{KAN}_m` is a full kanzoo KAN layer (:class:`~kanzoo.layers.KANConvNd` or
:class:`~kanzoo.layers.KANLinear`, base branch included) over basis m, without its own norm and output
activation, and :math:`a` (``alpha``, shape (out, M)) is learnt. The norm and activation act on the
mixture, once. Training runs in three phases (:class:`SelectionSchedule`):

1. full training: every member of every channel is active;
2. selective training: :meth:`~SelectableKANLinear.select` keeps each channel's top-k members (α is
   renormalised over them; with k = 1 it is exactly 1);
3. pruning: :meth:`~SelectableKANLinear.prune` returns a plain module that holds, per chosen basis, one KAN
   layer with only the channels that chose it (α folded into their weights), so the compute drops.

Because each member is linear in its own weights before the norm, folding α is exact: pruning changes no
output wherever α is one-hot (in particular after ``select(1)``).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..errors import NotPrunedError
from ._utils import IntOrTuple, check_probability, fixed_ndim, init_conv_geometry
from .bases import get_basis_class
from .conv import KANConvNd, check_input
from .create import LayerType, create_act, create_norm
from .linear import KANLinear, check_features

__all__ = [
    "DEFAULT_POOL", "NotPrunedError", "PrunedKANConvNd", "PrunedKANLinear", "SelectableKANConv1d",
    "SelectableKANConv2d", "SelectableKANConv3d", "SelectableKANConvNd", "SelectableKANLinear", "SelectionSchedule",
    "check_exportable", "masks_from_spec", "masks_to_spec", "prune_masks", "prune_model", "select_model",
    "selectable_layers", "selection_summary",
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
        this from ``forward``; kanzoo's exporters call :func:`check_exportable` on the whole model."""
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
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features <= 0:
            raise ValueError(f"in_features must be a positive int, got {in_features!r}")
        if isinstance(out_features, bool) or not isinstance(out_features, int) or out_features <= 0:
            raise ValueError(f"out_features must be a positive int, got {out_features!r}")
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
        return f"{self.in_channels}, {self.out_channels}, kept={self.counts()}, members_per_channel={self.index.shape[0]}"


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
        return f"{self.in_features}, {self.out_features}, kept={self.counts()}, members_per_channel={self.index.shape[0]}"


SELECTABLE_LAYERS = (SelectableKANLinear, SelectableKANConvNd)


# ---------------------------------------------------------------------------------------------- model level
def selectable_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, layer)`` for every unpruned selectable layer in ``model`` (``''`` for the model itself)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SELECTABLE_LAYERS)]


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def select_model(model: nn.Module, top_k: int = 1,
                 masks: Optional[Mapping[str, Any]] = None) -> Dict[str, Dict[str, int]]:
    """Calls ``select(top_k)`` on every selectable layer (or restores ``masks``: layer name -> bool (out, M)
    tensor or nested list, as :attr:`SelectionSchedule.masks` records them). Returns
    :func:`selection_summary`."""
    layers = selectable_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no selectable KAN layers to select in")
    if masks is not None:
        missing = sorted(set(n for n, _ in layers) - set(masks))
        if missing:
            raise ValueError(f"masks has no entry for the selectable layers {missing}")
    for name, layer in layers:
        if masks is not None:
            layer.select(mask=torch.as_tensor(masks[name], dtype=torch.bool, device=layer.selected.device))
        else:
            layer.select(top_k)
    return selection_summary(model)


def prune_model(model: nn.Module, top_k: Optional[int] = None) -> nn.Module:
    """Replaces every selectable layer of ``model`` by its :meth:`prune` result, in place, and returns the
    model (the pruned layer itself when ``model`` is a selectable layer). The parameters change: rebuild the
    optimizer (and any EMA copy) afterwards."""
    if isinstance(model, SELECTABLE_LAYERS):
        return model.prune(top_k)
    layers = selectable_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no selectable KAN layers to prune")
    for name, layer in layers:
        _replace(model, name, layer.prune(top_k))
    return model


def prune_masks(model: nn.Module, top_k: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """Per selectable layer of ``model``, the bool (out, M) mask of the members :func:`prune_model` (with the
    same ``top_k``) keeps: the current selection, or each channel's top-1 in a layer that :meth:`select` never
    narrowed. Changes nothing."""
    return {name: layer._prune_mask(top_k).cpu() for name, layer in selectable_layers(model)}


def masks_to_spec(masks: Mapping[str, Any]) -> Dict[str, str]:
    """A compact, JSON-friendly form of per-layer selection masks (layer name -> bool (out, M) tensor or nested
    list): per layer one string, with per output channel the indices of its kept members joined by ``+``, the
    channels separated by ``,`` (``'2,0,0+3'``: channel 0 keeps member 2, channel 2 members 0 and 3).
    :func:`masks_from_spec` reads it back."""
    out: Dict[str, str] = {}
    for name, mask in masks.items():
        rows = torch.as_tensor(mask, dtype=torch.bool).cpu().tolist()
        out[name] = ",".join("+".join(str(i) for i, keep in enumerate(row) if keep) for row in rows)
    return out


def masks_from_spec(spec: Mapping[str, str], model: nn.Module) -> Dict[str, torch.Tensor]:
    """The bool (out, M) masks that :func:`masks_to_spec` wrote, checked against the selectable layers of
    ``model`` (every layer named, one entry per output channel, member indices in range)."""
    layers = dict(selectable_layers(model))
    if set(spec) != set(layers):
        raise ValueError(f"the pruned selection names layers {sorted(spec)}, but the model's selectable layers are "
                         f"{sorted(layers)}; it was saved for other model arguments")
    masks: Dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        n_out, m = layer.selected.shape
        tokens = str(spec[name]).split(",")
        if len(tokens) != n_out:
            raise ValueError(f"the pruned selection of {name!r} has {len(tokens)} channels, the layer {n_out}")
        mask = torch.zeros(n_out, m, dtype=torch.bool)
        for o, token in enumerate(tokens):
            try:
                idx = [int(i) for i in token.split("+")]
            except ValueError:
                raise ValueError(f"the pruned selection of {name!r} has the entry {token!r}; expected member "
                                 f"indices joined by '+'") from None
            if not idx or any(not 0 <= i < m for i in idx):
                raise ValueError(f"the pruned selection of {name!r} has the entry {token!r}; member indices are "
                                 f"0 to {m - 1} (pool {layer.labels})")
            mask[o, idx] = True
        if m > 1 and bool(mask.all()):
            raise ValueError(f"the pruned selection of {name!r} keeps every member of every channel: that is "
                             f"not a pruned layer")
        masks[name] = mask
    return masks


def selection_summary(model: nn.Module, top_k: Optional[int] = None) -> Dict[str, Dict[str, int]]:
    """Per layer, how many output channels use each basis: for a selectable layer its current selection
    (``top_k``: its top-k by α), for a pruned layer what it kept. Keys are module names."""
    out: Dict[str, Dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, SELECTABLE_LAYERS):
            out[name] = m.selection_counts(top_k)
        elif isinstance(m, _PrunedBase):
            out[name] = m.counts()
        elif isinstance(getattr(m, "selected_basis", None), str):  # pruned to a plain layer of one basis
            out[name] = {m.selected_basis: int(_out_size(m))}
    return out


def check_exportable(model: nn.Module) -> None:
    """Raises :class:`NotPrunedError` naming every unpruned selectable layer of ``model``; exporters call
    this before tracing. A model without selectable layers passes."""
    layers = selectable_layers(model)
    if layers:
        names = ", ".join(repr(n or "<model>") for n, _ in layers[:8]) + (" ..." if len(layers) > 8 else "")
        raise NotPrunedError(
            f"{type(model).__name__} has {len(layers)} unpruned selectable KAN layer(s) ({names}): they run every "
            f"candidate basis and their selection is not final, so they are not exported. Prune first: "
            f"model = kanzoo.layers.prune_model(model) (after training with SelectionSchedule, or select_model "
            f"then prune_model).")


# ---------------------------------------------------------------------------------------------- schedule
class SelectionSchedule:
    """The three S-KAN phases as a training callback (epochs count from 0).

    ========================================  =================================================
    epochs                                    phase
    ========================================  =================================================
    ``[0, full_epochs)``                      ``'full'``: every candidate basis trains
    ``[full_epochs, full_epochs+select_epochs)``  ``'select'``: each channel keeps its top-k
    ``full_epochs + select_epochs`` onwards   ``'pruned'`` (with ``prune=True``)
    ========================================  =================================================

    The training loop calls, once per epoch::

        event = schedule.on_epoch_start(epoch, model)   # None, 'select' or 'prune'
        if event == "prune":            # the model's parameters were replaced
            optimizer = make_optimizer(model)            # and re-create any EMA copy / lr scheduler state
        ...train one epoch...
        schedule.on_epoch_end(epoch, model, metrics)    # records the per-layer basis counts

    ``on_epoch_start`` applies every transition due by ``epoch`` that has not happened yet, so resuming at
    any epoch works: restore ``load_state_dict`` first (it carries the selection masks), call
    ``on_epoch_start(start_epoch - 1, model)`` on the freshly built model (it re-applies the saved selection and
    prunes if the checkpoint was pruned), then load the checkpoint's weights and build the optimizer; the loop's
    ``on_epoch_start(start_epoch, model)`` then applies what is due at ``start_epoch``.

    Args:
        full_epochs: epochs of phase 1 (>= 1: the selection reads α, which must have trained).
        select_epochs: epochs of phase 2 (0: prune right after selecting).
        top_k: members each channel keeps in phase 2 (and after pruning).
        prune: prune at the end of phase 2 (False: stay in phase 2).
    """

    PHASES = ("full", "select", "pruned")

    def __init__(self, full_epochs: int, select_epochs: int, top_k: int = 1, prune: bool = True):
        for name, v, lo in (("full_epochs", full_epochs, 1), ("select_epochs", select_epochs, 0), ("top_k", top_k, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        self.full_epochs, self.select_epochs, self.top_k, self.prune = full_epochs, select_epochs, top_k, bool(prune)
        self.state = "full"                   # what has been applied to the model
        self.masks: Dict[str, List[List[bool]]] = {}
        self.history: List[Dict[str, Any]] = []

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> "SelectionSchedule":
        """From a mapping with ``full_epochs``, ``select_epochs`` and optionally ``top_k`` and ``prune``
        (the ``selection`` entry of an ``s_convkan`` pretrained cfg)."""
        known = {"full_epochs", "select_epochs", "top_k", "prune"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"unknown selection settings {unknown}; known: {sorted(known)}")
        return cls(**dict(cfg))

    def to_dict(self) -> Dict[str, Any]:
        return dict(full_epochs=self.full_epochs, select_epochs=self.select_epochs, top_k=self.top_k,
                    prune=self.prune)

    def phase(self, epoch: int) -> str:
        """The phase that ``epoch`` belongs to."""
        if epoch < self.full_epochs:
            return "full"
        if epoch < self.full_epochs + self.select_epochs or not self.prune:
            return "select"
        return "pruned"

    def on_epoch_start(self, epoch: int, model: nn.Module) -> Optional[str]:
        """Applies the transitions due at ``epoch``; returns ``'prune'`` when the model's parameters were
        replaced (rebuild the optimizer), ``'select'`` when the selection was frozen, else None."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        target = self.phase(epoch)
        event = None
        if self.PHASES.index(target) >= 1 and self.state == "full":
            if self.masks and target == "pruned" and not selectable_layers(model):
                pass  # resuming into the pruned phase with a model rebuilt in its pruned form: nothing to select
            elif self.masks:  # resuming: restore the recorded selection instead of re-reading α
                select_model(model, masks=self.masks)
            else:
                select_model(model, self.top_k)
                self.masks = {n: m.selected.cpu().tolist() for n, m in selectable_layers(model)}
            self.state, event = "select", "select"
        if target == "pruned" and self.state == "select":
            if selectable_layers(model):
                if not any(layer.is_selected for _, layer in selectable_layers(model)):
                    select_model(model, masks=self.masks)
                # what pruning keeps (differs from the selection only where select narrowed nothing, e.g.
                # top_k = pool size: then each channel's top-1), so a resumed run rebuilds the same structure
                self.masks = {n: m.tolist() for n, m in prune_masks(model).items()}
                prune_model(model)
            self.state, event = "pruned", "prune"
        return event

    def on_epoch_end(self, epoch: int, model: nn.Module, metrics: Optional[Mapping[str, float]] = None) -> None:
        """Records the phase and the per-layer basis counts (each channel's top-k while all bases train)."""
        top_k = self.top_k if self.state == "full" else None
        self.history.append(dict(epoch=epoch, phase=self.state, metrics=dict(metrics or {}),
                                 selection=selection_summary(model, top_k)))

    def state_dict(self) -> Dict[str, Any]:
        return dict(self.to_dict(), state=self.state, masks=self.masks, history=self.history)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` saved. The model is brought to the saved phase by the next
        :meth:`on_epoch_start` (it must be a freshly built, unpruned model; or, when the saved phase is
        ``'pruned'``, one already rebuilt in its pruned form, e.g. from :func:`masks_to_spec` of :attr:`masks`)."""
        settings = {k: state[k] for k in ("full_epochs", "select_epochs", "top_k", "prune") if k in state}
        if settings != self.to_dict():
            raise ValueError(f"the saved schedule {settings} differs from this one {self.to_dict()}; build the "
                             f"SelectionSchedule with the saved settings to resume")
        self.masks = {k: [list(r) for r in v] for k, v in dict(state.get("masks", {})).items()}
        self.history = list(state.get("history", []))
        self.state = "full"  # the fresh model is unpruned; on_epoch_start replays the transitions

    def __repr__(self) -> str:
        return (f"SelectionSchedule(full_epochs={self.full_epochs}, select_epochs={self.select_epochs}, "
                f"top_k={self.top_k}, prune={self.prune})")
