"""Image data for kanzoo's workflows: class-per-folder datasets, timm transforms, loaders and samplers.

A dataset folder is in ImageFolder (ImageNet-val) layout: one subfolder per class, images inside
(``root/cat/001.png``). An image that will not decode is skipped: the loader drops it from its batch, a
warning names the file once, and :class:`SkipTracker` counts it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
from PIL import Image
from timm.data import create_dataset, create_transform, resolve_data_config
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset
from torchvision.transforms import Compose

from ..errors import WorkflowError
from ..io import PathLike
from ._common import warn

#: file suffixes read as images (case-insensitive)
IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

#: how many undecodable files are named one by one before the warnings are summarised
MAX_NAMED_WARNINGS = 20


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS) and not name.startswith(".")


def find_classes(root: PathLike, what: str = "data folder") -> List[str]:
    """The class folder names under ``root``, sorted; a clear error for a missing, empty or flat folder."""
    root = Path(root)
    if not root.exists():
        raise WorkflowError(f"{what} {str(root)!r} does not exist; give a folder with one subfolder per class "
                            f"(ImageFolder layout: {root}/CLASS/IMAGE.png)")
    if not root.is_dir():
        raise WorkflowError(f"{what} {str(root)!r} is a file, not a folder; give a folder with one subfolder per "
                            f"class (ImageFolder layout)")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        loose = [e.name for e in os.scandir(root) if e.is_file() and _is_image(e.name)]
        hint = (f"; it holds {len(loose)} image(s) directly: move them into one subfolder per class" if loose
                else "")
        raise WorkflowError(f"{what} {str(root)!r} has no class subfolders (ImageFolder layout: "
                            f"{root}/CLASS/IMAGE.png){hint}")
    return classes


def list_images(folder: PathLike) -> List[str]:
    """Image files under ``folder`` (recursively), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f))
    return out


#: PIL modes of 16-bit images (PNG, TIFF), whose values span 0..65535
_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def as_rgb(img: Image.Image) -> Image.Image:
    """An RGB PIL image of ``img``, with 16-bit values scaled to 8 bits (PIL's own conversion clips them to 0 or
    255). 32-bit integer images whose values fit 16 bits are scaled the same way; wider integer and float
    images are refused, since their range is unknown."""
    if img.mode in _16BIT_MODES or img.mode == "I":
        values = np.asarray(img, dtype=np.int64)
        top = int(values.max()) if values.size else 0
        if img.mode == "I" and top > 65535 or int(values.min(initial=0)) < 0:
            raise ValueError(f"a {img.mode} image with values in [{int(values.min())}, {top}]: kanzoo reads 8- and "
                             f"16-bit images; convert it to one of those")
        if img.mode in _16BIT_MODES or top > 255:
            values = (values * 255 + 32767) // 65535  # 0..65535 -> 0..255, rounded
        return Image.fromarray(values.astype(np.uint8), mode="L").convert("RGB")
    if img.mode == "F":
        raise ValueError("a floating-point image: its value range is unknown; convert it to an 8- or 16-bit image")
    return img.convert("RGB")


def load_image(path: PathLike) -> Image.Image:
    """Opens and fully decodes an image as RGB (PIL); 16-bit images are scaled, not clipped (:func:`as_rgb`)."""
    with Image.open(path) as img:
        return as_rgb(img)


#: what a failed decode can raise (PIL raises OSError/UnidentifiedImageError, truncated data ValueError/SyntaxError)
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)


class ImageFolder(Dataset):
    """Images in class folders. ``__getitem__`` returns ``(image, target, error)``: the transformed image, its
    class index and ``None``, or ``(None, target, 'path: reason')`` when the file will not decode.

    Args:
        root: the folder; one subfolder per class.
        transform: applied to the PIL image.
        class_to_idx: map folder names to these indices (e.g. the classes of a training set); folders not in
            it raise. Default: the sorted folder names, 0..K-1.
    """

    def __init__(self, root: PathLike, transform: Optional[Callable] = None,
                 class_to_idx: Optional[Dict[str, int]] = None, what: str = "data folder"):
        self.root = Path(root)
        self.classes = find_classes(self.root, what)
        if class_to_idx is None:
            class_to_idx = {c: i for i, c in enumerate(self.classes)}
        unknown = [c for c in self.classes if c not in class_to_idx]
        if unknown:
            raise WorkflowError(f"{what} {str(self.root)!r} has class folders the model does not know: "
                                f"{unknown[:10]}; its classes are {list(class_to_idx)[:10]}"
                                f"{' ...' if len(class_to_idx) > 10 else ''}")
        self.class_to_idx = dict(class_to_idx)
        self.samples: List[Tuple[str, int]] = []
        self.empty_classes = []
        for c in self.classes:
            files = list_images(self.root / c)
            if not files:
                self.empty_classes.append(c)
            self.samples.extend((f, self.class_to_idx[c]) for f in files)
        if not self.samples:
            raise WorkflowError(f"{what} {str(self.root)!r} has {len(self.classes)} class folder(s) but no images "
                                f"in them (looked for {', '.join(IMG_EXTENSIONS)})")
        if self.empty_classes:
            warn(f"{len(self.empty_classes)} class folder(s) in {str(self.root)!r} hold no images: "
                 f"{self.empty_classes[:10]}")
        self.transform = transform

    def remap(self, class_to_idx: Dict[str, int]) -> "ImageFolder":
        """Relabels the samples: folder name -> ``class_to_idx[name]`` (e.g. a model's output indices)."""
        missing = [c for c in self.classes if c not in class_to_idx]
        if missing:
            raise WorkflowError(f"class folders {missing[:10]} in {str(self.root)!r} are not among the model's "
                                f"classes {list(class_to_idx)[:10]}{' ...' if len(class_to_idx) > 10 else ''}")
        by_old = {i: class_to_idx[c] for c, i in self.class_to_idx.items()}
        self.samples = [(p, by_old[t]) for p, t in self.samples]
        self.class_to_idx = {c: class_to_idx[c] for c in self.classes}
        return self

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        try:
            img = load_image(path)
        except DECODE_ERRORS as e:
            return None, target, f"{path}: {type(e).__name__}: {str(e).strip() or 'cannot decode'}"
        if self.transform is not None:
            img = self.transform(img)
        return img, target, None


def collate_skipping(batch: Sequence[Tuple[Any, int, Optional[str]]]):
    """Collates ``(image, target, error)`` samples into ``(images, targets, errors)``, leaving out the
    samples that failed to decode (``images`` may then hold fewer rows than the batch size, or none)."""
    good = [(x, y) for x, y, err in batch if err is None]
    errors = [err for _, _, err in batch if err is not None]
    if good:
        images = torch.stack([x for x, _ in good])
        targets = torch.tensor([y for _, y in good], dtype=torch.long)
    else:
        images, targets = torch.empty(0), torch.empty(0, dtype=torch.long)
    return images, targets, errors


@dataclass
class SkipTracker:
    """Counts the images skipped because they would not decode and warns once per file."""

    count: int = 0
    warned: Set[str] = field(default_factory=set)
    prefix: str = ""

    def add(self, errors: Sequence[str]) -> None:
        for err in errors:
            self.count += 1
            path = err.split(": ", 1)[0]
            if path in self.warned:
                continue
            self.warned.add(path)
            if len(self.warned) <= MAX_NAMED_WARNINGS:
                warn(f"{self.prefix}skipped an image that will not decode: {err}")
            elif len(self.warned) == MAX_NAMED_WARNINGS + 1:
                warn(f"{self.prefix}more undecodable images; only the count is reported from here on")


def data_config_for(model: torch.nn.Module, img_size: Optional[int] = None, crop_pct: Optional[float] = None,
                    interpolation: Optional[str] = None, mean: Optional[Sequence[float]] = None,
                    std: Optional[Sequence[float]] = None,
                    input_size: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """The preprocessing of ``model`` from its pretrained cfg (``timm.data.resolve_data_config``), with
    overrides (``img_size`` wins over ``input_size``, as in timm)."""
    args: Dict[str, Any] = {}
    if img_size:
        args["img_size"] = img_size
    elif input_size:
        args["input_size"] = tuple(input_size)
    if crop_pct:
        args["crop_pct"] = crop_pct
    if interpolation:
        args["interpolation"] = interpolation
    if mean:
        args["mean"] = tuple(mean)
    if std:
        args["std"] = tuple(std)
    config = resolve_data_config(args, model=model)
    # a model built with another in_chans than its pretrained cfg's: its channel count, one mean/std per channel
    n = model_in_chans(model)
    if n is not None and n != config["input_size"][0]:
        config["input_size"] = (n, *config["input_size"][1:])
    n = config["input_size"][0]
    for key in ("mean", "std"):
        v = tuple(config[key])
        if n == 1 and len(v) > 1:
            config[key] = (sum(v) / len(v),)
        elif len(v) == 1 and n > 1:
            config[key] = v * n
    return config


@dataclass
class AugConfig:
    """timm training augmentations (``timm.data.create_transform(is_training=True)``); ``no_aug`` turns them
    off (resize and centre crop only)."""

    no_aug: bool = False
    scale: Tuple[float, float] = (0.08, 1.0)
    ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    vflip: float = 0.0
    color_jitter: float = 0.4
    auto_augment: Optional[str] = None
    re_prob: float = 0.0
    re_mode: str = "pixel"
    re_count: int = 1


class ToGrayscale:
    """(3, H, W) -> (1, H, W) with ITU-R 601 luma weights, for 1-channel models. It runs after timm's pipeline,
    which normalised every channel with the same mean and std, so it equals normalising the grey image."""

    weights = (0.299, 0.587, 0.114)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.tensor(self.weights, dtype=x.dtype).view(3, 1, 1)
        return (x * w).sum(dim=0, keepdim=True)

    def __repr__(self) -> str:
        return "ToGrayscale()"


def model_in_chans(model: torch.nn.Module) -> Optional[int]:
    n = getattr(model, "in_chans", None)
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def build_transform(data_config: Dict[str, Any], training: bool = False, aug: Optional[AugConfig] = None):
    """timm's transform for ``data_config``: the training pipeline with ``aug`` or the eval one. Images are read
    as RGB; for a 1-channel config the pipeline runs on RGB with the grey mean/std on every channel and ends
    with :class:`ToGrayscale`."""
    chans = int(data_config["input_size"][0])
    cfg = {k: data_config[k] for k in ("input_size", "interpolation", "mean", "std")}
    if chans == 1:
        cfg["input_size"] = (3, *tuple(data_config["input_size"])[1:])
        cfg["mean"], cfg["std"] = tuple(cfg["mean"]) * 3, tuple(cfg["std"]) * 3
    elif chans != 3:
        raise WorkflowError(f"the model takes {chans} input channels, but image files are read as RGB (3) or "
                            f"grayscale (1); feed such a model tensors from Python, or build it with in_chans=3 "
                            f"or in_chans=1")
    aug = aug or AugConfig()
    if not training or aug.no_aug:
        t = create_transform(**cfg, is_training=False, crop_pct=data_config.get("crop_pct"),
                             crop_mode=data_config.get("crop_mode"))
    else:
        t = create_transform(**cfg, is_training=True, scale=tuple(aug.scale), ratio=tuple(aug.ratio),
                             hflip=aug.hflip, vflip=aug.vflip, color_jitter=aug.color_jitter,
                             auto_augment=aug.auto_augment, re_prob=aug.re_prob,
                             re_mode=aug.re_mode, re_count=aug.re_count)
    return Compose([t, ToGrayscale()]) if chans == 1 else t


def shard(dataset: Dataset, rank: int, world_size: int) -> Dataset:
    """Every ``world_size``-th sample from ``rank`` on, without padding (for evaluation: the shards cover
    each sample exactly once)."""
    if world_size <= 1:
        return dataset
    return Subset(dataset, list(range(rank, len(dataset), world_size)))


def train_sampler(dataset: Dataset, rank: int = 0, world_size: int = 1, seed: int = 0) -> DistributedSampler:
    """The training sampler, in one process or many: a permutation seeded by ``seed + epoch`` (call
    ``set_epoch``), split across ranks. One process with batch ``B * N`` then sees, step by step, the same
    samples as ``N`` processes with batch ``B``."""
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False)


def make_loader(dataset: Dataset, batch_size: int, workers: int = 0, sampler: Optional[Sampler] = None,
                drop_last: bool = False, pin_memory: bool = False, generator: Optional[torch.Generator] = None
                ) -> DataLoader:
    """A DataLoader that skips undecodable images (:func:`collate_skipping`)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, sampler=sampler, num_workers=workers,
                      collate_fn=collate_skipping, drop_last=drop_last, pin_memory=pin_memory,
                      generator=generator, persistent_workers=False)


def split_dirs(data: PathLike) -> Tuple[Path, Optional[Path]]:
    """``DATA`` -> (train folder, val folder or None): ``DATA/train`` + ``DATA/val`` (or ``validation``) when
    ``DATA/train`` exists, else ``DATA`` itself with no validation set."""
    data = Path(data)
    if not data.exists():
        raise WorkflowError(f"data folder {str(data)!r} does not exist; give DATA with DATA/train/CLASS/*.png "
                            f"(and DATA/val/CLASS/*.png), or a folder with one subfolder per class")
    if (data / "train").is_dir():
        for name in ("val", "validation"):
            if (data / name).is_dir():
                return data / "train", data / name
        return data / "train", None
    return data, None


# ------------------------------------------------------------------------------------- timm's dataset names
#: ``--data`` prefixes that go through ``timm.data.create_dataset`` (streaming and library datasets)
TIMM_PREFIXES = ("wds", "hfds", "hfids", "tfds", "torch")


def is_timm_dataset(data: str) -> bool:
    """Whether ``--data`` names a ``timm.data.create_dataset`` dataset (``wds/NAME``, ``hfds/NAME``, ...) rather
    than a folder; an existing folder of that name stays a folder."""
    prefix, sep, _ = str(data).partition("/")
    return bool(sep) and prefix.lower() in TIMM_PREFIXES and not Path(data).is_dir()


def timm_dataset(name: str, root: Optional[str], split: str, training: bool, batch_size: int, seed: int,
                 workers: int, what: str, num_samples: Optional[int] = None) -> Dataset:
    """``timm.data.create_dataset(name, root=..., split=...)`` wrapped to yield ``(image, target, None)`` like
    :class:`ImageFolder` (:class:`TimmMapDataset` or :class:`TimmIterableDataset`); any failure of timm's is one
    :class:`WorkflowError` naming the dataset. ``num_samples``: the images per epoch of a streaming dataset that
    does not know its size."""
    extra = {} if num_samples is None else {"num_samples": num_samples}
    try:
        ds = create_dataset(name, root=root, split=split, is_training=training, batch_size=batch_size, seed=seed,
                            **extra)
    except Exception as e:  # timm raises RuntimeError, AssertionError, ImportError, ... by dataset kind
        option = "--train-num-samples" if training else "--val-num-samples"
        hint = (f"give its images per epoch with {option} N" if "num_samples" in str(e) else
                "check the name, --data-dir and the split (--train-split / --val-split)")
        raise WorkflowError(f"{what} {name!r} (--data-dir {root!r}, split {split!r}) could not be opened: "
                            f"{type(e).__name__}: {str(e).strip()[:300]}; {hint}") from None
    if isinstance(ds, torch.utils.data.IterableDataset):
        if hasattr(ds, "set_loader_cfg"):  # the sample count per process depends on the loader workers
            ds.set_loader_cfg(num_workers=workers)
        return TimmIterableDataset(ds)
    return TimmMapDataset(ds)


def _class_names(ds: Any) -> Optional[List[str]]:
    """Class names a timm / torchvision dataset knows, in index order, or None."""
    classes = getattr(ds, "classes", None)
    if classes:
        return [str(c) for c in classes]
    mapping = getattr(getattr(ds, "reader", None), "class_to_idx", None)
    if mapping:
        return [str(c) for c, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
    return None


class _TimmDatasetView:
    """What both timm dataset wrappers share: the wrapped dataset, its class names, and a ``transform`` that is
    the wrapped dataset's own."""

    def __init__(self, ds):
        self.ds = ds
        self.class_names = _class_names(ds)

    @property
    def transform(self):
        return self.ds.transform

    @transform.setter
    def transform(self, t) -> None:
        self.ds.transform = t


class TimmMapDataset(_TimmDatasetView, Dataset):
    """A map-style timm / torchvision dataset (``hfds/``, ``torch/``) yielding ``(image, target, None)``; the
    transform is set on the wrapped dataset."""

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int):
        img, target = self.ds[index]
        return img, int(target), None


class TimmIterableDataset(_TimmDatasetView, torch.utils.data.IterableDataset):
    """A streaming timm dataset (``wds/``, ``hfids/``, ``tfds/``) yielding ``(image, target, None)``. timm's
    reader splits the shards over processes and loader workers and shuffles with the epoch (:meth:`set_epoch`);
    its length is this process's samples per epoch."""

    def set_epoch(self, epoch: int) -> None:
        self.ds.set_epoch(epoch)
        reader = getattr(self.ds, "reader", None)
        if getattr(reader, "ds", None) is not None:
            # a pipeline built in this process (no loader workers) holds generators that ran last epoch:
            # rebuild it, so an epoch reads the same whether or not earlier epochs ran in this process
            reader.ds = None

    def __len__(self) -> int:
        return len(self.ds)

    def __iter__(self):
        for img, target in self.ds:
            yield img, int(target), None
