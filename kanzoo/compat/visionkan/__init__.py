"""Build kanzoo's Vision-KAN from reference descriptions (chenziwenhaoshuai/Vision-KAN: ``models_kan.py``,
``fasterkan.py``) and load their weights.

A description is shaped like an entry of the golden ``manifest.json``::

    {"ref_class": "VisionKAN", "ctor_args": ["deit_tiny_patch16_224_KAN"],
     "ctor_kwargs": {"hdim_kan": 384, "num_classes": 100, "img_size": 224}}

``ctor_args`` names a reference entrypoint (``deit_tiny_patch16_224_KAN`` ...: its embed dim, heads and image
size); without one, ``ctor_kwargs`` gives ``embed_dim``, ``depth``, ``num_heads`` ... as for the ``VisionKAN``
class. The kanzoo model is the registered architecture with that layout (``vision_kan_tiny_patch16_224``,
``vision_kan_tiny_h384_patch16_224`` ...), with the description's differences as arguments. What the reference
ignores is ignored here too: ``qkv_bias`` (its blocks never have one), ``drop_path_rate`` (always 0 in its blocks),
``mlp_ratio`` and ``batch_size``.

Key changes (:func:`kanzoo.models.vision_kan.convert_visionkan_state`): each block's ``kan.*`` (the FasterKAN that
runs) becomes ``mlp.*``; the block's own ``mlp.fc1``/``mlp.fc2`` (a timm MLP the reference builds and never calls)
is dropped; in a FasterKAN layer ``layernorm`` -> ``basis_norm``, ``rbf.grid`` -> ``basis.grid`` (a buffer, not a
frozen parameter) and ``spline_linear.weight`` (out, in·G) -> ``basis_weight`` (out, in, G). Loading is strict:
apart from the dead keys every reference key is used and every kanzoo tensor filled.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from ...models import create_model
from ...models.vision_kan import (
    VARIANTS,
    convert_visionkan_state,
    is_reference_visionkan_state,
    split_dead_keys,
)
from ..tck._state import build_loaded

#: reference entrypoint -> (embed dim, heads, image size); every one has 12 blocks and patch 16
ENTRYPOINTS = {
    "deit_tiny_patch16_224_KAN": (192, 3, 224), "deit_small_patch16_224_KAN": (384, 6, 224),
    "deit_base_patch16_224_KAN": (768, 12, 224), "deit_base_patch16_384_KAN": (768, 12, 384),
}


def _eps(norm_layer: Any, default: float) -> float:
    m = re.search(r"eps\s*=\s*([0-9.eE+-]+)", str(norm_layer or ""))
    return float(m.group(1)) if m else default


def architecture(layout: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """``(registered name, arguments)`` for a Vision-KAN layout (``embed_dim``, ``depth``, ``num_heads``,
    ``kan_hidden``, ``patch_size``, ``img_size``, ``num_classes``, ``in_chans``, ``norm_eps``, ``kan_kwargs``):
    the registered architecture whose arguments match, with every difference passed on as an argument."""
    layout = {k: v for k, v in layout.items() if v is not None}
    best, best_extra = None, None
    for name, args in VARIANTS.items():
        extra = {k: v for k, v in layout.items() if k in args and args[k] != v}
        if best_extra is None or len(extra) < len(best_extra):
            best, best_extra = name, extra
    kwargs = {k: v for k, v in layout.items() if k not in VARIANTS[best]}
    kwargs.update(best_extra)
    return best, kwargs


def layout_of(case: Dict[str, Any]) -> Dict[str, Any]:
    """The kanzoo layout of a reference description (see the module docstring)."""
    kw = dict(case.get("ctor_kwargs", {}))
    args = list(case.get("ctor_args") or [])
    entry = args[0] if args else kw.get("model_name", case.get("entrypoint"))
    if entry is not None:
        if entry not in ENTRYPOINTS:
            raise ValueError(f"unknown Vision-KAN reference entrypoint {entry!r}; supported: {sorted(ENTRYPOINTS)} "
                             f"(or give embed_dim, depth and num_heads in ctor_kwargs)")
        dim, heads, img = ENTRYPOINTS[entry]
        kw = dict(dict(embed_dim=dim, num_heads=heads, img_size=img, patch_size=16, depth=12), **kw)
    missing = [k for k in ("embed_dim", "depth", "num_heads") if k not in kw]
    if missing:
        raise ValueError(f"the Vision-KAN description names no entrypoint and lacks {missing} in ctor_kwargs")
    layout = dict(img_size=int(kw.get("img_size", 224)), patch_size=int(kw.get("patch_size", 16)),
                  in_chans=int(kw.get("in_chans", 3)), num_classes=int(kw.get("num_classes", 1000)),
                  embed_dim=int(kw["embed_dim"]), depth=int(kw["depth"]), num_heads=int(kw["num_heads"]),
                  kan_hidden=int(kw.get("hdim_kan", 192)), norm_eps=_eps(kw.get("norm_layer"), 1e-6))
    if layout["in_chans"] == 3:
        del layout["in_chans"]
    if layout["norm_eps"] == 1e-6:
        del layout["norm_eps"]
    return layout


def build(case: Dict[str, Any], device=None) -> nn.Module:
    """The kanzoo model of a description (freshly initialised; ``device='meta'`` allocates nothing)."""
    name, kwargs = architecture(layout_of(case))
    return create_model(name, device=device, **kwargs)


def from_reference(case: Dict[str, Any], state_dict: Optional[Dict[str, torch.Tensor]] = None,
                   dtype: Optional[torch.dtype] = None) -> nn.Module:
    """Builds the kanzoo equivalent of a Vision-KAN reference model and loads its reference-keyed state strictly.

    Args:
        case: ``{"ctor_args", "ctor_kwargs"}`` (a golden manifest entry; see the module docstring).
        state_dict: the reference ``state_dict()``; its dead per-block MLP keys (``blocks.N.mlp.fc1/fc2.*``,
            see :func:`split_dead_keys`) are dropped, nothing else. None returns the freshly initialised model.
        dtype: floating dtype of the model, set before loading.

    Returns:
        The kanzoo model (a registered ``vision_kan_*`` architecture) in train mode.
    """
    return build_loaded(partial(build, case), state_dict, lambda s: convert_visionkan_state(s)[0], dtype)


__all__ = ["ENTRYPOINTS", "architecture", "build", "convert_visionkan_state", "from_reference",
           "is_reference_visionkan_state", "layout_of", "split_dead_keys"]
