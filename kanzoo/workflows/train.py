"""``kanzoo train`` and ``kanzoo finetune``: supervised training on an ImageFolder, in one process or under
torchrun (DDP), with optional basis adapters (``kanzoo.peft``).

A run folder holds:

* ``args.json``: the :class:`TrainConfig` of the run;
* ``log.jsonl``: one JSON record per logged step (``"kind": "step"``) and per epoch (``"kind": "epoch"``);
* ``checkpoint.pth``: model, optimizer and progress after the last finished epoch, replaced atomically each
  epoch; ``--resume RUN`` continues from it;
* at the end, ``model.safetensors`` + ``config.json`` + ``README.md`` (:func:`kanzoo.save_pretrained`, with the
  class folder names as ``label_names``), so ``kanzoo push NAME REPO --checkpoint RUN``,
  ``kanzoo export`` and ``kanzoo.create_model('local-dir:RUN', pretrained=True)`` take it as it is; adapter
  runs also hold ``adapter_config.json`` + ``adapter_model.safetensors`` and the merged model.

Models with selectable KAN layers (S-KAN, ``s_convkan_*``) train in three phases, driven by a
:class:`~kanzoo.layers.SelectionSchedule`: every basis until ``--select-epoch``, then each channel's top-k (the
mixing weights frozen) until ``--prune-epoch``, then the pruned model (the optimizer rebuilt; the lr schedule
goes on at the same step). The events go to ``log.jsonl`` (``"kind": "selection"``); the checkpoint holds the
schedule and rebuilds a pruned model in its pruned form (docs/selectable.md).

Determinism: every epoch reseeds the generators from ``(seed, epoch, rank)`` and the sampler permutes with
``seed + epoch``, so the data order, augmentations and dropout of an epoch do not depend on what ran before;
a resumed run therefore repeats an uninterrupted one bit for bit (same device, threads and worker count).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from ._common import (PathLike, WorkflowError, atomic_write, check_positive, read_json, resolve_dtype,
                      seed_everything, warn, write_json)
from .data import (AugConfig, ImageFolder, SkipTracker, build_transform, data_config_for, make_loader, shard,
                   split_dirs, train_sampler)
from .distributed import (DistContext, all_min, all_reduce_sum, barrier, broadcast_object, cleanup, setup,
                          wrap_model)
from .loading import ARGS_NAME, CHECKPOINT_NAME, load_model, model_labels, peft_module
from .validate import autocast, evaluate

LOG_NAME = "log.jsonl"

#: settings that may change on --resume without changing what is computed
_RUNTIME_FIELDS = ("output", "workers", "device", "progress", "quiet", "log_interval")


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
    no_aug: bool = False
    scale: Tuple[float, float] = (0.08, 1.0)
    ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    vflip: float = 0.0
    color_jitter: float = 0.4
    auto_augment: Optional[str] = None
    re_prob: float = 0.0
    seed: int = 42
    workers: int = 2
    amp: bool = False
    amp_dtype: str = "bfloat16"
    device: Optional[str] = None
    log_interval: int = 50
    progress: Optional[bool] = None
    quiet: bool = False
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


@dataclass
class TrainResult:
    """What a finished run reports."""

    run_dir: Path
    epochs: int
    metrics: Dict[str, Any]
    params: int
    trainable_params: int
    seconds: float
    model: Optional[nn.Module] = None  # the final (merged) model, on rank 0
    history: List[Dict[str, Any]] = field(default_factory=list)


def default_output(arch: str) -> str:
    return os.path.join("runs", f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}")


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _model_args(model: nn.Module) -> Dict[str, Any]:
    from timm.models._input import get_model_args
    return dict(get_model_args(model))


def _read_log(path: Path) -> List[Dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
    return out


def _fmt_record(rec: Dict[str, Any], epochs: int) -> str:
    s = (f"epoch {rec['epoch']}/{epochs}  train loss {rec['train_loss']:.4f} top-1 {rec['train_top1']:.2f}%")
    if rec.get("val_top1") is not None:
        s += (f"  val loss {rec['val_loss']:.4f} top-1 {rec['val_top1']:.2f}% "
              f"top-{rec['val_topk']} {rec['val_top5']:.2f}%")
    s += f"  lr {rec['lr']:.2e}  {rec['epoch_time']:.1f} s"
    if rec.get("skipped"):
        s += f"  ({rec['skipped']} undecodable images skipped)"
    return s


def _percent_line(summary: Dict[str, Dict[str, int]]) -> Tuple[Dict[str, int], str]:
    """Channel counts per basis over all layers of a :func:`~kanzoo.layers.selection_summary`, and
    ``'bspline 40%, gram 35%, ...'``."""
    totals: Dict[str, int] = {}
    for counts in summary.values():
        for basis, n in counts.items():
            totals[basis] = totals.get(basis, 0) + int(n)
    total = max(sum(totals.values()), 1)
    ranked = sorted(((n, b) for b, n in totals.items() if n), key=lambda t: (-t[0], t[1]))
    return dict(sorted(totals.items())), ", ".join(f"{b} {100 * n / total:.0f}%" for n, b in ranked)


class Trainer:
    """One training run; :func:`train` is the entry point."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext, resume: Optional[PathLike] = None):
        self.cfg, self.ctx = cfg, ctx
        self.show = ctx.is_main and not cfg.quiet
        progress = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
        self.progress = bool(progress) and ctx.is_main
        self.ckpt = self._read_resume(resume) if resume is not None else None
        self.run_dir = self._run_dir(resume)
        self.skips = SkipTracker(prefix=f"[rank {ctx.rank}] " if ctx.distributed else "")

    # -- setup ----------------------------------------------------------------------------------------------
    def _read_resume(self, resume: PathLike) -> Dict[str, Any]:
        from .loading import read_training_checkpoint

        path = Path(resume)
        if path.is_dir():
            path = path / CHECKPOINT_NAME
        ckpt = None
        if self.ctx.is_main:
            if not path.is_file():
                ckpt = WorkflowError(f"nothing to resume: {str(path)!r} does not exist (a run folder holds "
                                     f"{CHECKPOINT_NAME} once its first epoch has finished)")
            else:
                try:
                    ckpt = read_training_checkpoint(path)
                except Exception as e:  # handed to every rank, raised below
                    ckpt = e
        ckpt = broadcast_object(ckpt, self.ctx)
        if isinstance(ckpt, BaseException):
            raise ckpt
        self.resume_path = path
        return ckpt

    def _run_dir(self, resume: Optional[PathLike]) -> Path:
        if resume is not None:
            return self.resume_path.parent
        out = broadcast_object(self.cfg.output or default_output(self.cfg.model.split(".")[0]), self.ctx)
        run = Path(out)
        if (run / CHECKPOINT_NAME).exists():
            raise WorkflowError(f"run folder {str(run)!r} already holds a run ({CHECKPOINT_NAME}); continue it with "
                                f"--resume {run}, or choose another --output")
        if run.exists() and not run.is_dir():
            raise WorkflowError(f"--output {str(run)!r} is a file; give a folder")
        return run

    def _datasets(self) -> None:
        """Scans the training (and validation) folders; transforms are set once the model is known."""
        cfg = self.cfg
        train_dir, val_dir = split_dirs(cfg.data)
        if cfg.val_data:
            val_dir = Path(cfg.val_data)
        self.train_set = ImageFolder(train_dir, what="training folder")
        self.classes = self.train_set.classes
        if len(self.classes) < 2:
            raise WorkflowError(f"training folder {str(train_dir)!r} has {len(self.classes)} class folder; a "
                                f"classifier needs at least 2 (one subfolder per class)")
        self.val_set = None
        if val_dir is not None:
            self.val_set = ImageFolder(val_dir, class_to_idx=self.train_set.class_to_idx, what="validation folder")

    def _set_transforms(self, base: nn.Module) -> None:
        if self.ckpt is not None and self.ckpt.get("data_config"):
            self.data_config = dict(self.ckpt["data_config"])
        else:
            self.data_config = data_config_for(base, img_size=self.cfg.img_size)
        self.data_config["input_size"] = tuple(self.data_config["input_size"])
        self.train_set.transform = build_transform(self.data_config, True, self.cfg.aug())
        if self.val_set is not None:
            self.val_set.transform = build_transform(self.data_config, False)

    def _build_model(self) -> nn.Module:
        """The model to train: fresh (random, pretrained or a checkpoint, with a head for our classes, adapters
        added for --peft) or rebuilt from the resume checkpoint."""
        cfg, k = self.cfg, len(self.classes)
        if self.ckpt is not None:
            self.arch = self.ckpt["arch"]
            if cfg.model and cfg.model.split(".")[0] != self.arch:
                raise WorkflowError(f"{str(self.resume_path)!r} is a run of {self.arch}, not {cfg.model}; leave NAME "
                                    f"out to resume it")
            self.base_args = dict(self.ckpt["model_args"], num_classes=k)
            base = load_model(self.arch, model_kwargs=self.base_args).model
            self._set_transforms(base)
            self.schedule = self._resumed_schedule(base)
            model = self._add_peft(base, self.ckpt.get("peft"))
            if set(model.state_dict()) != set(self.ckpt["state_dict"]):
                raise WorkflowError(f"{str(self.resume_path)!r} does not fit the rebuilt {self.arch}; it was written "
                                    f"by another kanzoo version")
            model.load_state_dict(self.ckpt["state_dict"])
            self.head_note = "resumed"
            return model
        seed_everything(cfg.seed)
        kwargs = dict(cfg.model_kwargs)
        weights = cfg.pretrained or cfg.checkpoint
        if not weights:
            if kwargs.setdefault("num_classes", k) != k:
                raise WorkflowError(f"--model-kwargs num_classes={kwargs['num_classes']} disagrees with the "
                                    f"{k} class folders of the data; leave num_classes out")
        loaded = load_model(cfg.model, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint, model_kwargs=kwargs)
        base, self.arch = loaded.model, loaded.arch
        labels = model_labels(base, loaded.label_names) if weights else None
        if not weights:
            self.head_note = f"random init, {k}-class head"
        elif labels is not None and labels.ids == list(self.classes):
            self.head_note = "the starting weights' head (same classes)"
        elif labels is None and cfg.checkpoint and base.num_classes == k:
            self.head_note = f"the checkpoint's {k}-class head"
        else:
            base.reset_classifier(k)
            self.head_note = f"a new {k}-class head"
        self.base_args = _model_args(base)
        self._set_transforms(base)
        self.schedule = self._selection_schedule(base)
        return self._add_peft(base, cfg.peft)

    # -- basis selection (S-KAN) ----------------------------------------------------------------------------
    def _selection_schedule(self, base: nn.Module):
        """The :class:`~kanzoo.layers.SelectionSchedule` of a fresh run: the options, completed from the model's
        pretrained cfg ``selection``; None for a model without selectable layers (or --no-selection, --peft).
        Raises before training starts when the settings do not fit the model or --epochs."""
        from timm.models import get_pretrained_cfg

        from ..layers.selectable import SelectionSchedule, selectable_layers

        cfg = self.cfg
        given = cfg.selection_flags()
        layers = selectable_layers(base)
        self.selection_note = None
        if not layers:
            if given:
                raise WorkflowError(f"{', '.join(given)}: {self.arch} has no selectable KAN layers to select and "
                                    f"prune (S-KAN models: kanzoo list s_convkan); drop these options")
            return None
        if cfg.no_selection:
            self.selection_note = "off (--no-selection): every basis trains throughout; the model is not pruned"
            return None
        if cfg.peft is not None:
            self.selection_note = ("off: adapters (--peft) cannot be pruned; train and prune first, then adapt the "
                                   "pruned run")
            return None
        pcfg = get_pretrained_cfg(self.arch)
        saved = dict(getattr(pcfg, "selection", None) or {}) if pcfg is not None else {}
        where = f"{self.arch}'s pretrained cfg"
        select = cfg.select_epoch if cfg.select_epoch is not None else saved.get("full_epochs")
        if select is None:
            if given:
                raise WorkflowError(f"give --select-epoch N too: {where} has no selection settings to complete "
                                    f"{', '.join(given)}")
            self.selection_note = (f"off: {where} has no selection settings; give --select-epoch N [--prune-epoch "
                                   f"M] to select and prune")
            return None
        if select > cfg.epochs:
            raise WorkflowError(f"{where} selects after {select} epochs, past --epochs {cfg.epochs}; give "
                                f"--select-epoch N --prune-epoch M (1 <= N <= M <= {cfg.epochs}), or --no-selection")
        prune = cfg.prune_epoch
        if prune is None:
            if not saved:
                prune = cfg.epochs  # no recipe: prune after the last epoch
            elif saved.get("prune", True):
                prune = min(select + int(saved.get("select_epochs", 0)), cfg.epochs)
        if prune is not None and prune < select:
            raise WorkflowError(f"--prune-epoch {prune} comes before the selection after {select} epochs ({where}'s "
                                f"default; set --select-epoch)")
        top_k = cfg.select_top_k if cfg.select_top_k is not None else int(saved.get("top_k", 1))
        pool = min(layer.num_members for _, layer in layers)
        if top_k > pool:
            raise WorkflowError(f"--select-top-k {top_k} is more than the {pool} candidate bases of {self.arch}'s "
                                f"layers; give 1 to {pool}")
        return SelectionSchedule(full_epochs=select, select_epochs=(prune - select) if prune is not None else 0,
                                 top_k=top_k, prune=prune is not None)

    def _resumed_schedule(self, base: nn.Module):
        """The schedule saved in the resume checkpoint, with ``base`` brought to the checkpoint's phase (the
        selection masks re-applied; a pruned run's model is already rebuilt pruned from its model args, or
        is pruned here), so that the checkpoint's weights fit."""
        from ..layers.selectable import SelectionSchedule

        saved = self.ckpt.get("selection")
        cfg_saved = self.ckpt.get("config") or {}
        changed = [f"--{k.replace('_', '-')}" for k in ("select_epoch", "prune_epoch", "select_top_k", "no_selection")
                   if k in cfg_saved and cfg_saved[k] != getattr(self.cfg, k)]
        if changed:
            raise WorkflowError(f"{', '.join(changed)} cannot change when resuming: the run's basis selection is "
                                f"fixed when it starts; resume with the run's own settings")
        if not saved:
            return None
        try:
            sched = SelectionSchedule(**{k: saved[k] for k in ("full_epochs", "select_epochs", "top_k", "prune")})
            sched.load_state_dict(saved)
            done = int(self.ckpt["epoch"])
            if done >= 1:
                sched.on_epoch_start(done - 1, base)
        except (KeyError, TypeError, ValueError) as e:
            raise WorkflowError(f"the basis selection saved in {str(self.resume_path)!r} does not fit the rebuilt "
                                f"{self.arch} ({e})") from None
        if sched.state != saved.get("state", sched.state):
            raise WorkflowError(f"the basis selection saved in {str(self.resume_path)!r} is in phase "
                                f"{saved.get('state')!r}, the replay reached {sched.state!r}")
        return sched

    def _freeze_alphas(self) -> None:
        """From the selective phase on, the mixing weights stop training (the optimizer skips them)."""
        from ..layers.selectable import selectable_layers

        if self.schedule is not None and self.schedule.state != "full":
            for _, layer in selectable_layers(self.model):
                layer.alpha.requires_grad_(False)

    def _record_pruned(self) -> None:
        """Puts the pruned selection into the model arguments (config.json, the checkpoint's model_args) when
        the model can be built pruned from them (it has ``record_pruned``, e.g. SConvKAN)."""
        record = getattr(self.model, "record_pruned", None)
        if callable(record):
            self.base_args["pruned_selection"] = record(self.schedule.masks)

    def _rebuild_optimizer(self) -> None:
        """A new optimizer and lr schedule over the pruned model's parameters. Parameters that survived pruning
        (the head, ...) keep their optimizer state; the lr schedule goes on at ``num_updates``."""
        old = self.opt
        self.opt, self.sched = self._optimizer(self.model)
        for group in self.opt.param_groups:
            for p in group["params"]:
                if p in old.state:
                    self.opt.state[p] = old.state[p]

    def _apply_selection(self, epoch: int) -> None:
        """Applies the schedule's transitions due before ``epoch`` (0-based; ``cfg.epochs``: after the last
        epoch), then logs and prints what happened."""
        from ..layers.selectable import selection_summary

        if self.schedule is None:
            return
        model, ctx = self.model, self.ctx
        before = sum(p.numel() for p in model.parameters())
        event = self.schedule.on_epoch_start(epoch, model)
        if event is None:
            return
        in_training = epoch < self.cfg.epochs
        if event == "prune":
            self._record_pruned()
            if in_training:
                self._rebuild_optimizer()
        self._freeze_alphas()
        if in_training:  # parameters were replaced (prune) or stopped training (select): DDP must know
            self.ddp = wrap_model(model, ctx)
        after = sum(p.numel() for p in model.parameters())
        summary = selection_summary(model)
        totals, shares = _percent_line(summary)
        k = self.schedule.top_k
        rec = {"kind": "selection", "event": event, "epoch": epoch + 1, "after_epoch": epoch,
               "step": self.num_updates, "top_k": k, "params_before": before, "params": after,
               "bases": totals, "layers": summary}
        if ctx.is_main:
            self._log(rec)
        if self.show:
            if event == "prune":
                what = f"pruned: {before:,} -> {after:,} parameters; bases chosen: {shares}"
            else:
                what = (f"kept each channel's top-{k} {'basis' if k == 1 else 'bases'} (mixing weights frozen): "
                        f"{shares}")
            print(f"after epoch {epoch}: {what}", flush=True)

    def _add_peft(self, base: nn.Module, peft_kwargs: Optional[Dict[str, Any]]) -> nn.Module:
        if peft_kwargs is None:
            self.peft_kwargs = None
            return base
        peft = peft_module()
        kwargs = dict(peft_kwargs)
        kwargs.setdefault("num_classes", len(self.classes))
        try:
            config = peft.BasisAdapterConfig(**kwargs)
        except TypeError as e:
            raise WorkflowError(f"--peft: {e}; the settings are BasisAdapterConfig's fields (trainable_degrees, "
                                f"extra_degrees, rank, train_base, train_norm, target_modules, ...)") from None
        self.peft_kwargs = dict(peft_kwargs)
        return peft.get_peft_model(base, config)

    def _optimizer(self, model: nn.Module):
        from timm.optim import create_optimizer_v2
        from timm.scheduler import CosineLRScheduler

        cfg = self.cfg
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise WorkflowError("the model has no trainable parameters; check --peft")
        opt = create_optimizer_v2(model, "adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = cfg.epochs * self.steps_per_epoch
        warmup = min(int(round(cfg.warmup_epochs * self.steps_per_epoch)), total // 2)  # at most half the run
        sched = CosineLRScheduler(opt, t_initial=max(total - warmup, 1), lr_min=cfg.min_lr, warmup_t=warmup,
                                  warmup_lr_init=cfg.warmup_lr, warmup_prefix=True, t_in_epochs=False)
        return opt, sched

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg, ctx = self.cfg, self.ctx
        t_start = time.perf_counter()
        self._datasets()
        self.schedule, self.selection_note = None, None
        model = self._build_model().to(ctx.device)
        self.model = model
        sampler = train_sampler(self.train_set, ctx.rank, ctx.world_size, seed=cfg.seed)
        per_rank = len(sampler)
        drop_last = per_rank > cfg.batch_size
        self.loader = make_loader(self.train_set, cfg.batch_size, cfg.workers, sampler=sampler, drop_last=drop_last,
                                  pin_memory=ctx.device.type == "cuda")
        self.sampler = sampler
        self.steps_per_epoch = len(self.loader)
        self.val_loader = None
        if self.val_set is not None:
            self.val_loader = make_loader(shard(self.val_set, ctx.rank, ctx.world_size), cfg.batch_size,
                                          cfg.workers, pin_memory=ctx.device.type == "cuda")
        self.opt, self.sched = self._optimizer(model)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        amp_dtype = resolve_dtype(cfg.amp_dtype)
        self.amp = cfg.amp and ctx.device.type == "cuda"
        self.amp_dtype = amp_dtype
        self.scaler = torch.amp.GradScaler("cuda") if self.amp and amp_dtype == torch.float16 else None
        start_epoch, self.num_updates = 0, 0
        history: List[Dict[str, Any]] = []
        if self.ckpt is not None:
            start_epoch, history = self._restore()
        self._freeze_alphas()  # after the optimizer is built: like the original run's, it holds the alphas
        self.ddp = wrap_model(model, ctx)
        params = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / ARGS_NAME, dataclasses.asdict(cfg))
            if self.ckpt is None and (self.run_dir / LOG_NAME).exists():  # left by a run stopped in epoch 1
                (self.run_dir / LOG_NAME).unlink()
        if self.show:
            self._print_start(params, trainable, start_epoch)
        try:
            for epoch in range(start_epoch, cfg.epochs):
                self._apply_selection(epoch)
                record = self._epoch(epoch)
                history.append(record)
                if self.schedule is not None:
                    self.schedule.on_epoch_end(epoch, self.model, {k: record[k] for k in ("train_loss", "val_top1")
                                                                  if record.get(k) is not None})
                if ctx.is_main:
                    self._save_checkpoint(epoch + 1, record)
                if self.show:
                    print(_fmt_record(record, cfg.epochs), flush=True)
                barrier(ctx)
            self._apply_selection(cfg.epochs)  # a selection or pruning set for after the last epoch
        except KeyboardInterrupt:
            if ctx.is_main:
                self._print_interrupted()
            raise
        if self.schedule is not None:  # pruning changed them
            params = sum(p.numel() for p in self.model.parameters())
            trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        final = self._finish(history)
        return TrainResult(run_dir=self.run_dir, epochs=cfg.epochs, metrics=history[-1] if history else {},
                           params=params, trainable_params=trainable, seconds=time.perf_counter() - t_start,
                           model=final, history=history)

    def _print_interrupted(self) -> None:
        ckpt = self.run_dir / CHECKPOINT_NAME
        if ckpt.is_file():
            done = torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]
            cmd = "finetune" if self.cfg.peft is not None else "train"
            msg = (f"interrupted; {ckpt} holds epoch {done}/{self.cfg.epochs}; continue with: "
                   f"kanzoo {cmd} --resume {self.run_dir}")
        else:
            msg = "interrupted before the first epoch finished; nothing was saved"
        print(f"\n{msg}", file=sys.stderr, flush=True)

    def _print_start(self, params: int, trainable: int, start_epoch: int) -> None:
        cfg, ctx = self.cfg, self.ctx
        val = f", {len(self.val_set):,} to validate" if self.val_set is not None else ", no validation set"
        what = f"adapters on {self.arch}" if self.peft_kwargs is not None else self.arch
        size = "x".join(map(str, self.data_config["input_size"]))
        print(f"training {what}: {params:,} parameters, {trainable:,} trainable ({100 * trainable / params:.1f}%); "
              f"{self.head_note}", flush=True)
        print(f"data: {len(self.train_set):,} images in {len(self.classes)} classes{val}; input {size}; "
              f"{self.steps_per_epoch} steps/epoch of {cfg.batch_size} x {ctx.world_size} process(es) on "
              f"{ctx.device}{' (' + ctx.backend + ')' if ctx.backend else ''}", flush=True)
        sched = self.schedule
        if sched is not None:
            sel, prune = sched.full_epochs, sched.full_epochs + sched.select_epochs
            pruned = (f"pruned after epoch {prune}" + (" (the last)" if prune == cfg.epochs else "")
                      if sched.prune else "not pruned")
            print(f"basis selection: every basis for epochs 1-{sel}, then each channel's top-{sched.top_k} "
                  f"(mixing weights frozen); {pruned} (--select-epoch {sel}"
                  f"{f' --prune-epoch {prune}' if sched.prune else ''} --select-top-k {sched.top_k})", flush=True)
        elif self.selection_note:
            print(f"basis selection: {self.selection_note}", flush=True)
        if start_epoch:
            print(f"resuming {self.run_dir} after epoch {start_epoch}/{cfg.epochs}", flush=True)
        else:
            print(f"run folder: {self.run_dir}", flush=True)

    def _epoch(self, epoch: int) -> Dict[str, Any]:
        cfg, ctx = self.cfg, self.ctx
        seed_everything(cfg.seed + 1_000_003 * (epoch + 1) + ctx.rank)
        self.sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        skipped_before = self.skips.count
        loss_sum, correct, seen = train_one_epoch(self, epoch)
        sums = all_reduce_sum(torch.tensor([loss_sum, correct, seen, self.skips.count - skipped_before],
                                           dtype=torch.float64), ctx)
        n = max(sums[2].item(), 1.0)
        record: Dict[str, Any] = {
            "kind": "epoch", "epoch": epoch + 1, "step": self.num_updates, "lr": self.opt.param_groups[0]["lr"],
            "train_loss": sums[0].item() / n, "train_top1": 100 * sums[1].item() / n, "train_images": int(sums[2]),
            "skipped": int(sums[3].item()),
        }
        if self.schedule is not None:
            record["phase"] = self.schedule.state
        if self.val_loader is not None:
            r = evaluate(_unwrap(self.ddp), self.val_loader, ctx.device, amp=self.amp, progress=self.progress,
                         desc=f"val {epoch + 1}", skips=self.skips, reduce=lambda t: all_reduce_sum(t, ctx))
            record.update(val_loss=r.loss, val_top1=r.top1, val_top5=r.top5, val_topk=r.topk,
                          val_images=r.images)
            record["skipped"] += r.skipped
        record["epoch_time"] = time.perf_counter() - t0
        if ctx.is_main:
            self._log(record)
        return record

    # -- files ----------------------------------------------------------------------------------------------
    def _log(self, record: Dict[str, Any]) -> None:
        with open(self.run_dir / LOG_NAME, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _save_checkpoint(self, epochs_done: int, record: Dict[str, Any]) -> None:
        from .. import __version__

        state = {
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": epochs_done,
            "num_updates": self.num_updates,
            "arch": self.arch,
            "model_args": self.base_args,
            "peft": self.peft_kwargs,
            "num_classes": len(self.classes),
            "label_names": list(self.classes),
            "data_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.data_config.items()},
            "config": dataclasses.asdict(self.cfg),
            "metrics": record,
            "selection": self.schedule.state_dict() if self.schedule is not None else None,
            "kanzoo_version": __version__,
        }
        atomic_write(self.run_dir / CHECKPOINT_NAME, lambda p: torch.save(state, p))

    def _restore(self) -> Tuple[int, List[Dict[str, Any]]]:
        ckpt, cfg = self.ckpt, self.cfg
        if list(ckpt.get("label_names") or []) != list(self.classes):
            raise WorkflowError(f"the data's classes {self.classes[:5]}... differ from the run's "
                                f"{list(ckpt.get('label_names') or [])[:5]}...; resume with the same --data")
        saved = ckpt.get("config") or {}
        changed = [f"{k} {saved[k]!r} -> {v!r}" for k, v in dataclasses.asdict(cfg).items()
                   if k in saved and k not in _RUNTIME_FIELDS and _norm(saved[k]) != _norm(v)]
        if changed and self.ctx.is_main:
            warn(f"resuming with changed settings ({'; '.join(changed)}); the result will differ from an "
                 f"uninterrupted run")
        try:
            self.opt.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as e:
            raise WorkflowError(f"the optimizer state in {str(self.resume_path)!r} does not fit this run ({e}); "
                                f"resume with the run's own settings") from None
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.num_updates = int(ckpt["num_updates"])
        start = int(ckpt["epoch"])
        history: List[Dict[str, Any]] = []
        if self.ctx.is_main:  # drop log lines of the epoch that was cut short
            log = self.run_dir / LOG_NAME
            kept = [r for r in _read_log(log) if r.get("epoch", 0) <= start and
                    not (r.get("kind") == "step" and r.get("step", 0) > self.num_updates)]
            atomic_write(log, lambda p: Path(p).write_text("".join(json.dumps(r) + "\n" for r in kept)))
            history = [r for r in kept if r.get("kind") == "epoch"]
        return start, history

    def _finish(self, history: List[Dict[str, Any]]) -> Optional[nn.Module]:
        """Writes the final model (merged, for an adapter run) and its config into the run folder (rank 0)."""
        from ..hub.publish import save_pretrained

        cfg, ctx = self.cfg, self.ctx
        if not ctx.is_main:
            return None
        model = self.model.eval()
        if self.peft_kwargs is not None:
            model.save_pretrained(self.run_dir)
            model = model.merge_and_unload().eval()
        model = model.cpu()
        model.pretrained_cfg = dict(model.pretrained_cfg, input_size=tuple(self.data_config["input_size"]),
                                    crop_pct=self.data_config.get("crop_pct"), num_classes=model.num_classes)
        for key in ("tag", "hf_hub_id", "url", "file", "state_dict", "source"):
            model.pretrained_cfg.pop(key, None)
        last = history[-1] if history else {}
        metrics = ({"top1": round(last["val_top1"], 2), "top5": round(last["val_top5"], 2)}
                   if last.get("val_top1") is not None else None)
        how = (f"Trained with `kanzoo {'finetune' if cfg.peft is not None else 'train'}` for {cfg.epochs} epochs on "
               f"{len(self.train_set)} images in {len(self.classes)} classes (class folders: "
               f"{', '.join(self.classes[:10])}{', ...' if len(self.classes) > 10 else ''}).")
        save_pretrained(model, self.run_dir, label_names=list(self.classes),
                        card_kwargs=dict(metrics=metrics, provenance=how))
        if self.show:
            files = sorted(p.name for p in self.run_dir.iterdir() if p.is_file() and not p.name.startswith("."))
            print(f"wrote {', '.join(files)} to {self.run_dir}", flush=True)
            print(f"next: kanzoo validate {self.arch} DATA --checkpoint {self.run_dir}; "
                  f"kanzoo push {self.arch} REPO --checkpoint {self.run_dir}; kanzoo plot {self.run_dir}", flush=True)
        return model


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v))


def train_one_epoch(tr: Trainer, epoch: int) -> Tuple[float, float, float]:
    """One pass over the training loader; returns (loss sum, correct, images) of this process."""
    from tqdm import tqdm

    cfg, ctx = tr.cfg, tr.ctx
    tr.ddp.train()
    loss_sum, correct, seen = 0.0, 0.0, 0.0
    bar = tqdm(tr.loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", leave=False,
               disable=not tr.progress, dynamic_ncols=True)
    for i, (images, targets, errors) in enumerate(bar):
        tr.skips.add(errors)
        # every process must take the same steps: skip a batch that is empty (undecodable) on any of them
        if all_min(len(targets), ctx) == 0:
            continue
        images, targets = images.to(ctx.device, non_blocking=True), targets.to(ctx.device, non_blocking=True)
        tr.sched.step_update(tr.num_updates)
        with autocast(ctx.device, tr.amp, tr.amp_dtype):
            logits = tr.ddp(images)
            loss = tr.loss_fn(logits.float(), targets)
        if not torch.isfinite(loss):
            raise WorkflowError(f"the loss is {loss.item()} at epoch {epoch + 1}, step {tr.num_updates + 1}; lower "
                                f"--lr (now {cfg.lr}) or set --clip-grad")
        tr.opt.zero_grad(set_to_none=True)
        if tr.scaler is not None:
            tr.scaler.scale(loss).backward()
            if cfg.clip_grad:
                tr.scaler.unscale_(tr.opt)
                torch.nn.utils.clip_grad_norm_(tr.model.parameters(), cfg.clip_grad)
            tr.scaler.step(tr.opt)
            tr.scaler.update()
        else:
            loss.backward()
            if cfg.clip_grad:
                torch.nn.utils.clip_grad_norm_(tr.model.parameters(), cfg.clip_grad)
            tr.opt.step()
        tr.num_updates += 1
        n = len(targets)
        loss_sum += loss.item() * n
        correct += (logits.argmax(-1) == targets).sum().item()
        seen += n
        if tr.progress:
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{tr.opt.param_groups[0]['lr']:.2e}")
        if tr.num_updates % cfg.log_interval == 0:  # the loss over the global batch (every process takes part)
            step_sums = all_reduce_sum(torch.tensor([loss.item() * n, n], dtype=torch.float64), ctx)
            if ctx.is_main:
                tr._log({"kind": "step", "epoch": epoch + 1, "step": tr.num_updates,
                         "epoch_float": epoch + (i + 1) / max(len(tr.loader), 1),
                         "loss": (step_sums[0] / step_sums[1]).item(), "lr": tr.opt.param_groups[0]["lr"]})
    return loss_sum, correct, seen


def train(cfg: TrainConfig, resume: Optional[PathLike] = None) -> TrainResult:
    """Runs (or with ``resume``, continues) a training run; see the module docstring for the run folder."""
    cfg.check()
    ctx = setup(cfg.device)
    try:
        return Trainer(cfg, ctx, resume).run()
    finally:
        cleanup(ctx)


def saved_config(resume: PathLike) -> Dict[str, Any]:
    """The ``args.json`` of a run folder (or of the folder of a checkpoint file), for ``--resume``."""
    path = Path(resume)
    run = path if path.is_dir() else path.parent
    if not path.exists():
        raise WorkflowError(f"nothing to resume: {str(path)!r} does not exist")
    if not (run / ARGS_NAME).is_file():
        raise WorkflowError(f"{str(run)!r} has no {ARGS_NAME}: it is not a run folder written by `kanzoo train`")
    return read_json(run / ARGS_NAME)
