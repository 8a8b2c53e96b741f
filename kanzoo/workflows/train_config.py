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

__all__ = ["ALIASES", "RUNTIME_FIELDS", "SCHEDULES", "TrainConfig", "current_names"]

#: settings that may change on --resume without changing what is computed
RUNTIME_FIELDS = ("output", "workers", "device", "progress", "quiet", "log_interval", "max_skipped_fraction")

#: names that older ``args.json`` files (and checkpoints) used -> the timm ``train.py`` names used now
ALIASES = {"label_smoothing": "smoothing", "re_prob": "reprob", "auto_augment": "aa"}

#: the learning-rate schedules ``kanzoo train`` runs (timm's ``--sched``; ``timm.scheduler.create_scheduler_v2``)
SCHEDULES = ("cosine", "tanh", "step", "multistep", "poly")

#: timm's ``--mixup-mode`` values
MIXUP_MODES = ("batch", "pair", "elem")

#: timm's ``--clip-mode`` values
CLIP_MODES = ("norm", "value", "agc")


def current_names(d: Mapping[str, Any]) -> Dict[str, Any]:
    """``d`` with the names of :data:`ALIASES` replaced by today's (an older run's ``args.json``)."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        new = ALIASES.get(k, k)
        if new in out and k != new:  # both spellings: today's wins
            continue
        out[new] = v
    return out


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved as ``args.json``). Where timm's ``train.py`` has the same
    setting, the field has its name (``smoothing``, ``reprob``, ``aa``, ``mixup``, ``model_ema``, ...), so a
    recipe (:mod:`kanzoo.recipes`) maps onto it key for key."""

    model: str
    data: str
    data_dir: Optional[str] = None  # the root of a streaming dataset (--data wds/NAME, hfds/NAME, ...)
    train_split: str = "train"
    val_split: Optional[str] = "validation"
    train_num_samples: Optional[int] = None  # streaming datasets that do not know their size (timm's names)
    val_num_samples: Optional[int] = None
    val_data: Optional[str] = None
    output: Optional[str] = None
    pretrained: bool = False
    checkpoint: Optional[str] = None
    initial_checkpoint: Optional[str] = None  # weights loaded where they fit (a file or timm:ARCH.TAG)
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    peft: Optional[Dict[str, Any]] = None
    recipe: Optional[str] = None  # the kanzoo.recipes tag the settings came from
    recipe_unapplied: Dict[str, Any] = field(default_factory=dict)  # recipe settings kanzoo train does not apply
    drop: Optional[float] = None       # -> the model's drop_rate
    drop_path: Optional[float] = None  # -> the model's drop_path_rate
    epochs: int = 10
    cooldown_epochs: int = 0  # epochs after --epochs at the schedule's final lr (timm's --cooldown-epochs)
    batch_size: int = 64
    grad_accum_steps: int = 1
    opt: str = "adamw"
    opt_eps: Optional[float] = None
    opt_betas: Optional[Tuple[float, ...]] = None
    momentum: float = 0.9
    lr: float = 1e-3
    layer_decay: Optional[float] = None
    sched: str = "cosine"
    sched_on_updates: bool = True  # step the schedule every update (False: every epoch, as timm's default)
    decay_rate: float = 0.1        # step / multistep: the lr factor at each decay; poly: the power
    decay_epochs: float = 90       # step: epochs between decays
    decay_milestones: Tuple[int, ...] = (90, 180, 270)  # multistep: the epochs of the decays
    warmup_prefix: bool = True     # the warmup comes before the schedule's epochs (timm's default: inside them)
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    warmup_lr: float = 1e-6
    smoothing: float = 0.1
    clip_grad: Optional[float] = None
    clip_mode: str = "norm"
    # mixup / cutmix (timm.data.Mixup); on when mixup > 0, cutmix > 0 or cutmix_minmax is set
    mixup: float = 0.0
    cutmix: float = 0.0
    cutmix_minmax: Optional[Tuple[float, float]] = None
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: str = "batch"
    mixup_off_epoch: int = 0  # no mixing from this epoch on (0: mix throughout)
    # an exponential moving average of the weights (timm.utils.ModelEmaV3), validated beside the model
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    model_ema_warmup: bool = False
    channels_last: bool = False
    torchcompile: Optional[str] = None  # torch.compile backend (kanzoo.compile_model); None: eager
    num_classes: Optional[int] = None  # streaming datasets without class names (folders: one per class folder)
    img_size: Optional[int] = None
    input_size: Optional[Tuple[int, int, int]] = None
    crop_pct: Optional[float] = None
    interpolation: Optional[str] = None
    train_interpolation: Optional[str] = None  # the training transform's (default: interpolation)
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    # the augmentations, one flag each, with AugConfig's defaults
    no_aug: bool = AugConfig.no_aug
    scale: Tuple[float, float] = AugConfig.scale
    ratio: Tuple[float, float] = AugConfig.ratio
    hflip: float = AugConfig.hflip
    vflip: float = AugConfig.vflip
    color_jitter: float = AugConfig.color_jitter
    aa: Optional[str] = AugConfig.auto_augment
    reprob: float = AugConfig.re_prob
    remode: str = AugConfig.re_mode
    recount: int = AugConfig.re_count
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
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """A config from ``args.json``-style settings; older names (:data:`ALIASES`) are read as today's."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = current_names(d)
        unknown = sorted(set(d) - names)
        if unknown:
            raise WorkflowError(f"unknown training settings {unknown}; known: {sorted(names)}")
        for k in ("scale", "ratio", "cutmix_minmax", "opt_betas", "input_size", "mean", "std", "decay_milestones"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    @property
    def mixup_active(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0 or self.cutmix_minmax is not None

    def aug(self) -> AugConfig:
        return AugConfig(no_aug=self.no_aug, scale=tuple(self.scale), ratio=tuple(self.ratio), hflip=self.hflip,
                         vflip=self.vflip, color_jitter=self.color_jitter, auto_augment=self.aa,
                         re_prob=self.reprob, re_mode=self.remode, re_count=self.recount)

    def check(self) -> None:
        """Raises a :class:`WorkflowError` for a setting that cannot work."""
        check_positive("--epochs", self.epochs)
        check_positive("--train-num-samples", self.train_num_samples)
        check_positive("--val-num-samples", self.val_num_samples)
        cooldown = self.cooldown_epochs
        if isinstance(cooldown, bool) or not isinstance(cooldown, int) or cooldown < 0:
            raise WorkflowError(f"--cooldown-epochs must be an integer >= 0 (epochs after --epochs at the final lr), "
                                f"got {self.cooldown_epochs!r}")
        check_positive("--batch-size", self.batch_size, hint="use 1 or more images per batch (per process)")
        check_positive("--workers", self.workers, minimum=0)
        check_positive("--log-interval", self.log_interval)
        if self.img_size is not None:
            check_positive("--img-size", self.img_size)
        check_positive("--grad-accum-steps", self.grad_accum_steps, hint="1 steps the optimizer every batch")
        check_positive("--recount", self.recount)
        for name in ("lr", "min_lr", "weight_decay", "warmup_epochs", "warmup_lr", "hflip", "vflip", "reprob",
                     "color_jitter", "mixup", "cutmix", "mixup_off_epoch", "momentum"):
            if getattr(self, name) < 0:
                raise WorkflowError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise WorkflowError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.max_skipped_fraction <= 1:
            raise WorkflowError(f"--max-skipped-fraction must be in [0, 1], got {self.max_skipped_fraction}")
        for name, value in (("smoothing", self.smoothing), ("drop", self.drop), ("drop_path", self.drop_path)):
            if value is not None and not 0 <= value < 1:
                raise WorkflowError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")
        for name in ("mixup_prob", "mixup_switch_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise WorkflowError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        if not 0 < self.model_ema_decay < 1:
            raise WorkflowError(f"--model-ema-decay must be in (0, 1), got {self.model_ema_decay}; timm's recipes "
                                f"use 0.9998 or 0.99996")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise WorkflowError(f"--layer-decay must be in (0, 1], got {self.layer_decay}; e.g. 0.75 scales each "
                                f"earlier layer group's lr by 0.75")
        if self.cutmix_minmax is not None:
            lo, hi = (tuple(self.cutmix_minmax) + (None, None))[:2]
            if len(self.cutmix_minmax) != 2 or not 0 < lo < hi <= 1:
                raise WorkflowError(f"--cutmix-minmax must be two fractions 0 < MIN < MAX <= 1, got "
                                    f"{list(self.cutmix_minmax)}")
        _check_choice("--mixup-mode", self.mixup_mode, MIXUP_MODES)
        _check_choice("--clip-mode", self.clip_mode, CLIP_MODES)
        _check_choice("--sched", self.sched, SCHEDULES, " (timm.scheduler.create_scheduler_v2 names; plateau needs a "
                      "metric every epoch, which kanzoo train does not feed it)")
        if self.decay_rate <= 0:
            raise WorkflowError(f"--decay-rate must be > 0, got {self.decay_rate}")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise WorkflowError(f"--clip-grad must be > 0, got {self.clip_grad}")
        if self.input_size is not None and (len(self.input_size) != 3 or min(self.input_size) < 1):
            raise WorkflowError(f"--input-size must be C H W (three positive integers), got {list(self.input_size)}")
        starts = [n for n, v in (("--pretrained", self.pretrained), ("--checkpoint", self.checkpoint),
                                 ("--initial-checkpoint", self.initial_checkpoint)) if v]
        if len(starts) > 1:
            raise WorkflowError(f"give one of --pretrained, --checkpoint and --initial-checkpoint as the starting "
                                f"weights, not {' and '.join(starts)}")
        resolve_dtype(self.amp_dtype)
        self._check_selection()

    def model_overrides(self) -> Dict[str, Any]:
        """The model arguments that settings imply (``drop`` -> ``drop_rate``, ``drop_path`` ->
        ``drop_path_rate``); ``model_kwargs`` given explicitly win."""
        out = {}
        if self.drop is not None:
            out["drop_rate"] = self.drop
        if self.drop_path is not None:
            out["drop_path_rate"] = self.drop_path
        return out

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
        saved = current_names(saved)
        return [f"{k} {saved[k]!r} -> {v!r}" for k, v in dataclasses.asdict(self).items()
                if k in saved and k not in RUNTIME_FIELDS and _as_json(saved[k]) != _as_json(v)]


def _check_choice(flag: str, value: str, choices: Tuple[str, ...], hint: str = "") -> None:
    if value not in choices:
        raise WorkflowError(f"{flag} {value!r} is not one of {', '.join(choices)}{hint}")


def _as_json(v: Any) -> Any:
    return json.loads(json.dumps(v))
