"""torch-conv-kan linear networks and layers (``kans``) -> kanzoo linear layers.

A network (``KAN([6, 5, 4])``, ``KAGN(...)``, ...) becomes an ``nn.Sequential`` of kanzoo layers, one per
``layers.{i}`` of the reference; a single reference layer (``GRAMLayer(6, 5)``, ...) becomes one kanzoo layer.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import torch
from torch import nn

from ...layers import BottleneckKANLinear, KANLinear, WaveletKANLinear
from ...layers.create import get_act_layer
from ._args import class_name
from ._state import StateReader

# network class -> family; single-layer class -> family
NETWORK_CLASSES = {
    "KAN": "KAN-linear", "KALN": "KALN-linear", "KACN": "KACN-linear", "KAGN": "KAGN-linear",
    "FastKAN": "FastKAN-linear", "WavKAN": "WavKAN-linear", "KAJN": "KAJN-linear", "KABN": "KABN-linear",
    "ReLUKAN": "ReLUKAN-linear", "BottleNeckKAGN": "BottleNeckKAGN-linear",
}
LAYER_CLASSES = {
    "KANLayer": "KAN-linear", "KALNLayer": "KALN-linear", "ChebyKANLayer": "KACN-linear",
    "GRAMLayer": "KAGN-linear", "FastKANLayer": "FastKAN-linear", "WavKANLayer": "WavKAN-linear",
    "JacobiKANLayer": "KAJN-linear", "BernsteinKANLayer": "KABN-linear", "ReLUKANLayer": "ReLUKAN-linear",
    "BottleNeckGRAMLayer": "BottleNeckKAGN-linear",
}
LINEAR_FAMILIES = tuple(NETWORK_CLASSES.values())


def _base_act(a: Dict[str, Any], default: str, verified: bool) -> str:
    """The reference ``base_activation``; where its effect is not verified only the default is accepted."""
    act = class_name(a.pop("base_activation", default))
    if not verified and act != default:
        raise ValueError(f"base_activation={act!r} is not supported by the converter for this family "
                         f"(only the reference default {default!r} is verified)")
    return act


def _layer_factory(family: str, a: Dict[str, Any]) -> Callable[[int, int], nn.Module]:
    """Consumes the family's layer kwargs from ``a`` and returns ``(in, out) -> kanzoo layer``."""
    if family == "KAN-linear":
        kw = dict(basis="bspline", base_act=_base_act(a, "gelu", True), norm_layer="layer", act_layer="prelu",
                  grid_size=a.pop("grid_size", 5), spline_order=a.pop("spline_order", 3),
                  grid_range=tuple(a.pop("grid_range", (-1.0, 1.0))))
        return lambda i, o: KANLinear(i, o, **kw)
    if family == "KALN-linear":
        # the linear KALN has a SiLU base branch and a batch-global min/max (kanzoo default: per sample)
        kw = dict(basis="legendre", degree=a.pop("degree", 3), minmax="batch",
                  base_act=_base_act(a, "silu", False), norm_layer="layer", act_layer="silu")
        return lambda i, o: KANLinear(i, o, **kw)
    if family == "KACN-linear":
        kw = dict(basis="chebyshev", degree=a.pop("degree", 3), use_base=False, norm_layer="none",
                  act_layer="identity")
        return lambda i, o: KANLinear(i, o, **kw)
    if family == "KAGN-linear":
        act = _base_act(a, "silu", True)
        kw = dict(basis="gram", degree=a.pop("degree", 3), base_act=act, norm_layer="layer", act_layer=act)
        return lambda i, o: _with_basis_act(KANLinear(i, o, **kw), act)
    if family == "FastKAN-linear":
        kw = dict(basis="rbf", grid_size=a.pop("grid_size", 8), grid_range=tuple(a.pop("grid_range", (-2.0, 2.0))),
                  base_act=_base_act(a, "silu", True), bias=True, basis_norm="layer", norm_layer="none",
                  act_layer="identity")
        return lambda i, o: KANLinear(i, o, **kw)
    if family == "WavKAN-linear":
        kw = dict(wavelet_type=a.pop("wavelet_type", "mexican_hat"), base_act=_base_act(a, "silu", False),
                  norm_layer="batch")
        return lambda i, o: WaveletKANLinear(i, o, **kw)
    if family in ("KAJN-linear", "KABN-linear"):
        kw = dict(degree=a.pop("degree", 3), base_act=_base_act(a, "silu", False), norm_layer="layer",
                  act_layer="silu")
        if family == "KAJN-linear":
            kw.update(basis="jacobi", a=float(a.pop("a", 1.0)), b=float(a.pop("b", 1.0)))
        else:
            kw.update(basis="bernstein")
        return lambda i, o: KANLinear(i, o, **kw)
    if family == "ReLUKAN-linear":
        kw = dict(basis="relu", g=a.pop("g", 1), k=a.pop("k", 1), train_phases=bool(a.pop("train_ab", True)),
                  use_base=False, bias=True, norm_layer="none", act_layer="identity")
        return lambda i, o: KANLinear(i, o, **kw)
    if family == "BottleNeckKAGN-linear":
        act = _base_act(a, "silu", False)
        kw = dict(basis="gram", degree=a.pop("degree", 3), dim_reduction=a.pop("dim_reduction", 8),
                  min_internal=a.pop("min_internal", 16), base_act=act, norm_layer="layer", act_layer=act)
        return lambda i, o: BottleneckKANLinear(i, o, **kw)
    raise ValueError(f"unknown torch-conv-kan linear family {family!r}")


def _with_basis_act(layer: nn.Module, act: str) -> nn.Module:
    # the reference GRAM layer uses one activation for base, basis and output
    layer.basis.act = get_act_layer(act)()
    return layer


def is_single_layer(case: Dict[str, Any]) -> bool:
    return case.get("ref_class") in LAYER_CLASSES


def build_linear(case: Dict[str, Any], family: str) -> nn.Module:
    """A kanzoo ``nn.Sequential`` for a reference network, or one kanzoo layer for a reference layer."""
    a = dict(case.get("ctor_kwargs", {}))
    args = list(case.get("ctor_args", []))
    single = is_single_layer(case)
    if single:
        names = ["input_dim", "output_dim"]
        a.update(dict(zip(names, args)))
        if "input_dim" not in a or "output_dim" not in a:
            raise ValueError(f"{case['ref_class']}: needs input_dim and output_dim, got args {args}")
        dims = [int(a.pop("input_dim")), int(a.pop("output_dim"))]
        dropout = 0.0
    else:
        dims = list(args[0]) if args else list(a.pop("layers_hidden", []))
        a.pop("layers_hidden", None)
        if len(dims) < 2:
            raise ValueError(f"{case['ref_class']}: needs a list of at least 2 widths, got {dims!r}")
        dropout = float(a.pop("dropout", 0.0))
    a.pop("l1_decay", None)
    make = _layer_factory(family, a)
    if a:
        raise ValueError(f"{case['ref_class']}: arguments kanzoo does not understand: {sorted(a)}")
    layers = [make(i, o) for i, o in zip(dims[:-1], dims[1:])]
    if single:
        return layers[0]
    mods: List[nn.Module] = []
    for layer in layers:
        if dropout > 0:
            # inert in eval; train-time placement is kanzoo's (before every layer), see docs/compat.md
            mods.append(nn.Dropout(dropout))
        mods.append(layer)
    return nn.Sequential(*mods)


def _norm(reader: StateReader, src: str, dst: str, out: Dict[str, torch.Tensor]) -> None:
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        if reader.has(f"{src}.{name}"):
            out[f"{dst}.{name}"] = reader.take(f"{src}.{name}")


def _io_coeffs(w: torch.Tensor) -> torch.Tensor:
    """Reference (in, out, F) einsum coefficients -> kanzoo (out, in, F)."""
    return w.permute(1, 0, 2).contiguous()


def convert_layer_state(reader: StateReader, layer: nn.Module, family: str, dst: str = "") -> Dict[str, torch.Tensor]:
    """Maps one reference linear layer's keys (under ``reader``'s prefix) to ``layer``'s kanzoo keys."""
    out: Dict[str, torch.Tensor] = {}
    if family == "KAN-linear":
        out[dst + "weight"] = reader.take("base_weight")
        out[dst + "basis_weight"] = reader.take("spline_weight")
        _norm(reader, "layer_norm", dst + "norm", out)
        out[dst + "act.weight"] = reader.take("prelu.weight").reshape(-1).expand(layer.out_features).clone()
        out[dst + "basis.grid"] = layer.basis.grid.detach().clone()
    elif family == "KALN-linear":
        out[dst + "weight"] = reader.take("base_weight")
        out[dst + "basis_weight"] = reader.take("poly_weight").reshape(layer.basis_weight.shape)
        _norm(reader, "layer_norm", dst + "norm", out)
    elif family == "KACN-linear":
        out[dst + "basis_weight"] = _io_coeffs(reader.take("cheby_coeffs"))
        arange = reader.take("arange")
        if arange.flatten().tolist() != list(range(layer.num_basis)):
            raise ValueError(f"KACN 'arange' buffer {arange.flatten().tolist()} is not 0..{layer.num_basis - 1}")
    elif family in ("KAGN-linear", "KAJN-linear", "KABN-linear"):
        coeff = {"KAGN-linear": "grams_basis_weights", "KAJN-linear": "jacobi_coeffs",
                 "KABN-linear": "bernstein_coeffs"}[family]
        if family == "KAGN-linear":
            out[dst + "basis.beta_weights"] = reader.take("beta_weights")
        out[dst + "weight"] = reader.take("base_weights")
        out[dst + "basis_weight"] = _io_coeffs(reader.take(coeff))
        _norm(reader, "norm", dst + "norm", out)
    elif family == "FastKAN-linear":
        _norm(reader, "layernorm", dst + "basis_norm", out)
        out[dst + "basis.grid"] = reader.take("rbf.grid")
        out[dst + "basis_weight"] = reader.take("spline_linear.weight").reshape(layer.basis_weight.shape)
        out[dst + "weight"] = reader.take("base_linear.weight")
        out[dst + "bias"] = reader.take("base_linear.bias")
    elif family == "WavKAN-linear":
        out[dst + "scale"] = reader.take("scale")
        out[dst + "translation"] = reader.take("translation")
        out[dst + "weight"] = reader.take("weight1")
        out[dst + "wavelet_weight"] = reader.take("wavelet_weights")
        _norm(reader, "bn", dst + "norm", out)
    elif family == "ReLUKAN-linear":
        out[dst + "basis.phase_low"] = reader.take("phase_low")
        out[dst + "basis.phase_high"] = reader.take("phase_high")
        # the reference flattens the (in, g+k) basis row-major and reads its (g+k, in) kernel row-major, so
        # the flat kernel reshaped to (in, g+k) pairs each weight with the basis value it actually multiplies
        w = reader.take("equal_size_conv.weight")
        out[dst + "basis_weight"] = w[:, 0].reshape(layer.basis_weight.shape)
        out[dst + "bias"] = reader.take("equal_size_conv.bias")
    elif family == "BottleNeckKAGN-linear":
        out[dst + "basis.beta_weights"] = reader.take("beta_weights")
        out[dst + "basis_weight"] = _io_coeffs(reader.take("grams_basis_weights"))
        out[dst + "weight"] = reader.take("base_weights")
        out[dst + "inner_weight"] = reader.take("inner_proj.weight")
        out[dst + "inner_bias"] = reader.take("inner_proj.bias")
        out[dst + "outer_weight"] = reader.take("outer_proj.weight")
        out[dst + "outer_bias"] = reader.take("outer_proj.bias")
        _norm(reader, "norm", dst + "norm", out)
    else:
        raise ValueError(f"unknown torch-conv-kan linear family {family!r}")
    return out


def convert_linear_state(reader: StateReader, model: nn.Module, family: str) -> Dict[str, torch.Tensor]:
    """Maps a reference network's (``layers.{i}.*``) or single layer's keys to ``model``'s kanzoo keys.

    Reference Dropout modules take ``layers`` indices without keys, so the keyed indices are matched to
    kanzoo's layers in order.
    """
    if not isinstance(model, nn.Sequential):
        return convert_layer_state(reader, model, family)
    kan_layers: List[Tuple[str, nn.Module]] = [(n, m) for n, m in model.named_children()
                                               if not isinstance(m, nn.Dropout)]
    ref_idx = sorted({int(k.split(".")[1]) for k in reader.state
                      if k.startswith("layers.") and k.split(".")[1].isdigit()})
    if len(ref_idx) != len(kan_layers):
        raise ValueError(f"reference state has {len(ref_idx)} keyed layers ({ref_idx}), "
                         f"the kanzoo network has {len(kan_layers)}")
    out: Dict[str, torch.Tensor] = {}
    for i, (name, layer) in zip(ref_idx, kan_layers):
        out.update(convert_layer_state(reader.sub(f"layers.{i}."), layer, family, dst=f"{name}."))
    return out
