"""The settings of a training run (:class:`TrainConfig`, saved as a run folder's ``args.json``) and their
checks: what ``kanzoo train`` / ``kanzoo finetune`` accept before any data or model is touched, and which
settings may change when a run is resumed.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import WorkflowError
from ._common import check_positive, resolve_dtype
from .data import AugConfig

__all__ = ["RUNTIME_FIELDS", "TrainConfig"]

#: settings that may change on --resume without changing what is computed
RUNTIME_FIELDS = ("output", "workers", "device", "progress", "quiet", "log_interval", "max_skipped_fraction")


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved as ``args.json``)."""

    model: str
    data: str
    val_data: Optional[str] = None
    output: Optional[str] = None
    pretrained: bool = False
    checkpoint: Optional[str] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    peft: Optional[Dict[str, Any]] = None
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    warmup_lr: float = 1e-6
    label_smoothing: float = 0.1
    clip_grad: Optional[float] = None
    img_size: Optional[int] = None
    # the augmentations, one flag each, with AugConfig's defaults
    no_aug: bool = AugConfig.no_aug
    scale: Tuple[float, float] = AugConfig.scale
    ratio: Tuple[float, float] = AugConfig.ratio
    hflip: float = AugConfig.hflip
    vflip: float = AugConfig.vflip
    color_jitter: float = AugConfig.color_jitter
    auto_augment: Optional[str] = AugConfig.auto_augment
    re_prob: float = AugConfig.re_prob
    seed: int = 42
    workers: int = 2
    amp: bool = False
    amp_dtype: str = "bfloat16"
    device: Optional[str] = None
    log_interval: int = 50
    progress: Optional[bool] = None
    quiet: bool = False
    max_skipped_fraction: float = 0.005  # stop when more of an epoch's images than this will not decode
    # S-KAN basis selection (models with selectable KAN layers); None: the model's pretrained cfg ``selection``
    select_epoch: Optional[int] = None  # selective training starts after this many epochs of full training
    prune_epoch: Optional[int] = None   # pruned after this many epochs (= epochs: after the last one)
    select_top_k: Optional[int] = None  # members each channel keeps
    no_selection: bool = False          # train the full mixture throughout

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise WorkflowError(f"unknown training settings {unknown}; known: {sorted(names)}")
        d = dict(d)
        for k in ("scale", "ratio"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    def aug(self) -> AugConfig:
        return AugConfig(no_aug=self.no_aug, scale=tuple(self.scale), ratio=tuple(self.ratio), hflip=self.hflip,
                         vflip=self.vflip, color_jitter=self.color_jitter, auto_augment=self.auto_augment,
                         re_prob=self.re_prob)

    def check(self) -> None:
        """Raises a :class:`WorkflowError` for a setting that cannot work."""
        check_positive("--epochs", self.epochs)
        check_positive("--batch-size", self.batch_size, hint="use 1 or more images per batch (per process)")
        check_positive("--workers", self.workers, minimum=0)
        check_positive("--log-interval", self.log_interval)
        if self.img_size is not None:
            check_positive("--img-size", self.img_size)
        for name in ("lr", "min_lr", "weight_decay", "warmup_epochs", "warmup_lr", "hflip", "vflip", "re_prob",
                     "color_jitter"):
            if getattr(self, name) < 0:
                raise WorkflowError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise WorkflowError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.max_skipped_fraction <= 1:
            raise WorkflowError(f"--max-skipped-fraction must be in [0, 1], got {self.max_skipped_fraction}")
        if not 0 <= self.label_smoothing < 1:
            raise WorkflowError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise WorkflowError(f"--clip-grad must be > 0, got {self.clip_grad}")
        if self.pretrained and self.checkpoint:
            raise WorkflowError("give --pretrained or --checkpoint as the starting weights, not both")
        resolve_dtype(self.amp_dtype)
        self._check_selection()

    def selection_flags(self) -> List[str]:
        """The basis-selection options that were given, as command-line flags."""
        return [f"--{n.replace('_', '-')}" for n in ("select_epoch", "prune_epoch", "select_top_k")
                if getattr(self, n) is not None]

    def _check_selection(self) -> None:
        given = self.selection_flags()
        if self.no_selection and given:
            raise WorkflowError(f"--no-selection turns basis selection off; drop {', '.join(given)}")
        if given and self.peft is not None:
            raise WorkflowError(f"{', '.join(given)} cannot go with --peft: adapters wrap the selectable layers, "
                                f"which then cannot be pruned; train and prune first, then finetune the pruned run "
                                f"with --peft")
        for name in ("select_epoch", "prune_epoch", "select_top_k"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                hint = "; the selection reads the mixing weights, which must train first" if name == "select_epoch" \
                    else ""
                raise WorkflowError(f"--{name.replace('_', '-')} must be an integer >= 1, got {v!r}{hint}")
        for name in ("select_epoch", "prune_epoch"):
            v = getattr(self, name)
            if v is not None and v > self.epochs:
                raise WorkflowError(f"--{name.replace('_', '-')} {v} is past --epochs {self.epochs}; give 1 to "
                                    f"{self.epochs} (= --epochs: after the last epoch)")
        if self.select_epoch is not None and self.prune_epoch is not None and self.prune_epoch < self.select_epoch:
            raise WorkflowError(f"--prune-epoch {self.prune_epoch} comes before --select-epoch {self.select_epoch}; "
                                f"prune at or after the selection")

    def changed_from(self, saved: Mapping[str, Any]) -> List[str]:
        """``'name old -> new'`` for every setting that differs from ``saved`` (a run's ``args.json``) and
        changes what is computed; settings missing from ``saved`` and :data:`RUNTIME_FIELDS` are skipped.
        Values are compared as JSON would store them (a tuple equals the list it was saved as)."""
        return [f"{k} {saved[k]!r} -> {v!r}" for k, v in dataclasses.asdict(self).items()
                if k in saved and k not in RUNTIME_FIELDS and _as_json(saved[k]) != _as_json(v)]


def _as_json(v: Any) -> Any:
    return json.loads(json.dumps(v))
