"""Parsing torch-conv-kan constructor arguments from manifest-shaped descriptions."""
from __future__ import annotations

import re
from typing import Any, Dict, Tuple

_CLASS_NAMES = {
    "torch.nn.SiLU": "silu", "torch.nn.GELU": "gelu", "torch.nn.ReLU": "relu", "torch.nn.Identity": "identity",
    "torch.nn.BatchNorm1d": "batch", "torch.nn.BatchNorm2d": "batch", "torch.nn.BatchNorm3d": "batch",
    "torch.nn.InstanceNorm1d": "instance", "torch.nn.InstanceNorm2d": "instance",
    "torch.nn.InstanceNorm3d": "instance", "torch.nn.LayerNorm": "layer",
}

_NORM_KWARGS = ("affine", "eps", "momentum", "track_running_stats")


def class_name(value: Any) -> Any:
    """Maps ``"torch.nn.SiLU"`` (or the class itself) to kanzoo's layer name; other values pass through."""
    if isinstance(value, str):
        if value in _CLASS_NAMES:
            return _CLASS_NAMES[value]
        if value.startswith("torch.nn."):
            raise ValueError(f"torch-conv-kan argument names a class kanzoo does not map: {value!r}")
        return value
    if isinstance(value, type):
        return class_name(f"{value.__module__.replace('torch.nn.modules.activation', 'torch.nn')}.{value.__name__}"
                          if not value.__module__.startswith("torch.nn.modules") else f"torch.nn.{value.__name__}")
    return value


def ndim_of(ref_class: str) -> int:
    m = re.search(r"([123])D", ref_class)
    if not m:
        raise ValueError(f"cannot tell the number of spatial dims from reference class {ref_class!r}")
    return int(m.group(1))


def split_norm_kwargs(kwargs: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Separates the kwargs the reference forwards to its norm (``affine`` ...) from the layer's own."""
    norm_kw = {k: kwargs[k] for k in _NORM_KWARGS if k in kwargs}
    rest = {k: v for k, v in kwargs.items() if k not in _NORM_KWARGS}
    return rest, norm_kw


def conv_args(case: Dict[str, Any]) -> Dict[str, Any]:
    """Positional (in, out, kernel) plus keyword arguments of a reference conv layer, as one dict."""
    names = ["input_dim", "output_dim", "kernel_size"]
    args = dict(zip(names, case.get("ctor_args", [])))
    args.update(case.get("ctor_kwargs", {}))
    return args
