"""torch-conv-kan MoE conv layers (``MoE*Conv*DLayer``, ``MoEBottleNeckKAGNConv*DLayer``) ->
:class:`kanzoo.layers.MoEKANConvNd` / :class:`kanzoo.layers.MoEBottleneckKANConvNd`.

Each expert is built and converted by the already registered family builder of its reference class
(``MoEKAGNConv2DLayer`` -> ``KAGNConv2DLayer`` ...), so the MoE mapping only handles the gate.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch

from ...layers import MoEBottleneckKANConvNd, MoEKANConvNd
from ._args import class_name, ndim_of, split_norm_kwargs
from ._registry import BUILDERS
from ._state import StateReader, degree_major_to_channel, norm_state

# MoE class stem -> (expert class stem, expert family)
_EXPERTS = {
    "KAGN": ("KAGNConv", "KAGN"),
    "KALN": ("KALNConv", "KALN"),
    "KACN": ("KACNConv", "KACN"),
    "KAN": ("KANConv", "KANConv"),
    "FastKAN": ("FastKANConv", "FastKAN"),
    "WavKAN": ("WavKANConv", "WavKAN"),
    "FullBottleneckKAGN": ("BottleNeckKAGNConv", "BottleNeckKAGN"),
}

MOE_FAMILIES = ["MoE-" + stem for stem in _EXPERTS]
MOE_BOTTLENECK_FAMILY = "MoE-BottleNeckKAGN"
MOE_FAMILY_PATTERNS = [(rf"^MoE{stem}Conv\dDLayer$", "MoE-" + stem) for stem in _EXPERTS] + [
    (r"^MoEBottleNeckKAGNConv\dDLayer$", MOE_BOTTLENECK_FAMILY)]

# reference MoEKANConvBase(input_size, output_size, num_experts=16, noisy_gating=True, k=4,
#                          kernel_size=3, stride=1, padding=1, **kan_kwargs)
_MOE_POSITIONAL = ["input_dim", "output_dim", "num_experts", "noisy_gating", "k", "kernel_size", "stride", "padding"]
_MOE_DEFAULTS = {"num_experts": 16, "noisy_gating": True, "k": 4, "kernel_size": 3, "stride": 1, "padding": 1}


def _gate_state(reader: StateReader, layer: MoEKANConvNd, dst: str, out: Dict[str, torch.Tensor]) -> None:
    """w_gate, w_noise (dropped without noisy gating) and the constant mean/std buffers (checked, dropped)."""
    out[dst + "w_gate"] = reader.take("w_gate")
    w_noise = reader.take("w_noise")
    if layer.w_noise is not None:
        out[dst + "w_noise"] = w_noise
    for name, value in (("mean", 0.0), ("std", 1.0)):
        t = reader.take(name)
        if t.numel() != 1 or float(t) != value:
            raise ValueError(f"reference MoE buffer {reader.prefix + name!r} is {t.tolist()}, expected [{value}]; "
                             f"kanzoo's gate has no such parameter")
    n = reader.count_indexed("experts")
    if n != layer.num_experts:
        raise ValueError(f"reference state has {n} experts under {reader.prefix + 'experts.'!r}, "
                         f"the layer was built with num_experts={layer.num_experts}")


def build_moe(case: Dict[str, Any], family: str):
    """(kanzoo MoEKANConvNd, mapper) for a reference ``MoE{family}Conv{n}DLayer``."""
    stem = family[len("MoE-"):]
    expert_stem, expert_family = _EXPERTS[stem]
    if expert_family not in BUILDERS:
        raise ValueError(f"{case['ref_class']}: its experts ({expert_family}) are not supported yet")
    a = dict(zip(_MOE_POSITIONAL, case.get("ctor_args", [])))
    a.update(case.get("ctor_kwargs", {}))
    for k, v in _MOE_DEFAULTS.items():
        a.setdefault(k, v)
    cin, cout = a.pop("input_dim"), a.pop("output_dim")
    num_experts, top_k, noisy = a.pop("num_experts"), a.pop("k"), a.pop("noisy_gating")
    expert_case = {"ref_class": f"{expert_stem}{ndim_of(case['ref_class'])}DLayer", "family": expert_family,
                   "ctor_args": [cin, cout], "ctor_kwargs": a}

    mappers: List = []

    def make_expert(in_channels, out_channels, kernel_size):
        module, mapper = BUILDERS[expert_family](expert_case)
        mappers.append(mapper)
        return module

    layer = MoEKANConvNd(cin, cout, a["kernel_size"], num_experts=num_experts, top_k=top_k,
                         noisy_gating=noisy, expert_layer=make_expert)

    def mapper(reader: StateReader) -> Dict[str, torch.Tensor]:
        out: Dict[str, torch.Tensor] = {}
        _gate_state(reader, layer, "", out)
        for e, m in enumerate(mappers):
            for k, v in m(reader.sub(f"experts.{e}.")).items():
                out[f"experts.{e}.{k}"] = v
        return out

    return layer, mapper


def build_moe_bottleneck(case: Dict[str, Any]):
    """(kanzoo MoEBottleneckKANConvNd, mapper) for a reference ``MoEBottleNeckKAGNConv{n}DLayer``.

    The reference's top-level ``w_gate``/``w_noise`` are never used by its forward (its gate is
    ``experts.w_gate``); they are consumed and dropped.
    """
    ndim = ndim_of(case["ref_class"])
    names = ["input_dim", "output_dim", "kernel_size", "degree", "groups", "padding", "stride", "dilation",
             "dropout", "norm_layer", "num_experts", "noisy_gating", "k", "dim_reduction", "pregate"]
    a = dict(zip(names, case.get("ctor_args", [])))
    a.update(case.get("ctor_kwargs", {}))
    a, norm_kw = split_norm_kwargs(a)
    if a.pop("pregate", False):
        raise ValueError(f"{case['ref_class']}: pregate=True is not supported")
    kw: Dict[str, Any] = dict(
        in_channels=a.pop("input_dim"), out_channels=a.pop("output_dim"), kernel_size=a.pop("kernel_size"),
        stride=a.pop("stride", 1), padding=a.pop("padding", 0), dilation=a.pop("dilation", 1),
        groups=a.pop("groups", 1), ndim=ndim, basis="gram", degree=a.pop("degree", 3),
        dropout=a.pop("dropout", 0.0), dim_reduction=a.pop("dim_reduction", 4.0),
        min_internal=a.pop("min_internal", 16),
        norm_layer=class_name(a.pop("norm_layer", "torch.nn.InstanceNorm2d")), norm_kwargs=norm_kw,
        # reference defaults: 8 experts / k=2 in 2D, 16 / 4 in 1D and 3D
        num_experts=a.pop("num_experts", 8 if ndim == 2 else 16), top_k=a.pop("k", 2 if ndim == 2 else 4),
        noisy_gating=a.pop("noisy_gating", True),
    )
    a.pop("l1_decay", None)
    if a:
        raise ValueError(f"{case['ref_class']}: arguments kanzoo does not understand: {sorted(a)}")
    layer = MoEBottleneckKANConvNd(**kw)

    def mapper(reader: StateReader) -> Dict[str, torch.Tensor]:
        G, inner, nb = layer.groups, layer.inner_channels, layer.num_basis
        reader.take("w_gate")    # unused by the reference forward
        reader.take("w_noise")
        out: Dict[str, torch.Tensor] = {}
        out["weight"] = torch.cat(reader.take_groups("base_conv.{}.weight", G))
        out["inner_weight"] = torch.cat(reader.take_groups("inner_proj.{}.weight", G))
        out["outer_weight"] = torch.cat(reader.take_groups("out_proj.{}.weight", G))
        norm_state(reader, "layer_norm.{}", G, "norm", out)
        moe = reader.sub("experts.")
        _gate_state(moe, layer.moe, "moe.", out)
        for e in range(layer.moe.num_experts):
            ex = moe.sub(f"experts.{e}.")
            w = ex.take("poly_weights")
            w = degree_major_to_channel(w.reshape((-1,) + tuple(w.shape[2:])), inner, nb)
            out[f"moe.experts.{e}.basis_weight"] = w
            out[f"moe.experts.{e}.basis.beta_weights"] = ex.take("beta_weights")
        return out

    return layer, mapper
