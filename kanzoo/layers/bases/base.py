"""The basis interface that every KAN layer in kanzoo is built on, and the registry of bases by name.

A basis declares its own facts as class attributes and methods (its ``name``, the ``model_tag`` of zoo model
names, whether it is ``polynomial``, its FLOPs per scalar, what adapters may do with it, its upstream class
names); kanzoo's tables (the zoo's name tags, the FLOP counter, the adapters, checkpoint conversion) are derived
from them. A new basis is one module: subclass :class:`Basis`, set ``name``, and it is registered.
"""

from typing import Any, ClassVar, Dict, List, Mapping, Optional, Type

import torch
from timm.layers import register_notrace_module
from torch import nn

from .._utils import is_symbolic

#: per-element FLOPs of activations by name (KANbeFair's table, arXiv 2407.16674: exp counts 1, so sigmoid = 4,
#: silu = 5, tanh = 6, gelu's tanh form = 14)
ACT_FLOPS: Dict[str, int] = {"zero": 0, "identity": 0, "relu": 1, "square_relu": 2, "sigmoid": 4, "silu": 5,
                             "tanh": 6, "gelu": 14}

_REGISTRY: Dict[str, Type["Basis"]] = {}


def check_count(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, else a ValueError that names it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def act_flops(act: Any) -> int:
    """Per-element FLOPs of an activation given by name or module (:data:`ACT_FLOPS`)."""
    name = act if isinstance(act, str) else {nn.Identity: "identity", nn.ReLU: "relu", nn.Sigmoid: "sigmoid",
                                             nn.SiLU: "silu", nn.Tanh: "tanh", nn.GELU: "gelu"}.get(type(act))
    if name is None or name.lower() not in ACT_FLOPS:
        raise ValueError(f"no FLOP cost known for activation {act!r}; known: {sorted(ACT_FLOPS)}")
    return ACT_FLOPS[name.lower()]


@register_notrace_module  # forward picks a kernel by grad mode, dtype and size: FX calls it as one op
class Basis(nn.Module):
    """A family of univariate functions B_0..B_{F-1} applied elementwise to a KAN layer's input.

    ``forward(x, prefix)`` maps ``x`` of shape (N, C, *spatial) to (N, C, F, *spatial): the basis axis is
    inserted right after the channel axis, so for channel c the F values are contiguous ("channel-major").
    When ``prefix`` (shape of ``x``) is given it is placed in slot 0 and the basis fills slots 1..F; KAN
    layers use this to run their base branch and their basis branch as one convolution.

    Subclasses set ``num_basis`` and the defaults of the layer built around them (``default_base_act``,
    ``default_act``, ``default_use_base``, ``default_norm``), which follow the paper that introduced them.

    A subclass that sets ``name`` is registered under it (``basis='name'`` in every KAN layer) and declares
    its facts here: ``model_tag``, ``polynomial``, :meth:`flops` / :meth:`flops_per_scalar`, the adapter
    facts (``adaptable``, ``nested``, ``shape_param``, :meth:`raised`, :meth:`elevate`,
    :meth:`shape_param_index`) and ``upstream_names``.
    """

    num_basis: int
    #: the name layers take as ``basis=...``; setting it registers the class
    name: ClassVar[str] = ""
    #: the basis tag of zoo model names (``vgg_kagn11``: ``'kagn'``), or None
    model_tag: ClassVar[Optional[str]] = None
    #: built with ``degree`` (``num_basis = degree + 1``): adapters may add degrees, zoo models default to 3
    polynomial: ClassVar[bool] = False
    #: basis adapters (:mod:`kanzoo.peft`) may train the coefficients of layers built on this basis
    adaptable: ClassVar[bool] = False
    #: the raised basis starts with this one's functions (a recurrence only appends): elevation pads zeros
    nested: ClassVar[bool] = True
    #: a learnable per-degree parameter of the basis (Gram: ``'beta_weights'``), or None
    shape_param: ClassVar[Optional[str]] = None
    #: torch-conv-kan's layer families built on this basis: ``{'conv': 'KAGN', 'bottleneck': 'BottleNeckKAGN'}``
    upstream_names: ClassVar[Mapping[str, str]] = {}
    default_base_act: Optional[str] = "silu"
    default_act: Optional[str] = "silu"
    default_use_base: bool = True
    default_norm: Optional[str] = "instance"
    #: True where the basis holds per-channel parameters and takes ``num_channels`` in its constructor.
    needs_channels: bool = False
    #: True where the basis treats the layer's channel groups separately and takes ``groups``.
    needs_groups: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            register_basis(cls.name, cls)

    def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def flops(cls, **settings: Any) -> int:
        """FLOPs to evaluate all F functions at ONE input scalar, for a basis built with ``settings`` (its
        constructor's keyword arguments). +, -, ×, ÷, comparisons, exp, sin, cos and |·| cost 1, activations
        :data:`ACT_FLOPS`; multiplying by 1 or adding 0 is free. Derivations: docs/profile.md."""
        raise NotImplementedError(f"{cls.__name__} declares no FLOP formula; define its flops() classmethod")

    def flops_per_scalar(self) -> int:
        """:meth:`flops` of this basis, from its own settings."""
        raise NotImplementedError(f"{type(self).__name__} declares no FLOP formula; define flops_per_scalar()")

    def raised(self, extra: int) -> "Basis":
        """A polynomial basis of degree ``degree + extra`` with the same settings (adapters' extra degrees)."""
        raise ValueError(f"the {self.name or type(self).__name__} basis has a fixed set of {self.num_basis} "
                         f"functions; extra degrees apply to polynomial bases only ({', '.join(polynomial_bases())})")

    @classmethod
    def elevate(cls, coefficients: torch.Tensor, degree: int, extra: int) -> torch.Tensor:
        """(O, I, D+1, *k) coefficients over the degree-D basis -> (O, I, D+1+extra, *k) over degree D+extra,
        the same function. For a nested basis the new functions get zero coefficients."""
        pad = list(coefficients.shape)
        pad[2] = extra
        return torch.cat([coefficients, coefficients.new_zeros(pad)], dim=2)

    @classmethod
    def shape_param_index(cls, degree: int) -> Optional[int]:
        """Index of ``shape_param`` that shapes basis function ``degree`` (None when none does)."""
        return None

    def reset_parameters(self, fan_in: int = 1) -> None:
        """Re-initialises learnable basis parameters; ``fan_in`` is the input count of the owning layer."""

    def extra_repr(self) -> str:
        return f"num_basis={self.num_basis}"


class KernelFirst(nn.Module):
    """Mixin for bases with a compiled kernel: ``forward`` runs ``_forward_kernel(x, prefix)`` (None where the
    switch or the input rule it out) and otherwise ``forward_eager(x, prefix)``, the formula that TorchScript,
    tracing, FX and export always take. Put it before :class:`Basis` in the bases of the class."""

    def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not torch.jit.is_scripting() and not torch.jit.is_tracing() and not is_symbolic(x):
            out = self._forward_kernel(x, prefix)
            if out is not None:
                return out
        return self.forward_eager(x, prefix)

    def forward_eager(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError


class CompilableValues(nn.Module):
    """Mixin for bases computed by one elementwise function ``values(x)`` (B-spline, RBF).

    With ``compile_values = True`` (see :func:`kanzoo.layers.compile_bases`) that function runs through
    ``torch.compile``: inductor fuses the whole basis into one loop (C++ on CPU, Triton on GPU) and
    derives its backward, instead of one pass over (N, C, F, ...) per elementary op. The first call per
    input shape compiles (seconds); scripting, tracing and export always use the eager function.
    """

    def __init__(self):
        super().__init__()
        self.compile_values = False

    def values(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.jit.unused
    def _compiled_values(self, x: torch.Tensor) -> torch.Tensor:
        fn = self.__dict__.get("_compiled_fn")
        if fn is None:
            fn = torch.compile(self.values, dynamic=False)
            self.__dict__["_compiled_fn"] = fn
        return fn(x)

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting() or torch.jit.is_tracing() or not self.compile_values:
            return self.values(x)
        return self._compiled_values(x)


def stack_basis(parts: List[torch.Tensor], prefix: Optional[torch.Tensor]) -> torch.Tensor:
    """Stacks per-function tensors (each shaped like the input) on a new axis 2, with ``prefix`` first."""
    if prefix is not None:
        parts = [prefix] + parts
    return torch.stack(parts, dim=2)


def cat_basis(values: torch.Tensor, prefix: Optional[torch.Tensor]) -> torch.Tensor:
    """Like :func:`stack_basis` for a basis computed at once as (N, C, F, *spatial)."""
    if prefix is None:
        return values
    return torch.cat([prefix.unsqueeze(2), values], dim=2)


def check_degree(degree: int) -> int:
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise ValueError(f"degree must be an integer >= 0, got {degree!r}")
    return degree


def register_basis(name: str, cls: Type[Basis]) -> None:
    """Makes ``cls`` available to every KAN layer as ``basis=name`` (subclasses that set ``name`` are registered
    when they are defined)."""
    if not (isinstance(cls, type) and issubclass(cls, Basis)):
        raise TypeError(f"register_basis needs a Basis subclass, got {cls!r}")
    _REGISTRY[name.lower()] = cls


def unregister_basis(name: str) -> None:
    """Removes a registered basis (a plugin's or a test's); unknown names are a ValueError."""
    if name.lower() not in _REGISTRY:
        raise ValueError(f"no basis {name!r} is registered; registered: {sorted(_REGISTRY)}")
    del _REGISTRY[name.lower()]


def list_bases() -> List[str]:
    """The names of the registered bases."""
    return sorted(_REGISTRY)


def basis_classes() -> Dict[str, Type[Basis]]:
    """``{name: class}`` of the registered bases."""
    return dict(sorted(_REGISTRY.items()))


def polynomial_bases() -> List[str]:
    """Names of the registered polynomial bases."""
    return [n for n, c in sorted(_REGISTRY.items()) if c.polynomial]


def basis_tags() -> Dict[str, str]:
    """``{model tag: basis name}``, e.g. ``{'kagn': 'gram', ...}``, for the bases that declare a ``model_tag``."""
    return {c.model_tag: n for n, c in _REGISTRY.items() if c.model_tag}
