"""Reference checkpoints of the seed-paper models -> kanzoo's Hub layout (``kanzoo convert --from ukan|mlpkan``).

A reference checkpoint is a plain PyTorch state dict (``.pth``; the U-KAN authors' released BUSI/GlaS/CVC
models are ``model.pth`` files) or a safetensors file, read with ``torch.load(weights_only=True)``. Its layout
is read from the tensors themselves (widths, depth, classes, input channels), matched to a registered kanzoo
architecture, converted strictly (every reference key used, every kanzoo tensor filled) and written by
:func:`kanzoo.save_pretrained` as ``model.safetensors``, a timm ``config.json`` and a model card.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
from timm.models import get_pretrained_cfg
from torch import nn

from ..hub import save_pretrained
from ..models import create_model, list_models
from ..models.mlp_kan import convert_mlpkan_state
from ..models.ukan import VARIANTS as UKAN_VARIANTS
from ..models.ukan import convert_ukan_state
from ..weights import load_state_file, unwrap_checkpoint
from .tck._state import load_strict

#: ``--from`` values and what they read
FAMILIES = {"ukan": "CUHK-AIM-Group/U-KAN (Seg_UKAN) segmentation checkpoints",
            "mlpkan": "DLYuanGod/MLP-KAN (models_kan.VisionKAN) checkpoints"}


#: what each family is called in messages
FAMILY_NAMES = {"ukan": "a U-KAN", "mlpkan": "an MLP-KAN", "tck": "a torch-conv-kan"}


def guess_family(state: Dict[str, torch.Tensor]) -> Optional[str]:
    """Which reference layout a state dict looks like: ``'ukan'`` (U-KAN's encoder/patch-embedding keys),
    ``'mlpkan'`` (a ViT with ``blocks.N.kan`` FFNs), or None (neither)."""
    if "encoder1.conv.0.weight" in state and "patch_embed3.proj.weight" in state:
        return "ukan"
    if "cls_token" in state and any(".kan." in k for k in state):
        return "mlpkan"
    return None


def _count(state: Dict[str, torch.Tensor], head: str) -> int:
    pat = re.compile(re.escape(head) + r"\.(\d+)\.")
    return len({m.group(1) for k in state for m in [pat.match(k)] if m})


def _need(state: Dict[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    if key not in state:
        raise ValueError(f"this is not a {what} checkpoint: it has no {key!r} (first keys: {sorted(state)[:6]})")
    return state[key]


def describe_ukan(state: Dict[str, torch.Tensor]) -> Tuple[str, Dict[str, Any]]:
    """``(architecture, model kwargs)`` of a reference-keyed U-KAN state dict."""
    what = "U-KAN"
    e0_e1 = _need(state, "patch_embed3.proj.weight", what).shape
    e2 = _need(state, "patch_embed4.proj.weight", what).shape[0]
    stem = _need(state, "encoder1.conv.0.weight", what)
    c1, in_chans = stem.shape[0], stem.shape[1]
    c2 = _need(state, "encoder2.conv.0.weight", what).shape[0]
    embed_dims = (int(e0_e1[1]), int(e0_e1[0]), int(e2))
    kwargs: Dict[str, Any] = dict(num_classes=int(_need(state, "final.weight", what).shape[0]))
    if in_chans != 3:
        kwargs["in_chans"] = int(in_chans)
    depths = tuple(_count(state, b) for b in ("block1", "block2", "dblock1", "dblock2"))
    if depths != (1, 1, 1, 1):
        kwargs["depths"] = depths
    if "block1.0.layer.fc1.base_weight" in state:
        sw, grid = state["block1.0.layer.fc1.spline_weight"], state["block1.0.layer.fc1.grid"]
        n_fun, n_knots = sw.shape[-1], grid.shape[-1]
        order = n_knots - n_fun - 1
        size = n_fun - order
        lo, hi = float(grid.reshape(-1, n_knots)[0, order]), float(grid.reshape(-1, n_knots)[0, order + size])
        kan = dict(grid_size=size, spline_order=order, grid_range=(round(lo, 6), round(hi, 6)))
        if kan != dict(grid_size=5, spline_order=3, grid_range=(-1.0, 1.0)):
            kwargs["kan_kwargs"] = kan
    elif "block1.0.layer.fc1.weight" in state:
        kwargs["kan"] = False
    else:
        raise ValueError("the U-KAN checkpoint has neither KAN (fc1.base_weight) nor linear (fc1.weight) layers in "
                         "block1.0.layer; is it a U-KAN segmentation model?")
    conv_default = (max(1, embed_dims[0] // 8), max(1, embed_dims[0] // 4))
    for name, args in UKAN_VARIANTS.items():
        if tuple(args["embed_dims"]) == embed_dims and tuple(args.get("conv_dims", conv_default)) == (c1, c2):
            return name, kwargs
    kwargs.update(embed_dims=embed_dims)
    if (c1, c2) != conv_default:
        kwargs["conv_dims"] = (int(c1), int(c2))
    return "ukan_small", kwargs


def describe_mlpkan(state: Dict[str, torch.Tensor]) -> Tuple[str, Dict[str, Any]]:
    """``(architecture, model kwargs)`` of a reference-keyed MLP-KAN (VisionKAN) state dict. The heads are not in
    the weights: DeiT's 64 channels per head is assumed (pass ``num_heads`` to override)."""
    what = "MLP-KAN"
    dim = int(_need(state, "cls_token", what).shape[-1])
    proj = _need(state, "patch_embed.proj.weight", what)
    patch, in_chans = int(proj.shape[-1]), int(proj.shape[1])
    n_tok = int(_need(state, "pos_embed", what).shape[1]) - 1
    side = math.isqrt(n_tok)
    if side * side != n_tok:
        raise ValueError(f"pos_embed holds {n_tok} patch positions, not a square grid: cannot tell the image size")
    img = side * patch
    depth = _count(state, "blocks")
    hidden = int(_need(state, "blocks.0.kan.experts.0.fc1.weight", what).shape[0])
    kwargs: Dict[str, Any] = dict(num_classes=int(_need(state, "head.weight", what).shape[0]))
    if in_chans != 3:
        kwargs["in_chans"] = in_chans
    if hidden != 192:
        kwargs["expert_hidden"] = hidden
    size = {192: "tiny", 384: "small", 768: "base"}.get(dim)
    name = f"mlp_kan_{size}_patch{patch}_{img}"
    if size is None or depth != 12 or name not in list_models(name):
        kwargs.update(embed_dim=dim, depth=depth, num_heads=max(1, dim // 64), patch_size=patch, img_size=img)
        name = "mlp_kan_tiny_patch16_224"
    return name, kwargs


def convert_reference_checkpoint(family: str, path: Union[str, Path], out_dir: Union[str, Path],
                                 arch: Optional[str] = None, tag: Optional[str] = None,
                                 **model_kwargs: Any) -> Tuple[nn.Module, Path]:
    """Converts a U-KAN (``family='ukan'``) or MLP-KAN (``'mlpkan'``) reference checkpoint into ``out_dir``.

    Args:
        family: ``'ukan'`` or ``'mlpkan'``.
        path: the reference weights (``.pth``/``.pt``/``.bin`` state dict, read with ``weights_only=True``, or
            ``.safetensors``); training checkpoints (``state_dict``/``model`` entries) and ``module.`` prefixes
            are unwrapped.
        out_dir: where ``model.safetensors``, ``config.json`` and ``README.md`` go (written atomically).
        arch: the kanzoo architecture (default: the registered one whose layout matches the weights).
        tag: a pretrained tag of ``arch`` whose cfg (published metrics, preprocessing) the files should carry,
            e.g. ``'ukan_busi'`` for the U-KAN authors' BUSI checkpoint.
        **model_kwargs: architecture arguments that override what is read from the weights (``num_heads``).

    Returns:
        ``(model, out_dir)``: the kanzoo model holding the converted weights, in eval mode, and the folder.
        ``kanzoo.create_model('local-dir:OUT', pretrained=True)`` rebuilds it, and
        ``kanzoo.create_model(ARCH, pretrained=True, pretrained_cfg_overlay=dict(file='OUT/model.safetensors'))``
        loads the weights when ARCH's defaults match (the released U-KAN checkpoints: ``ukan_small``).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown reference family {family!r}; supported: {sorted(FAMILIES)} "
                         f"({'; '.join(f'{k}: {v}' for k, v in FAMILIES.items())})")
    state = unwrap_checkpoint(load_state_file(path))
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    try:
        found, kwargs = (describe_ukan if family == "ukan" else describe_mlpkan)(state)
    except ValueError as e:
        seen = guess_family(state)
        hint = (f"; it looks like {FAMILY_NAMES[seen]} checkpoint: convert it with family={seen!r} "
                f"(`kanzoo convert --from {seen}`)" if seen and seen != family else "")
        raise ValueError(f"{str(path)!r}: {e}{hint}") from None
    if family == "ukan":
        converted = convert_ukan_state(state)
    else:
        converted, _ = convert_mlpkan_state(state)
    kwargs.update(model_kwargs)
    name = arch or found
    full = f"{name}.{tag}" if tag else name
    # the cfg's input size follows the checkpoint's channels (and a ViT's image size)
    _, h, w = get_pretrained_cfg(full).input_size
    if "img_size" in kwargs:
        h = w = int(kwargs["img_size"])
    overlay = dict(input_size=(int(kwargs.get("in_chans", 3)), h, w))
    model = create_model(full, device="meta", pretrained_cfg_overlay=overlay, **kwargs)
    if set(dict(model.named_buffers())) <= set(model.state_dict()):
        model = model.to_empty(device="cpu")  # every tensor is loaded below: nothing to initialise
    else:  # non-persistent buffers are not in checkpoints: build normally
        model = create_model(full, pretrained_cfg_overlay=overlay, **kwargs)
    if family == "mlpkan":  # the reference has no qkv bias: zeros compute the same function
        for key, value in model.state_dict().items():
            if key.endswith("attn.qkv.bias") and key not in converted:
                converted[key] = torch.zeros_like(value)
    try:
        load_strict(model, converted)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{str(path)!r} does not fit {name} with {kwargs}: {e}") from e
    model.eval()
    out = save_pretrained(model, out_dir)
    return model, Path(out)


__all__ = ["FAMILIES", "convert_reference_checkpoint", "describe_mlpkan", "describe_ukan", "guess_family"]
