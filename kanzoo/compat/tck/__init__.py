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
from typing import Any, Dict, Optional

import torch
from torch import nn

from . import attention as _attention
from . import conv as _conv
from . import linear as _linear
from . import moe as _moe
from . import vgg as _vgg
from . import wavelet as _wavelet
from ._registry import BUILDERS, FAMILY_PATTERNS, family_of, register_family
from ._state import StateReader, load_strict

__all__ = ["from_reference", "family_of", "register_family"]


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
    if fam not in BUILDERS:
        raise ValueError(f"torch-conv-kan family {fam!r} ({case.get('ref_class')}) is not supported; "
                         f"supported: {sorted(BUILDERS)}")
    module, mapper = BUILDERS[fam](case)
    if dtype is not None:
        module = module.to(dtype)
    if state_dict is not None:
        reader = StateReader(dict(state_dict))
        mapped = mapper(reader)
        reader.finish()
        load_strict(module, mapped)
    return module


@register_family(*_conv.CONV_FAMILIES)
def _build_conv(case):
    fam = family_of(case)
    layer = _conv.build_conv(case, fam)
    return layer, lambda reader: _conv.convert_conv_state(reader, layer, fam)


@register_family(*_conv.BOTTLENECK_FAMILIES)
def _build_bottleneck(case):
    fam = family_of(case)
    layer = _conv.build_bottleneck(case, fam)
    return layer, lambda reader: _conv.convert_bottleneck_state(reader, layer, fam)


@register_family("WavKAN")
def _build_wavkan(case):
    layer = _wavelet.build(case)
    version = case.get("ctor_kwargs", {}).get("wav_version", "fast")
    return layer, lambda reader: _wavelet.convert(reader, layer, wav_version=version)


FAMILY_PATTERNS.extend((rf"^{re.escape(c)}$", f)
                       for c, f in {**_linear.NETWORK_CLASSES, **_linear.LAYER_CLASSES}.items())


@register_family(*_linear.LINEAR_FAMILIES)
def _build_linear(case):
    fam = family_of(case)
    model = _linear.build_linear(case, fam)
    return model, lambda reader: _linear.convert_linear_state(reader, model, fam)


FAMILY_PATTERNS.extend(_moe.MOE_FAMILY_PATTERNS)


@register_family(*_moe.MOE_FAMILIES)
def _build_moe(case):
    return _moe.build_moe(case, family_of(case))


@register_family(_moe.MOE_BOTTLENECK_FAMILY)
def _build_moe_bottleneck(case):
    return _moe.build_moe_bottleneck(case)


FAMILY_PATTERNS.extend(_attention.FAMILY_PATTERNS)


@register_family("SelfKANtention")
def _build_attention(case):
    return _attention.build_attention(case)


@register_family("FocalModulation")
def _build_focal(case):
    return _attention.build_focal(case)


FAMILY_PATTERNS.extend(_vgg.FAMILY_PATTERNS)


@register_family(_vgg.FAMILY, "VGG-KAGN-hub")
def _build_vgg(case):
    model = _vgg.build_vgg(case)
    return model, lambda reader: _vgg.convert_vgg_reader(reader, model)
