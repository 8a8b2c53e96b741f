"""A token-level mixture of MLP and KAN experts, the FFN of MLP-KAN (He et al., "MLP-KAN: Unifying Deep
Representation and Function Learning", arXiv 2410.03027), with FasterKAN experts (RSWAF basis) and a
Mixtral-style top-k router (Jiang et al., "Mixtral of Experts", arXiv 2401.04088; load balancing and the
optional expert capacity: Fedus et al., "Switch Transformers", arXiv 2101.03961, and Lepikhin et al.,
"GShard", arXiv 2006.16668)."""

from typing import List, Optional, Sequence, Tuple

import torch
from timm.layers import Mlp, register_notrace_module
from torch import nn

from .linear import KANLinear
from .moe import capacity_slots, check_capacity_factor, expert_capacity, slot_tables, static_dispatch_required


def fasterkan_linear(in_features: int, out_features: int, grid_size: int = 8,
                     grid_range: Sequence[float] = (-2.0, 2.0), denominator: float = 0.33, device=None,
                     dtype=None) -> KANLinear:
    """One FasterKAN layer: :class:`~kanzoo.layers.KANLinear` with the RSWAF basis after a LayerNorm
    (``basis_norm``), no base branch, no bias, no output norm or activation."""
    return KANLinear(in_features, out_features, basis="rswaf", use_base=False, basis_norm="layer", norm_layer="none",
                     act_layer="identity", grid_size=grid_size, grid_range=grid_range, denominator=denominator,
                     device=device, dtype=dtype)


class FasterKAN(nn.Module):
    r"""A stack of FasterKAN layers: LayerNorm, RSWAF basis, linear map, with no activation in between.

    Layer l maps d_l → d_{l+1}:

    .. math:: y = \sum_{i,j} W_{o,i,j}\, \big(1 - \tanh^2((\mathrm{LN}(x)_i - g_j)/h)\big)

    (:class:`~kanzoo.layers.KANLinear` with ``basis='rswaf'``, ``basis_norm='layer'``, no base branch, no
    bias, no output norm or activation; the next layer's LayerNorm and basis are the nonlinearity). FasterKAN's
    defaults: 8 centres on [-2, 2], h = 0.33.

    Args:
        dims: [d_0, d_1, .., d_L], at least two entries.
        grid_size, grid_range, denominator: the RSWAF basis (see :class:`~kanzoo.layers.bases.RSWAFBasis`).

    Shape:
        - Input: (N, \*, d_0); output (N, \*, d_L).

    Examples::
        >>> FasterKAN([16, 12, 16])(torch.randn(5, 16)).shape
        torch.Size([5, 16])
    """

    def __init__(self, dims: Sequence[int], grid_size: int = 8, grid_range: Sequence[float] = (-2.0, 2.0),
                 denominator: float = 0.33, device=None, dtype=None):
        super().__init__()
        dims = list(dims)
        if len(dims) < 2:
            raise ValueError(f"dims must list at least an input and an output width, got {dims!r}")
        self.layers = nn.ModuleList([
            fasterkan_linear(a, b, grid_size=grid_size, grid_range=grid_range, denominator=denominator,
                             device=device, dtype=dtype)
            for a, b in zip(dims[:-1], dims[1:])])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """FasterKAN's initialisation: Xavier-uniform spline weights, LayerNorm (1, 0)."""
        for layer in self.layers:
            w = layer.basis_weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            layer.basis_norm.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


@register_notrace_module  # data-dependent routing: FX calls it as one op
class MoEKANMlp(nn.Module):
    r"""A top-k mixture of MLP and FasterKAN experts over tokens, with timm's ``Mlp`` signature.

    For each token x (C features), with E experts of which the first ``num_mlp_experts`` are MLPs
    (``fc2(GELU(fc1(x)))``, hidden width h) and the rest :class:`FasterKAN` networks [C, h/2, C]:

    .. math::
        p = \mathrm{softmax}(W_g x),\qquad \mathcal T = \operatorname{top-k}(p),\qquad
        y = \sum_{e \in \mathcal T} \frac{p_e}{\sum_{j\in\mathcal T} p_j}\, \mathrm{expert}_e(x)

    with every token routed to its k experts (by default nothing is dropped). **Routing precision:** the
    logits are computed in the input dtype with autocast off, then softmax, top-k and renormalisation run in
    ``router_dtype`` (default float64, so that a float32 model's near-ties resolve as exactly as possible and
    a float64 model routes with float64 probabilities), and the weights are cast back to the input dtype.
    MLP-KAN's reference routes in float32 (``router_dtype=torch.float32`` reproduces it).

    With ``capacity_factor=None`` (default) two paths compute the same output:

    * **sparse** (eager and TorchScript): each expert runs only on the tokens routed to it (gathered with
      ``index_select``); the weighted outputs are put back in token order and each token's k terms are summed
      in increasing expert order, as the reference's ``index_add_`` loop does. Training and inference use it.
    * **dense** (tracing, ``torch.compile``, ONNX export, or ``dense=True``): every expert runs on every
      token and a (tokens, E) weight matrix that is zero off the top k combines them. No data-dependent
      shapes, E/k times the expert compute.

    **Fixed capacity** (``capacity_factor`` f > 0; GShard, Lepikhin et al. arXiv 2006.16668; Switch
    Transformers, Fedus et al. arXiv 2101.03961), in every mode: each expert gets
    :math:`C = \min(N, \lceil f N k / E \rceil)` token slots, filled in GShard's priority order (every
    token's first choice in token order, then every second choice, ...); a route past its expert's C-th slot
    is dropped: its term is zero (the kept weights are not renormalised) and the block's residual carries
    the token, as in Switch. Every expert runs on exactly C rows, so all shapes are fixed and nothing is read
    on the host: ``torch.compile(fullgraph=True)`` and CUDA graphs capture it, at f·k/E of the dense path's
    expert compute. :attr:`dropped_fraction` is the fraction of the N·k routes dropped by the last forward.
    A capacity that drops nothing (f >= E/k) computes what the sparse path does.

    **Load balancing.** In training, the Switch-Transformer loss
    :math:`L = c\,E \sum_e f_e P_e` (f_e: fraction of the N·k routing slots that went to expert e; P_e: mean
    router probability of e) is kept in :attr:`aux_loss` after each forward for the training loop to add
    (``c = aux_loss_coef``; 0 turns it off). The reference has no such loss.

    Args:
        in_features: token channels C.
        hidden_features: expert hidden width h, used when ``expert_hidden`` is None (timm's ``Block`` passes
            ``int(C * mlp_ratio)`` here).
        out_features: must equal ``in_features`` (or be None).
        act_layer: activation of the MLP experts (GELU).
        norm_layer, bias, drop: timm ``Mlp`` arguments; ``norm_layer`` must be None, ``bias`` applies to
            the MLP experts, ``drop`` is their dropout.
        expert_hidden: h, overriding ``hidden_features`` (MLP-KAN: 192 for every model size).
        num_experts: E (MLP-KAN: 8).
        num_mlp_experts: how many of them are MLPs (MLP-KAN: E/2); the others are FasterKANs.
        top_k: k (MLP-KAN: 2).
        router_dtype: dtype of softmax, top-k and renormalisation.
        aux_loss_coef: c, the weight of the load-balancing loss.
        dense: always take the dense path (when ``capacity_factor`` is None).
        capacity_factor: f > 0 for the fixed-capacity path, or None to drop nothing. A plain attribute:
            :func:`~kanzoo.layers.moe.set_capacity_factor` changes it on every MoE layer of a model.
        kan_kwargs: :class:`FasterKAN` basis arguments (``grid_size``, ``grid_range``, ``denominator``).

    Shape:
        - Input: (\*, C); output (\*, C) in the input dtype.

    Attributes:
        gate: ``nn.Linear(C, E, bias=False)``, the router.
        experts: ``nn.ModuleList``, the MLP experts first.
        aux_loss: the load-balancing loss of the last training forward (a scalar tensor), or None.
        dropped_fraction: fraction of the N·k routes dropped by the last forward (a detached 0-dim float32
            tensor), or None after a forward without a capacity.

    Examples::
        >>> moe = MoEKANMlp(48, expert_hidden=32)
        >>> moe(torch.randn(2, 17, 48)).shape
        torch.Size([2, 17, 48])
    """

    aux_loss: Optional[torch.Tensor]
    dropped_fraction: Optional[torch.Tensor]
    capacity_factor: Optional[float]

    def __init__(
        self,
        in_features: int,
        hidden_features: Optional[int] = None,
        out_features: Optional[int] = None,
        act_layer=nn.GELU,
        norm_layer=None,
        bias: bool = True,
        drop: float = 0.0,
        expert_hidden: Optional[int] = None,
        num_experts: int = 8,
        num_mlp_experts: Optional[int] = None,
        top_k: int = 2,
        router_dtype: torch.dtype = torch.float64,
        aux_loss_coef: float = 0.01,
        dense: bool = False,
        capacity_factor: Optional[float] = None,
        kan_kwargs: Optional[dict] = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        hidden = expert_hidden if expert_hidden is not None else hidden_features
        if hidden is None:
            raise ValueError("give the expert hidden width: expert_hidden=... (or hidden_features)")
        for name, v, lo in (("in_features", in_features, 1), ("expert hidden width", hidden, 2),
                            ("num_experts", num_experts, 1), ("top_k", top_k, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        if out_features is not None and out_features != in_features:
            raise ValueError(f"MoEKANMlp maps C -> C; out_features={out_features} differs from "
                             f"in_features={in_features}")
        if norm_layer is not None:
            raise ValueError("MoEKANMlp has no norm inside its experts; build the block with scale_mlp_norm=False")
        n_mlp = num_experts // 2 if num_mlp_experts is None else num_mlp_experts
        if isinstance(n_mlp, bool) or not isinstance(n_mlp, int) or not 0 <= n_mlp <= num_experts:
            raise ValueError(f"num_mlp_experts must be an int in [0, num_experts={num_experts}], got {n_mlp!r}")
        if top_k > num_experts:
            raise ValueError(f"top_k={top_k} must not exceed num_experts={num_experts}")
        if router_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"router_dtype must be torch.float32 or torch.float64, got {router_dtype!r}")
        if isinstance(aux_loss_coef, bool) or not isinstance(aux_loss_coef, (int, float)) or not aux_loss_coef >= 0:
            raise ValueError(f"aux_loss_coef must be a number >= 0, got {aux_loss_coef!r}")
        self.in_features = in_features
        self.hidden_features = hidden
        self.num_experts = num_experts
        self.num_mlp_experts = n_mlp
        self.top_k = top_k
        self.router_dtype = router_dtype
        self.aux_loss_coef = float(aux_loss_coef)
        self.dense = bool(dense)
        self.capacity_factor = check_capacity_factor(capacity_factor)
        self.aux_loss: Optional[torch.Tensor] = None
        self.dropped_fraction: Optional[torch.Tensor] = None

        self.gate = nn.Linear(in_features, num_experts, bias=False, **dd)
        kw = dict(kan_kwargs or {})
        experts: List[nn.Module] = [Mlp(in_features, hidden, act_layer=act_layer, bias=bias, drop=drop, **dd)
                                    for _ in range(n_mlp)]
        experts += [FasterKAN([in_features, hidden // 2, in_features], **kw, **dd) for _ in range(num_experts - n_mlp)]
        self.experts = nn.ModuleList(experts)

    def route(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router for tokens x (N, C): ``(probs (N, E) in router_dtype, top_idx (N, k), top_w (N, k))``.

        ``top_idx`` is ordered by decreasing probability; ``top_w`` are the renormalised weights in x's dtype.
        """
        if torch.jit.is_scripting() or x.device.type not in ("cpu", "cuda", "xpu", "mps"):
            logits = self.gate(x)
        else:
            with torch.autocast(device_type=x.device.type, enabled=False):
                logits = self.gate(x.to(self.gate.weight.dtype) if x.dtype != self.gate.weight.dtype else x)
        probs = torch.softmax(logits.to(self.router_dtype), dim=-1)
        top_p, top_idx = probs.topk(self.top_k, dim=-1)
        top_w = (top_p / top_p.sum(dim=-1, keepdim=True)).to(x.dtype)
        return probs, top_idx, top_w

    def _combine_sparse(self, x: torch.Tensor, top_idx: torch.Tensor, top_w: torch.Tensor) -> torch.Tensor:
        n_tok, k = top_idx.shape
        # each token's k routes in increasing expert order: its sum then runs in the reference's order
        top_idx, perm = top_idx.sort(dim=1)
        top_w = top_w.gather(1, perm)
        flat_e = top_idx.reshape(-1)
        order = torch.argsort(flat_e, stable=True)  # routes grouped by expert, tokens ascending within each
        counts: List[int] = torch.bincount(flat_e, minlength=self.num_experts).tolist()
        tokens = torch.div(order, k, rounding_mode="floor")
        weights = top_w.reshape(-1).index_select(0, order).unsqueeze(1)
        outs: List[torch.Tensor] = []
        start = 0
        for e, expert in enumerate(self.experts):
            n = counts[e]
            if n > 0:
                outs.append(expert(x.index_select(0, tokens.narrow(0, start, n))) * weights.narrow(0, start, n))
            start += n
        routed = torch.cat(outs, dim=0)  # (N·k, C), route order
        inverse = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=order.device))
        slots = routed.index_select(0, inverse).view(n_tok, k, -1)  # (N, k, C), slot s = s-th smallest expert
        out = slots[:, 0]
        for s in range(1, k):
            out = out + slots[:, s]
        return out

    def _combine_capacity(self, x: torch.Tensor, top_idx: torch.Tensor, top_w: torch.Tensor,
                          capacity: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The fixed-capacity combine and its (N, k) keep mask. Each token's kept terms are added in increasing
        expert order onto zeros, the sparse path's order; empty slots run on the last token and land on a
        spare row."""
        n = x.shape[0]
        slot, keep = capacity_slots(top_idx, self.num_experts, capacity)
        token, weight = slot_tables(slot, top_w, self.num_experts * capacity)
        src = token.clamp(max=n - 1)
        out = x.new_zeros(n + 1, x.shape[1])
        for e, expert in enumerate(self.experts):
            lo = e * capacity
            y = expert(x.index_select(0, src[lo:lo + capacity]))
            out.index_add_(0, token[lo:lo + capacity], y * weight[lo:lo + capacity].unsqueeze(1))
        return out[:n], keep

    def _combine_dense(self, x: torch.Tensor, top_idx: torch.Tensor, top_w: torch.Tensor) -> torch.Tensor:
        w = torch.zeros(x.shape[0], self.num_experts, dtype=x.dtype, device=x.device).scatter(1, top_idx, top_w)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            out = out + expert(x) * w[:, e:e + 1]
        return out

    def load_balancing_loss(self, probs: torch.Tensor, top_idx: torch.Tensor) -> torch.Tensor:
        """``aux_loss_coef · E · Σ_e f_e P_e`` (Switch Transformers), in the router dtype."""
        counts = torch.zeros(self.num_experts, dtype=probs.dtype, device=probs.device)
        counts = counts.scatter_add(0, top_idx.reshape(-1), torch.ones_like(top_idx.reshape(-1), dtype=probs.dtype))
        f = counts / top_idx.numel()
        return self.aux_loss_coef * self.num_experts * (f * probs.mean(0)).sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"MoEKANMlp expects {self.in_features} features in the last dim, got shape "
                             f"{list(x.shape)}")
        shape = x.shape
        x = x.reshape(-1, self.in_features)
        probs, top_idx, top_w = self.route(x)
        cf = self.capacity_factor
        if cf is not None and x.shape[0] > 0:
            capacity = expert_capacity(x.shape[0], self.top_k, self.num_experts, cf)
            out, keep = self._combine_capacity(x, top_idx, top_w, capacity)
            self.dropped_fraction = 1.0 - keep.float().mean()
        elif self.dense or static_dispatch_required():
            out = self._combine_dense(x, top_idx, top_w)
            self.dropped_fraction = None
        else:
            out = self._combine_sparse(x, top_idx, top_w)
            self.dropped_fraction = None
        if self.training and self.aux_loss_coef > 0:
            self.aux_loss = self.load_balancing_loss(probs, top_idx)
        else:
            self.aux_loss = None
        return out.reshape(shape)

    def __getstate__(self):
        # the last balancing loss holds its autograd graph: not part of the module's state (deepcopy, pickle)
        state = dict(super().__getstate__())
        state["aux_loss"] = None
        return state

    def extra_repr(self) -> str:
        cap = f", capacity_factor={self.capacity_factor}" if self.capacity_factor is not None else ""
        return (f"{self.in_features}, expert_hidden={self.hidden_features}, num_experts={self.num_experts} "
                f"({self.num_mlp_experts} MLP), top_k={self.top_k}, router_dtype={self.router_dtype}{cap}")
