"""torch-conv-kan VGGs (``models.vggkan.VGGKAGN`` / ``VGGKAGN_BN``) -> :class:`kanzoo.models.vgg_kan.VGGKAN`.

The reference keeps one module per config entry in ``features`` (max-pools take an index) and a
``classifier = Sequential(Dropout, Linear)`` after a (1, 1) average pool, so ``features.{i}`` maps to
kanzoo's ``features.{i}`` and ``classifier.1`` to ``head.fc``. Each layer is converted with the per-layer
converters of :mod:`kanzoo.compat.tck.conv`.
"""
from __future__ import annotations

import re
from typing import Any, Dict

import torch
from torch import nn

from ...layers import BottleneckKANConvNd, KANConvNd, KANSelfAttention
from ._args import class_name
from ._state import StateReader, norm_state
from .conv import convert_bottleneck_state, convert_conv_state

FAMILY = "VGG-KAGN"
FAMILY_PATTERNS = [(r"^VGGKAGN(_BN)?$", FAMILY)]

# kanzoo basis class -> torch-conv-kan conv family with the same keys
_BASIS_FAMILY = {
    "GramBasis": "KAGN", "LegendreBasis": "KALN", "ChebyshevBasis": "KACN", "JacobiBasis": "KAJN",
    "BernsteinBasis": "KABN", "BSplineBasis": "KANConv", "RBFBasis": "FastKAN", "ReLUBasis": "ReLUKAN",
}
_BOTTLENECK_FAMILY = {"GramBasis": "BottleNeckKAGN", "ReLUBasis": "BottleNeckReLUKAN"}
_REFERENCE_KEY = re.compile(r"^features\.\d+\.(module\.)?(poly_weights|beta_weights|base_conv\.|layer_norm\.|"
                            r"spline_conv\.|poly_conv\.|relukan_conv\.|inner_proj\.\d|proj_q\.)")


def is_reference_vgg_state(state_dict: Dict[str, Any]) -> bool:
    """True for a torch-conv-kan VGG state dict (its conv/classifier key names), False for kanzoo's."""
    if "head.fc.weight" in state_dict:
        return False
    return any(k.startswith("classifier.") or _REFERENCE_KEY.match(k) for k in state_dict)


def _family(layer: nn.Module, table: Dict[str, str]) -> str:
    name = type(layer.basis).__name__
    if name not in table:
        raise ValueError(f"torch-conv-kan has no VGG layer with kanzoo's {name} "
                         f"({type(layer).__name__}); supported: {sorted(table)}")
    return table[name]


def _layer_state(reader: StateReader, layer: nn.Module, dst: str) -> Dict[str, torch.Tensor]:
    if isinstance(layer, BottleneckKANConvNd):
        return convert_bottleneck_state(reader, layer, _family(layer, _BOTTLENECK_FAMILY), dst)
    if isinstance(layer, KANConvNd):
        return convert_conv_state(reader, layer, _family(layer, _BASIS_FAMILY), dst)
    if isinstance(layer, KANSelfAttention):
        out: Dict[str, torch.Tensor] = {dst + "gamma": reader.take("gamma")}
        norm_state(reader, "norm_layer", 1, dst + "norm", out)
        if not isinstance(layer.in_proj, nn.Identity):
            for src, name in (("inner_proj", "in_proj"), ("outer_proj", "out_proj")):
                out[f"{dst}{name}.weight"] = reader.take(src + ".weight")
                out[f"{dst}{name}.bias"] = reader.take(src + ".bias")
        for n in ("q", "k", "v"):
            out.update(_layer_state(reader.sub(f"proj_{n}."), getattr(layer, f"{n}_proj"), f"{dst}{n}_proj."))
        return out
    raise TypeError(f"no torch-conv-kan conversion for a {type(layer).__name__} in a VGG")


def convert_vgg_reader(reader: StateReader, model) -> Dict[str, torch.Tensor]:
    """Maps a torch-conv-kan VGG state (read through ``reader``) to ``model``'s kanzoo keys."""
    out: Dict[str, torch.Tensor] = {}
    for i, layer in enumerate(model.features):
        if isinstance(layer, nn.MaxPool2d):
            continue
        src = f"features.{i}."
        if any(k.startswith(src + "module.") for k in reader.state):  # l1_decay > 0 wraps each conv
            src += "module."
        out.update(_layer_state(reader.sub(src), layer, f"features.{i}."))
    out["head.fc.weight"] = reader.take("classifier.1.weight")
    out["head.fc.bias"] = reader.take("classifier.1.bias")
    return out


def convert_vgg_state(state_dict: Dict[str, torch.Tensor], model) -> Dict[str, torch.Tensor]:
    """Strict conversion of a whole torch-conv-kan VGG state dict: every reference key must be used."""
    reader = StateReader(dict(state_dict))
    out = convert_vgg_reader(reader, model)
    reader.finish()
    return out


def vgg_kwargs(case: Dict[str, Any]) -> Dict[str, Any]:
    """:class:`~kanzoo.models.vgg_kan.VGGKAN` arguments for a ``VGGKAGN``/``VGGKAGN_BN`` description.

    Positional arguments are ``(input_channels, num_classes)``; they may also come as keywords, as in the
    hub ``config.json``. ``norm_layer`` is not in that file: pass it for the BN checkpoint.
    """
    ref = case["ref_class"]
    if ref not in ("VGGKAGN", "VGGKAGN_BN"):
        raise ValueError(f"unsupported torch-conv-kan VGG class {ref!r}; supported: VGGKAGN, VGGKAGN_BN")
    a = dict(zip(["input_channels", "num_classes"], case.get("ctor_args", [])))
    a.update(case.get("ctor_kwargs", {}))
    head = a.pop("head_type", "Linear")
    if head != "Linear":
        raise ValueError(f"{ref}: head_type={head!r} is not supported; kanzoo's VGG head is 'Linear'")
    shape = tuple(a.pop("expected_feature_shape", (7, 7)))
    if shape != (1, 1):
        raise ValueError(f"{ref}: expected_feature_shape={list(shape)} flattens a pooled map into the classifier; "
                         f"kanzoo supports only [1, 1] (global average pooling), as the published models use")
    kw: Dict[str, Any] = dict(
        in_chans=a.pop("input_channels"), num_classes=a.pop("num_classes"), cfg=a.pop("vgg_type", "VGG11"),
        basis="gram", basis_kwargs={"degree": a.pop("degree", 3)}, bottleneck=ref == "VGGKAGN_BN",
        width_scale=a.pop("width_scale", 1), groups=a.pop("groups", 1),
        norm_layer=class_name(a.pop("norm_layer", "torch.nn.InstanceNorm2d")),
        norm_kwargs={"affine": a.pop("affine", False)}, dropout=a.pop("dropout", 0.0),
        drop_rate=a.pop("dropout_linear", 0.25), last_attention=a.pop("last_attention", False),
        attn_inner_reduction=a.pop("sa_inner_projection", None), attn_kwargs={"scale": 1.0},
    )
    a.pop("l1_decay", None)
    if a:
        raise ValueError(f"{ref}: arguments kanzoo does not understand: {sorted(a)}")
    return kw


def build_vgg(case: Dict[str, Any]):
    from ...models.vgg_kan import VGGKAN
    return VGGKAN(**vgg_kwargs(case))
