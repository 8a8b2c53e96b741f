"""torch-conv-kan (IvanDrokin/torch-conv-kan) layer keys -> kanzoo layer keys, shared by the VGG models' checkpoint
filter (:mod:`kanzoo.models.vgg_kan`) and the layer converters of :mod:`kanzoo.compat.tck`.

Every conversion reads the reference tensors through a :class:`StateReader`, which remembers what was used, so a
caller can require that every reference key was consumed. The reference keeps one sub-module per channel group
(``base_conv.{g}``, ``layer_norm.{g}`` ...); kanzoo concatenates them along the output channels. The reference's
basis channels are either degree-major (index f·C + c) or channel-major (c·F + f); kanzoo's basis weights are
(C_out, C_in/G, F, *k). Which torch-conv-kan family a kanzoo layer corresponds to is declared by its basis class
(``upstream_names``); the key names and layouts of each family are in :data:`CONV_LAYOUTS` and
:data:`BOTTLENECK_LAYOUTS`.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Union

import torch
from torch import nn

from ..layers import BottleneckKANConvNd, KANConvNd, KANSelfAttention

__all__ = [
    "BOTTLENECK_LAYOUTS", "CONV_LAYOUTS", "StateReader", "channel_major_to_channel", "convert_attention_state",
    "convert_bottleneck_state", "convert_conv_state", "convert_layer_state", "degree_major_to_channel", "norm_state",
    "upstream_family",
]

#: torch-conv-kan conv family -> (key of its basis weights, layout of the basis channels in them): ``'degree'``
#: (f·C_ig + c), ``'channel'`` (c·F + f) or ``'v2'`` (KAGN v2: one degree-major stack over all input channels)
CONV_LAYOUTS = {
    "KANConv": ("spline_conv.{}.weight", "channel"),
    "KALN": ("poly_weights", "degree"),
    "KACN": ("poly_conv.{}.weight", "channel"),
    "KAGN": ("poly_weights", "degree"),
    "KAJN": ("poly_weights", "degree"),
    "KABN": ("poly_weights", "channel"),
    "FastKAN": ("spline_conv.{}.weight", "channel"),
    "ReLUKAN": ("relukan_conv.{}.weight", "channel"),
    "KAGNv2": ("poly_conv.weight", "v2"),
}

#: the same for torch-conv-kan's bottleneck convs (C_ig is the bottleneck's inner width)
BOTTLENECK_LAYOUTS = {
    "BottleNeckKAGN": ("poly_weights", "degree"),
    "BottleNeckReLUKAN": ("relukan_conv.{}.weight", "channel"),
}


class StateReader:
    """Hands out reference tensors by key and remembers which were used.

    ``finish()`` raises when a reference key was never consumed, so a conversion can't silently drop
    weights. Missing keys raise at ``take`` with the key and the keys that do exist under its prefix.
    """

    def __init__(self, state: Dict[str, torch.Tensor], prefix: str = ""):
        self.state = state
        self.prefix = prefix
        self.used: set = set()

    def sub(self, prefix: str) -> "StateReader":
        child = StateReader(self.state, self.prefix + prefix)
        child.used = self.used
        return child

    def has(self, key: str) -> bool:
        return (self.prefix + key) in self.state

    def take(self, key: str) -> torch.Tensor:
        full = self.prefix + key
        if full not in self.state:
            near = sorted(k for k in self.state if k.startswith(self.prefix))[:12]
            raise KeyError(f"reference state has no key {full!r}; keys under {self.prefix!r}: {near}")
        self.used.add(full)
        return self.state[full]

    def take_optional(self, key: str) -> Optional[torch.Tensor]:
        return self.take(key) if self.has(key) else None

    def take_groups(self, key_fmt: str, groups: int) -> List[torch.Tensor]:
        """Takes ``key_fmt.format(g)`` for every group."""
        return [self.take(key_fmt.format(g)) for g in range(groups)]

    def count_indexed(self, head: str) -> int:
        """How many ``head.{i}.`` entries exist (i = 0, 1, ...)."""
        pat = re.compile(re.escape(self.prefix + head) + r"\.(\d+)\.")
        idx = {int(m.group(1)) for k in self.state for m in [pat.match(k)] if m}
        return len(idx)

    def finish(self) -> None:
        left = sorted(set(self.state) - self.used)
        if left:
            raise KeyError(f"{len(left)} reference keys were not consumed by the conversion: {left[:20]}")


def norm_state(reader: StateReader, ref_prefix_fmt: str, groups: int, dst: str,
               out: Dict[str, torch.Tensor]) -> None:
    """Concatenates per-group norm tensors (``layer_norm.{g}.weight`` ...) into one norm over all channels."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        keys = [ref_prefix_fmt.format(g) + "." + name for g in range(groups)]
        if reader.has(keys[0]):
            out[f"{dst}.{name}"] = torch.cat([reader.take(k) for k in keys])
    nbt = [ref_prefix_fmt.format(g) + ".num_batches_tracked" for g in range(groups)]
    if reader.has(nbt[0]):
        out[f"{dst}.num_batches_tracked"] = reader.take(nbt[0])
        for k in nbt[1:]:
            reader.take(k)


def _other_layout(w: torch.Tensor, cig: int, num_basis: int) -> bool:
    # a file of another configuration (width, degree): its tensor goes on unchanged, so that the strict load
    # reports the key with both shapes instead of a reshape failing here
    return w.dim() < 2 or w.shape[1] != cig * num_basis


def degree_major_to_channel(w: torch.Tensor, cig: int, num_basis: int) -> torch.Tensor:
    """(C_out, F·C_ig, *k) with index f·C_ig + c -> kanzoo's (C_out, C_ig, F, *k); a tensor whose dim 1 is not
    F·C_ig (another configuration's) is returned unchanged, for the strict load to report."""
    if _other_layout(w, cig, num_basis):
        return w
    return w.reshape((w.shape[0], num_basis, cig) + tuple(w.shape[2:])).transpose(1, 2).contiguous()


def channel_major_to_channel(w: torch.Tensor, cig: int, num_basis: int) -> torch.Tensor:
    """(C_out, C_ig·F, *k) with index c·F + f -> (C_out, C_ig, F, *k); another configuration's tensor is returned
    unchanged, as in :func:`degree_major_to_channel`."""
    if _other_layout(w, cig, num_basis):
        return w
    return w.reshape((w.shape[0], cig, num_basis) + tuple(w.shape[2:])).contiguous()


def read_basis_weight(reader: StateReader, key: str, layout: str, groups: int, cig: int,
                      num_basis: int) -> torch.Tensor:
    """A reference layer's basis kernels in kanzoo's (C_out, C_ig, F, *k) layout. ``key`` names one tensor per
    group (``'poly_conv.{}.weight'``, concatenated over groups) or one stacked tensor (its first two dims
    merged); ``layout`` is ``'degree'`` for the reference's degree-major order, else channel-major."""
    if "{}" in key:
        w = torch.cat(reader.take_groups(key, groups))
    else:
        w = reader.take(key)
        w = w.reshape((-1,) + tuple(w.shape[2:]))
    conv = degree_major_to_channel if layout == "degree" else channel_major_to_channel
    return conv(w, cig, num_basis)


def upstream_family(layer: Union[KANConvNd, BottleneckKANConvNd]) -> str:
    """The torch-conv-kan conv family whose keys ``layer`` converts from, as its basis class declares it
    (``GramBasis.upstream_names``: ``'KAGN'`` for a KAN conv, ``'BottleNeckKAGN'`` for a bottleneck conv)."""
    kind, known = ("bottleneck", BOTTLENECK_LAYOUTS) if isinstance(layer, BottleneckKANConvNd) else \
        ("conv", CONV_LAYOUTS)
    basis = type(layer.basis)
    family = basis.upstream_names.get(kind)
    if family not in known:
        raise ValueError(f"torch-conv-kan has no {kind} layer with kanzoo's {basis.__name__} "
                         f"({type(layer).__name__}); supported families: {sorted(known)}")
    return family


def convert_conv_state(reader: StateReader, layer: KANConvNd, family: str, dst: str = "") -> Dict[str, torch.Tensor]:
    """Maps one reference conv layer's keys (under ``reader``'s prefix) to ``layer``'s kanzoo keys.

    ``base_conv.{g}.weight`` -> ``weight``; the basis weights (:data:`CONV_LAYOUTS`) -> ``basis_weight``;
    ``layer_norm.{g}.*`` -> ``norm.*`` (FastKAN: ``basis_norm.*``, a norm of the input); ``beta_weights`` ->
    ``basis.beta_weights`` (KAGN); ``prelus.{g}.weight`` -> ``act.weight`` (KANConv); ``rbf.grid`` ->
    ``basis.grid`` (FastKAN); ``phase_low``/``phase_high`` -> ``basis.*`` repeated per group (ReLUKAN). KACN's
    ``arange`` is checked and dropped; KANConv's knots are not in the reference state and keep kanzoo's values.
    """
    G = layer.groups
    cig = layer.in_channels // G
    nb = layer.num_basis
    out: Dict[str, torch.Tensor] = {}
    wkey, layout = CONV_LAYOUTS[family]
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
        out[dst + "basis_weight"] = read_basis_weight(reader, wkey, layout, G, cig, nb)
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


def convert_bottleneck_state(reader: StateReader, layer: BottleneckKANConvNd, family: str,
                             dst: str = "") -> Dict[str, torch.Tensor]:
    """Maps one reference bottleneck conv layer's keys to ``layer``'s kanzoo keys.

    ``base_conv.{g}.weight`` -> ``weight``, ``inner_proj.{g}.weight`` -> ``inner_weight``,
    ``out_proj.{g}.weight`` -> ``outer_weight``, ``layer_norm.{g}.*`` -> ``norm.*``; BottleNeckKAGN:
    ``poly_weights`` (degree-major) -> ``basis_weight``, ``beta_weights`` -> ``basis.beta_weights``;
    BottleNeckReLUKAN: ``relukan_conv.{g}.weight`` (channel-major) -> ``basis_weight``,
    ``phase_low``/``phase_high`` -> ``basis.*`` repeated per group.
    """
    G, inner, nb = layer.groups, layer.inner_channels, layer.num_basis
    out: Dict[str, torch.Tensor] = {}
    out[dst + "weight"] = torch.cat(reader.take_groups("base_conv.{}.weight", G))
    out[dst + "inner_weight"] = torch.cat(reader.take_groups("inner_proj.{}.weight", G))
    out[dst + "outer_weight"] = torch.cat(reader.take_groups("out_proj.{}.weight", G))
    wkey, layout = BOTTLENECK_LAYOUTS[family]
    out[dst + "basis_weight"] = read_basis_weight(reader, wkey, layout, G, inner, nb)
    if family == "BottleNeckKAGN":
        out[dst + "basis.beta_weights"] = reader.take("beta_weights")
    else:
        for name in ("phase_low", "phase_high"):
            out[dst + "basis." + name] = reader.take(name).reshape(inner, nb).repeat(G, 1)
    norm_state(reader, "layer_norm.{}", G, dst + "norm", out)
    return out


def convert_attention_state(reader: StateReader, layer: KANSelfAttention, dst: str = "") -> Dict[str, torch.Tensor]:
    """Maps a reference self-attention block's keys (``SelfKAGNtention`` ...) to ``layer``'s kanzoo keys.

    ``gamma`` -> ``gamma``, ``norm_layer.*`` -> ``norm.*``, ``inner_proj``/``outer_proj`` (1×1 convs with bias,
    present with an inner projection) -> ``in_proj``/``out_proj``, ``proj_{q,k,v}.*`` -> ``{q,k,v}_proj.*``
    (each a conv layer of the family its basis names). RoPE buffers are not handled here.
    """
    out: Dict[str, torch.Tensor] = {dst + "gamma": reader.take("gamma")}
    norm_state(reader, "norm_layer", 1, dst + "norm", out)
    if not isinstance(layer.in_proj, nn.Identity):
        for src, name in (("inner_proj", "in_proj"), ("outer_proj", "out_proj")):
            out[f"{dst}{name}.weight"] = reader.take(src + ".weight")
            out[f"{dst}{name}.bias"] = reader.take(src + ".bias")
    for n in ("q", "k", "v"):
        out.update(convert_layer_state(reader.sub(f"proj_{n}."), getattr(layer, f"{n}_proj"), f"{dst}{n}_proj."))
    return out


def convert_layer_state(reader: StateReader, layer: nn.Module, dst: str = "") -> Dict[str, torch.Tensor]:
    """Maps one reference layer's keys to a kanzoo KAN conv, bottleneck conv or self-attention ``layer``; the
    torch-conv-kan family is the one ``layer``'s basis declares (:func:`upstream_family`)."""
    if isinstance(layer, BottleneckKANConvNd):
        return convert_bottleneck_state(reader, layer, upstream_family(layer), dst)
    if isinstance(layer, KANConvNd):
        return convert_conv_state(reader, layer, upstream_family(layer), dst)
    if isinstance(layer, KANSelfAttention):
        return convert_attention_state(reader, layer, dst)
    raise TypeError(f"no torch-conv-kan conversion for a {type(layer).__name__}")
