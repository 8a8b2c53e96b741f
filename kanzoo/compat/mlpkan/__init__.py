"""Build kanzoo modules from MLP-KAN reference descriptions (DLYuanGod/MLP-KAN: ``fasterkan.py``,
``models_kan.py``) and load their weights.

A description is shaped like an entry of the golden ``manifest.json``::

    {"family": "kanBlock", "ctor_kwargs": {"dim": 48, "num_heads": 3, "hdim_kan": 32}}

==================  =====================================  ===========================================================
family              reference                              kanzoo equivalent
==================  =====================================  ===========================================================
``FasterKANLayer``  ``fasterkan.FasterKANLayer``           :func:`~kanzoo.layers.fasterkan_linear` (a ``KANLinear``
                                                           with the RSWAF basis after a LayerNorm)
``FasterKAN``       ``fasterkan.FasterKAN``                :class:`~kanzoo.layers.FasterKAN`
``MoE_KAN_MLP``     ``models_kan.MoE_KAN_MLP``             :class:`~kanzoo.layers.MoEKANMlp` (4 MLP + 4 FasterKAN)
``kanBlock``        ``models_kan.kanBlock``                timm ``Block`` with a ``MoEKANMlp``: LayerNorm eps 1e-5 and
                                                           no qkv bias, as the reference builds it
``VisionKAN``       ``models_kan.VisionKAN``               :class:`~kanzoo.models.mlp_kan.MLPKAN` with
                    (``VisionKAN-full``: an entrypoint)    ``qkv_bias=False`` (the reference ignores ``qkv_bias=True``)
==================  =====================================  ===========================================================

Key changes: each block's ``kan.*`` (the FFN that runs) becomes ``mlp.*``; the block's own ``mlp.fc1``/``mlp.fc2``
(a standard FFN the reference builds and never calls, see :func:`split_dead_keys`) is dropped; in a FasterKAN
layer ``layernorm`` -> ``basis_norm``, ``rbf.grid`` -> ``basis.grid`` (a buffer, not a frozen parameter) and
``spline_linear.weight`` (out, in·G) -> ``basis_weight`` (out, in, G). Loading is strict: apart from the dead
keys every reference key is used and every kanzoo tensor filled. The key conversion is the model's own
(:func:`kanzoo.models.mlp_kan.convert_mlpkan_state`, re-exported here with :func:`split_dead_keys` and
:func:`is_reference_mlpkan_state`), so the model's checkpoint filter reads reference weights too.

Routing precision: ``router_dtype`` (default ``torch.float64``, kanzoo's; ``torch.float32`` is the
reference's) sets the dtype of the router's softmax, top-k and renormalisation.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Any, Dict, Optional

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ...layers import FasterKAN, MoEKANMlp, fasterkan_linear
from ...models.mlp_kan import MLPKAN, convert_mlpkan_state, is_reference_mlpkan_state, split_dead_keys
from ..tck._state import build_loaded

FAMILIES = ("FasterKANLayer", "FasterKAN", "MoE_KAN_MLP", "kanBlock", "VisionKAN", "VisionKAN-full")
_CLASS_FAMILIES = {"FasterKANLayer": "FasterKANLayer", "FasterKAN": "FasterKAN", "MoE_KAN_MLP": "MoE_KAN_MLP",
                   "kanBlock": "kanBlock", "VisionKAN": "VisionKAN"}

_ENTRYPOINTS = {  # reference entrypoint -> (embed dim, heads, img size)
    "deit_tiny_patch16_224_KAN": (192, 3, 224), "deit_small_patch16_224_KAN": (384, 6, 224),
    "deit_base_patch16_224_KAN": (768, 12, 224), "deit_base_patch16_384_KAN": (768, 12, 384),
}


def family_of(case: Dict[str, Any]) -> str:
    """The description's ``family``, or the one its ``ref_class`` implies."""
    fam = case.get("family")
    if not fam:
        cls = re.split(r"[ (]", str(case.get("ref_class", "")).rsplit(":", 1)[-1])[0].rsplit(".", 1)[-1]
        fam = _CLASS_FAMILIES.get(cls)
        if fam is None:
            raise ValueError(f"unknown MLP-KAN reference class {case.get('ref_class')!r}; give one of "
                             f"{sorted(_CLASS_FAMILIES)} or a 'family' of {FAMILIES}")
    if fam not in FAMILIES:
        raise ValueError(f"unknown MLP-KAN family {fam!r}; supported: {FAMILIES}")
    return fam


def _eps(norm_layer: Any, default: float) -> float:
    m = re.search(r"eps\s*=\s*([0-9.eE+-]+)", str(norm_layer or ""))
    return float(m.group(1)) if m else default


def _kan_kwargs(kw: Dict[str, Any]) -> Dict[str, Any]:
    return dict(grid_size=int(kw.get("num_grids", 8)),
                grid_range=(float(kw.get("grid_min", -2.0)), float(kw.get("grid_max", 2.0))),
                denominator=float(kw.get("denominator", 0.33)))


def build(case: Dict[str, Any], router_dtype: torch.dtype = torch.float64, device=None) -> nn.Module:
    """The kanzoo module of a description (freshly initialised; ``device='meta'`` allocates nothing)."""
    fam = family_of(case)
    kw = dict(case.get("ctor_kwargs", {}))
    dtype_name = {torch.float64: "float64", torch.float32: "float32"}[router_dtype]
    if fam == "FasterKANLayer":
        return fasterkan_linear(int(kw["input_dim"]), int(kw["output_dim"]), **_kan_kwargs(kw), device=device)
    if fam == "FasterKAN":
        return FasterKAN([int(d) for d in kw["layers_hidden"]], **_kan_kwargs(kw), device=device)
    if fam == "MoE_KAN_MLP":
        n = int(kw.get("num_experts", 8))
        return MoEKANMlp(int(kw["hidden_dim"]), expert_hidden=int(kw["ffn_dim"]), num_experts=n,
                         num_mlp_experts=n // 2, top_k=int(kw.get("top_k", 2)), router_dtype=router_dtype,
                         device=device)
    if fam == "kanBlock":  # the reference block: LayerNorm eps 1e-5, no qkv bias, no drop path
        dim = int(kw["dim"])
        hidden = int(kw.get("hdim_kan", 192))
        return Block(dim, int(kw["num_heads"]), mlp_ratio=hidden / dim, qkv_bias=False,
                     norm_layer=partial(nn.LayerNorm, eps=1e-5),
                     mlp_layer=partial(MoEKANMlp, expert_hidden=hidden, router_dtype=router_dtype), device=device)
    if fam == "VisionKAN-full" and case.get("entrypoint") in _ENTRYPOINTS:
        dim, heads, img = _ENTRYPOINTS[case["entrypoint"]]
        kw = dict(dict(embed_dim=dim, num_heads=heads, img_size=img, patch_size=16, depth=12), **kw)
    # the reference's blocks ignore qkv_bias (always False) and drop_path_rate (always 0)
    return MLPKAN(img_size=int(kw.get("img_size", 224)), patch_size=int(kw.get("patch_size", 16)),
                  in_chans=int(kw.get("in_chans", 3)), num_classes=int(kw.get("num_classes", 1000)),
                  embed_dim=int(kw["embed_dim"]), depth=int(kw["depth"]), num_heads=int(kw["num_heads"]),
                  qkv_bias=False, expert_hidden=int(kw.get("hdim_kan", 192)), router_dtype=dtype_name,
                  norm_eps=_eps(kw.get("norm_layer"), 1e-6), block_norm_eps=1e-5, device=device)


def from_reference(case: Dict[str, Any], state_dict: Optional[Dict[str, torch.Tensor]] = None,
                   dtype: Optional[torch.dtype] = None, router_dtype: torch.dtype = torch.float64) -> nn.Module:
    """Builds the kanzoo equivalent of an MLP-KAN reference module and loads its reference-keyed state strictly.

    Args:
        case: ``{"family" or "ref_class", "ctor_kwargs"}`` (a golden manifest entry).
        state_dict: the reference ``state_dict()``; its dead per-block FFN keys are dropped (exactly those,
            see :func:`split_dead_keys`). None returns the freshly initialised kanzoo module.
        dtype: floating dtype of the module, set before loading.
        router_dtype: dtype of the router's softmax/top-k/renormalisation (the reference: float32).

    Returns:
        The kanzoo module in train mode.
    """
    return build_loaded(partial(build, case, router_dtype=router_dtype), state_dict,
                        lambda s: convert_mlpkan_state(s)[0], dtype)


__all__ = ["FAMILIES", "build", "convert_mlpkan_state", "family_of", "from_reference", "is_reference_mlpkan_state",
           "split_dead_keys"]
