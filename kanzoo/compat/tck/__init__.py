"""Build kanzoo layers from torch-conv-kan (IvanDrokin/torch-conv-kan) layer descriptions and load their
weights.

A description is shaped like an entry of the golden ``manifest.json``::

    {"ref_class": "KAGNConv2DLayer", "ctor_args": [64, 128, 3],
     "ctor_kwargs": {"degree": 3, "padding": 1, "norm_layer": "torch.nn.BatchNorm2d", "affine": true}}

``family`` is optional; it is derived from ``ref_class`` when absent. Classes are written as strings
(``"torch.nn.BatchNorm2d"``). Migrating your own layer::

    from kanzoo.compat.tck import from_reference
    layer = from_reference({"ref_class": "KAGNConv2DLayer", "ctor_args": [64, 128, 3],
                            "ctor_kwargs": {"degree": 3, "padding": 1}}, old_layer.state_dict())

Loading is strict: every reference key must be consumed and every kanzoo tensor filled.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, Optional

import torch
from torch import nn

from ._state import StateReader, load_strict

# ref_class pattern -> family, in match order
_FAMILY_PATTERNS = [
    (r"^KAGNConv\dDLayerV2$", "KAGNv2"),
    (r"^KANConv\dDLayer$", "KANConv"),
    (r"^KALNConv\dDLayer$", "KALN"),
    (r"^KACNConv\dDLayer$", "KACN"),
    (r"^KAGNConv\dDLayer$", "KAGN"),
    (r"^KAJNConv\dDLayer$", "KAJN"),
    (r"^KABNConv\dDLayer$", "KABN"),
    (r"^FastKANConv\dDLayer$", "FastKAN"),
    (r"^ReLUKANConv\dDLayer$", "ReLUKAN"),
    (r"^BottleNeckKAGNConv\dDLayer$", "BottleNeckKAGN"),
    (r"^BottleNeckReLUKANConv\dDLayer$", "BottleNeckReLUKAN"),
    (r"^WavKANConv\dDLayer$", "WavKAN"),
]

# family -> builder(case, reader) -> (module, mapped state)
_BUILDERS: Dict[str, Callable] = {}


def register_family(*families: str):
    def deco(fn):
        for f in families:
            _BUILDERS[f] = fn
        return fn
    return deco


def family_of(case: Dict[str, Any]) -> str:
    if case.get("family"):
        return case["family"]
    for pat, fam in _FAMILY_PATTERNS:
        if re.match(pat, case["ref_class"]):
            return fam
    raise ValueError(f"unknown torch-conv-kan class {case['ref_class']!r}; supported families: {sorted(_BUILDERS)}")


def from_reference(case: Dict[str, Any], state_dict: Optional[Dict[str, torch.Tensor]] = None,
                   dtype: Optional[torch.dtype] = None) -> nn.Module:
    """Builds the kanzoo equivalent of a torch-conv-kan layer and loads its reference-keyed state strictly.

    Args:
        case: ``{"ref_class", "ctor_args", "ctor_kwargs"}`` (plus optional ``family``).
        state_dict: the reference ``state_dict()``; None returns the freshly initialised kanzoo module.
        dtype: floating dtype of the module, set before loading (so float64 weights stay float64).

    Returns:
        The kanzoo module (in train mode, like a fresh ``nn.Module``).
    """
    fam = family_of(case)
    if fam not in _BUILDERS:
        raise ValueError(f"torch-conv-kan family {fam!r} ({case.get('ref_class')}) is not supported; "
                         f"supported: {sorted(_BUILDERS)}")
    module, mapper = _BUILDERS[fam](case)
    if dtype is not None:
        module = module.to(dtype)
    if state_dict is not None:
        reader = StateReader(dict(state_dict))
        mapped = mapper(reader)
        reader.finish()
        load_strict(module, mapped)
    return module


from . import conv as _conv  # noqa: E402


@register_family(*_conv.CONV_FAMILIES)
def _build_conv(case):
    fam = family_of(case)
    layer = _conv.build_conv(case, fam)
    return layer, lambda reader: _conv.convert_conv_state(reader, layer, fam)


__all__ = ["from_reference", "family_of", "register_family"]


@register_family(*_conv.BOTTLENECK_FAMILIES)
def _build_bottleneck(case):
    fam = family_of(case)
    layer = _conv.build_bottleneck(case, fam)
    return layer, lambda reader: _conv.convert_bottleneck_state(reader, layer, fam)


from . import wavelet as _wavelet  # noqa: E402


@register_family("WavKAN")
def _build_wavkan(case):
    layer = _wavelet.build(case)
    version = case.get("ctor_kwargs", {}).get("wav_version", "fast")
    return layer, lambda reader: _wavelet.convert(reader, layer, wav_version=version)


from . import linear as _linear  # noqa: E402

_FAMILY_PATTERNS.extend((rf"^{re.escape(c)}$", f)
                         for c, f in {**_linear.NETWORK_CLASSES, **_linear.LAYER_CLASSES}.items())


@register_family(*_linear.LINEAR_FAMILIES)
def _build_linear(case):
    fam = family_of(case)
    model = _linear.build_linear(case, fam)
    return model, lambda reader: _linear.convert_linear_state(reader, model, fam)


from . import moe as _moe  # noqa: E402

_FAMILY_PATTERNS.extend(_moe.MOE_FAMILY_PATTERNS)


@register_family(*_moe.MOE_FAMILIES)
def _build_moe(case):
    return _moe.build_moe(case, family_of(case))


@register_family(_moe.MOE_BOTTLENECK_FAMILY)
def _build_moe_bottleneck(case):
    return _moe.build_moe_bottleneck(case)


from . import attention as _attention  # noqa: E402

_FAMILY_PATTERNS.extend(_attention.FAMILY_PATTERNS)


@register_family("SelfKANtention")
def _build_attention(case):
    return _attention.build_attention(case)


@register_family("FocalModulation")
def _build_focal(case):
    return _attention.build_focal(case)


from . import vgg as _vgg  # noqa: E402

_FAMILY_PATTERNS.extend(_vgg.FAMILY_PATTERNS)


@register_family(_vgg.FAMILY, "VGG-KAGN-hub")
def _build_vgg(case):
    model = _vgg.build_vgg(case)
    return model, lambda reader: _vgg.convert_vgg_reader(reader, model)
