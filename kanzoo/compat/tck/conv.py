"""torch-conv-kan conv layers (``kan_convs``) -> :class:`kanzoo.layers.KANConvNd` and
:class:`kanzoo.layers.BottleneckKANConvNd`.

This module builds the kanzoo layer for a reference description. The key conversion is shared with the VGG models
and lives in :mod:`kanzoo.models._tck_layers` (:func:`convert_conv_state`, :func:`convert_bottleneck_state`,
re-exported here). Each kanzoo basis names its torch-conv-kan families (``upstream_names``), so the family ->
basis tables below are derived from the basis classes.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Dict, Tuple

from torch import nn

from ...layers import BottleneckKANConvNd, KANConvNd
from ...layers.bases import basis_classes
from ...models._tck_layers import BOTTLENECK_LAYOUTS, CONV_LAYOUTS, convert_bottleneck_state, convert_conv_state
from ._args import class_name, conv_args, ndim_of, split_norm_kwargs

__all__ = ["BOTTLENECK_FAMILIES", "CONV_FAMILIES", "build_bottleneck", "build_conv", "conv_kwargs",
           "convert_bottleneck_state", "convert_conv_state"]


def _families(kind: str, layouts: Dict[str, Any]) -> Dict[str, str]:
    """``{torch-conv-kan family: kanzoo basis}`` of the bases that name a ``kind`` family kanzoo converts."""
    return {cls.upstream_names[kind]: name for name, cls in basis_classes().items()
            if cls.upstream_names.get(kind) in layouts}


#: torch-conv-kan conv family -> kanzoo basis; KAGN v2 is a second key layout of the Gram conv
CONV_FAMILIES = {**_families("conv", CONV_LAYOUTS), "KAGNv2": "gram"}
#: torch-conv-kan bottleneck conv family -> kanzoo basis
BOTTLENECK_FAMILIES = _families("bottleneck", BOTTLENECK_LAYOUTS)


def conv_kwargs(case: Dict[str, Any], family: str) -> Tuple[Dict[str, Any], int]:
    """kanzoo KANConvNd kwargs for a reference conv layer description; also returns ndim."""
    a = conv_args(case)
    a, norm_kw = split_norm_kwargs(a)
    ndim = ndim_of(case["ref_class"])
    basis = CONV_FAMILIES[family]
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
    if basis_classes()[basis].polynomial:
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


def take_basis_kwargs(a: Dict[str, Any], basis: str) -> Dict[str, Any]:
    """Pops from ``a`` the base activation and the basis arguments of a reference layer whose basis is
    polynomial (``degree``) or ReLU-KAN (``g``, ``k``; ``train_ab`` has no kanzoo counterpart and is dropped),
    as kanzoo kwargs: the bottleneck convs and the attention blocks."""
    kw: Dict[str, Any] = {}
    if "base_activation" in a:
        kw["base_act"] = class_name(a.pop("base_activation"))
    if basis_classes()[basis].polynomial:
        kw["degree"] = a.pop("degree", 3)
    else:
        kw["g"], kw["k"] = a.pop("g", 5), a.pop("k", 3)
        a.pop("train_ab", None)
    return kw


def _norm_class(name: str, ndim: int):
    table = {"batch": [nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d],
             "instance": [nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d]}
    if name not in table:
        raise ValueError(f"unsupported norm for a FastKAN input norm: {name!r}")
    return table[name][ndim - 1]


def build_conv(case: Dict[str, Any], family: str) -> KANConvNd:
    kw, _ = conv_kwargs(case, family)
    return KANConvNd(**kw)


def build_bottleneck(case: Dict[str, Any], family: str) -> BottleneckKANConvNd:
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
    kw.update(take_basis_kwargs(a, basis))
    a.pop("l1_decay", None)
    if a:
        raise ValueError(f"{case['ref_class']}: arguments kanzoo does not understand: {sorted(a)}")
    return BottleneckKANConvNd(**kw)
