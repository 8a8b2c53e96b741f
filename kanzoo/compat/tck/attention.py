"""torch-conv-kan attention blocks (``kan_convs.attention_conv``) -> :class:`kanzoo.layers.KANSelfAttention`
and :class:`kanzoo.layers.KANFocalModulation`.

The reference's choices that kanzoo changes by default are set explicitly here: no 1/√d scaling
(``scale=1.0``), RoPE with a class token on a √(N-1) grid (``rope_layout='reference'``), a pooled running
context without activation (``global_context='all'``, ``context_act='identity'``) and the KAGN v2 basis
layout of the depthwise focal layers (``focal_layout='degree_global'``).
"""
from __future__ import annotations

import re
from typing import Any, Dict

import torch

from ...layers import KANFocalModulation, KANSelfAttention
from ...models._tck_layers import (
    StateReader,
    convert_attention_state,
    convert_conv_state,
    convert_layer_state,
    norm_state,
)
from ._args import class_name, ndim_of, split_norm_kwargs
from .conv import BOTTLENECK_FAMILIES, CONV_FAMILIES, take_basis_kwargs

# ref_class pattern -> (conv_layer, conv family of proj_q/k/v, RoPE)
ATTENTION_CLASSES = [
    (r"^SelfKAGNtention\dD$", "kan", "KAGN", False),
    (r"^BottleNeckSelfKAGNtention\dD$", "bottleneck", "BottleNeckKAGN", False),
    (r"^SelfReLUKANtention\dD$", "kan", "ReLUKAN", False),
    (r"^BottleNeckSelfReLUKANtention\dD$", "bottleneck", "BottleNeckReLUKAN", False),
    (r"^RoPEBottleNeckSelfKAGNtention\dD$", "bottleneck", "BottleNeckKAGN", True),
]
FOCAL_CLASSES = [
    (r"^KAGNFocalModulation\dD$", False),
    (r"^BottleNeckKAGNFocalModulation\dD$", True),
]
FAMILY_PATTERNS = ([(pat, "SelfKANtention") for pat, *_ in ATTENTION_CLASSES]
                   + [(pat, "FocalModulation") for pat, _ in FOCAL_CLASSES])


def _lookup(table, ref_class: str):
    for pat, *rest in table:
        if re.match(pat, ref_class):
            return rest
    raise ValueError(f"unknown torch-conv-kan attention class {ref_class!r}")


def _ctor(case: Dict[str, Any], what: str) -> Dict[str, Any]:
    args = list(case.get("ctor_args", []))
    if len(args) != 1:
        raise ValueError(f"{case['ref_class']}: expected one positional argument ({what}), got {args}")
    a = {"input_dim": args[0]}
    a.update(case.get("ctor_kwargs", {}))
    return a


def _check_done(case, a):
    a.pop("l1_decay", None)
    if a:
        raise ValueError(f"{case['ref_class']}: arguments kanzoo does not understand: {sorted(a)}")


def _take_conv1x1(reader: StateReader, src: str, dst: str, out: Dict[str, torch.Tensor]) -> None:
    out[dst + ".weight"] = reader.take(src + ".weight")
    out[dst + ".bias"] = reader.take(src + ".bias")


# ---------------------------------------------------------------- self-attention

def build_attention(case: Dict[str, Any]):
    """(kanzoo module, mapper) for a ``*SelfKAGNtention*`` / ``*SelfReLUKANtention*`` description."""
    ref = case["ref_class"]
    conv_layer, family, rope = _lookup(ATTENTION_CLASSES, ref)
    ndim = ndim_of(ref)
    if family == "BottleNeckReLUKAN" and ndim == 3:
        raise ValueError(f"{ref} builds 2-d conv layers in torch-conv-kan and cannot run on 3-d input; "
                         f"there is no working reference layer to convert")
    a, norm_kw = split_norm_kwargs(_ctor(case, "input_dim"))
    channels = a.pop("input_dim")
    kernel = a.pop("kernel_size", 3)
    padding = a.pop("padding", 0)
    if padding != kernel // 2:
        raise ValueError(f"{ref} with kernel_size={kernel} and padding={padding} cannot run in torch-conv-kan "
                         f"(the residual shapes differ); only padding=kernel_size//2 works")
    basis = (BOTTLENECK_FAMILIES if conv_layer == "bottleneck" else CONV_FAMILIES)[family]
    kw: Dict[str, Any] = dict(
        ndim=ndim, kernel_size=kernel, conv_layer=conv_layer, basis=basis,
        inner_projection=a.pop("inner_projection", None), scale=1.0,
        norm_layer=class_name(a.pop("norm_layer", f"torch.nn.BatchNorm{ndim}d")), norm_kwargs=norm_kw,
        dropout=a.pop("dropout", 0.0), groups=a.pop("groups", 1),
    )
    kw.update(take_basis_kwargs(a, basis))
    if conv_layer == "bottleneck":
        kw["dim_reduction"] = a.pop("dim_reduction", 4.0)
        kw["min_internal"] = a.pop("min_internal", 16)
    if rope:
        if not a.pop("rope_mixed", True):
            raise ValueError(f"{ref}: rope_mixed=False slices the frequencies along the wrong axis in "
                             f"torch-conv-kan; kanzoo supports only rope_mixed=True")
        kw.update(rope=True, rope_layout="reference")
    _check_done(case, a)
    module = KANSelfAttention(channels, **kw)

    def mapper(reader: StateReader) -> Dict[str, torch.Tensor]:
        out = convert_attention_state(reader, module)
        if rope:
            out["rope.freqs"] = reader.take("freqs")
            _check_rope_buffers(reader)
        return out

    return module, mapper


def _check_rope_buffers(reader: StateReader) -> None:
    # the reference's fixed 14×14 grid; kanzoo computes positions from the input instead
    t = torch.arange(196, dtype=torch.float32)
    for key, expect in (("freqs_t_x", t % 14), ("freqs_t_y", torch.div(t, 14, rounding_mode="floor"))):
        got = reader.take(key)
        if got.shape != expect.shape or not torch.equal(got.float(), expect):
            raise ValueError(f"reference buffer {key!r} is not the 14×14 grid torch-conv-kan builds; "
                             f"kanzoo cannot reproduce a modified position table")


# ---------------------------------------------------------------- focal modulation

def build_focal(case: Dict[str, Any]):
    """(kanzoo module, mapper) for a ``KAGNFocalModulation*`` / ``BottleNeckKAGNFocalModulation*`` description."""
    ref = case["ref_class"]
    (bottleneck,) = _lookup(FOCAL_CLASSES, ref)
    ndim = ndim_of(ref)
    a, norm_kw = split_norm_kwargs(_ctor(case, "dim"))
    channels = a.pop("input_dim")
    kw: Dict[str, Any] = dict(
        ndim=ndim, focal_window=a.pop("focal_window", 3), focal_level=a.pop("focal_level", 2),
        focal_factor=a.pop("focal_factor", 2), basis="gram", degree=a.pop("degree", 3), bottleneck=bottleneck,
        full_kan=a.pop("full_kan", True), use_postln_in_modulation=a.pop("use_postln_in_modulation", True),
        normalize_modulator=a.pop("normalize_modulator", True), global_context="all", context_act="identity",
        focal_layout="degree_global", norm_layer=class_name(a.pop("norm_layer", f"torch.nn.BatchNorm{ndim}d")),
        norm_kwargs=norm_kw,
    )
    if a.get("dropout", 0.0) == 0.0:
        a.pop("dropout", None)
    _check_done(case, a)
    module = KANFocalModulation(channels, **kw)

    def mapper(reader: StateReader) -> Dict[str, torch.Tensor]:
        out: Dict[str, torch.Tensor] = {}
        for name in ("f", "h"):
            if kw["full_kan"]:
                out.update(convert_layer_state(reader.sub(name + "."), getattr(module, name), name + "."))
            else:
                _take_conv1x1(reader, name, name, out)
        out.update(convert_layer_state(reader.sub("proj."), module.proj, "proj."))
        for level, layer in enumerate(module.focal_layers):
            p = f"focal_layers.{level}."
            out.update(convert_conv_state(reader.sub(p), layer, "KAGNv2", p))
        if kw["use_postln_in_modulation"]:
            norm_state(reader, "norm_layer", 1, "norm", out)
        return out

    return module, mapper
