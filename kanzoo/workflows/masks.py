"""Segmentation data and outputs: an images/masks folder dataset, mask prediction, and mask overlays.

Folder layout (what ``kanzoo validate NAME DATA --task segmentation`` reads)::

    DATA/images/case001.png      DATA/masks/case001.png        a mask per image, same stem, any image suffix
    DATA/images/case002.jpg      DATA/masks/case002_mask.png   ``_mask`` suffixed stems are matched too (BUSI)

or U-KAN's layout, one binary mask folder per class: ``DATA/masks/0/case001.png``, ``DATA/masks/1/...``.
Binary masks may be 0/255 (foreground > 127, U-KAN's rule) or 0/1 images; multi-class masks hold class indices.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import WorkflowError
from ..io import PathLike, atomic_write
from ..metrics import masks_from_logits
from .data import DECODE_ERRORS, IMG_EXTENSIONS, as_rgb

__all__ = ["SegmentationFolder", "load_rgb", "preprocess", "predict_masks", "write_mask_overlay", "overlay_mask",
           "PALETTE"]

#: overlay colours of classes 1, 2, ... (class 0, the background, is not drawn)
PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128))


def _images_in(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS
                  and not p.name.startswith("."))


class SegmentationFolder(Dataset):
    """Pairs ``root/images/*`` with ``root/masks/*`` (or ``root/masks/{class}/*``) by file stem.

    Each item is ``(image, mask, path)``: the image a float tensor (C, H, W) normalised with ``mean``/``std``
    (ImageNet's by default, U-KAN's preprocessing), the mask a long tensor (H, W) of labels (binary: 0/1), both
    resized to ``size`` (bilinear for the image, nearest for the mask) when it is given.

    Args:
        root: the folder holding ``images/`` and ``masks/``.
        num_classes: 1 for binary masks, else the number of classes (masks hold class indices; with one
            folder per class, masks/0 .. masks/{num_classes-1}, a pixel takes the last class marking it).
        size: (H, W) or an int to resize to; None keeps each image's size (then batch size 1, or equal sizes).
        mean, std: normalisation (per channel, after scaling pixels to [0, 1]).
        image_dir, mask_dir: subfolder names.

    Raises:
        WorkflowError: missing folders, no images, or images without a mask (named, with the expected path).
    """

    def __init__(self, root: PathLike, num_classes: int = 1, size: Optional[Union[int, Sequence[int]]] = None,
                 mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                 image_dir: str = "images", mask_dir: str = "masks"):
        root = Path(root)
        self.root, self.num_classes = root, int(num_classes)
        images, masks = root / image_dir, root / mask_dir
        for folder, what in ((root, "data folder"), (images, "image folder"), (masks, "mask folder")):
            if not folder.is_dir():
                raise WorkflowError(f"{what} {str(folder)!r} does not exist; a segmentation folder holds "
                                    f"{image_dir}/NAME.png and {mask_dir}/NAME.png (or {mask_dir}/CLASS/NAME.png)")
        self.size = None if size is None else ((size, size) if isinstance(size, int) else tuple(size))
        self.mean, self.std = tuple(mean), tuple(std)
        class_dirs = sorted((d for d in masks.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))
        self.per_class = bool(class_dirs)
        mask_roots = class_dirs if self.per_class else [masks]
        index = [{p.stem: p for p in _images_in(d)} for d in mask_roots]
        self.samples: List[Tuple[Path, List[Optional[Path]]]] = []
        missing = []
        for img in _images_in(images):
            found = [ix.get(img.stem) or ix.get(img.stem + "_mask") for ix in index]
            if all(f is None for f in found):
                missing.append(img.name)
            else:
                self.samples.append((img, found))
        if not self.samples:
            raise WorkflowError(f"no image in {str(images)!r} has a mask in {str(masks)!r} (images: "
                                f"{len(_images_in(images))}); masks are matched by file stem, e.g. "
                                f"{image_dir}/case1.png -> {mask_dir}/case1.png or {mask_dir}/case1_mask.png")
        if missing:
            raise WorkflowError(f"{len(missing)} image(s) have no mask, e.g. {missing[:3]}; expected "
                                f"{str(masks / (Path(missing[0]).stem + '.png'))!r}")
        if self.per_class and self.num_classes != 1 and len(class_dirs) != self.num_classes:
            raise WorkflowError(f"{len(class_dirs)} class mask folders in {str(masks)!r} but num_classes="
                                f"{self.num_classes}")

    def __len__(self) -> int:
        return len(self.samples)

    def _read_mask(self, path: Path, hw: Tuple[int, int]) -> torch.Tensor:
        from PIL import Image

        with Image.open(path) as im:
            m = torch.from_numpy(_to_array(im.convert("L")))
        if tuple(m.shape) != tuple(hw):
            raise WorkflowError(f"mask {str(path)!r} is {tuple(m.shape)} but its image is {tuple(hw)}: masks must "
                                f"have the image's size")
        return m

    def _load_mask(self, paths: List[Optional[Path]], hw: Tuple[int, int]) -> torch.Tensor:
        """Labels (H, W): binary masks -> 0/1; a class-index mask as it is; per-class folders -> the index of
        the (last) folder marking each pixel, 0 where none does (binary: folder 0 alone)."""
        if self.num_classes == 1:
            return _binary(self._read_mask(paths[0], hw)).long() if paths[0] is not None else \
                torch.zeros(hw, dtype=torch.long)
        if not self.per_class:
            return self._read_mask(paths[0], hw).long()
        out = torch.zeros(hw, dtype=torch.long)
        for c, path in enumerate(paths):
            if path is not None:
                out[_binary(self._read_mask(path, hw))] = c
        return out

    def __getitem__(self, i: int):
        img_path, mask_paths = self.samples[i]
        try:
            img = load_rgb(img_path)
        except DECODE_ERRORS as e:
            raise WorkflowError(f"image {str(img_path)!r} will not decode: {type(e).__name__}: {e}") from None
        mask = self._load_mask(mask_paths, (img.shape[1], img.shape[2]))
        if self.size is not None and tuple(mask.shape) != self.size:
            mask = torch.nn.functional.interpolate(mask[None, None].float(), size=self.size, mode="nearest")[0, 0]
            mask = mask.long()
        return preprocess(img, self.size, self.mean, self.std), mask, str(img_path)


def load_rgb(path: PathLike) -> torch.Tensor:
    """An image file as a float tensor (3, H, W) in [0, 1]."""
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(_to_array(as_rgb(im))).permute(2, 0, 1).float() / 255.0


def preprocess(image: torch.Tensor, size: Optional[Sequence[int]] = None,
               mean: Sequence[float] = (0.485, 0.456, 0.406),
               std: Sequence[float] = (0.229, 0.224, 0.225)) -> torch.Tensor:
    """U-KAN's evaluation preprocessing of an image (C, H, W) in [0, 1]: resize to ``size`` (H, W) (bilinear,
    antialiased; None keeps the size), then ``(x - mean) / std`` per channel. ``kanzoo predict`` on a segmentation
    model uses it with the model's pretrained cfg (``input_size[1:]``, ``mean``, ``std``)."""
    if size is not None and tuple(image.shape[1:]) != tuple(size):
        image = torch.nn.functional.interpolate(image[None], size=tuple(size), mode="bilinear", align_corners=False,
                                                antialias=True)[0]
    m = torch.tensor(mean, dtype=image.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=image.dtype).view(-1, 1, 1)
    return (image - m) / s


def _to_array(im):
    return np.array(im, dtype=np.uint8, copy=True)


def _binary(m: torch.Tensor) -> torch.Tensor:
    """Foreground of a binary mask: > 127 for 0/255 masks (U-KAN's rule), > 0 for 0/1 masks."""
    return m > (127 if int(m.max()) > 1 else 0)


def predict_masks(model: torch.nn.Module, images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Label maps (B, H, W) of a batch of images (B, C, H, W): ``sigmoid > threshold`` for one output channel
    (0/1), argmax otherwise."""

    model.eval()
    with torch.no_grad():
        return masks_from_logits(model(images).float(), threshold)


def overlay_mask(image, mask: torch.Tensor, alpha: float = 0.5, palette: Sequence[Tuple[int, int, int]] = PALETTE):
    """The RGB PIL image with each class > 0 of ``mask`` (H, W) blended in its palette colour (weight ``alpha``).
    ``mask`` is resized (nearest) to the image when their sizes differ."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if mask.dim() != 2:
        raise ValueError(f"expected a label map (H, W), got shape {list(mask.shape)}")
    base = image.convert("RGB")
    w, h = base.size
    if tuple(mask.shape) != (h, w):
        mask = torch.nn.functional.interpolate(mask[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
    rgb = np.array(base, dtype=np.float32)
    m = mask.cpu().numpy()
    for c in range(1, int(m.max()) + 1 if m.size else 1):
        sel = m == c
        if sel.any():
            colour = np.array(palette[(c - 1) % len(palette)], dtype=np.float32)
            rgb[sel] = (1 - alpha) * rgb[sel] + alpha * colour
    return Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8))


def write_mask_overlay(image: Union[PathLike, "object"], mask: torch.Tensor, out_path: PathLike, alpha: float = 0.5,
                       mask_path: Optional[PathLike] = None) -> Path:
    """Writes ``image`` (a path or PIL image) with ``mask`` (H, W labels) blended in, as a PNG at ``out_path``
    (atomically: a temporary file renamed into place). With ``mask_path``, also writes the bare mask as a PNG
    (binary: 0/255; multi-class: the class indices). Returns ``out_path``."""
    from PIL import Image

    if not str(out_path).lower().endswith(".png"):
        raise ValueError(f"out_path must end in .png (the overlay is written as PNG), got {str(out_path)!r}")
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            image = im.convert("RGB")
    over = overlay_mask(image, mask, alpha)
    path = atomic_write(out_path, lambda tmp: over.save(tmp, format="PNG"))
    if mask_path is not None:
        m = mask.cpu().numpy()
        arr = (m > 0).astype(np.uint8) * 255 if int(m.max(initial=0)) <= 1 else m.astype(np.uint8)
        bare = Image.fromarray(arr, mode="L")
        atomic_write(mask_path, lambda tmp: bare.save(tmp, format="PNG"))
    return path
