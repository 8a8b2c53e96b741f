#!/usr/bin/env python3
"""Classify images with a kanzoo ONNX model, using only onnxruntime, numpy and pillow.

    python predict_onnx.py model.onnx cat.jpg dog.png [--top-k 5] [--json]

Everything model-specific comes from the metadata that ``kanzoo.export.to_onnx`` stores in the file
(``metadata_props``, keys ``kanzoo.*``): the input size, the preprocessing of timm's eval transform
(resize the shorter side to size / crop_pct with the model's interpolation, center crop, scale to [0, 1],
normalise with mean/std), the class labels and the task. This file is self-contained: copy it next to the
model and install ``onnxruntime numpy pillow``. Neither torch nor kanzoo is needed.

Segmentation models (``kanzoo.task == "segmentation"``) print the share of pixels per class and, with
``--mask-dir``, write each image's class mask (in the resized and cropped frame) as a PNG.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

__all__ = ["load_model", "read_metadata", "preprocess", "predict", "main"]

# timm / torchvision interpolation names -> PIL resampling filters (torchvision's pil_modes_mapping)
RESAMPLE = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "box": Image.BOX,
    "hamming": Image.HAMMING,
    "lanczos": Image.LANCZOS,
}


def read_metadata(session: Any) -> Dict[str, Any]:
    """The ``kanzoo.*`` metadata of an onnxruntime session's model, JSON-decoded (keys without the prefix)."""
    props = session.get_modelmeta().custom_metadata_map
    meta = {k[len("kanzoo."):]: json.loads(v) for k, v in props.items() if k.startswith("kanzoo.")}
    if "preprocess" not in meta:
        raise ValueError("this ONNX file has no kanzoo metadata (kanzoo.preprocess); export it with "
                         "kanzoo.export.to_onnx or `kanzoo export NAME --format onnx`")
    return meta


def load_model(path: str, threads: Optional[int] = None):
    """``(session, metadata)`` for an ONNX file written by kanzoo."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return session, read_metadata(session)


def _resize_shorter(img: Image.Image, size: int, resample: int) -> Image.Image:
    """torchvision ``Resize(int)``: the shorter side to ``size``, the longer one scaled and truncated."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return img if (new_w, new_h) == (w, h) else img.resize((new_w, new_h), resample)


def _resize_exact(img: Image.Image, h: int, w: int, resample: int) -> Image.Image:
    return img if img.size == (w, h) else img.resize((w, h), resample)


def _center_crop(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """torchvision ``CenterCrop`` on an (H, W, C) array: zero-pad if smaller, then crop at the rounded center."""
    ih, iw = arr.shape[:2]
    if h > ih or w > iw:
        top, left = (h - ih) // 2 if h > ih else 0, (w - iw) // 2 if w > iw else 0
        bottom, right = (h - ih + 1) // 2 if h > ih else 0, (w - iw + 1) // 2 if w > iw else 0
        arr = np.pad(arr, ((top, bottom), (left, right), (0, 0)))
        ih, iw = arr.shape[:2]
    top, left = int(round((ih - h) / 2.0)), int(round((iw - w) / 2.0))
    return arr[top:top + h, left:left + w]


def preprocess(img: Image.Image, cfg: Dict[str, Any]) -> np.ndarray:
    """One image as the model's (C, H, W) float32 input, as ``timm.data.create_transform`` (eval) makes it.

    ``cfg`` is the ``kanzoo.preprocess`` metadata: ``input_size`` [C, H, W], ``crop_pct``, ``crop_mode``
    (``center``: keep the aspect ratio and crop; ``squash``: resize both sides, then crop), ``interpolation``,
    ``mean``, ``std``, ``image_mode`` (``RGB`` or ``L``).
    """
    c, h, w = (int(s) for s in cfg["input_size"])
    mode = cfg.get("image_mode") or ("L" if c == 1 else "RGB")
    if cfg.get("interpolation") not in RESAMPLE:
        raise ValueError(f"unsupported interpolation {cfg.get('interpolation')!r}; known: {sorted(RESAMPLE)}")
    resample = RESAMPLE[cfg["interpolation"]]
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    scale_h, scale_w = math.floor(h / crop_pct), math.floor(w / crop_pct)
    img = img.convert(mode)
    crop_mode = cfg.get("crop_mode") or "center"
    if crop_mode == "squash":
        img = _resize_exact(img, scale_h, scale_w, resample)
    elif crop_mode == "center":
        if scale_h == scale_w:
            img = _resize_shorter(img, scale_h, resample)
        else:  # timm's ResizeKeepRatio: scale by the smaller ratio so both sides cover the target
            ratio = min(img.size[1] / scale_h, img.size[0] / scale_w)
            img = _resize_exact(img, round(img.size[1] / ratio), round(img.size[0] / ratio), resample)
    else:
        raise ValueError(f"unsupported crop_mode {crop_mode!r}; this script reproduces 'center' and 'squash'")
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr = _center_crop(arr, h, w).astype(np.float32) / np.float32(255.0)
    mean = np.asarray(cfg["mean"], dtype=np.float32)
    std = np.asarray(cfg["std"], dtype=np.float32)
    return np.ascontiguousarray(((arr - mean) / std).transpose(2, 0, 1))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _label(labels: Optional[Sequence[str]], i: int) -> str:
    return labels[i] if labels and 0 <= i < len(labels) else f"class {i}"


def predict(session: Any, meta: Dict[str, Any], paths: Sequence[str], top_k: int = 5,
            batch_size: int = 8) -> List[Dict[str, Any]]:
    """Runs the model on image files. Classification: one dict per image with ``top`` = [(index, label,
    probability), ...] (softmax over the logits), highest first. Segmentation: ``mask`` (H, W) class indices
    (sigmoid > 0.5 for one class) and ``fractions`` per class."""
    input_name = meta.get("input_name") or session.get_inputs()[0].name
    if "batch" not in (meta.get("dynamic_dims") or []):
        fixed = meta.get("batch_size") or 1
        if fixed != 1:
            raise ValueError(f"this model takes batches of exactly {fixed}; export it with a dynamic batch")
        batch_size = 1
    labels = meta.get("labels")
    results: List[Dict[str, Any]] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        batch = []
        for p in chunk:
            with Image.open(p) as im:
                batch.append(preprocess(im, meta["preprocess"]))
        logits = session.run(None, {input_name: np.stack(batch)})[0]
        for p, out in zip(chunk, logits):
            if meta.get("task") == "segmentation":
                mask = (out[0] > 0).astype(np.int64) if out.shape[0] == 1 else out.argmax(0)
                k = max(out.shape[0], 2)
                counts = np.bincount(mask.ravel(), minlength=k) / mask.size
                results.append({"image": str(p), "mask": mask,
                                "fractions": {_label(labels, i): float(f) for i, f in enumerate(counts)}})
            else:
                prob = _softmax(out.astype(np.float64))
                top = np.argsort(-prob, kind="stable")[:top_k]
                results.append({"image": str(p), "top": [(int(i), _label(labels, int(i)), float(prob[i]))
                                                         for i in top]})
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Classify images with a kanzoo ONNX model (onnxruntime only).")
    parser.add_argument("model", help="the .onnx file written by kanzoo")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--top-k", type=int, default=5, help="classes to print per image (default 5)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image instead of text")
    parser.add_argument("--mask-dir", help="segmentation: write each image's class mask here as PNG")
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.batch_size < 1:
        parser.error("--top-k and --batch-size must be >= 1")
    missing = [p for p in [args.model] + args.images if not Path(p).is_file()]
    if missing:
        parser.error(f"not a file: {', '.join(missing)}")
    try:
        session, meta = load_model(args.model, args.threads)
        results = predict(session, meta, args.images, args.top_k, args.batch_size)
    except (ValueError, OSError) as e:
        print(f"predict_onnx: error: {e}", file=sys.stderr)
        return 1
    for r in results:
        if "mask" in r:
            if args.mask_dir:
                out = Path(args.mask_dir)
                out.mkdir(parents=True, exist_ok=True)
                Image.fromarray(r["mask"].astype(np.uint8)).save(out / (Path(r["image"]).stem + "_mask.png"))
            r = {"image": r["image"], "fractions": r["fractions"]}
            print(json.dumps(r) if args.json else
                  f"{r['image']}: " + ", ".join(f"{k} {v:.1%}" for k, v in r["fractions"].items()))
        elif args.json:
            print(json.dumps({"image": r["image"], "top": [{"index": i, "label": lab, "prob": p}
                                                            for i, lab, p in r["top"]]}))
        else:
            print(f"{r['image']}: " + "; ".join(f"{lab} ({p:.3f})" for _, lab, p in r["top"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
