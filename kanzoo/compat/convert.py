"""Reference checkpoints of the seed-paper models -> kanzoo's Hub layout (``kanzoo convert --from
ukan|mlpkan|visionkan``).

A reference checkpoint is a plain PyTorch state dict (``.pth``; the U-KAN authors' released BUSI/GlaS/CVC
models are ``model.pth`` files), a DeiT-style training checkpoint (Vision-KAN's and MLP-KAN's ``main.py``: the
weights in ``model``, beside ``model_ema``, the optimizer and an ``argparse.Namespace`` of its arguments) or a
safetensors file, read with ``torch.load(weights_only=True)`` (see :func:`load_reference_file` for the one
class it allows beyond tensors and containers). Its layout
is read from the tensors themselves (widths, depth, classes, input channels), matched to a registered kanzoo
architecture, converted strictly (every reference key used, every kanzoo tensor filled) and written by
:func:`kanzoo.save_pretrained` as ``model.safetensors``, a timm ``config.json`` and a model card.
"""
from __future__ import annotations

import argparse
import math
import pickle
import re
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
from timm.models import get_pretrained_cfg
from torch import nn

from ..errors import WeightsFileError, first_line
from ..hub import save_pretrained
from ..models import create_model, list_models
from ..models.mlp_kan import convert_mlpkan_state
from ..models.ukan import VARIANTS as UKAN_VARIANTS
from ..models.ukan import convert_ukan_state
from ..models.vision_kan import convert_visionkan_state, is_reference_visionkan_state
from ..weights import load_state_file, unwrap_checkpoint
from ..weights.files import TORCH_SUFFIXES
from .tck._state import load_strict
from .visionkan import architecture as visionkan_architecture

#: ``--from`` values and what they read
FAMILIES = {"ukan": "CUHK-AIM-Group/U-KAN (Seg_UKAN) segmentation checkpoints",
            "mlpkan": "DLYuanGod/MLP-KAN (models_kan.VisionKAN) checkpoints",
            "visionkan": "chenziwenhaoshuai/Vision-KAN (models_kan.VisionKAN, FasterKAN block MLPs) checkpoints"}


#: what each family is called in messages
FAMILY_NAMES = {"ukan": "a U-KAN", "mlpkan": "an MLP-KAN", "visionkan": "a Vision-KAN", "tck": "a torch-conv-kan"}


def guess_family(state: Dict[str, torch.Tensor]) -> Optional[str]:
    """Which reference layout a state dict looks like: ``'ukan'`` (U-KAN's encoder/patch-embedding keys),
    ``'visionkan'`` (a ViT whose ``blocks.N.kan`` is a FasterKAN: ``kan.layers.N.spline_linear``), ``'mlpkan'``
    (a ViT with other ``blocks.N.kan`` FFNs: MLP-KAN's ``kan.gate`` and ``kan.experts``), or None (none of them)."""
    if "encoder1.conv.0.weight" in state and "patch_embed3.proj.weight" in state:
        return "ukan"
    if "cls_token" in state and is_reference_visionkan_state(state):
        return "visionkan"
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


def _vit_geometry(state: Dict[str, torch.Tensor], what: str) -> Tuple[int, int, int, int]:
    """``(embed_dim, patch_size, in_chans, img_size)`` of a reference-keyed DeiT-style ViT state dict."""
    dim = int(_need(state, "cls_token", what).shape[-1])
    proj = _need(state, "patch_embed.proj.weight", what)
    patch, in_chans = int(proj.shape[-1]), int(proj.shape[1])
    n_tok = int(_need(state, "pos_embed", what).shape[1]) - 1
    side = math.isqrt(n_tok)
    if side * side != n_tok:
        raise ValueError(f"pos_embed holds {n_tok} patch positions, not a square grid: cannot tell the image size")
    return dim, patch, in_chans, side * patch


def describe_mlpkan(state: Dict[str, torch.Tensor]) -> Tuple[str, Dict[str, Any]]:
    """``(architecture, model kwargs)`` of a reference-keyed MLP-KAN (VisionKAN) state dict. The heads are not in
    the weights: DeiT's 64 channels per head is assumed (pass ``num_heads`` to override)."""
    what = "MLP-KAN"
    dim, patch, in_chans, img = _vit_geometry(state, what)
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


def describe_visionkan(state: Dict[str, torch.Tensor]) -> Tuple[str, Dict[str, Any]]:
    """``(architecture, model kwargs)`` of a reference-keyed Vision-KAN state dict (chenziwenhaoshuai/Vision-KAN).
    The heads are not in the weights: DeiT's 64 channels per head is assumed (pass ``num_heads`` to override)."""
    what = "Vision-KAN"
    dim, patch, in_chans, img = _vit_geometry(state, what)
    hidden = int(_need(state, "blocks.0.kan.layers.0.spline_linear.weight", what).shape[0])
    grid = _need(state, "blocks.0.kan.layers.0.rbf.grid", what).flatten()
    layout: Dict[str, Any] = dict(
        img_size=img, patch_size=patch, num_classes=int(_need(state, "head.weight", what).shape[0]),
        embed_dim=dim, depth=_count(state, "blocks"), num_heads=max(1, dim // 64), kan_hidden=hidden)
    if in_chans != 3:
        layout["in_chans"] = in_chans
    kan = dict(grid_size=int(grid.numel()), grid_range=(round(float(grid[0]), 6), round(float(grid[-1]), 6)))
    if kan != dict(grid_size=8, grid_range=(-2.0, 2.0)):
        layout["kan_kwargs"] = kan
    return visionkan_architecture(layout)


def load_reference_file(path: Union[str, Path]) -> Dict[str, Any]:
    """Reads a reference checkpoint safely: :func:`kanzoo.weights.load_state_file` (safetensors, or
    ``torch.load(weights_only=True)``), and for a torch file that it refuses, ``torch.load(weights_only=True)``
    again with ``argparse.Namespace`` allowed.

    DeiT-style ``main.py`` checkpoints (Vision-KAN, MLP-KAN) store the run's arguments as an
    ``argparse.Namespace``. That class is a plain attribute holder: the weights-only unpickler creates it without
    calling its constructor and only fills its ``__dict__`` with values that are themselves restricted to tensors
    and plain containers, so allowing it runs no code from the file. Any other object is still refused, with the
    three lines that extract the weights for someone who trusts the file.
    """
    try:
        return load_state_file(path)
    except WeightsFileError as e:
        if Path(path).suffix not in TORCH_SUFFIXES or not isinstance(e.__cause__, pickle.UnpicklingError):
            raise
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f"it needs {found.group(1)}" if found else first_line(e)
        raise WeightsFileError(
            f"{str(path)!r} holds objects that torch.load(weights_only=True) refuses even with argparse.Namespace "
            f"allowed ({what}); kanzoo never unpickles arbitrary objects. If you trust the file, extract its "
            f"weights yourself: python -c \"import torch; c = torch.load('{path}', map_location='cpu', "
            f"weights_only=False); torch.save(c.get('model', c), 'weights.pth')\" and convert weights.pth") from e
    if not isinstance(obj, dict):
        raise WeightsFileError(f"{str(path)!r} holds a {type(obj).__name__}, not a state dict or a checkpoint dict")
    return obj


_DESCRIBE = {"ukan": describe_ukan, "mlpkan": describe_mlpkan, "visionkan": describe_visionkan}


def convert_reference_checkpoint(family: str, path: Union[str, Path], out_dir: Union[str, Path],
                                 arch: Optional[str] = None, tag: Optional[str] = None,
                                 **model_kwargs: Any) -> Tuple[nn.Module, Path]:
    """Converts a U-KAN (``family='ukan'``), MLP-KAN (``'mlpkan'``) or Vision-KAN (``'visionkan'``) reference
    checkpoint into ``out_dir``.

    Args:
        family: ``'ukan'``, ``'mlpkan'`` or ``'visionkan'``.
        path: the reference weights (``.pth``/``.pt``/``.bin`` state dict, read with ``weights_only=True``, or
            ``.safetensors``); training checkpoints (``state_dict``/``model`` entries; DeiT-style ones with an
            ``argparse.Namespace``, see :func:`load_reference_file`) and ``module.`` prefixes are unwrapped. Of a
            Vision-KAN or MLP-KAN ``checkpoint.pth`` the ``model`` entry is converted (the weights whose accuracy
            the authors report), not ``model_ema``.
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
    state = unwrap_checkpoint(load_reference_file(path))
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    try:
        found, kwargs = _DESCRIBE[family](state)
    except ValueError as e:
        seen = guess_family(state)
        hint = (f"; it looks like {FAMILY_NAMES[seen]} checkpoint: convert it with family={seen!r} "
                f"(`kanzoo convert --from {seen}`)" if seen and seen != family else "")
        raise ValueError(f"{str(path)!r}: {e}{hint}") from None
    if family == "ukan":
        converted = convert_ukan_state(state)
    elif family == "visionkan":
        converted, _ = convert_visionkan_state(state)
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
    if family in ("mlpkan", "visionkan"):  # the reference has no qkv bias: zeros compute the same function
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


__all__ = ["FAMILIES", "convert_reference_checkpoint", "describe_mlpkan", "describe_ukan", "describe_visionkan",
           "guess_family", "load_reference_file"]
