r"""Counting parameters and FLOPs of any model by running it once: :func:`count` (per layer, KAN basis
evaluation included) and :func:`count_macs` (the dense work alone).

``torch.utils.flop_counter.FlopCounterMode`` counts the dense work of a network (convolutions, matmuls,
attention) but none of the elementwise work, and in a KAN most of the extra cost is elementwise: evaluating
the basis B_f(x) for every input scalar. :func:`count` adds that by formula, per layer:

* **dense** ops: measured by ``FlopCounterMode`` during one forward (1 FLOP per add and per multiply, so a
  multiply-accumulate is 2);
* **basis evaluation**: every :class:`~kanzoo.layers.Basis` module's forward is hooked and charged
  ``basis.flops_per_scalar() × (scalars it was evaluated at)``, each basis's own formula
  (:mod:`kanzoo.profile.formulas`; derived in docs/profile.md); a :class:`~kanzoo.layers.GroupRational`
  (KAT) is charged :func:`~kanzoo.profile.formulas.rational_flops` per element;
* **elementwise** ops (activations, norms) at fixed per-element costs (:data:`ACT_FLOPS`, KANbeFair's
  table) when ``elementwise=True``; off by default, like ``FlopCounterMode``.

``convention="kanbefair"`` instead reproduces the accounting of KANbeFair (Yu, Yu, Wang, "KAN or MLP: A
Fairer Comparison", arXiv 2407.16674): B-spline KAN layers are charged :func:`kanbefair_flops` /
:func:`kanbefair_params` exactly (a pykan edge-wise layer, whatever kanzoo actually computes), activations
and norms are always counted, and B-spline activations elsewhere cost :func:`kanbefair_bspline_act_flops`
per scalar. docs/profile.md lists where that accounting and the real tensor count differ.

Conventions: FLOPs are for one forward pass at batch size 1 (``batch_size`` scales them), in eval mode;
parameters are trainable and frozen ``nn.Parameter`` elements (buffers such as B-spline grids excluded).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..layers import KANConvNd, KANLinear
from ..layers.bases import Basis, BSplineBasis, act_flops
from ..layers.bases.base import check_count
from ..layers.rational import GroupRational
from ..layers.selectable import SELECTABLE_LAYERS, _PrunedBase
from .formulas import (
    ACT_FLOPS,
    basis_module_flops,
    kanbefair_bspline_act_flops,
    kanbefair_flops,
    kanbefair_params,
    rational_flops,
)

__all__ = ["COUNTED_OPS", "LayerProfile", "Profile", "count", "count_macs"]

#: what torch.utils.flop_counter counts, of the ops kanzoo's models run
COUNTED_OPS = "convolutions, matmuls (mm/addmm/bmm/baddbmm) and attention"


@dataclasses.dataclass
class LayerProfile:
    """One row of :class:`Profile`: a KAN layer (a module that owns a basis, or a selectable/pruned KAN
    layer) or a leaf module, with everything inside it.

    Attributes:
        name: module name (``'<other>'`` for ops outside every layer, e.g. a functional pooling).
        kind: the module's class name.
        params: parameters under the convention; ``tensor_params`` what the tensors hold.
        flops: dense + basis + elementwise (or the KANbeFair formula value).
        dense_flops: measured by FlopCounterMode; basis_flops: basis-evaluation formula;
        elementwise_flops: activations, norms and the layer's own extra terms (S-KAN mixing).
        formula: how the row was counted (``'measured+basis'``, ``'kanbefair'`` ...).
    """

    name: str
    kind: str
    params: int = 0
    tensor_params: int = 0
    flops: int = 0
    dense_flops: int = 0
    basis_flops: int = 0
    elementwise_flops: int = 0
    formula: str = "measured"


@dataclasses.dataclass
class Profile:
    """The result of :func:`count`: per-layer rows and totals (FLOPs for ``batch_size`` samples)."""

    layers: List[LayerProfile]
    convention: str
    input_size: Tuple[int, ...]
    batch_size: int
    elementwise: bool
    warnings: List[str] = dataclasses.field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def tensor_params(self) -> int:
        return sum(r.tensor_params for r in self.layers)

    @property
    def flops(self) -> int:
        return sum(r.flops for r in self.layers)

    @property
    def dense_flops(self) -> int:
        return sum(r.dense_flops for r in self.layers)

    @property
    def basis_flops(self) -> int:
        return sum(r.basis_flops for r in self.layers)

    @property
    def elementwise_flops(self) -> int:
        return sum(r.elementwise_flops for r in self.layers)

    @property
    def macs(self) -> float:
        """Dense MACs (``dense_flops / 2``), what :func:`count_macs` reports."""
        return self.dense_flops / 2

    def to_dict(self) -> Dict[str, Any]:
        return dict(convention=self.convention, input_size=list(self.input_size), batch_size=self.batch_size,
                    elementwise=self.elementwise, params=self.params, tensor_params=self.tensor_params,
                    flops=self.flops, dense_flops=self.dense_flops, basis_flops=self.basis_flops,
                    elementwise_flops=self.elementwise_flops, warnings=list(self.warnings),
                    layers=[dataclasses.asdict(r) for r in self.layers])

    def table(self, max_rows: Optional[int] = None) -> str:
        """A markdown table of the rows (the largest ``max_rows`` by FLOPs) and the totals."""
        rows = self.layers
        if max_rows is not None and len(rows) > max_rows:
            rows = sorted(rows, key=lambda r: -r.flops)[:max_rows]
        out = ["| layer | type | params | FLOPs | dense | basis | elementwise | counted by |",
               "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            out.append(f"| `{r.name}` | {r.kind} | {r.params:,} | {r.flops:,} | {r.dense_flops:,} | "
                       f"{r.basis_flops:,} | {r.elementwise_flops:,} | {r.formula} |")
        out.append(f"| **total** | | **{self.params:,}** | **{self.flops:,}** | {self.dense_flops:,} | "
                   f"{self.basis_flops:,} | {self.elementwise_flops:,} | {self.convention} |")
        return "\n".join(out)

    def __str__(self) -> str:
        return (f"Profile({self.convention}: {self.params:,} params, {self.flops:,} FLOPs "
                f"[dense {self.dense_flops:,} + basis {self.basis_flops:,} + elementwise "
                f"{self.elementwise_flops:,}] at input {self.input_size}, batch {self.batch_size})")


def _is_kan_unit(m: nn.Module) -> bool:
    if isinstance(m, Basis):
        return False
    if isinstance(m, SELECTABLE_LAYERS + (_PrunedBase,)) or hasattr(m, "_profile_flops"):
        return True
    return any(isinstance(c, Basis) for c in m.children())


def _units(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Top-down: a KAN layer (owns a basis, or is a selectable/pruned layer, or has ``_profile_flops``) or a
    leaf module is a unit, and nothing below it is."""
    units: List[Tuple[str, nn.Module]] = []

    def visit(name: str, m: nn.Module) -> None:
        children = list(m.named_children())
        if _is_kan_unit(m) or not children:
            units.append((name, m))
            return
        for cn, c in children:
            visit(f"{name}.{cn}" if name else cn, c)

    visit("", model)
    return units


def _owner(name: str, unit_names: List[str]) -> Optional[str]:
    """The unit that contains module ``name`` (the longest matching prefix)."""
    best = None
    for u in unit_names:
        if u == "" or name == u or name.startswith(u + "."):
            if best is None or len(u) > len(best):
                best = u
    return best


def _kanbefair_unit(m: nn.Module) -> Optional[Tuple[str, Dict[str, Any]]]:
    """('linear'|'conv', settings) when ``m`` is a kanzoo B-spline KAN layer that KANbeFair's formula covers."""
    if not isinstance(getattr(m, "basis", None), BSplineBasis):
        return None
    if type(m).forward is not KANLinear.forward and type(m).forward is not KANConvNd.forward:
        return None
    b = m.basis
    # the shortcut by its per-element cost (KANbeFair's name for it only tells "zero" apart)
    shortcut: Union[str, int] = "zero" if m.weight is None else act_flops(m.base_act)
    settings = dict(G=b.grid_size, K=b.spline_order, shortcut=shortcut)
    return ("linear" if isinstance(m, KANLinear) else "conv"), settings


def _model_device_dtype(model: nn.Module):
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device, torch.get_default_dtype()
    return torch.device("cpu"), torch.get_default_dtype()


def count(model: nn.Module, input_size: Optional[Sequence[int]] = None, convention: str = "kanzoo",
          elementwise: Optional[bool] = None, batch_size: int = 1,
          inputs: Optional[Union[torch.Tensor, Tuple[torch.Tensor, ...]]] = None) -> Profile:
    r"""Per-layer and total parameters and FLOPs of one forward of ``model``.

    Args:
        model: any ``nn.Module``; it runs once in eval mode under ``no_grad`` on its own device (the meta
            device works: nothing is computed). Its train/eval mode is restored.
        input_size: the input shape without the batch dim, e.g. ``(3, 32, 32)`` or ``(64,)``.
        convention: ``'kanzoo'`` (dense ops measured, basis evaluation by kanzoo's formulas) or
            ``'kanbefair'`` (B-spline KAN layers by KANbeFair's formulas, activations and norms counted).
        elementwise: count activations and norms (:data:`ACT_FLOPS`); default False for ``'kanzoo'``
            (so dense models give exactly FlopCounterMode's total) and True for ``'kanbefair'``.
        batch_size: samples in the forward (FLOPs scale with it; parameters do not).
        inputs: a tensor (or tuple) to run instead of ``randn(batch_size, *input_size)``.

    Returns:
        a :class:`Profile`; ``profile.flops``, ``profile.params`` are the totals, ``profile.layers`` the rows.
        A row ``'<other>'`` holds what no layer owns (parameters on the model itself, functional ops).

    Rows are the model's KAN layers (a module that owns a :class:`~kanzoo.layers.Basis`, a selectable or
    pruned S-KAN layer, or a module defining ``_profile_flops(inputs, output, convention) -> int`` for work
    that neither FlopCounterMode nor a basis shows) and its leaf modules. Under ``'kanbefair'``, a
    :class:`~kanzoo.layers.KANLinear` over a B-spline basis is charged
    ``kanbefair_flops(in, out, G, K, shortcut)`` per sample, and a B-spline
    :class:`~kanzoo.layers.KANConvNd` that formula per output position with
    :math:`d_{in} = C_{in}/g \cdot \prod k`, :math:`d_{out} = C_{out}/g`, times g groups (the unfold view of
    a conv, an extrapolation: KANbeFair has no conv layers); other bases keep kanzoo's formulas.
    """
    if convention not in ("kanzoo", "kanbefair"):
        raise ValueError(f"convention must be 'kanzoo' or 'kanbefair', got {convention!r}")
    if elementwise is None:
        elementwise = convention == "kanbefair"
    check_count("batch_size", batch_size, 1)
    device, dtype = _model_device_dtype(model)
    if inputs is None:
        if input_size is None:
            raise ValueError("give input_size (the input shape without the batch dim, e.g. (3, 32, 32)) or inputs")
        input_size = tuple(int(s) for s in input_size)
        inputs = (torch.randn(batch_size, *input_size, device=device, dtype=dtype),)
    elif isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    shape = tuple(inputs[0].shape[1:]) if input_size is None else tuple(input_size)

    units = _units(model)
    unit_names = [n for n, _ in units]
    unit_of = dict(units)
    root = type(model).__name__
    rows = {n: LayerProfile(name=n or "<model>", kind=type(m).__name__) for n, m in units}
    warnings: List[str] = []
    formula_units: Dict[str, Tuple[str, Dict[str, Any]]] = {}
    if convention == "kanbefair":
        for n, m in units:
            spec = _kanbefair_unit(m)
            if spec is not None:
                formula_units[n] = spec

    names = {id(m): n for n, m in model.named_modules()}
    basis_names = [n for n, m in model.named_modules() if isinstance(m, Basis)]
    unit_shapes: Dict[str, Tuple[torch.Size, torch.Size]] = {}
    hooks = []

    def basis_hook(m, args, out):
        n = names[id(m)]
        owner = _owner(n, unit_names)
        if owner in formula_units:
            return
        x = args[0]
        if convention == "kanbefair" and isinstance(m, BSplineBasis):
            f = kanbefair_bspline_act_flops(m.grid_size, m.spline_order)
            rows[owner].formula = "measured+kanbefair spline"
        else:
            try:
                f = basis_module_flops(m)
            except (ValueError, NotImplementedError) as e:
                warnings.append(f"{n}: {e}; its basis evaluation is not counted")
                return
        rows[owner].basis_flops += f * x.numel()

    def elementwise_hook(m, args, out):
        n = names[id(m)]
        if any(n == b or n.startswith(b + ".") for b in basis_names):
            return  # inside a basis (Gram's activation): part of the basis formula
        owner = _owner(n, unit_names)
        if owner in formula_units and n == (f"{owner}.base_act" if owner else "base_act"):
            return  # the formula's shortcut term
        if isinstance(out, torch.Tensor):
            rows[owner].elementwise_flops += ACT_FLOPS[type(m)] * out.numel()

    def unit_hook(m, args, out):
        n = names[id(m)]
        if args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
            unit_shapes[n] = (args[0].shape, out.shape)
        extra = getattr(m, "_profile_flops", None)
        if extra is not None:
            rows[n].elementwise_flops += int(extra(args, out, convention))

    def rational_hook(m, args, out):
        rows[_owner(names[id(m)], unit_names)].basis_flops += rational_flops(tuple(m.order)) * args[0].numel()

    for n, m in model.named_modules():
        if isinstance(m, Basis):
            hooks.append(m.register_forward_hook(basis_hook))
        elif isinstance(m, GroupRational):
            hooks.append(m.register_forward_hook(rational_hook))
        elif elementwise and type(m) in ACT_FLOPS:
            hooks.append(m.register_forward_hook(elementwise_hook))
        if n in unit_of:
            hooks.append(m.register_forward_hook(unit_hook))
    for n, m in units:
        if isinstance(m, SELECTABLE_LAYERS):
            rows[n].formula = "measured+basis+mixing"

    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    flop_counts = counter.get_flop_counts()

    def measured(n: str) -> int:
        key = root if n == "" else f"{root}.{n}"
        return int(sum(flop_counts.get(key, {}).values()))

    total_measured = int(counter.get_total_flops())
    for n, m in units:
        r = rows[n]
        r.tensor_params = sum(p.numel() for p in m.parameters())
        r.params = r.tensor_params
        if n in formula_units:
            kind, s = formula_units[n]
            x_shape, y_shape = unit_shapes[n]
            if kind == "linear":
                samples = math.prod(x_shape[:-1])
                r.dense_flops = 0
                r.basis_flops = samples * kanbefair_flops(m.in_features, m.out_features, **s)
                r.params = kanbefair_params(m.in_features, m.out_features, **s)
            else:
                g = m.groups
                d_in = m.in_channels // g * math.prod(m.kernel_size)
                d_out = m.out_channels // g
                positions = y_shape[0] * math.prod(y_shape[2:])
                r.dense_flops = 0
                r.basis_flops = positions * g * kanbefair_flops(d_in, d_out, **s)
                r.params = g * kanbefair_params(d_in, d_out, **s)
            r.params += sum(p.numel() for name, p in m.named_parameters()
                            if name.startswith(("norm.", "act.")))
            r.formula = "kanbefair"
        else:
            r.dense_flops = measured(n)
            if r.formula == "measured" and r.basis_flops:
                r.formula = "measured+basis"
        r.flops = r.dense_flops + r.basis_flops + r.elementwise_flops

    counted_dense = sum(measured(n) for n in unit_names)
    other_dense = total_measured - counted_dense if "" not in unit_of else 0
    all_params = sum(p.numel() for p in model.parameters())
    other_params = all_params - sum(rows[n].tensor_params for n in unit_names)
    layers = [rows[n] for n in unit_names]
    if other_dense or other_params:
        layers.append(LayerProfile(name="<other>", kind="-", params=other_params, tensor_params=other_params,
                                   flops=other_dense, dense_flops=other_dense, formula="measured"))
    layers = [r for r in layers if r.params or r.flops or r.tensor_params]
    return Profile(layers=layers, convention=convention, input_size=shape, batch_size=int(inputs[0].shape[0]),
                   elementwise=bool(elementwise), warnings=warnings)


def count_macs(model: nn.Module, input_size, device: str = "meta"):
    """MACs (FLOPs / 2) of one batch-1 forward at ``input_size`` (C, H, W), by torch.utils.flop_counter.

    Counts only the ops FlopCounterMode has formulas for: convolutions, matmuls (mm/addmm/bmm/baddbmm) and
    attention. The basis expansion, norms, activations and pooling are elementwise and not counted (see
    :func:`count` for those). On the meta device nothing is computed or allocated. Returns
    ``(macs, {op: flops})``.
    """
    x = torch.randn(1, *input_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    per_op = {str(k).replace("aten.", ""): v for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return counter.get_total_flops() / 2, per_op
