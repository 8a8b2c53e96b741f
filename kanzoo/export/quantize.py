"""int8 quantization of exported ONNX models with ``onnxruntime.quantization``.

* ``'dynamic'``: weights of the quantized ops are stored as int8 (per output channel); activations are
  quantized on the fly, per tensor, from their observed range at run time (``ConvInteger``/``MatMulInteger``).
  No data needed.
* ``'static'``: weights int8 per channel, activations int8 with scales fixed in advance from their min/max on
  calibration images (QDQ format). The images are preprocessed with the model's own eval transform, read
  from the file's kanzoo metadata (``timm.data.create_transform`` on ``kanzoo.preprocess``).

Only the ops that carry the weights are quantized by default (Conv, Gemm, MatMul): a KAN layer's basis
expansion (tanh, the polynomial recurrence, SiLU) stays in float32, where int8 rounding would compound
through the recurrence.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
from PIL import Image
from timm.data import create_transform

from .metadata import from_onnx_props

__all__ = ["QUANTIZE_MODES", "IMAGE_EXTENSIONS", "DEFAULT_OP_TYPES", "quantize_onnx", "list_images",
           "check_quantize_args", "calibration_batches"]

QUANTIZE_MODES = ("dynamic", "static")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DEFAULT_OP_TYPES = ("Conv", "Gemm", "MatMul")


def list_images(folder: Union[str, os.PathLike]) -> List[Path]:
    """Image files under ``folder`` (recursively, by extension), sorted by path."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def check_quantize_args(mode: str, calibration_dir: Optional[Union[str, os.PathLike]]) -> Optional[List[Path]]:
    """Validates a quantization request; returns the calibration images for ``'static'`` (None otherwise)."""
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {list(QUANTIZE_MODES)} (or None), got {mode!r}")
    if mode == "dynamic":
        if calibration_dir is not None:
            raise ValueError("calibration_dir is only used with quantize='static'")
        return None
    if calibration_dir is None:
        raise ValueError("quantize='static' needs calibration_dir: a folder of images like the ones the model will "
                         "see (a few dozen to a few hundred)")
    if not Path(calibration_dir).is_dir():
        raise FileNotFoundError(f"calibration_dir {calibration_dir} is not a folder")
    images = list_images(calibration_dir)
    if not images:
        raise ValueError(f"calibration_dir {calibration_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return images


def calibration_batches(images: Sequence[Path], preprocess: Dict[str, Any]) -> Iterator[np.ndarray]:
    """Each image as a (1, C, H, W) float32 array through timm's eval transform for ``preprocess`` (the
    ``kanzoo.preprocess`` metadata)."""
    transform = create_transform(
        input_size=tuple(preprocess["input_size"]), interpolation=preprocess["interpolation"],
        mean=tuple(preprocess["mean"]), std=tuple(preprocess["std"]), crop_pct=preprocess["crop_pct"],
        crop_mode=preprocess["crop_mode"], is_training=False)
    mode = preprocess.get("image_mode") or "RGB"
    for path in images:
        try:
            with Image.open(path) as im:
                img = im.convert(mode)
        except OSError as e:
            raise ValueError(f"cannot read calibration image {path}: {e}") from e
        yield transform(img).unsqueeze(0).numpy().astype(np.float32)


def _reader(images: Sequence[Path], preprocess: Dict[str, Any], input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class ImageFolderReader(CalibrationDataReader):
        """Feeds the calibration images one at a time."""

        def __init__(self):
            self._it = calibration_batches(images, preprocess)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    return ImageFolderReader()


def quantize_onnx(
    src: Union[str, os.PathLike],
    dst: Union[str, os.PathLike],
    mode: str = "dynamic",
    calibration_dir: Optional[Union[str, os.PathLike]] = None,
    images: Optional[Sequence[Path]] = None,
    max_images: int = 256,
    op_types: Sequence[str] = DEFAULT_OP_TYPES,
    per_channel: bool = True,
) -> Dict[str, Any]:
    """Writes an int8 version of the kanzoo ONNX file ``src`` to ``dst`` (see the module docstring).

    ``mode='static'`` calibrates on the images in ``calibration_dir`` (or the given ``images``), at most
    ``max_images`` of them (evenly spaced over the sorted list). ``src`` must carry kanzoo's metadata
    (written by :func:`kanzoo.export.to_onnx`) for static mode. Returns what was done (mode, op types,
    number of calibration images). kanzoo's metadata is copied to the int8 file.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_dynamic, quantize_static


    if images is None:
        images = check_quantize_args(mode, calibration_dir)
    elif mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {list(QUANTIZE_MODES)}, got {mode!r}")
    src_model = onnx.load(str(src))
    props = {p.key: p.value for p in src_model.metadata_props}
    meta = from_onnx_props(props)
    info: Dict[str, Any] = {"mode": mode, "op_types": list(op_types), "per_channel": per_channel}
    # the quantizer writes helper files; keep them out of the output folder
    with tempfile.TemporaryDirectory(prefix="kanzoo-quant-") as work:
        raw, pre = Path(work) / "float.onnx", Path(work) / "float.pre.onnx"
        onnx.save(src_model, str(raw))
        # onnxruntime's recommended pre-pass (shape inference + graph optimisation); optional
        try:
            quant_pre_process(str(raw), str(pre))
            info["pre_processed"] = True
        except Exception as e:  # noqa: BLE001  (symbolic shape inference fails on some graphs)
            pre = raw
            info["pre_processed"] = f"skipped: {type(e).__name__}"
        if mode == "dynamic":
            quantize_dynamic(str(pre), str(dst), op_types_to_quantize=list(op_types), per_channel=per_channel,
                             weight_type=QuantType.QInt8)
        else:
            if "preprocess" not in meta:
                raise ValueError(f"{src} has no kanzoo.preprocess metadata, so calibration images cannot be prepared; "
                                 f"export it with kanzoo.export.to_onnx")
            if max_images < len(images):
                step = len(images) / max_images
                images = [images[int(i * step)] for i in range(max_images)]
            info["calibration_images"] = len(images)
            reader = _reader(images, meta["preprocess"], meta.get("input_name", "input"))
            quantize_static(str(pre), str(dst), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(op_types), per_channel=per_channel,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    out = onnx.load(str(dst))
    have = {p.key for p in out.metadata_props}
    for key, value in props.items():
        if key not in have:
            entry = out.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(out, str(dst))
    return info
