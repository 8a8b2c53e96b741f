"""torch-conv-kan Wav-KAN conv layers (``WavKANConv{1,2,3}DLayer``) -> :class:`kanzoo.layers.WaveletKANConvNd`.

The reference keeps one sub-module per group (``base_conv.{g}``, ``wavelet_conv.{g}``, ``layer_norm.{g}``);
kanzoo concatenates them along the output channels and runs grouped convolutions. The wavelet kernels
come in three layouts (``wav_version``) that compute the same function and all map to
``wavelet_weight`` (C_out, C_in/G, *k):

* ``fast``: ``wavelet_conv.{g}.wavelet_weights.weight`` (Cog, Cig, *k)
* ``base``: ``wavelet_conv.{g}.wavelet_weights.{o}.weight`` (1, Cig, *k) for each o < Cog
* ``fast_plus_one``: ``wavelet_conv.{g}.wavelet_weights.weight`` (Cog, 1, Cig, *k)

``convert`` tells the layout from the keys. ``build`` and ``convert`` are reused by the MoE conversion for its
WavKAN experts.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from ...layers import WaveletKANConvNd
from ._args import class_name, conv_args, ndim_of, split_norm_kwargs
from ._state import StateReader, norm_state

WAV_VERSIONS = ("base", "fast", "fast_plus_one")


def _version(case: Dict[str, Any]) -> str:
    v = case.get("ctor_kwargs", {}).get("wav_version", "fast")
    if v not in WAV_VERSIONS:
        raise ValueError(f"{case['ref_class']}: unknown wav_version {v!r}; choose one of {list(WAV_VERSIONS)}")
    return v


def wavelet_kwargs(case: Dict[str, Any]) -> Dict[str, Any]:
    """kanzoo WaveletKANConvNd kwargs for a reference WavKAN conv layer description."""
    a = conv_args(case)
    a, norm_kw = split_norm_kwargs(a)
    a.pop("wav_version", None)
    a.pop("l1_decay", None)
    kw: Dict[str, Any] = dict(
        in_channels=a.pop("input_dim"), out_channels=a.pop("output_dim"), kernel_size=a.pop("kernel_size"),
        stride=a.pop("stride", 1), padding=a.pop("padding", 0), dilation=a.pop("dilation", 1),
        groups=a.pop("groups", 1), ndim=ndim_of(case["ref_class"]), dropout=a.pop("dropout", 0.0),
        wavelet_type=a.pop("wavelet_type", "mexican_hat"),
        norm_layer=class_name(a.pop("norm_layer", "torch.nn.BatchNorm2d")), norm_kwargs=norm_kw,
        # the reference windows the Shannon wavelet over the input channels; keep it explicit
        shannon_window=True,
    )
    if a:
        raise ValueError(f"{case['ref_class']}: arguments kanzoo does not understand: {sorted(a)}")
    return kw


def build(case: Dict[str, Any]) -> WaveletKANConvNd:
    """A fresh kanzoo layer for a reference WavKAN conv description (``ref_class``, ``ctor_args/kwargs``)."""
    _version(case)
    return WaveletKANConvNd(**wavelet_kwargs(case))


def detect_version(reader: StateReader, layer: WaveletKANConvNd) -> str:
    """The ``wav_version`` whose key layout ``reader`` holds (the three layouts cannot be confused)."""
    if reader.has("wavelet_conv.0.wavelet_weights.0.weight"):
        return "base"
    key = reader.prefix + "wavelet_conv.0.wavelet_weights.weight"
    if key in reader.state and reader.state[key].dim() == layer.wavelet_weight.dim() + 1:
        return "fast_plus_one"
    return "fast"


def convert(reader: StateReader, layer: WaveletKANConvNd, dst: str = "",
            wav_version: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Maps one reference WavKAN conv layer's keys (under ``reader``'s prefix) to ``layer``'s keys.

    ``wav_version`` (the reference constructor argument) is checked against the key layout; None
    takes the layout as found.
    """
    version = detect_version(reader, layer)
    if wav_version is not None and wav_version != version:
        raise ValueError(f"wav_version={wav_version!r}, but the reference state has the {version!r} key layout")
    G = layer.groups
    cog = layer.out_channels // G
    out: Dict[str, torch.Tensor] = {}
    out[dst + "weight"] = torch.cat(reader.take_groups("base_conv.{}.weight", G))
    for name in ("scale", "translation"):
        parts = reader.take_groups("wavelet_conv.{}." + name, G)
        out[dst + name] = torch.cat([p.reshape(p.shape[1], p.shape[2]) for p in parts])
    ww = []
    for g in range(G):
        if version == "base":
            found = reader.count_indexed(f"wavelet_conv.{g}.wavelet_weights")
            if found != cog:
                raise ValueError(f"wav_version='base' expects {cog} wavelet_weights per group, found {found}")
            ww.extend(reader.take(f"wavelet_conv.{g}.wavelet_weights.{o}.weight")[0] for o in range(cog))
        elif version == "fast":
            ww.append(reader.take(f"wavelet_conv.{g}.wavelet_weights.weight"))
        else:
            w = reader.take(f"wavelet_conv.{g}.wavelet_weights.weight")
            if w.shape[1] != 1:
                raise ValueError(f"wav_version='fast_plus_one' expects wavelet_weights of shape (Cog, 1, Cig, *k), "
                                 f"got {tuple(w.shape)}")
            ww.append(w[:, 0])
    out[dst + "wavelet_weight"] = torch.stack(ww) if version == "base" else torch.cat(ww)
    out[dst + "mix_weight"] = torch.cat(reader.take_groups("wavelet_conv.{}.wavelet_out.weight", G))
    norm_state(reader, "layer_norm.{}", G, dst + "norm", out)
    return out
