"""``kanzoo validate --task segmentation`` and ``kanzoo predict`` on segmentation models: IoU and Dice/F1 on an
images/masks folder (:class:`kanzoo.segmentation.SegmentationFolder`), and PNG mask overlays of image files.

Both preprocess as the model's pretrained cfg says (``input_size``, ``mean``, ``std``; U-KAN's evaluation
preprocessing: resize, normalise) and threshold binary models at ``sigmoid > threshold``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..errors import OutputShapeError, WorkflowError
from ..io import PathLike
from ..metrics import evaluate_segmentation, masks_from_logits
from ..models._base import declared_task, model_task
from ._common import check_positive
from .data import data_config_for
from .loading import LoadedModel
from .masks import SegmentationFolder, load_rgb, preprocess, write_mask_overlay
from .predict import expand_images, read_images
from .validate import autocast

__all__ = ["TASKS", "model_task", "resolve_task", "validate_segmentation", "predict_segmentation", "MaskPrediction",
           "format_mask_prediction", "DEFAULT_MASK_DIR"]

TASKS = ("classification", "segmentation")

#: where ``kanzoo predict`` writes the overlays of a segmentation model without ``--out`` (not ``masks/``, the
#: ground-truth folder of a segmentation dataset)
DEFAULT_MASK_DIR = "predicted_masks"


def resolve_task(model: nn.Module, requested: Optional[str], name: str) -> str:
    """The task a command runs: ``requested`` (``--task``) or the model's. A request that contradicts what the
    model declares is an error (a classifier has no masks to score, a segmenter no classes)."""
    declared = declared_task(model)
    if requested is None:
        return declared or "classification"
    if requested not in TASKS:
        raise WorkflowError(f"unknown task {requested!r}; use one of {list(TASKS)}")
    if declared is not None and declared != requested:
        raise WorkflowError(f"{name} is a {declared} model, so --task {requested} cannot run on it; drop --task (it "
                            f"defaults to the model's task) or pick a {requested} model (docs/models.md lists the "
                            f"task of each model)")
    return requested


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold < 1.0:
        raise WorkflowError(f"--threshold must be in (0, 1) (a sigmoid probability), got {threshold}")


def _preprocessing(model: nn.Module, img_size: Optional[int]) -> Tuple[Tuple[int, int], tuple, tuple]:
    """(H, W), mean and std of the model's pretrained cfg (``img_size`` replaces the size)."""
    cfg = data_config_for(model, img_size=img_size)
    chans, h, w = cfg["input_size"]
    if chans != 3:
        raise WorkflowError(f"the model takes {chans}-channel inputs, but segmentation folders and image files are "
                            f"read as RGB (3 channels)")
    return (int(h), int(w)), tuple(cfg["mean"]), tuple(cfg["std"])


def _num_classes(model: nn.Module) -> int:
    n = int(getattr(model, "num_classes", 0) or 0)
    if n < 1:
        raise WorkflowError(f"the model has num_classes={n}: a segmentation model needs its output conv (build it "
                            f"with num_classes >= 1)")
    return n


def _worker_error(e: WorkflowError) -> WorkflowError:
    """A WorkflowError raised in a DataLoader worker comes back with the worker's traceback in its message: keep
    the original one-line message."""
    text = str(e)
    if "Original Traceback" not in text:
        return e
    last = text.strip().splitlines()[-1]
    return WorkflowError(last.split("WorkflowError: ", 1)[-1])


def validate_segmentation(loaded: LoadedModel, data_dir: PathLike, batch_size: int = 8, workers: int = 2,
                          amp: bool = False, device=None, img_size: Optional[int] = None, threshold: float = 0.5,
                          progress: bool = False):
    """IoU and Dice/F1 (pooled over the dataset and averaged per image, :mod:`kanzoo.metrics`) of
    ``loaded.model`` on ``data_dir/images`` + ``data_dir/masks``. Images are resized to the cfg's input size (or
    ``img_size``) and normalised with its mean/std; masks are resized with nearest neighbours to the same size.

    Returns a :class:`kanzoo.metrics.SegmentationResult`.
    """
    check_positive("--batch-size", batch_size, hint="use 1 or more images per batch")
    check_positive("--workers", workers, minimum=0)
    _check_threshold(threshold)
    model = loaded.model
    num_classes = _num_classes(model)
    device = device or next(model.parameters()).device
    size, mean, std = _preprocessing(model, img_size)
    dataset = SegmentationFolder(data_dir, num_classes=num_classes, size=size, mean=mean, std=std)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    try:
        with autocast(device, amp):
            return evaluate_segmentation(model.to(device), loader, device=device, threshold=threshold,
                                         progress=progress, desc="validate")
    except WorkflowError as e:
        raise _worker_error(e) from None
    except OutputShapeError as e:  # a model that declares no task and gives (B, K) outputs
        raise WorkflowError(f"{e}: the model gives no per-pixel logits, so it is not a segmentation model; drop "
                            f"--task segmentation") from None


@dataclass
class MaskPrediction:
    path: str  # the image
    out: str  # the overlay written
    size: Tuple[int, int]  # (H, W) of the image (and of the overlay)
    fractions: Dict[int, float] = field(default_factory=dict)  # class -> fraction of the image's pixels (> 0 only)
    mask_out: Optional[str] = None  # the bare mask written, with save_masks
    binary: bool = True  # one output channel (sigmoid): class 1 is the foreground


def format_mask_prediction(p: MaskPrediction) -> str:
    """``IMAGE -> OVERLAY: foreground 12.34%`` (binary) or ``... class 1 12.34%, class 2 0.50%``."""
    if p.binary:
        shown = f"foreground {100 * p.fractions[1]:.2f}%"
    else:
        shown = ", ".join(f"class {c} {100 * f:.2f}%" for c, f in p.fractions.items())
    extra = f" (mask {p.mask_out})" if p.mask_out else ""
    return f"{p.path} -> {p.out}{extra}: {shown}"


def _unique_stem(path: str, used: Set[str]) -> str:
    stem = Path(path).stem
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    return name


def predict_segmentation(loaded: LoadedModel, images: Sequence[PathLike], out_dir: PathLike = DEFAULT_MASK_DIR,
                         batch_size: int = 8, device=None, img_size: Optional[int] = None, threshold: float = 0.5,
                         alpha: float = 0.5, save_masks: bool = False) -> Tuple[List[MaskPrediction], List[str]]:
    """Predicts a mask for each image (files, or folders of them) and writes ``out_dir/STEM_overlay.png``: the
    image at its own size with each predicted class > 0 blended in (:func:`kanzoo.segmentation.write_mask_overlay`,
    atomically). With ``save_masks`` also ``out_dir/STEM_mask.png`` (binary: 0/255; multi-class: class indices).
    Images are preprocessed as in :func:`validate_segmentation`; the mask is resized back to the image (nearest).

    Returns the predictions (with each class's share of the image's pixels) and the files skipped because they
    are missing or would not decode (each also warned about).
    """
    from PIL import Image


    check_positive("--batch-size", batch_size)
    _check_threshold(threshold)
    files = expand_images(images)
    if not files:
        raise WorkflowError(f"no image files to segment in {[os.fspath(p) for p in images][:5]}")
    model = loaded.model.eval()
    num_classes = _num_classes(model)
    device = device or next(model.parameters()).device
    size, mean, std = _preprocessing(model, img_size)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise WorkflowError(f"--out {str(out_dir)!r} is a file; give a folder for the mask overlays")
    used: Set[str] = set()
    out: List[MaskPrediction] = []
    skipped: List[str] = []
    for i in range(0, len(files), batch_size):
        chunk, bad = read_images(files[i:i + batch_size], load_rgb)
        skipped += bad
        if not chunk:
            continue
        x = torch.stack([preprocess(img, size, mean, std) for _, img in chunk]).to(device)
        with torch.no_grad():
            logits = model(x).float()
        if logits.dim() != 4:
            raise WorkflowError(f"the model gives outputs of shape {list(logits.shape)}, not per-pixel logits "
                                f"(B, C, H, W): it is not a segmentation model")
        masks = masks_from_logits(logits, threshold).cpu()
        for (path, img), mask in zip(chunk, masks):
            h, w = img.shape[1:]
            if tuple(mask.shape) != (h, w):
                mask = torch.nn.functional.interpolate(mask[None, None].float(), size=(h, w), mode="nearest")[0, 0]
                mask = mask.long()
            stem = _unique_stem(path, used)
            mask_path = out_dir / f"{stem}_mask.png" if save_masks else None
            pil = Image.fromarray((img.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
            written = write_mask_overlay(pil, mask, out_dir / f"{stem}_overlay.png", alpha=alpha,
                                         mask_path=mask_path)
            classes = [1] if num_classes == 1 else list(range(1, num_classes))
            fractions = {c: (mask == c).sum().item() / mask.numel() for c in classes}
            out.append(MaskPrediction(path, str(written), (h, w), fractions,
                                      str(mask_path) if mask_path is not None else None, num_classes == 1))
    return out, skipped
