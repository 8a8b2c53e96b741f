"""``kanzoo validate``: top-1, top-5 and loss of a model on an ImageFolder (ImageNet-val layout)."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WorkflowError
from ..io import PathLike
from ._common import check_positive, warn
from .data import ImageFolder, SkipTracker, build_transform, data_config_for, make_loader, shard
from .loading import LoadedModel, model_labels


@dataclass
class EvalResult:
    top1: float  # percent
    top5: float  # percent (top-k with k = min(5, classes))
    loss: float
    images: int  # images evaluated
    skipped: int  # images that would not decode
    seconds: float
    topk: int = 5

    def as_dict(self, prefix: str = "") -> Dict[str, float]:
        return {f"{prefix}top1": self.top1, f"{prefix}top5": self.top5, f"{prefix}loss": self.loss,
                f"{prefix}images": self.images, f"{prefix}skipped": self.skipped}


def autocast(device: torch.device, enabled: bool, dtype: torch.dtype = torch.bfloat16):
    """``torch.autocast`` on GPU when ``enabled``; a no-op context otherwise (CPU runs stay in float32)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def class_mapping(dataset_classes: List[str], model: nn.Module, label_names: Optional[List[str]]) -> Dict[str, int]:
    """Folder name -> model output index: by name when the model's class ids cover the folders (ImageNet
    synsets, a finetuned run's class folders), else by sorted position when the counts agree."""
    n = model.num_classes
    labels = model_labels(model, label_names)
    if labels is not None and set(dataset_classes) <= set(labels.ids):
        index = {c: i for i, c in enumerate(labels.ids)}
        return {c: index[c] for c in dataset_classes}
    if len(dataset_classes) == n:
        if labels is not None:
            warn(f"the data's class folders ({dataset_classes[:3]}...) are not the model's class names "
                 f"({labels.ids[:3]}...); matching them by sorted position")
        return {c: i for i, c in enumerate(dataset_classes)}
    raise WorkflowError(f"the data has {len(dataset_classes)} class folders but the model predicts {n} classes"
                        f"{' whose names do not cover the folders' if labels is not None else ''}; give a "
                        f"dataset with the model's classes (folder names {labels.ids[:3] if labels else '0..'}...)")


def evaluate(model: nn.Module, loader, device: torch.device, amp: bool = False, topk: int = 5,
             progress: bool = False, desc: str = "validate", skips: Optional[SkipTracker] = None,
             reduce=None) -> EvalResult:
    """Loss (cross-entropy) and top-1/top-k accuracy over ``loader``; ``reduce`` sums the counts over
    processes (distributed evaluation of disjoint shards)."""
    from tqdm import tqdm

    model.eval()
    skips = skips if skips is not None else SkipTracker()
    k = min(topk, model.num_classes) if hasattr(model, "num_classes") else topk
    sums = torch.zeros(5, dtype=torch.float64)  # loss, top1, topk, images, skipped
    t0 = time.perf_counter()
    bar = tqdm(loader, desc=desc, unit="batch", leave=False, disable=not progress, dynamic_ncols=True)
    with torch.no_grad():
        for images, targets, errors in bar:
            skips.add(errors)
            sums[4] += len(errors)
            if not len(images):
                continue
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            with autocast(device, amp):
                logits = model(images)
            logits = logits.float()
            sums[0] += F.cross_entropy(logits, targets, reduction="sum").item()
            top = logits.topk(k, dim=-1).indices
            hit = top.eq(targets[:, None])
            sums[1] += hit[:, 0].sum().item()
            sums[2] += hit.any(dim=-1).sum().item()
            sums[3] += len(targets)
            if progress:
                bar.set_postfix(top1=f"{100 * sums[1].item() / sums[3].item():.2f}")
    if reduce is not None:
        sums = reduce(sums)
    n = int(sums[3].item())
    if n == 0:
        raise WorkflowError(f"no image could be evaluated: all {int(sums[4].item())} failed to decode")
    return EvalResult(top1=100 * sums[1].item() / n, top5=100 * sums[2].item() / n, loss=sums[0].item() / n,
                      images=n, skipped=int(sums[4].item()), seconds=time.perf_counter() - t0, topk=k)


def validate(loaded: LoadedModel, data_dir: PathLike, batch_size: int = 64, workers: int = 2,
             amp: bool = False, device=None, img_size: Optional[int] = None, crop_pct: Optional[float] = None,
             progress: bool = False) -> EvalResult:
    """Evaluates ``loaded.model`` on the ImageFolder ``data_dir`` with its pretrained cfg's preprocessing."""
    check_positive("--batch-size", batch_size, hint="use 1 or more images per batch")
    check_positive("--workers", workers, minimum=0)
    model = loaded.model
    device = device or next(model.parameters()).device
    dataset = ImageFolder(data_dir, what="validation folder",
                          transform=build_transform(data_config_for(model, img_size=img_size, crop_pct=crop_pct)))
    dataset.remap(class_mapping(dataset.classes, model, loaded.label_names))
    loader = make_loader(shard(dataset, 0, 1), batch_size, workers, pin_memory=device.type == "cuda")
    return evaluate(model.to(device), loader, device, amp=amp, progress=progress)


def format_result(r: EvalResult, name: str) -> str:
    skipped = f", {r.skipped} skipped (would not decode)" if r.skipped else ""
    return (f"{name}: top-1 {r.top1:.2f}%  top-{r.topk} {r.top5:.2f}%  loss {r.loss:.4f}  "
            f"on {r.images:,} images{skipped} in {r.seconds:.1f} s")
