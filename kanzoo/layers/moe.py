"""Sparsely gated mixtures of KAN convolutions.

Noisy top-k gating follows Shazeer et al., "Outrageously Large Neural Networks: The Sparsely-Gated
Mixture-of-Experts Layer" (arXiv 1701.06538); the KAN-conv experts and the MoE bottleneck follow Drokin,
"Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies" (arXiv 2407.01092). The optional
fixed-capacity dispatch follows GShard (Lepikhin et al., arXiv 2006.16668) and Switch Transformers (Fedus et
al., arXiv 2101.03961).
"""
import math
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn

from ._utils import IntOrTuple, check_channels, fixed_ndim
from .bases import BasisType
from .bottleneck import _BottleneckConv
from .conv import KANConvNd, check_input
from .create import LayerType


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_capacity_factor(value) -> Optional[float]:
    """``capacity_factor``: None (never drop) or a number > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"capacity_factor must be None or a finite number > 0, got {value!r}")
    return float(value)


def expert_capacity(num_tokens: int, top_k: int, num_experts: int, capacity_factor: Optional[float]) -> int:
    r"""Slots per expert, :math:`C = \min(N, \lceil f \cdot N k / E \rceil)` (GShard, Switch); N when f is None.

    An expert receives each token at most once, so C = N never drops anything.
    """
    if capacity_factor is None:
        return num_tokens
    return min(num_tokens, int(math.ceil(capacity_factor * num_tokens * top_k / num_experts)))


def capacity_slots(top_idx: torch.Tensor, num_experts: int, capacity: int) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""Places the routes ``top_idx`` (N, k) (column j: every token's j-th choice) in per-expert queues of
    ``capacity`` slots, with fixed-shape ops only (no host synchronisation).

    Priority is GShard's: all first choices, in token order, then all second choices, and so on. A route's
    position p is the number of routes to its expert ahead of it; it is kept when p < C and then takes slot
    e·C + p, otherwise it is dropped and gets the spare slot E·C.

    Returns ``(slot (N, k) int64 in [0, E·C], keep (N, k) bool)``.
    """
    n, k = top_idx.shape
    routes = top_idx.t().reshape(-1, 1)                              # (k·N, 1), priority order
    hits = torch.zeros(k * n, num_experts, dtype=torch.int64, device=top_idx.device).scatter_(1, routes, 1)
    pos = hits.cumsum(0).gather(1, routes).squeeze(1) - 1
    keep = pos < capacity
    slot = torch.where(keep, routes.squeeze(1) * capacity + pos, torch.full_like(pos, num_experts * capacity))
    return slot.view(k, n).t(), keep.view(k, n).t()


def slot_tables(slot: torch.Tensor, weights: torch.Tensor, num_slots: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(token (num_slots,), weight (num_slots,))``: the token each slot holds and its gate weight; empty slots
    hold token N (a spare output row) with weight 0. ``slot``/``weights`` are (N, k) from :func:`capacity_slots`."""
    n, k = slot.shape
    flat = slot.reshape(-1)
    tokens = torch.arange(n, device=slot.device).unsqueeze(1).expand(n, k).reshape(-1)
    # num_slots + 1 entries: the last one takes every dropped route and is discarded
    token = torch.full([num_slots + 1], n, dtype=torch.int64, device=slot.device).scatter(0, flat, tokens)
    weight = weights.new_zeros([num_slots + 1]).scatter(0, flat, weights.reshape(-1))
    return token[:num_slots], weight[:num_slots]


def static_dispatch_required() -> bool:
    """True while tracing, compiling, exporting (``torch.compile``, ``torch.export``, ONNX, ``jit.trace``):
    data-dependent shapes are out, so the MoE layers take their fixed-shape path."""
    if torch.jit.is_scripting():
        return False
    return bool(torch.jit.is_tracing() or _compiling_or_exporting())


@torch.jit.unused
def _compiling_or_exporting() -> bool:
    return bool(torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export())


def routed_active_parameters(model: nn.Module) -> Optional[int]:
    """Parameters one input uses in a top-k routed model, or None when nothing in it is routed.

    A routed layer is a module with ``experts``, ``top_k`` and ``num_experts`` (:class:`MoEKANConvNd`, MLP-KAN's
    token MoE). An input uses everything outside the experts plus ``top_k`` of each routed layer's experts;
    experts may differ in size, so this counts ``top_k`` times the mean expert (the mean over uniform routes).
    """
    routed = [m for m in model.modules() if isinstance(getattr(m, "experts", None), nn.ModuleList)
              and hasattr(m, "top_k") and hasattr(m, "num_experts")]
    if not routed:
        return None
    expert_params = [sum(p.numel() for p in m.experts.parameters()) for m in routed]
    active = sum(m.top_k * n / m.num_experts for m, n in zip(routed, expert_params))
    return int(round(sum(p.numel() for p in model.parameters()) - sum(expert_params) + active))


def cv_squared(v: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Squared coefficient of variation ``var_unbiased(v) / (mean(v)² + eps)``; 0 for fewer than 2 entries."""
    if v.numel() < 2:
        return v.new_zeros(())
    return v.var() / (v.mean() ** 2 + eps)


def set_capacity_factor(model: nn.Module, capacity_factor: Optional[float]) -> int:
    """Sets ``capacity_factor`` (None: drop nothing) on every routed layer of ``model`` that has one
    (:class:`MoEKANConvNd`, :class:`~kanzoo.layers.MoEKANMlp`); returns how many were set."""
    cf = check_capacity_factor(capacity_factor)
    layers = [m for m in model.modules() if hasattr(m, "capacity_factor") and hasattr(m, "dropped_fraction")]
    for m in layers:
        m.capacity_factor = cf
    return len(layers)


def mean_dropped_fraction(model: nn.Module) -> Optional[torch.Tensor]:
    """The mean :attr:`~MoEKANConvNd.dropped_fraction` over the routed layers of ``model`` after a forward
    (each layer routes N·k assignments), or None when none of them ran the fixed-capacity dispatch."""
    rates = [m.dropped_fraction for m in model.modules()
             if hasattr(m, "capacity_factor") and isinstance(getattr(m, "dropped_fraction", None), torch.Tensor)]
    return torch.stack(rates).mean() if rates else None


@register_notrace_module  # data-dependent routing: FX calls it as one op
class MoEKANConvNd(nn.Module):
    r"""A sparsely gated mixture of E KAN convolutions, each sample routed to its top-k experts.

    With :math:`m = \mathrm{mean}_{spatial}(x) \in \mathbb{R}^{C_{in}}` per sample:

    .. math::
        h = m W_g + \epsilon \odot \big(\mathrm{softplus}(m W_n) + 0.01\big),\quad
        \epsilon \sim \mathcal N(0, 1)\ \text{(training with noisy gating only)}

        \mathcal T = \operatorname{top-k}(h),\qquad
        g_e = \frac{\mathrm{softmax}(h)_e}{\sum_{j \in \mathcal T} \mathrm{softmax}(h)_j}
            = \mathrm{softmax}_{j \in \mathcal T}(h_j)_e\ (e \in \mathcal T),\ \text{else } 0

        y = \sum_{e \in \mathcal T} g_e\, \mathrm{expert}_e(x)

    Expert e runs **only on the sub-batch routed to it** (``index_select`` in, ``index_add_`` out), so
    batch-coupled experts (BatchNorm in training) see only that sub-batch. Experts that receive no
    sample in a step do not run and get no gradient in that step (their parameters' ``.grad`` stays
    None / unchanged); every routed expert does.

    **Fixed-capacity dispatch** (GShard, Lepikhin et al. arXiv 2006.16668; Switch Transformers, Fedus et al.
    arXiv 2101.03961). The sub-batch sizes above are data, read on the host. With ``capacity_factor`` f set,
    every expert instead gets :math:`C = \min(N, \lceil f N k / E \rceil)` slots (see
    :func:`expert_capacity`), filled in GShard's priority order (all first choices in sample order, then
    all second choices, ...; :func:`capacity_slots`); a route past its expert's C-th slot is dropped, i.e.
    its term :math:`g_e\,\mathrm{expert}_e(x)` is zero (the kept gates are not renormalised; a residual
    around the layer carries the sample, as in Switch). Every expert runs on exactly C rows (empty slots
    are computed and discarded), so all shapes are fixed: ``torch.compile(fullgraph=True)`` and CUDA
    graphs capture it, with no host synchronisation. :attr:`dropped_fraction` holds the fraction of the N·k
    routes dropped by the last forward. With ``capacity_factor=None`` (default) nothing is ever dropped:
    eager runs the exact dispatch above, and tracing/compiling/exporting take the fixed-shape path with
    C = N, which computes the same output (E·N expert rows instead of k·N).

    The second output is the load-balancing loss of Shazeer et al.:

    .. math::
        L_{aux} = c\,\big(\mathrm{cv}^2(\mathrm{Importance}) + \mathrm{cv}^2(\mathrm{Load})\big),\quad
        \mathrm{cv}^2(v) = \frac{\mathrm{Var}_{unbiased}(v)}{\bar v^2 + 10^{-10}}

    with Importance = Σ_b g_b. Load is, in training with noisy gating and k < E, the smooth estimate
    :math:`\sum_b \Phi\big((m W_g - \tau_{b,e}) / (\mathrm{softplus}(m W_n)+0.01)\big)`, where
    :math:`\tau_{b,e}` is the k-th largest *noisy logit* of sample b among the other experts (the
    (k+1)-th overall if e is in the top k, the k-th otherwise); otherwise it is the number of samples
    routed to each expert. Gating runs in eval without noise, so eval is deterministic.

    Differences from torch-conv-kan's MoE layers (see docs/compat.md): the combine runs in the input
    dtype (the reference forces float32); the load estimate compares logits with logits (the
    reference compares logits with softmax probabilities); ``w_gate`` is random and the experts are
    initialised independently (the reference zero-inits ``w_gate`` and copies expert 0 into all);
    the kept gates are renormalised to sum to exactly 1 (the reference divides by sum + 1e-6).

    Args:
        in_channels, out_channels, kernel_size: passed to every expert.
        num_experts: E >= 1.
        top_k: experts per sample, 1 <= k <= E.
        noisy_gating: add learned Gaussian noise to the gate logits in training.
        aux_loss_coef: c >= 0, the weight of the load-balancing loss.
        capacity_factor: f > 0 for the fixed-capacity dispatch (dropping past capacity), or None to drop
            nothing. A plain attribute: :func:`set_capacity_factor` changes it on every MoE layer of a model.
        expert_layer: class or callable building one expert as
            ``expert_layer(in_channels, out_channels, kernel_size, **expert_kwargs)``
            (``device``/``dtype`` are added when given). Default :class:`KANConvNd`.
        **expert_kwargs: forwarded to every expert (``padding=1, basis="gram", degree=3, ndim=2`` ...).

    Shape:
        - Input: (N, C_in, *S).
        - Output: ``(y, aux_loss)`` with y (N, C_out, *S_out) in the input dtype and a scalar loss.

    Attributes:
        w_gate: (C_in, E) gate weights, uniform ±1/√C_in.
        w_noise: (C_in, E) noise weights, zero-initialised (noise std softplus(0)+0.01 ≈ 0.70 at init);
            None without noisy gating.
        experts: ``nn.ModuleList`` of E experts.
        dropped_fraction: fraction of the N·k routes dropped by the last forward (a detached 0-dim float32
            tensor), or None after a forward that took the exact dynamic dispatch.

    Examples::
        >>> moe = MoEKANConvNd(16, 32, 3, num_experts=4, top_k=2, padding=1, basis="gram", degree=3)
        >>> y, aux = moe(torch.randn(8, 16, 10, 10))
        >>> y.shape
        torch.Size([8, 32, 10, 10])
    """

    dropped_fraction: Optional[torch.Tensor]
    capacity_factor: Optional[float]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        num_experts: int = 8,
        top_k: int = 2,
        noisy_gating: bool = True,
        aux_loss_coef: float = 0.01,
        capacity_factor: Optional[float] = None,
        expert_layer: Callable[..., nn.Module] = KANConvNd,
        device=None,
        dtype=None,
        **expert_kwargs,
    ):
        super().__init__()
        check_channels(in_channels, out_channels, 1)
        self.num_experts = _check_int("num_experts", num_experts, 1)
        self.top_k = _check_int("top_k", top_k, 1)
        if top_k > num_experts:
            raise ValueError(f"top_k={top_k} must not exceed num_experts={num_experts}")
        if isinstance(aux_loss_coef, bool) or not isinstance(aux_loss_coef, (int, float)) or not aux_loss_coef >= 0:
            raise ValueError(f"aux_loss_coef must be a number >= 0, got {aux_loss_coef!r}")
        if not callable(expert_layer):
            raise TypeError(f"expert_layer must be a class or callable, got {type(expert_layer).__name__}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = kernel_size
        self.noisy_gating = bool(noisy_gating)
        self.noise_epsilon = 1e-2
        self.aux_loss_coef = float(aux_loss_coef)
        self.capacity_factor = check_capacity_factor(capacity_factor)
        self.dropped_fraction = None

        kw = dict(expert_kwargs)
        if device is not None:
            kw["device"] = device
        if dtype is not None:
            kw["dtype"] = dtype
        # each call builds fresh, independently initialised parameters
        self.experts = nn.ModuleList(expert_layer(in_channels, out_channels, kernel_size, **kw)
                                     for _ in range(num_experts))
        dd = dict(device=device, dtype=dtype)
        self.w_gate = nn.Parameter(torch.empty(in_channels, num_experts, **dd))
        if self.noisy_gating:
            self.w_noise = nn.Parameter(torch.empty(in_channels, num_experts, **dd))
        else:
            self.register_parameter("w_noise", None)
        self._reset_gate()

    def _reset_gate(self) -> None:
        bound = 1.0 / math.sqrt(self.in_channels)
        nn.init.uniform_(self.w_gate, -bound, bound)
        if self.w_noise is not None:
            nn.init.zeros_(self.w_noise)

    def reset_parameters(self) -> None:
        """Re-draws the gate and re-initialises every expert independently."""
        self._reset_gate()
        for e in self.experts:
            if hasattr(e, "reset_parameters"):
                e.reset_parameters()

    def gate(self, m: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Routing for gate features m (N, C_in).

        Returns ``(top_idx (N, k), top_gates (N, k), gates (N, E) dense, load (E,))``, all computed in the
        parameters' dtype with autocast disabled (a low-precision router can flip expert choices).
        """
        if torch.jit.is_scripting() or m.is_meta:  # autocast has no meta device (shape-only runs need none)
            return self._gate(m)
        with torch.autocast(device_type=m.device.type, enabled=False):
            return self._gate(m)

    def _gate(self, m: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        m = m.to(self.w_gate.dtype)
        clean = m @ self.w_gate
        noisy = self.training and self.noisy_gating
        noise_std = torch.ones_like(clean)
        logits = clean
        w_noise = self.w_noise
        if noisy and w_noise is not None:
            noise_std = F.softplus(m @ w_noise) + self.noise_epsilon
            logits = clean + torch.randn_like(clean) * noise_std
        k, E = self.top_k, self.num_experts
        smooth_load = noisy and k < E
        top_vals, top_idx = logits.topk(k + 1 if smooth_load else k, dim=1)
        # softmax over all E then renormalised over the kept k == softmax over the kept logits
        top_gates = torch.softmax(top_vals[:, :k], dim=1)
        gates = torch.zeros_like(logits).scatter(1, top_idx[:, :k], top_gates)
        if smooth_load:
            # P(e stays in the top k under fresh noise), thresholds taken from the noisy *logits*
            is_in = torch.zeros_like(logits, dtype=torch.bool).scatter(1, top_idx[:, :k], True)
            threshold = torch.where(is_in, top_vals[:, k:k + 1], top_vals[:, k - 1:k])
            load = torch.special.ndtr((clean - threshold) / noise_std).sum(0)
        else:
            chosen = top_idx[:, :k].reshape(-1)  # routes per expert, counted with a fixed-shape op
            load = gates.new_zeros(E).scatter_add(0, chosen, torch.ones_like(chosen, dtype=gates.dtype))
        return top_idx[:, :k], top_gates, gates, load

    def aux_loss(self, gates: torch.Tensor, load: torch.Tensor) -> torch.Tensor:
        """``aux_loss_coef · (cv²(gates.sum(0)) + cv²(load))``."""
        return self.aux_loss_coef * (cv_squared(gates.sum(0)) + cv_squared(load))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if x.dim() < 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"MoEKANConvNd expects input (N, {self.in_channels}, *spatial), got {list(x.shape)}")
        top_idx, top_gates, gates, load = self.gate(x.flatten(2).mean(-1))
        cf = self.capacity_factor
        if x.shape[0] > 0 and (cf is not None or static_dispatch_required() or x.is_meta):  # meta: shapes only
            capacity = expert_capacity(x.shape[0], self.top_k, self.num_experts, cf)
            y, keep = self._dispatch_static(x, top_idx, top_gates, capacity)
            self.dropped_fraction = 1.0 - keep.float().mean()
        else:
            y = self._dispatch(x, top_idx, top_gates)
            self.dropped_fraction = None
        return y, self.aux_loss(gates, load)

    def _dispatch_static(self, x: torch.Tensor, top_idx: torch.Tensor, top_gates: torch.Tensor,
                         capacity: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Σ_e g_e·expert_e(x) over the routes kept at ``capacity`` slots per expert; fixed shapes. Also
        returns the (N, k) keep mask. Empty slots run on the last row and land on a spare output row."""
        n = x.shape[0]
        slot, keep = capacity_slots(top_idx, self.num_experts, capacity)
        token, weight = slot_tables(slot, top_gates.to(x.dtype), self.num_experts * capacity)
        src = token.clamp(max=n - 1)
        y: Optional[torch.Tensor] = None
        for e, expert in enumerate(self.experts):
            lo = e * capacity
            out = expert(x.index_select(0, src[lo:lo + capacity])).to(x.dtype)
            if y is None:
                y = out.new_zeros([n + 1] + list(out.shape[1:]))
            w = weight[lo:lo + capacity].view([-1] + [1] * (out.dim() - 1))
            y.index_add_(0, token[lo:lo + capacity], out * w)
        assert y is not None
        return y[:n], keep

    def _dispatch(self, x: torch.Tensor, top_idx: torch.Tensor, top_gates: torch.Tensor) -> torch.Tensor:
        """Σ_e g_e·expert_e(x) with each expert run once on its routed rows; combined in x's dtype."""
        n, k = top_idx.shape
        flat = top_idx.reshape(-1)
        order = torch.argsort(flat, stable=True)           # assignments grouped by expert, rows ascending
        rows = torch.div(order, k, rounding_mode="floor")
        weights = top_gates.reshape(-1)[order].to(x.dtype)
        counts: List[int] = torch.bincount(flat, minlength=self.num_experts).tolist()   # one host sync
        row_parts = rows.split(counts)
        weight_parts = weights.split(counts)
        y: Optional[torch.Tensor] = None
        first: Optional[torch.Tensor] = None
        for e, expert in enumerate(self.experts):
            r = row_parts[e]
            if e == 0 and n == 0:
                first = expert(x).to(x.dtype)                  # empty batch
            if r.numel() > 0:                                  # idle experts are not run: no gradient
                out = expert(x.index_select(0, r)).to(x.dtype)
                w = weight_parts[e]
                if y is None:
                    y = out.new_zeros([n] + list(out.shape[1:]))
                y.index_add_(0, r, out * w.view([-1] + [1] * (out.dim() - 1)))
        if y is None:
            assert first is not None
            return first
        return y

    def extra_repr(self) -> str:
        cap = f", capacity_factor={self.capacity_factor}" if self.capacity_factor is not None else ""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"num_experts={self.num_experts}, top_k={self.top_k}, noisy_gating={self.noisy_gating}, "
                f"aux_loss_coef={self.aux_loss_coef}{cap}")



MoEKANConv1d = fixed_ndim(MoEKANConvNd, 1, "MoEKANConv1d")
MoEKANConv2d = fixed_ndim(MoEKANConvNd, 2, "MoEKANConv2d")
MoEKANConv3d = fixed_ndim(MoEKANConvNd, 3, "MoEKANConv3d")


class MoEBottleneckKANConvNd(_BottleneckConv):
    r"""A bottleneck KAN convolution whose basis convolution is a mixture of experts.

    The 1×1 projections, the base branch and the norm are shared; only the basis convolution at the
    inner width I is an expert (a bias-free, norm-free :class:`KANConvNd` holding its basis kernels and
    basis parameters, e.g. the Gram β):

    .. math::
        z = W_{in} \ast x,\qquad
        y = \sigma_{out}\Big(\mathrm{Norm}\big(W_{base} \star b(x)
            + W_{out} \ast \textstyle\sum_{e \in \mathcal T} g_e\, \mathrm{expert}_e(z)\big)\Big)

    with the routing and load-balancing loss of :class:`MoEKANConvNd`, gated on the spatial mean of z
    (I·groups channels). The layout of :class:`~kanzoo.layers.BottleneckKANConvNd` (inner width
    ``bottleneck_width``, groups, init) is kept.

    Args:
        Those of :class:`~kanzoo.layers.BottleneckKANConvNd`, plus ``num_experts``, ``top_k``,
        ``noisy_gating``, ``aux_loss_coef`` and ``capacity_factor`` of :class:`MoEKANConvNd`.

    Returns:
        ``(y, aux_loss)``.

    Attributes:
        weight: base kernels (C_out, C_in/groups, *k); inner_weight: (groups·I, C_in/groups, 1, ..);
        outer_weight: (C_out, I, 1, ..); moe: the :class:`MoEKANConvNd` over I·groups channels, whose
        experts hold ``basis_weight`` (groups·I, I, F, *k) and the basis parameters.
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
        num_experts: int = 8,
        top_k: int = 2,
        noisy_gating: bool = True,
        aux_loss_coef: float = 0.01,
        capacity_factor: Optional[float] = None,
        device=None,
        dtype=None,
        **basis_kwargs,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self._init_bottleneck(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, ndim, basis,
                              dim_reduction, min_internal, base_act, norm_layer, norm_kwargs, act_layer, dropout, dd,
                              None)
        inner = self.inner_channels
        # experts: the grouped basis conv I·G -> I·G of BottleneckKANConvNd, one per expert
        self.moe = MoEKANConvNd(
            inner * groups, inner * groups, self.kernel_size, num_experts=num_experts, top_k=top_k,
            noisy_gating=noisy_gating, aux_loss_coef=aux_loss_coef, capacity_factor=capacity_factor,
            expert_layer=KANConvNd,
            stride=self.stride, padding=self.padding, dilation=self.dilation, groups=groups, ndim=ndim,
            basis=basis, use_base=False, norm_layer="none", act_layer="identity", **dd, **basis_kwargs)
        self.num_basis = self.moe.experts[0].num_basis
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._reset_kernels()
        self.moe.reset_parameters()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        check_input(x, self.ndim, self.in_channels, "MoEBottleneckKANConvNd")
        base, z = self._base_and_inner(x)
        y, aux = self.moe(z)
        return self._expand(y, base), aux


MoEBottleneckKANConv1d = fixed_ndim(MoEBottleneckKANConvNd, 1, "MoEBottleneckKANConv1d")
MoEBottleneckKANConv2d = fixed_ndim(MoEBottleneckKANConvNd, 2, "MoEBottleneckKANConv2d")
MoEBottleneckKANConv3d = fixed_ndim(MoEBottleneckKANConvNd, 3, "MoEBottleneckKANConv3d")
