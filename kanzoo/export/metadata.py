"""The metadata stored with every exported model: what a deployment needs besides the weights.

One dict, written as JSON (``kanzoo.json`` inside TorchScript and ``.pt2`` archives; one ``metadata_props``
entry per top-level key, named ``kanzoo.<key>``, in ONNX files):

=================  ==================================================================================
key                value
=================  ==================================================================================
``format``         ``'kanzoo-export/1'`` (the layout of this dict)
``architecture``   the model name (``'vgg_kagn_bn11_v4'``)
``task``           ``'classification'`` (logits (N, K)) or ``'segmentation'`` (logits (N, K, H, W))
``num_classes``    K
``input_name``,    the graph's input and output names (``'input'``, ``'logits'``)
``output_name``
``input_size``     [C, H, W] the model was exported and verified at
``dynamic_dims``   input dims that may take any size: a subset of ``['batch', 'height', 'width']``
``batch_size``     the fixed batch when ``'batch'`` is not dynamic, else null
``preprocess``     timm's eval transform: ``input_size``, ``crop_pct``, ``crop_mode`` (``'center'`` or
                   ``'squash'``), ``interpolation``, ``mean``, ``std``, and ``image_mode`` (``'RGB'``/``'L'``)
``labels``         K class names (a list), or null when unknown
``kanzoo_version`` the kanzoo that wrote the file
=================  ==================================================================================

The preprocessing reproduces ``timm.data.create_transform(**resolve_data_config(model=model))``: resize the
shorter side to ``floor(size / crop_pct)`` with ``interpolation``, center-crop ``size``, scale to [0, 1],
subtract ``mean`` and divide by ``std`` per channel.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence

from timm.data import ImageNetInfo, infer_imagenet_subset
from timm.data import resolve_data_config as timm_resolve
from torch import nn

from .._version import __version__
from ..models._base import model_task

__all__ = ["FORMAT", "INTERPOLATIONS", "CROP_MODES", "build_metadata", "resolve_data_config", "resolve_labels",
           "model_name", "model_task", "to_onnx_props", "from_onnx_props"]

FORMAT = "kanzoo-export/1"
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")
CROP_MODES = ("center", "squash")
_DATA_KEYS = ("input_size", "crop_pct", "crop_mode", "interpolation", "mean", "std")


def model_name(model: nn.Module) -> str:
    """The architecture in the model's pretrained cfg, else its class name. The cfg's tag is left out: a model
    built without weights still carries its default tag."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("architecture") or type(model).__name__


def resolve_data_config(model: nn.Module, input_size: Sequence[int],
                        overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """timm's eval data config for ``model`` at ``input_size`` (C, H, W), with ``overrides`` applied, checked.

    Raises ValueError for an unknown key, a mean/std that does not have C values, an interpolation or crop
    mode that the standalone runtime cannot reproduce, or a crop_pct outside (0, 2].
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(_DATA_KEYS))
    if unknown:
        raise ValueError(f"data_config has unknown keys {unknown}; it takes {list(_DATA_KEYS)}")
    cfg = dict(timm_resolve(args={}, model=model))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    c = int(input_size[0])
    cfg["input_size"] = [int(s) for s in input_size]
    for key in ("mean", "std"):
        v = cfg.get(key)
        v = [float(v)] if isinstance(v, (int, float)) else [float(t) for t in v]
        if len(v) == 1 and c > 1:
            v = v * c
        if len(v) != c:
            raise ValueError(
                f"{key} has {len(v)} values {tuple(v)} but the model takes {c}-channel input; give "
                f"data_config=dict(mean=..., std=...) with {c} values (CLI: --mean/--std)")
        if key == "std" and any(not s > 0 for s in v):
            raise ValueError(f"std values must be > 0, got {tuple(v)}")
        cfg[key] = v
    crop_pct = cfg.get("crop_pct") or 0.875
    if isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 2:
        raise ValueError(f"crop_pct must be a number in (0, 2], got {crop_pct!r}")
    cfg["crop_pct"] = float(crop_pct)
    cfg["crop_mode"] = cfg.get("crop_mode") or "center"
    if cfg["crop_mode"] not in CROP_MODES:
        raise ValueError(f"crop_mode {cfg['crop_mode']!r} is not supported by kanzoo's exported preprocessing; "
                         f"choose one of {list(CROP_MODES)}")
    if cfg.get("interpolation") not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {cfg.get('interpolation')!r}")
    if c not in (1, 3):
        # PIL images have 1 (L) or 3 (RGB) channels; other inputs are the deployer's to build
        cfg["image_mode"] = None
    else:
        cfg["image_mode"] = "L" if c == 1 else "RGB"
    return {k: cfg[k] for k in _DATA_KEYS + ("image_mode",)}


def resolve_labels(model: nn.Module, num_classes: int, label_names: Optional[Sequence[str]] = None
                   ) -> Optional[List[str]]:
    """Class names for the model's outputs: ``label_names`` if given (it must have ``num_classes`` entries),
    else the pretrained cfg's ``label_descriptions``/``label_names``, else ImageNet's class descriptions for
    a classifier whose class count timm maps to an ImageNet subset (1000: ImageNet-1k), else None."""
    if label_names is not None:
        names = [str(n) for n in label_names]
        if len(names) != num_classes:
            raise ValueError(f"label_names has {len(names)} entries but the model outputs {num_classes} classes")
        return names
    cfg = getattr(model, "pretrained_cfg", None) or {}
    for key in ("label_descriptions", "label_names"):
        v = cfg.get(key)
        if isinstance(v, Mapping):
            v = [v[k] for k in sorted(v)]
        if isinstance(v, (list, tuple)) and len(v) == num_classes:
            return [str(n) for n in v]
    if model_task(model) != "classification" or num_classes <= 0:
        return None

    subset = infer_imagenet_subset({"num_classes": num_classes})
    if subset is None:
        return None
    return list(ImageNetInfo(subset).label_descriptions())


def build_metadata(model: nn.Module, input_size: Sequence[int], num_classes: int, dynamic_dims: Sequence[str],
                   label_names: Optional[Sequence[str]] = None, data_config: Optional[Mapping[str, Any]] = None,
                   input_name: str = "input", output_name: str = "logits", batch_size: int = 1) -> Dict[str, Any]:
    """The metadata dict of the module docstring."""

    return {
        "format": FORMAT,
        "architecture": model_name(model),
        "task": model_task(model),
        "num_classes": int(num_classes),
        "input_name": input_name,
        "output_name": output_name,
        "input_size": [int(s) for s in input_size],
        "dynamic_dims": list(dynamic_dims),
        "batch_size": None if "batch" in dynamic_dims else int(batch_size),
        "preprocess": resolve_data_config(model, input_size, data_config),
        "labels": resolve_labels(model, num_classes, label_names),
        "kanzoo_version": __version__,
    }


def to_onnx_props(meta: Mapping[str, Any]) -> Dict[str, str]:
    """``{'kanzoo.<key>': JSON}`` for ONNX ``metadata_props``."""
    return {f"kanzoo.{k}": json.dumps(v) for k, v in meta.items()}


def from_onnx_props(props: Mapping[str, str]) -> Dict[str, Any]:
    """Inverse of :func:`to_onnx_props` (other entries are ignored)."""
    return {k[len("kanzoo."):]: json.loads(v) for k, v in props.items() if k.startswith("kanzoo.")}

