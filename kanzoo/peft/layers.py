"""``BasisAdapterLayer``: a frozen KAN layer plus trainable basis-coefficient adapter tensors;
``RationalAdapterLayer``: the same for a group-rational activation (KAT's GR-KAN)."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..layers import BottleneckKANConvNd, BottleneckKANLinear, KANConvNd, KANLinear
from ..layers.conv import check_input, check_spatial, conv_nd
from ..layers.linear import check_features
from ..layers.rational import GroupRational
from .bases import BasisRule, get_basis_rule

__all__ = ["BasisAdapterLayer", "RationalAdapterLayer", "SUPPORTED_LAYERS", "adapter_layer_kind", "unsupported_reason",
           "BASE_PARAM_NAMES", "layer_signature", "make_adapter_layer", "rational_order"]

#: the layer classes an adapter understands; a subclass is accepted only if it keeps their forward
SUPPORTED_LAYERS: Tuple[Type[nn.Module], ...] = (KANConvNd, BottleneckKANConvNd, KANLinear, BottleneckKANLinear,
                                                 GroupRational)

#: the non-basis weights of a layer that ``train_base`` trains
BASE_PARAM_NAMES = ("weight", "bias", "inner_weight", "inner_bias", "outer_weight", "outer_bias")


def adapter_layer_kind(module: nn.Module) -> Optional[Type[nn.Module]]:
    """The supported class ``module`` is (one of :data:`SUPPORTED_LAYERS`), or None."""
    for cls in SUPPORTED_LAYERS:
        if isinstance(module, cls):
            return cls
    return None


def unsupported_reason(module: nn.Module) -> Optional[str]:
    """Why a supported-looking KAN layer cannot take an adapter (None when it can)."""
    kind = adapter_layer_kind(module)
    if kind is None:
        return (f"{type(module).__name__} is not a layer basis adapters handle; they handle "
                f"{[c.__name__ for c in SUPPORTED_LAYERS]}")
    if type(module).forward is not kind.forward:
        return f"{type(module).__name__} overrides the forward of {kind.__name__}, so an adapter cannot reproduce it"
    if kind is GroupRational:
        return None
    if get_basis_rule(module.basis) is None:
        return (f"its basis {type(module.basis).__name__} has no adapter rules (supported: gram, legendre, "
                f"chebyshev, jacobi, bernstein, bspline, rbf)")
    if getattr(module, "basis_layout", "channel") != "channel":
        return (f"basis_layout={module.basis_layout!r} (torch-conv-kan's KAGN v2 compatibility layout) is not "
                f"supported; adapters need the channel layout")
    return None


def rational_order(module: GroupRational) -> Tuple[int, int]:
    """(m, n) of a group-rational layer, read from its coefficient shapes (1, m+1) and (G, n)."""
    return int(module.weight_numerator.shape[-1]) - 1, int(module.weight_denominator.shape[1])


def layer_signature(module: nn.Module) -> Dict[str, Any]:
    """What an adapter file records to recognise a layer it was saved for: its type, basis and coefficient shapes."""
    kind = adapter_layer_kind(module)
    if kind is GroupRational:
        m, n = rational_order(module)
        return {"layer": kind.__name__, "basis": "rational", "order": [m, n],
                "num_groups": int(module.weight_denominator.shape[0])}
    return {"layer": kind.__name__, "basis": get_basis_rule(module.basis).name,
            "basis_weight_shape": list(module.basis_weight.shape)}


def make_adapter_layer(module: nn.Module, trainable_degrees: Sequence[int], extra_degrees: int = 0,
                       rank: Optional[int] = None) -> "BasisAdapterLayer":
    """The adapter layer for ``module``: a :class:`RationalAdapterLayer` for a GroupRational, else a
    :class:`BasisAdapterLayer`."""
    if adapter_layer_kind(module) is GroupRational:
        if extra_degrees or rank is not None:
            raise ValueError("a GroupRational adapter takes trainable_degrees only (no extra_degrees, no rank)")
        return RationalAdapterLayer(module, trainable_degrees)
    return BasisAdapterLayer(module, trainable_degrees, extra_degrees, rank)


def _flat(values: torch.Tensor) -> torch.Tensor:
    """(N, C, F, *S) -> (N, C·F, *S) as a tensor of its own: a view of a slice of the raised basis would
    keep the whole basis tensor alive for backward."""
    return values.flatten(1, 2).contiguous()


class BasisAdapterLayer(nn.Module):
    r"""A KAN layer (``base_layer``, frozen) with a basis-coefficient adapter.

    With W the layer's coefficients (O, I, D+1, \*k) over the basis :math:`B_0..B_D`, the adapted layer
    computes the base layer's forward with

    .. math::
        W' = W + \Delta\ \text{(at the trainable degrees)},\qquad
        y_{pre} = W_{base} \star b(x) + \textstyle\sum_{f\le D} W'_f \star B_f(z)
                  + \sum_{j<E} X_j \star B^{+}_{D+1+j}(z)

    before the layer's norm and activation, where :math:`B^{+}` is the raised basis of degree D+E and X
    the extra coefficients (O, I, E, \*k). For Gram, the basis itself is computed with the adapted
    recurrence weights :math:`\beta'`. The extra term is its own convolution, so while Δ, X and the β
    deltas are zero the output is bit-for-bit the base layer's. :meth:`merge` folds everything into the
    base layer (degree D+E), which then computes the same function in one convolution.

    Attributes (those that exist for the configuration):
        basis_delta (O, I, n_T, \*k) or basis_delta_A (r, I·n_T·k) and basis_delta_B (O, r): the delta on
            the ``trainable_degrees`` (in increasing order).
        basis_extra (O, I, E, \*k) or basis_extra_A / basis_extra_B: coefficients of the extra degrees.
        beta_delta (n_β,): Gram only, the delta on β_{d-1} for each trainable degree d >= 2.
        beta_extra (E,): Gram only, β_{D+j} building the extra degree D+1+j.
    """

    def __init__(self, base_layer: nn.Module, trainable_degrees: Sequence[int], extra_degrees: int = 0,
                 rank: Optional[int] = None):
        super().__init__()
        reason = unsupported_reason(base_layer)
        if reason is not None:
            raise ValueError(f"cannot adapt {type(base_layer).__name__}: {reason}")
        self.base_layer = base_layer
        self.kind = adapter_layer_kind(base_layer)
        self.rule: BasisRule = get_basis_rule(base_layer.basis)
        self.num_basis = int(base_layer.num_basis)
        self.degree = self.rule.degree(base_layer.basis)
        self.trainable_degrees: List[int] = sorted(int(d) for d in trainable_degrees)
        self.extra_degrees = int(extra_degrees)
        self.rank = rank
        w = base_layer.basis_weight
        dd = dict(device=w.device, dtype=w.dtype)
        self._all_degrees = self.trainable_degrees == list(range(self.num_basis))

        if self.trainable_degrees:
            self._add_coefficients("basis_delta", len(self.trainable_degrees), **dd)
        if self.extra_degrees:
            self._add_coefficients("basis_extra", self.extra_degrees, **dd)
        self.register_buffer("delta_index", torch.tensor(self.trainable_degrees, dtype=torch.long, device=w.device),
                             persistent=False)

        self.beta_degrees: List[int] = []
        if self.rule.shape_param is not None:
            beta = getattr(base_layer.basis, self.rule.shape_param)
            self.beta_degrees = [d for d in self.trainable_degrees if self.rule.beta_index(d) is not None]
            if self.beta_degrees:
                self.beta_delta = nn.Parameter(torch.zeros(len(self.beta_degrees), device=beta.device,
                                                           dtype=beta.dtype))
                self.register_buffer("beta_delta_index", torch.tensor(
                    [self.rule.beta_index(d) for d in self.beta_degrees], dtype=torch.long, device=beta.device),
                    persistent=False)
            if self.extra_degrees:
                self.beta_extra = nn.Parameter(torch.zeros(self.extra_degrees, device=beta.device, dtype=beta.dtype))
        # the raised basis holds no state the forward reads (Gram's β is passed in), so it stays unregistered
        self.__dict__["_raised_basis"] = (self.rule.raised(base_layer.basis, self.extra_degrees)
                                          if self.extra_degrees else None)

    # -- parameters -----------------------------------------------------------------------------------------
    def _add_coefficients(self, name: str, n: int, device=None, dtype=None) -> None:
        w = self.base_layer.basis_weight
        out_dim, in_dim, kernel = w.shape[0], w.shape[1], tuple(w.shape[3:])
        if self.rank is None:
            setattr(self, name, nn.Parameter(torch.zeros((out_dim, in_dim, n) + kernel, device=device, dtype=dtype)))
            return
        cols = in_dim * n * math.prod(kernel)
        a = torch.empty(self.rank, cols, device=device, dtype=dtype)
        bound = 1.0 / math.sqrt(cols)  # LoRA's init of A (kaiming-uniform, a=√5); B starts at zero
        nn.init.uniform_(a, -bound, bound)
        setattr(self, name + "_A", nn.Parameter(a))
        setattr(self, name + "_B", nn.Parameter(torch.zeros(out_dim, self.rank, device=device, dtype=dtype)))

    def _coefficients(self, name: str, n: int) -> torch.Tensor:
        w = self.base_layer.basis_weight
        if self.rank is None:
            return getattr(self, name)
        shape = (w.shape[0], w.shape[1], n) + tuple(w.shape[3:])
        return (getattr(self, name + "_B") @ getattr(self, name + "_A")).view(shape)

    def effective_basis_weight(self) -> torch.Tensor:
        """W' = W + Δ placed at the trainable degrees (O, I, D+1, \\*k)."""
        w = self.base_layer.basis_weight
        if not self.trainable_degrees:
            return w
        delta = self._coefficients("basis_delta", len(self.trainable_degrees))
        if self._all_degrees:
            return w + delta
        return w.index_add(2, self.delta_index, delta)

    def extra_weight(self) -> Optional[torch.Tensor]:
        """X, the extra degrees' coefficients (O, I, E, \\*k), or None."""
        return self._coefficients("basis_extra", self.extra_degrees) if self.extra_degrees else None

    def effective_beta(self) -> Optional[torch.Tensor]:
        """Gram's recurrence weights as the adapted layer uses them (length D+E+1), or None when unchanged.

        β'_n = β_n + δ for the trainable degree n+1; β'_{D+j} = beta_extra[j]; the last entry (never used)
        is 0 when extra degrees exist.
        """
        if self.rule.shape_param is None or (not self.beta_degrees and not self.extra_degrees):
            return None
        beta = getattr(self.base_layer.basis, self.rule.shape_param)
        if self.beta_degrees:
            beta = beta.index_add(0, self.beta_delta_index, self.beta_delta)
        if self.extra_degrees:
            beta = torch.cat([beta[: self.degree], self.beta_extra, beta.new_zeros(1)])
        return beta

    # -- forward --------------------------------------------------------------------------------------------
    def _call_basis(self, basis: nn.Module, beta: Optional[torch.Tensor], z: torch.Tensor,
                    prefix: Optional[torch.Tensor]) -> torch.Tensor:
        if beta is None:
            return basis(z, prefix)
        return functional_call(basis, {self.rule.shape_param: beta}, (z, prefix))

    def basis_values(self, z: torch.Tensor,
                     prefix: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(``[prefix,] B_0..B_D`` as the base layer stacks them, the extra functions or None)."""
        beta = self.effective_beta()
        base_basis = self.base_layer.basis
        if not self.extra_degrees:
            return self._call_basis(base_basis, beta, z, prefix), None
        raised = self.__dict__["_raised_basis"]
        if self.rule.nested:
            values = self._call_basis(raised, beta, z, prefix)
            k = self.num_basis + (prefix is not None)
            return values[:, :, :k], values[:, :, k:]
        main = self._call_basis(base_basis, None, z, prefix)
        extra = self._call_basis(raised, None, z, None)
        return main, extra[:, :, self.num_basis:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind is KANConvNd:
            return self._forward_conv(x)
        if self.kind is BottleneckKANConvNd:
            return self._forward_bottleneck_conv(x)
        if self.kind is KANLinear:
            return self._forward_linear(x)
        return self._forward_bottleneck_linear(x)

    def _forward_conv(self, x: torch.Tensor) -> torch.Tensor:
        layer: KANConvNd = self.base_layer
        check_input(x, layer.ndim, layer.in_channels, "KANConvNd")
        check_spatial(x, layer.kernel_size, layer.padding, layer.dilation, "KANConvNd")
        z = layer.dropout(layer.basis_norm(x))
        prefix = layer.base_act(x) if layer.weight is not None else None
        main, extra = self.basis_values(z, prefix)
        w = self.effective_basis_weight()
        if layer.weight is not None:
            w = torch.cat([layer.weight.unsqueeze(2), w], dim=2)
        y = layer._conv(_flat(main), w.flatten(1, 2))
        if extra is not None:
            y = y + layer._conv(_flat(extra), self.extra_weight().flatten(1, 2))
        return layer.act(layer.norm(y))

    def _forward_bottleneck_conv(self, x: torch.Tensor) -> torch.Tensor:
        layer: BottleneckKANConvNd = self.base_layer
        check_input(x, layer.ndim, layer.in_channels, "BottleneckKANConvNd")
        check_spatial(x, layer.kernel_size, layer.padding, layer.dilation, "BottleneckKANConvNd")
        base, z = layer._base_and_inner(x)
        main, extra = self.basis_values(z, None)
        geometry = (layer.stride, layer.padding, layer.dilation, layer.groups, layer.ndim)
        y = conv_nd(_flat(main), self.effective_basis_weight().flatten(1, 2), *geometry)
        if extra is not None:
            y = y + conv_nd(_flat(extra), self.extra_weight().flatten(1, 2), *geometry)
        return layer._expand(y, base)

    def _forward_linear(self, x: torch.Tensor) -> torch.Tensor:
        layer: KANLinear = self.base_layer
        check_features(x, layer.in_features, "KANLinear")
        out_shape = list(x.shape[:-1]) + [layer.out_features]
        x = x.reshape(-1, layer.in_features)
        z = layer.dropout(layer.basis_norm(x))
        prefix = layer.base_act(x) if layer.weight is not None else None
        main, extra = self.basis_values(z, prefix)
        w = self.effective_basis_weight()
        if layer.weight is not None:
            w = torch.cat([layer.weight.unsqueeze(2), w], dim=2)
        y = F.linear(_flat(main), w.flatten(1), layer.bias)
        if extra is not None:
            y = y + F.linear(_flat(extra), self.extra_weight().flatten(1))
        return layer.act(layer.norm(y)).reshape(out_shape)

    def _forward_bottleneck_linear(self, x: torch.Tensor) -> torch.Tensor:
        layer: BottleneckKANLinear = self.base_layer
        check_features(x, layer.in_features, "BottleneckKANLinear")
        out_shape = list(x.shape[:-1]) + [layer.out_features]
        x = x.reshape(-1, layer.in_features)
        z = F.linear(layer.dropout(x), layer.inner_weight, layer.inner_bias)
        main, extra = self.basis_values(z, None)
        y = F.linear(_flat(main), self.effective_basis_weight().flatten(1))
        if extra is not None:
            y = y + F.linear(_flat(extra), self.extra_weight().flatten(1))
        y = F.linear(y, layer.outer_weight, layer.outer_bias)
        if layer.weight is not None:
            y = y + F.linear(layer.base_act(x), layer.weight)
        return layer.act(layer.norm(y)).reshape(out_shape)

    # -- merge ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self) -> nn.Module:
        """Folds the adapter into ``base_layer`` (in place) and returns it.

        The coefficients become W' (elevated to degree D+E with the extra coefficients added at the new
        degrees), the basis becomes the raised one, and Gram's β becomes :meth:`effective_beta`. The
        returned layer is a plain kanzoo layer: the one ``__init__`` would build with ``degree=D+E``.
        """
        layer = self.base_layer
        weight = self.effective_basis_weight()
        beta = self.effective_beta()
        if self.extra_degrees:
            weight = self.rule.elevate(weight, self.degree, self.extra_degrees)
            n = self.num_basis
            weight = torch.cat([weight[:, :, :n], weight[:, :, n:] + self.extra_weight()], dim=2)
            old = layer.basis
            new = self.rule.raised(old, self.extra_degrees)
            for name, p in old.named_parameters(recurse=False):
                getattr(new, name).requires_grad_(p.requires_grad)
            new.train(old.training)
            layer.basis = new
            layer.num_basis = new.num_basis
        if beta is not None:
            getattr(layer.basis, self.rule.shape_param).copy_(beta)
        requires_grad = layer.basis_weight.requires_grad
        layer.basis_weight = nn.Parameter(weight.detach().clone(), requires_grad=requires_grad)
        return layer

    def adapter_parameters(self) -> Dict[str, nn.Parameter]:
        """The adapter's own tensors, by name (``basis_delta``, ``beta_extra``, ...)."""
        return {n: p for n, p in self.named_parameters(recurse=False)}

    def record(self) -> Dict[str, Any]:
        """The layer's entry in ``adapter_config.json``'s ``target_layers``."""
        return {**layer_signature(self.base_layer), "degree": self.degree, "num_basis": self.num_basis,
                "trainable_degrees": list(self.trainable_degrees), "extra_degrees": self.extra_degrees,
                "rank": self.rank}

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_layer":
                raise
            return getattr(self.base_layer, name)

    def extra_repr(self) -> str:
        s = f"basis={self.rule.name}, trainable_degrees={self.trainable_degrees}, extra_degrees={self.extra_degrees}"
        return s + (f", rank={self.rank}" if self.rank is not None else "")


class RationalAdapterLayer(BasisAdapterLayer):
    r"""A :class:`~kanzoo.layers.GroupRational` (``base_layer``, frozen) with a coefficient adapter.

    The layer computes, for the channels of group g,
    :math:`F_g(x) = P(x)/Q_g(x)`, :math:`P = \sum_{i\le m} a_i x^i` (one numerator, shared by the groups) and
    :math:`Q_g = 1 + \sum_{j<n} |b_{gj}|\,|x|^{j+1}`. A trainable degree d is a power of x: it gets a delta on
    the numerator's :math:`a_d` (when d ≤ m) and on every group's :math:`b_{g,d-1}`, the coefficient of
    :math:`|x|^d` (when 1 ≤ d ≤ n). The adapted layer runs the base layer's own forward with

    .. math::
        a' = a + \Delta a,\qquad b' = b + \Delta b\quad(\text{before the } |\cdot|)

    so with zero deltas it is bit-for-bit the base layer, and :meth:`merge` writes a', b' into the layer, which
    then computes exactly the adapted function (the same kernel on the same coefficients). The merged layer
    keeps its order, its shared-numerator layout and its parameter names (KAT checkpoints' layout).

    A rational is a kind of :class:`BasisAdapterLayer` (``isinstance`` finds every adapter), but it has no
    basis module, no extra degrees and no low-rank form: its deltas are a (1, ·) and a (G, ·) tensor.

    Attributes (those that exist for the trainable degrees):
        numerator_delta (1, |T_P|): the delta on a_d for d in T_P = [d in T, d ≤ m] (increasing).
        denominator_delta (G, |T_Q|): the delta on b_{g,d-1} for d in T_Q = [d in T, 1 ≤ d ≤ n] (increasing).
    """

    def __init__(self, base_layer: nn.Module, trainable_degrees: Sequence[int]):
        nn.Module.__init__(self)   # not BasisAdapterLayer.__init__: a rational has no basis module or basis_weight
        if adapter_layer_kind(base_layer) is not GroupRational:
            raise ValueError(f"RationalAdapterLayer adapts a GroupRational, got {type(base_layer).__name__}")
        reason = unsupported_reason(base_layer)
        if reason is not None:
            raise ValueError(f"cannot adapt {type(base_layer).__name__}: {reason}")
        self.base_layer = base_layer
        self.kind = GroupRational
        self.rule = None
        m, n = rational_order(base_layer)
        self.rational_order = (m, n)
        self.degree = max(m, n)
        self.num_basis = self.degree + 1
        self.trainable_degrees: List[int] = sorted(int(d) for d in trainable_degrees)
        bad = [d for d in self.trainable_degrees if d < 0 or d > self.degree]
        if bad:
            raise ValueError(f"trainable degrees {bad} are out of range for a GroupRational of order ({m}, {n}): "
                             f"its degrees are the powers of x 0..{self.degree}")
        self.extra_degrees = 0
        self.rank = None
        self.numerator_degrees = [d for d in self.trainable_degrees if d <= m]
        self.denominator_degrees = [d for d in self.trainable_degrees if 1 <= d <= n]
        a, b = base_layer.weight_numerator, base_layer.weight_denominator
        if self.numerator_degrees:
            self.numerator_delta = nn.Parameter(torch.zeros(1, len(self.numerator_degrees), device=a.device,
                                                            dtype=a.dtype))
        if self.denominator_degrees:
            self.denominator_delta = nn.Parameter(torch.zeros(b.shape[0], len(self.denominator_degrees),
                                                              device=b.device, dtype=b.dtype))
        self.register_buffer("numerator_index", torch.tensor(self.numerator_degrees, dtype=torch.long,
                                                             device=a.device), persistent=False)
        self.register_buffer("denominator_index", torch.tensor([d - 1 for d in self.denominator_degrees],
                                                               dtype=torch.long, device=b.device), persistent=False)

    # -- coefficients ---------------------------------------------------------------------------------------
    def _adapted(self, coef: torch.Tensor, degrees: List[int], part: str) -> torch.Tensor:
        """``coef`` plus the ``part`` delta (numerator or denominator) at its trainable columns."""
        if not degrees:
            return coef
        delta = getattr(self, f"{part}_delta")
        if len(degrees) == coef.shape[1]:
            return coef + delta
        return coef.index_add(1, getattr(self, f"{part}_index"), delta)

    def effective_numerator(self) -> torch.Tensor:
        """a' = a + Δa at the trainable numerator powers, (1, m+1)."""
        return self._adapted(self.base_layer.weight_numerator, self.numerator_degrees, "numerator")

    def effective_denominator(self) -> torch.Tensor:
        """b' = b + Δb at the trainable denominator powers (before the |·| of Q), (G, n)."""
        return self._adapted(self.base_layer.weight_denominator, self.denominator_degrees, "denominator")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params: Dict[str, torch.Tensor] = {}
        if self.numerator_degrees:
            params["weight_numerator"] = self.effective_numerator()
        if self.denominator_degrees:
            params["weight_denominator"] = self.effective_denominator()
        if not params:
            return self.base_layer(x)
        # the layer's own forward (kernel choice, formula path, dtype handling) on the adapted coefficients
        return functional_call(self.base_layer, params, (x,))

    # -- merge ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self) -> nn.Module:
        """Writes a' and b' into ``base_layer`` (in place, same shapes and parameter objects) and returns it."""
        layer = self.base_layer
        a, b = self.effective_numerator(), self.effective_denominator()
        if a is not layer.weight_numerator:
            layer.weight_numerator.copy_(a)
        if b is not layer.weight_denominator:
            layer.weight_denominator.copy_(b)
        return layer

    def record(self) -> Dict[str, Any]:
        return {**layer_signature(self.base_layer), "trainable_degrees": list(self.trainable_degrees),
                "numerator_degrees": list(self.numerator_degrees),
                "denominator_degrees": list(self.denominator_degrees), "extra_degrees": 0, "rank": None}

    def extra_repr(self) -> str:
        m, n = self.rational_order
        return (f"basis=rational, order=({m}, {n}), trainable_degrees={self.trainable_degrees} (numerator powers "
                f"{self.numerator_degrees}, denominator powers {self.denominator_degrees})")
