"""Segmentation metrics: IoU (Jaccard) and Dice (F1), pooled over a dataset and averaged per image.

For a predicted mask P and a target mask T (sets of foreground pixels):

.. math::
    \\mathrm{IoU} = \\frac{|P \\cap T|}{|P \\cup T|},\\qquad
    \\mathrm{Dice} = F_1 = \\frac{2|P \\cap T|}{|P| + |T|} = \\frac{2\\,\\mathrm{IoU}}{1 + \\mathrm{IoU}}

**Pooled vs per image.** *Pooled* metrics sum the intersections and unions of all images first and divide
once: ``IoU = Σ|P∩T| / Σ|P∪T|``, so large objects weigh more and an image with an empty target and an empty
prediction changes nothing. *Per-image* metrics compute IoU and Dice for each image and average them: every
image weighs the same, a small lesion missed counts as much as a large one, and an image with empty target and
empty prediction scores 1 (and 0 if only one of them is empty). The two can differ by many points on
datasets with small or absent foregrounds (BUSI, polyps). For pooled counts Dice = 2·IoU/(1 + IoU) exactly;
for per-image averages it does not hold.

U-KAN's published numbers (arXiv 2406.02918, its ``metrics.iou_score``) pool per *validation batch* and average
the batches weighted by their size, and derive its "F1" as 2·IoU/(1 + IoU) of each batch: that equals the
pooled form here when the whole set is one batch, and lies between the two forms otherwise.

Binary models (one output channel) threshold ``sigmoid(logit) > threshold`` (0.5: logit > 0); multi-class
models take the argmax and report the mean over classes of the per-class scores (classes absent from both
prediction and target in an image, or in the whole set for pooled scores, are left out of the mean).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch

from .errors import OutputShapeError

__all__ = ["SegmentationMetrics", "SegmentationResult", "evaluate_segmentation", "masks_from_logits",
           "iou_dice_counts"]


def masks_from_logits(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Predicted labels (B, H, W) from logits (B, C, H, W): ``sigmoid > threshold`` for C = 1 (0/1), argmax
    otherwise."""
    if logits.dim() != 4:
        raise OutputShapeError(f"expected logits (B, C, H, W), got shape {list(logits.shape)}")
    if logits.shape[1] == 1:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        return (torch.sigmoid(logits[:, 0].float()) > threshold).long()
    return logits.argmax(1)


def iou_dice_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                    ignore_index: Optional[int] = None) -> torch.Tensor:
    """Per image and class, the counts (|P∩T|, |P∪T|, |P| + |T|) of label maps (B, H, W): (B, K, 3), K the
    foreground classes (binary: 1, the foreground; multi-class: all ``num_classes`` classes)."""
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"prediction and target must be label maps of the same shape (B, H, W); got "
                         f"{list(pred.shape)} and {list(target.shape)}")
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    classes = [1] if num_classes == 1 else list(range(num_classes))
    out = torch.zeros(pred.shape[0], len(classes), 3, dtype=torch.float64)
    for j, c in enumerate(classes):
        p = (pred == c) & valid
        t = (target == c) & valid
        inter = (p & t).flatten(1).sum(1)
        union = (p | t).flatten(1).sum(1)
        out[:, j, 0] = inter.double().cpu()
        out[:, j, 1] = union.double().cpu()
        out[:, j, 2] = (p.flatten(1).sum(1) + t.flatten(1).sum(1)).double().cpu()
    return out


@dataclass
class SegmentationResult:
    """Scores in percent. ``iou``/``dice``: pooled over the dataset; ``iou_per_image``/``dice_per_image``:
    averaged over images (see :mod:`kanzoo.metrics` for the difference)."""

    iou: float
    dice: float
    iou_per_image: float
    dice_per_image: float
    images: int
    seconds: float = 0.0
    skipped: int = 0

    def as_dict(self) -> Dict[str, float]:
        return dict(iou=self.iou, dice=self.dice, iou_per_image=self.iou_per_image,
                    dice_per_image=self.dice_per_image, images=self.images, skipped=self.skipped)

    def format(self, name: str = "model") -> str:
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        return (f"{name}: IoU {self.iou:.2f}%  Dice/F1 {self.dice:.2f}%  (pooled over the dataset); "
                f"IoU {self.iou_per_image:.2f}%  Dice/F1 {self.dice_per_image:.2f}%  (mean per image) on "
                f"{self.images:,} images{skipped} in {self.seconds:.1f} s")


@dataclass
class SegmentationMetrics:
    """Accumulates IoU/Dice counts batch by batch; :meth:`compute` gives pooled and per-image scores.

    Args:
        num_classes: the model's output channels (1: binary, targets 0/1 with foreground 1; more: targets are
            class indices).
        threshold: sigmoid threshold of binary models.
        ignore_index: target label excluded from every count (multi-class), e.g. 255.

    Examples::
        >>> m = SegmentationMetrics(num_classes=1)
        >>> m.update(torch.tensor([[[[5., -5.], [5., -5.]]]]), torch.tensor([[[1, 1], [0, 0]]]))
        >>> round(m.compute().iou, 2), round(m.compute().dice, 2)
        (33.33, 50.0)
    """

    num_classes: int = 1
    threshold: float = 0.5
    ignore_index: Optional[int] = None
    _pooled: Optional[torch.Tensor] = field(default=None, repr=False)
    _iou_sum: float = field(default=0.0, repr=False)
    _dice_sum: float = field(default=0.0, repr=False)
    _images: int = field(default=0, repr=False)

    def __post_init__(self):
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {self.num_classes!r}")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Adds a batch: logits (B, C, H, W) with C = ``num_classes``, target labels (B, H, W) or (B, 1, H, W)."""
        if logits.dim() != 4 or logits.shape[1] != self.num_classes:
            raise OutputShapeError(f"expected logits (B, {self.num_classes}, H, W), got shape {list(logits.shape)}")
        if target.dim() == 4 and target.shape[1] == 1:
            target = target[:, 0]
        if target.shape[-2:] != logits.shape[-2:] or target.shape[0] != logits.shape[0]:
            raise ValueError(f"target {list(target.shape)} does not match logits {list(logits.shape)}: give label "
                             f"maps (B, H, W) at the logits' size")
        counts = iou_dice_counts(masks_from_logits(logits, self.threshold), target.long(), self.num_classes,
                                 self.ignore_index)
        self._pooled = counts.sum(0) if self._pooled is None else self._pooled + counts.sum(0)
        inter, union, sizes = counts[..., 0], counts[..., 1], counts[..., 2]
        present = union > 0
        iou = torch.where(present, inter / union.clamp(min=1), torch.zeros_like(inter))
        dice = torch.where(present, 2 * inter / sizes.clamp(min=1), torch.zeros_like(inter))
        n_present = present.sum(1)
        # an image with no foreground in prediction or target (any class) is a perfect score
        per_iou = torch.where(n_present > 0, iou.sum(1) / n_present.clamp(min=1), torch.ones(len(iou),
                                                                                              dtype=iou.dtype))
        per_dice = torch.where(n_present > 0, dice.sum(1) / n_present.clamp(min=1), torch.ones(len(iou),
                                                                                                dtype=iou.dtype))
        self._iou_sum += per_iou.sum().item()
        self._dice_sum += per_dice.sum().item()
        self._images += counts.shape[0]

    def compute(self) -> SegmentationResult:
        if self._images == 0 or self._pooled is None:
            raise ValueError("no images were added: call update(logits, target) first")
        inter, union, sizes = self._pooled[:, 0], self._pooled[:, 1], self._pooled[:, 2]
        present = union > 0
        if present.any():
            iou = (inter[present] / union[present]).mean().item()
            dice = (2 * inter[present] / sizes[present]).mean().item()
        else:  # no foreground anywhere, predicted or true
            iou = dice = 1.0
        return SegmentationResult(iou=100 * iou, dice=100 * dice, iou_per_image=100 * self._iou_sum / self._images,
                                  dice_per_image=100 * self._dice_sum / self._images, images=self._images)


def evaluate_segmentation(model: torch.nn.Module, loader, device=None, threshold: float = 0.5,
                          ignore_index: Optional[int] = None, progress: bool = False,
                          desc: str = "validate") -> SegmentationResult:
    """IoU and Dice of a segmentation model over ``loader`` (pooled and per image).

    ``loader`` yields ``(images, masks)`` or ``(images, masks, ...)`` (further items, such as the paths of
    :class:`kanzoo.workflows.masks.SegmentationFolder`, are ignored): images (B, C, H, W) as the model takes them,
    masks (B, H, W) label maps (binary: 0/1) at the same size. The model runs in eval mode without gradients;
    ``progress`` shows a tqdm bar with the running pooled IoU.
    """
    from tqdm import tqdm

    model.eval()
    device = device if device is not None else next(model.parameters()).device
    num_classes = int(getattr(model, "num_classes", 0))
    if num_classes < 1:
        raise ValueError(f"the model has num_classes={num_classes}: a segmentation model needs an output conv "
                         f"(build it with num_classes >= 1)")
    metrics = SegmentationMetrics(num_classes=num_classes, threshold=threshold, ignore_index=ignore_index)
    t0 = time.perf_counter()
    bar = tqdm(loader, desc=desc, unit="batch", leave=False, disable=not progress, dynamic_ncols=True)
    with torch.no_grad():
        for batch in bar:
            images, masks = batch[0], batch[1]
            if not len(images):
                continue
            logits = model(images.to(device))
            metrics.update(logits.float().cpu(), masks)
            if progress:
                bar.set_postfix(iou=f"{metrics.compute().iou:.2f}")
    result = metrics.compute()
    result.seconds = time.perf_counter() - t0
    return result
