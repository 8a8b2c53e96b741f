"""torch-conv-kan conv layers (``kan_convs``) -> :class:`kanzoo.layers.KANConvNd`."""
from __future__ import annotations

from functools import partial
from typing import Any, Dict, Tuple

import torch
from torch import nn

from ...layers import KANConvNd
from ._args import class_name, conv_args, ndim_of, split_norm_kwargs
from ._state import StateReader, channel_major_to_channel, degree_major_to_channel, norm_state

# family -> (kanzoo basis, basis weight key, layout of the reference basis channels)
CONV_FAMILIES = {
    "KANConv": ("bspline", "spline_conv.{}.weight", "channel"),
    "KALN": ("legendre", "poly_weights", "degree"),
    "KACN": ("chebyshev", "poly_conv.{}.weight", "channel"),
    "KAGN": ("gram", "poly_weights", "degree"),
    "KAJN": ("jacobi", "poly_weights", "degree"),
    "KABN": ("bernstein", "poly_weights", "channel"),
    "FastKAN": ("rbf", "spline_conv.{}.weight", "channel"),
    "ReLUKAN": ("relu", "relukan_conv.{}.weight", "channel"),
    "KAGNv2": ("gram", "poly_conv.weight", "v2"),
}


def conv_kwargs(case: Dict[str, Any], family: str) -> Tuple[Dict[str, Any], int]:
    """kanzoo KANConvNd kwargs for a reference conv layer description; also returns ndim."""
    a = conv_args(case)
    a, norm_kw = split_norm_kwargs(a)
    ndim = ndim_of(case["ref_class"])
    basis = CONV_FAMILIES[family][0]
    kw: Dict[str, Any] = dict(
        in_channels=a.pop("input_dim"), out_channels=a.pop("output_dim"), kernel_size=a.pop("kernel_size"),
        stride=a.pop("stride", 1), padding=a.pop("padding", 0), dilation=a.pop("dilation", 1),
        groups=a.pop("groups", 1), ndim=ndim, basis=basis, dropout=a.pop("dropout", 0.0),
    )
    norm = class_name(a.pop("norm_layer", "torch.nn.InstanceNorm2d"))
    if basis == "rbf":
        kw["basis_norm"] = partial(_norm_class(norm, ndim), **norm_kw)
        kw["norm_layer"] = "none"
    else:
        kw["norm_layer"] = norm
        kw["norm_kwargs"] = norm_kw
    if "base_activation" in a:
        kw["base_act"] = class_name(a.pop("base_activation"))
    if basis in ("gram", "legendre", "jacobi", "bernstein", "chebyshev"):
        kw["degree"] = a.pop("degree", 3)
    if basis == "legendre":
        kw["minmax"] = "batch"
    if basis == "jacobi":
        kw["a"], kw["b"] = a.pop("a", 1.0), a.pop("b", 1.0)
    if basis == "bspline":
        kw["grid_size"] = a.pop("grid_size", 5)
        kw["spline_order"] = a.pop("spline_order", 3)
        kw["grid_range"] = tuple(a.pop("grid_range", (-1, 1)))
    if basis == "rbf":
        kw["grid_size"] = a.pop("grid_size", 8)
        kw["grid_range"] = tuple(a.pop("grid_range", (-2, 2)))
    if basis == "relu":
        kw["g"], kw["k"] = a.pop("g", 5), a.pop("k", 3)
        a.pop("train_ab", None)
    if family == "KAGNv2" and kw["groups"] > 1:
        kw["basis_layout"] = "degree_global"
    a.pop("l1_decay", None)
    if a:
        raise ValueError(f"{case['ref_class']}: arguments kanzoo does not understand: {sorted(a)}")
    return kw, ndim


def _norm_class(name: str, ndim: int):
    table = {"batch": [nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d],
             "instance": [nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d]}
    if name not in table:
        raise ValueError(f"unsupported norm for a FastKAN input norm: {name!r}")
    return table[name][ndim - 1]


def convert_conv_state(reader: StateReader, layer: KANConvNd, family: str, dst: str = "") -> Dict[str, torch.Tensor]:
    """Maps one reference conv layer's keys (under ``reader``'s prefix) to ``layer``'s kanzoo keys."""
    G = layer.groups
    cig = layer.in_channels // G
    nb = layer.num_basis
    out: Dict[str, torch.Tensor] = {}
    _, wkey, layout = CONV_FAMILIES[family]
    if family == "KAGNv2":
        out[dst + "weight"] = reader.take("base_conv.weight")
        w = reader.take(wkey)
        if layout == "v2" and G == 1:
            w = degree_major_to_channel(w, cig, nb)
        out[dst + "basis_weight"] = w.reshape(layer.basis_weight.shape)
        norm_state(reader, "layer_norm", 1, dst + "norm", out)
    else:
        if layer.weight is not None:
            out[dst + "weight"] = torch.cat(reader.take_groups("base_conv.{}.weight", G))
        if "{}" in wkey:
            w = torch.cat(reader.take_groups(wkey, G))
        else:
            w = reader.take(wkey)
            w = w.reshape((-1,) + tuple(w.shape[2:]))
        conv = degree_major_to_channel if layout == "degree" else channel_major_to_channel
        out[dst + "basis_weight"] = conv(w, cig, nb)
        if family == "FastKAN":
            norm_state(reader, "layer_norm.{}", G, dst + "basis_norm", out)
        else:
            norm_state(reader, "layer_norm.{}", G, dst + "norm", out)
    if family in ("KAGN", "KAGNv2"):
        out[dst + "basis.beta_weights"] = reader.take("beta_weights")
    if family == "KACN":
        arange = reader.take("arange")
        if arange.flatten().tolist() != list(range(nb)):
            raise ValueError(f"KACN 'arange' buffer {arange.flatten().tolist()} is not 0..{nb - 1}")
    if family == "KANConv":
        slopes = torch.cat([s.expand(layer.out_channels // G) for s in reader.take_groups("prelus.{}.weight", G)])
        out[dst + "act.weight"] = slopes
    if family == "FastKAN":
        out[dst + "basis.grid"] = reader.take("rbf.grid")
    if family == "ReLUKAN":
        for name in ("phase_low", "phase_high"):
            p = reader.take(name).reshape(cig, nb)
            out[dst + "basis." + name] = p.repeat(G, 1)
    if family == "KANConv":
        out[dst + "basis.grid"] = layer.basis.grid.detach().clone()
    return out


def build_conv(case: Dict[str, Any], family: str) -> KANConvNd:
    kw, _ = conv_kwargs(case, family)
    return KANConvNd(**kw)


BOTTLENECK_FAMILIES = {"BottleNeckKAGN": "gram", "BottleNeckReLUKAN": "relu"}


def build_bottleneck(case: Dict[str, Any], family: str):
    from ...layers import BottleneckKANConvNd
    a = conv_args(case)
    a, norm_kw = split_norm_kwargs(a)
    basis = BOTTLENECK_FAMILIES[family]
    kw: Dict[str, Any] = dict(
        in_channels=a.pop("input_dim"), out_channels=a.pop("output_dim"), kernel_size=a.pop("kernel_size"),
        stride=a.pop("stride", 1), padding=a.pop("padding", 0), dilation=a.pop("dilation", 1),
        groups=a.pop("groups", 1), ndim=ndim_of(case["ref_class"]), basis=basis, dropout=a.pop("dropout", 0.0),
        dim_reduction=a.pop("dim_reduction", 4.0), min_internal=a.pop("min_internal", 16),
        norm_layer=class_name(a.pop("norm_layer", "torch.nn.InstanceNorm2d")), norm_kwargs=norm_kw,
    )
    if "base_activation" in a:
        kw["base_act"] = class_name(a.pop("base_activation"))
    if basis == "gram":
        kw["degree"] = a.pop("degree", 3)
    else:
        kw["g"], kw["k"] = a.pop("g", 5), a.pop("k", 3)
        a.pop("train_ab", None)
    a.pop("l1_decay", None)
    if a:
        raise ValueError(f"{case['ref_class']}: arguments kanzoo does not understand: {sorted(a)}")
    return BottleneckKANConvNd(**kw)


def convert_bottleneck_state(reader: StateReader, layer, family: str, dst: str = "") -> Dict[str, torch.Tensor]:
    G, inner, nb = layer.groups, layer.inner_channels, layer.num_basis
    out: Dict[str, torch.Tensor] = {}
    out[dst + "weight"] = torch.cat(reader.take_groups("base_conv.{}.weight", G))
    out[dst + "inner_weight"] = torch.cat(reader.take_groups("inner_proj.{}.weight", G))
    out[dst + "outer_weight"] = torch.cat(reader.take_groups("out_proj.{}.weight", G))
    if family == "BottleNeckKAGN":
        w = reader.take("poly_weights")
        out[dst + "basis_weight"] = degree_major_to_channel(w.reshape((-1,) + tuple(w.shape[2:])), inner, nb)
        out[dst + "basis.beta_weights"] = reader.take("beta_weights")
    else:
        w = torch.cat(reader.take_groups("relukan_conv.{}.weight", G))
        out[dst + "basis_weight"] = channel_major_to_channel(w, inner, nb)
        for name in ("phase_low", "phase_high"):
            out[dst + "basis." + name] = reader.take(name).reshape(inner, nb).repeat(G, 1)
    norm_state(reader, "layer_norm.{}", G, dst + "norm", out)
    return out
