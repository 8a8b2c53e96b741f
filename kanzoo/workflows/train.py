"""``kanzoo train`` and ``kanzoo finetune``: supervised training on an ImageFolder, in one process or under
torchrun (DDP), with optional basis adapters (``kanzoo.peft``). This module is the loop: :class:`Trainer`
builds the data, model and optimizer, runs the epochs and saves after each; what it reads and writes lives in
:mod:`~kanzoo.workflows.run_folder`, its settings in :mod:`~kanzoo.workflows.train_config`.

A run folder holds ``args.json``, ``log.jsonl``, ``checkpoint.pth`` (``--resume RUN`` continues from it) and,
at the end, the model as :func:`kanzoo.save_pretrained` writes it (details: :mod:`kanzoo.workflows.run_folder`).

Models with selectable KAN layers (S-KAN, ``s_convkan_*``) train in three phases, driven by a
:class:`~kanzoo.workflows.selection.SelectionSchedule`: every basis until ``--select-epoch``, then each
channel's top-k (the mixing weights frozen) until ``--prune-epoch``, then the pruned model (the optimizer
rebuilt; the lr schedule goes on at the same step). The events go to ``log.jsonl`` (``"kind": "selection"``);
the checkpoint holds the schedule and rebuilds a pruned model in its pruned form (docs/selectable.md).

Determinism: every epoch reseeds the generators from ``(seed, epoch, rank)`` and the sampler permutes with
``seed + epoch``, so the data order, augmentations and dropout of an epoch do not depend on what ran before;
a resumed run therefore repeats an uninterrupted one bit for bit (same device, threads and worker count).
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from safetensors.torch import save_file
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.loss import SoftTargetCrossEntropy
from timm.models._input import get_model_args
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler, create_scheduler_v2
from timm.utils import ModelEmaV3, dispatch_clip_grad
from torch import nn
from tqdm import tqdm

from .. import peft
from ..errors import WorkflowError
from ..io import PathLike, atomic_write
from ..models._base import model_task
from ..models._compile import compile_model
from ._common import resolve_dtype, seed_everything, warn
from .data import (
    ImageFolder,
    SkipTracker,
    build_transform,
    data_config_for,
    is_timm_dataset,
    make_loader,
    shard,
    split_dirs,
    timm_dataset,
    train_sampler,
)
from .distributed import (
    DistContext,
    all_min,
    all_reduce_sum,
    average_gradients,
    barrier,
    broadcast_object,
    cleanup,
    setup,
    wrap_model,
)
from .initial_weights import load_initial_weights, read_initial_state
from .loading import CHECKPOINT_NAME, load_model, model_labels
from .run_folder import (
    LOG_NAME,
    append_log,
    checkpoint_file,
    default_output,
    finished_epochs,
    format_epoch,
    new_run_dir,
    read_checkpoint,
    read_log,
    saved_config,
    start_run_folder,
    trim_log,
    write_checkpoint,
    write_final_model,
)
from .selection import (
    describe_schedule,
    freeze_alphas,
    record_pruned,
    resumed_schedule,
    schedule_for_run,
    selection_event,
)
from .train_config import TrainConfig
from .validate import autocast, evaluate

#: the EMA weights a run with --model-ema writes beside model.safetensors
EMA_NAME = "model_ema.safetensors"

# the names other modules imported from here before the run folder and the settings had modules of their own
_read_log = read_log

__all__ = ["LOG_NAME", "TrainConfig", "TrainResult", "Trainer", "default_output", "saved_config", "train",
           "train_one_epoch"]


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


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _to_channels_last(model: nn.Module) -> None:
    """The 4-d parameters and buffers of ``model`` in channels-last layout, in place (``model.to(memory_format=
    ...)`` refuses KAN layers' 5-d coefficient tensors)."""
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.dim() == 4:
                t.data = t.data.contiguous(memory_format=torch.channels_last)


def _model_args(model: nn.Module) -> Dict[str, Any]:
    return dict(get_model_args(model))


def _classifier_names(model: nn.Module) -> Tuple[str, ...]:
    """The classifier module names of the model's pretrained cfg (``'head'``, ``('head', 'head_dist')``...)."""
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    return (names,) if isinstance(names, str) else tuple(names)


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

    @property
    def total_epochs(self) -> int:
        """``--epochs`` and then ``--cooldown-epochs`` at the schedule's final learning rate."""
        return self.cfg.epochs + self.cfg.cooldown_epochs

    # -- setup ----------------------------------------------------------------------------------------------
    def _read_resume(self, resume: PathLike) -> Dict[str, Any]:
        path = checkpoint_file(resume)
        ckpt = None
        if self.ctx.is_main:
            try:
                ckpt = read_checkpoint(path)
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
        return new_run_dir(out)

    def _datasets(self) -> None:
        """Scans the training (and validation) folders, or opens timm's datasets for a ``--data`` name such as
        ``wds/NAME``; transforms are set once the model is known."""
        cfg = self.cfg
        if is_timm_dataset(cfg.data):
            return self._timm_datasets()
        if cfg.num_classes is not None:
            raise WorkflowError(f"--num-classes {cfg.num_classes} applies to streaming datasets (--data wds/NAME, "
                                f"...); a folder has one class per subfolder: drop --num-classes")
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

    def _timm_datasets(self) -> None:
        """``timm.data.create_dataset(--data, root=--data-dir, split=--train-split / --val-split)``."""
        cfg = self.cfg
        if cfg.val_data:
            raise WorkflowError(f"--val-data is a folder; with --data {cfg.data} the validation set is the split "
                                f"--val-split of the same dataset (now {cfg.val_split!r})")
        common = dict(root=cfg.data_dir, batch_size=cfg.batch_size, seed=cfg.seed, workers=cfg.workers)
        self.train_set = timm_dataset(cfg.data, split=cfg.train_split, training=True, what="training set",
                                      num_samples=cfg.train_num_samples, **common)
        names = self.train_set.class_names
        if cfg.num_classes is not None:
            if names is not None and len(names) != cfg.num_classes:
                raise WorkflowError(f"--num-classes {cfg.num_classes} disagrees with the {len(names)} classes "
                                    f"{cfg.data} names; leave --num-classes out")
            names = names or [str(i) for i in range(cfg.num_classes)]
        if names is None:
            raise WorkflowError(f"{cfg.data} does not name its classes; give their count with --num-classes N "
                                f"(targets are 0..N-1)")
        self.classes = names
        self.val_set = None
        if cfg.val_split:
            self.val_set = timm_dataset(cfg.data, split=cfg.val_split, training=False, what="validation set",
                                        num_samples=cfg.val_num_samples, **common)

    def _set_transforms(self, base: nn.Module) -> None:
        if self.ckpt is not None and self.ckpt.get("data_config"):
            self.data_config = dict(self.ckpt["data_config"])
        else:
            cfg = self.cfg
            self.data_config = data_config_for(base, img_size=cfg.img_size, input_size=cfg.input_size,
                                               crop_pct=cfg.crop_pct, interpolation=cfg.interpolation,
                                               mean=cfg.mean, std=cfg.std)
        self.data_config["input_size"] = tuple(self.data_config["input_size"])
        train_config = dict(self.data_config)
        if self.cfg.train_interpolation:  # timm's --train-interpolation: the training crop's resize only
            train_config["interpolation"] = self.cfg.train_interpolation
        self.train_set.transform = build_transform(train_config, True, self.cfg.aug())
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
            # training-only arguments (drop_path_rate, ...) are not model_args: the settings give them again
            base = load_model(self.arch, model_kwargs={**cfg.model_overrides(), **self.base_args}).model
            self._set_transforms(base)
            self.schedule = resumed_schedule(self.ckpt, cfg, self.arch, base, self.resume_path)
            model = self._add_peft(base, self.ckpt.get("peft"))
            if set(model.state_dict()) != set(self.ckpt["state_dict"]):
                raise WorkflowError(f"{str(self.resume_path)!r} does not fit the rebuilt {self.arch}; it was written "
                                    f"by another kanzoo version")
            model.load_state_dict(self.ckpt["state_dict"])
            self.head_note = "resumed"
            return model
        seed_everything(cfg.seed)
        kwargs = {**cfg.model_overrides(), **cfg.model_kwargs}
        weights = cfg.pretrained or cfg.checkpoint
        if not weights:
            if kwargs.setdefault("num_classes", k) != k:
                raise WorkflowError(f"--model-kwargs num_classes={kwargs['num_classes']} disagrees with the "
                                    f"{k} class folders of the data; leave num_classes out")
        loaded = load_model(cfg.model, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint, model_kwargs=kwargs)
        base, self.arch = loaded.model, loaded.arch
        task = model_task(base)
        if task != "classification":
            raise WorkflowError(f"{self.arch} is a {task} model and kanzoo train trains image classifiers on class "
                                f"folders; kanzoo validate and predict take it (--task {task})")
        labels = model_labels(base, loaded.label_names) if weights else None
        if cfg.initial_checkpoint:
            init = load_initial_weights(base, read_initial_state(cfg.initial_checkpoint), cfg.initial_checkpoint,
                                        classifier=_classifier_names(base))
            self.head_note = init.summary()
        elif not weights:
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
        self.schedule, self.selection_note = schedule_for_run(cfg, self.arch, base)
        return self._add_peft(base, cfg.peft)

    # -- basis selection (S-KAN; the policy is kanzoo.workflows.selection) ----------------------------------
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
        """Applies the schedule's transitions due before ``epoch`` (0-based; ``total_epochs``: after the last
        epoch), then logs and prints what happened."""
        if self.schedule is None:
            return
        model, ctx = self.model, self.ctx
        before = sum(p.numel() for p in model.parameters())
        event = self.schedule.on_epoch_start(epoch, model)
        if event is None:
            return
        in_training = epoch < self.total_epochs
        if event == "prune":
            record_pruned(model, self.schedule.masks, self.base_args)
            if in_training:
                self._rebuild_optimizer()
        freeze_alphas(self.schedule, model)
        if in_training:  # parameters were replaced (prune) or stopped training (select): DDP must know
            self.ddp = wrap_model(model, ctx)
        rec, line = selection_event(self.schedule, model, event, epoch, self.num_updates, before)
        if ctx.is_main:
            self._log(rec)
        if self.show:
            print(line, flush=True)

    def _add_peft(self, base: nn.Module, peft_kwargs: Optional[Dict[str, Any]]) -> nn.Module:
        if peft_kwargs is None:
            self.peft_kwargs = None
            return base
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
        cfg = self.cfg
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise WorkflowError("the model has no trainable parameters; check --peft")
        extra = {k: v for k, v in (("eps", cfg.opt_eps), ("betas", cfg.opt_betas)) if v is not None}
        if cfg.layer_decay is not None and not hasattr(model, "group_matcher"):
            raise WorkflowError(f"--layer-decay needs the model's layer groups (group_matcher), which "
                                f"{type(model).__name__} does not define; drop --layer-decay")
        try:
            opt = create_optimizer_v2(model, cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                      momentum=cfg.momentum, layer_decay=cfg.layer_decay, **extra)
        except (ValueError, AssertionError, TypeError) as e:
            raise WorkflowError(f"--opt {cfg.opt!r}: {str(e).strip() or type(e).__name__}; "
                                f"timm.optim.list_optimizers() lists the names") from None
        if cfg.sched == "cosine" and cfg.sched_on_updates and cfg.warmup_prefix:
            total = cfg.epochs * self.steps_per_epoch
            warmup = min(int(round(cfg.warmup_epochs * self.steps_per_epoch)), total // 2)  # at most half the run
            sched = CosineLRScheduler(opt, t_initial=max(total - warmup, 1), lr_min=cfg.min_lr, warmup_t=warmup,
                                      warmup_lr_init=cfg.warmup_lr, warmup_prefix=True, t_in_epochs=False)
            return opt, sched
        # timm's other schedules (and cosine stepped per epoch), as timm's train.py builds them; the warmup is
        # part of --epochs (a prefix is taken out of the schedule's epochs, so the run still ends at --epochs)
        warmup = min(cfg.warmup_epochs, cfg.epochs / 2)
        sched, _ = create_scheduler_v2(
            opt, sched=cfg.sched, num_epochs=cfg.epochs - warmup if cfg.warmup_prefix else cfg.epochs,
            decay_epochs=cfg.decay_epochs, decay_milestones=list(cfg.decay_milestones), decay_rate=cfg.decay_rate,
            min_lr=cfg.min_lr, warmup_lr=cfg.warmup_lr, warmup_epochs=warmup, warmup_prefix=cfg.warmup_prefix,
            step_on_epochs=not cfg.sched_on_updates, updates_per_epoch=self.steps_per_epoch)
        return opt, sched

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg, ctx = self.cfg, self.ctx
        t_start = time.perf_counter()
        self._datasets()
        self.schedule, self.selection_note = None, None
        model = self._build_model().to(ctx.device)
        if cfg.channels_last:
            _to_channels_last(model)
        self.model = model
        pin = ctx.device.type == "cuda"
        if isinstance(self.train_set, torch.utils.data.IterableDataset):  # timm splits it over the processes
            self.sampler = None
            self.loader = make_loader(self.train_set, cfg.batch_size, cfg.workers, pin_memory=pin)
        else:
            self.sampler = train_sampler(self.train_set, ctx.rank, ctx.world_size, seed=cfg.seed)
            drop_last = len(self.sampler) > cfg.batch_size
            self.loader = make_loader(self.train_set, cfg.batch_size, cfg.workers, sampler=self.sampler,
                                      drop_last=drop_last, pin_memory=pin)
        self.batches_per_epoch = len(self.loader)
        self.steps_per_epoch = -(-self.batches_per_epoch // cfg.grad_accum_steps)  # optimizer updates
        self.val_loader = None
        if self.val_set is not None:
            val = self.val_set
            if not isinstance(val, torch.utils.data.IterableDataset):
                val = shard(val, ctx.rank, ctx.world_size)
            self.val_loader = make_loader(val, cfg.batch_size, cfg.workers, pin_memory=pin)
        self.opt, self.sched = self._optimizer(model)
        self.mixup_fn = None
        if cfg.mixup_active:
            self.mixup_fn = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, cutmix_minmax=cfg.cutmix_minmax,
                                  prob=cfg.mixup_prob, switch_prob=cfg.mixup_switch_prob, mode=cfg.mixup_mode,
                                  label_smoothing=cfg.smoothing, num_classes=len(self.classes))
            self.loss_fn = SoftTargetCrossEntropy()  # label smoothing is in Mixup's targets
        else:
            self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.smoothing)
        self.ema = None
        if cfg.model_ema:
            if self.schedule is not None:
                raise WorkflowError(f"--model-ema cannot follow basis selection: pruning changes {self.arch}'s "
                                    f"layers during the run; add --no-selection or drop --model-ema")
            self.ema = ModelEmaV3(model, decay=cfg.model_ema_decay, use_warmup=cfg.model_ema_warmup)
        amp_dtype = resolve_dtype(cfg.amp_dtype)
        self.amp = cfg.amp and ctx.device.type == "cuda"
        self.amp_dtype = amp_dtype
        self.scaler = grad_scaler(ctx.device, self.amp, amp_dtype)
        start_epoch, self.num_updates = 0, 0
        history: List[Dict[str, Any]] = []
        if self.ckpt is not None:
            start_epoch, history = self._restore()
        # after the optimizer is built: like the original run's, it holds the alphas
        freeze_alphas(self.schedule, model)
        if cfg.torchcompile:  # in place: the module, its state_dict keys and the EMA copy stay as they are
            compile_model(model, dict(backend=cfg.torchcompile))
        self.ddp = wrap_model(model, ctx)
        params = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if ctx.is_main:
            start_run_folder(self.run_dir, cfg, fresh=self.ckpt is None)
        if self.show:
            self._print_start(params, trainable, start_epoch)
        try:
            for epoch in range(start_epoch, self.total_epochs):
                self._apply_selection(epoch)
                record = self._epoch(epoch)
                history.append(record)
                if self.schedule is not None:
                    self.schedule.on_epoch_end(epoch, self.model, {k: record[k] for k in ("train_loss", "val_top1")
                                                                  if record.get(k) is not None})
                if ctx.is_main:  # checkpoint first: an epoch in the log always has its checkpoint on disk
                    self._save_checkpoint(epoch + 1, record)
                    self._log(record)
                if self.show:
                    print(format_epoch(record, self.total_epochs), flush=True)
                barrier(ctx)
            self._apply_selection(self.total_epochs)  # a selection or pruning set for after the last epoch
        except KeyboardInterrupt:
            if ctx.is_main:
                self._print_interrupted()
            raise
        if self.schedule is not None:  # pruning changed them
            params = sum(p.numel() for p in self.model.parameters())
            trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        final = self._finish(history)
        return TrainResult(run_dir=self.run_dir, epochs=self.total_epochs, metrics=history[-1] if history else {},
                           params=params, trainable_params=trainable, seconds=time.perf_counter() - t_start,
                           model=final, history=history)

    def _print_interrupted(self) -> None:
        done = finished_epochs(self.run_dir)
        if done is not None:
            ckpt = self.run_dir / CHECKPOINT_NAME
            cmd = "finetune" if self.cfg.peft is not None else "train"
            msg = (f"interrupted; {ckpt} holds epoch {done}/{self.total_epochs}; continue with: "
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
        accum = f" x {cfg.grad_accum_steps} accumulated" if cfg.grad_accum_steps > 1 else ""
        images = (f"{len(self.train_set):,} images" if self.sampler is not None else
                  f"{cfg.data} ({len(self.train_set):,} images per process and epoch)")
        print(f"data: {images} in {len(self.classes)} classes{val}; input {size}; "
              f"{self.steps_per_epoch} steps/epoch of {cfg.batch_size} x {ctx.world_size} process(es){accum} on "
              f"{ctx.device}{' (' + ctx.backend + ')' if ctx.backend else ''}", flush=True)
        extras = self._describe_features()
        if extras:
            print(f"training with: {'; '.join(extras)}", flush=True)
        if self.schedule is not None:
            print(f"basis selection: {describe_schedule(self.schedule, cfg.epochs)}", flush=True)
        elif self.selection_note:
            print(f"basis selection: {self.selection_note}", flush=True)
        if start_epoch:
            print(f"resuming {self.run_dir} after epoch {start_epoch}/{self.total_epochs}", flush=True)
        else:
            print(f"run folder: {self.run_dir}", flush=True)

    def _describe_features(self) -> List[str]:
        """The training features on in this run, one phrase each (for the start of the run)."""
        cfg, out = self.cfg, []
        if self.mixup_fn is not None:
            out.append(f"mixup {cfg.mixup} / cutmix {cfg.cutmix}"
                       f"{' minmax ' + str(list(cfg.cutmix_minmax)) if cfg.cutmix_minmax else ''} (prob "
                       f"{cfg.mixup_prob}, switch {cfg.mixup_switch_prob}, {cfg.mixup_mode}"
                       f"{', off from epoch ' + str(cfg.mixup_off_epoch) if cfg.mixup_off_epoch else ''})")
        if self.ema is not None:
            out.append(f"model EMA (decay {cfg.model_ema_decay}{', warmup' if cfg.model_ema_warmup else ''})")
        if cfg.grad_accum_steps > 1:
            out.append(f"{cfg.grad_accum_steps} batches per update (global batch "
                       f"{cfg.batch_size * self.ctx.world_size * cfg.grad_accum_steps})")
        if cfg.layer_decay is not None:
            out.append(f"layer decay {cfg.layer_decay}")
        if cfg.opt != "adamw":
            out.append(f"optimizer {cfg.opt}")
        if cfg.channels_last:
            out.append("channels-last")
        if cfg.torchcompile:
            out.append(f"torch.compile ({cfg.torchcompile})")
        if self.scaler is not None:
            out.append("float16 autocast with gradient scaling")
        elif self.amp:
            out.append(f"{cfg.amp_dtype} autocast")
        elif cfg.amp:
            out.append(f"float32 (--amp autocasts on CUDA only, not on {self.ctx.device.type})")
        return out

    def _epoch(self, epoch: int) -> Dict[str, Any]:
        cfg, ctx = self.cfg, self.ctx
        seed_everything(cfg.seed + 1_000_003 * (epoch + 1) + ctx.rank)
        (self.sampler or self.train_set).set_epoch(epoch)
        t0 = time.perf_counter()
        skipped_before = self.skips.count
        loss_sum, correct, seen = train_one_epoch(self, epoch)
        sums = all_reduce_sum(torch.tensor([loss_sum, correct, seen, self.skips.count - skipped_before],
                                           dtype=torch.float64), ctx)
        _check_usable(epoch, int(sums[2].item()), int(sums[3].item()), cfg.max_skipped_fraction)
        n = max(sums[2].item(), 1.0)
        record: Dict[str, Any] = {
            "kind": "epoch", "epoch": epoch + 1, "step": self.num_updates, "lr": current_lr(self.opt),
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
            if self.ema is not None:  # the same shards, all-reduced the same way
                r = evaluate(self.ema.module, self.val_loader, ctx.device, amp=self.amp, progress=self.progress,
                             desc=f"val EMA {epoch + 1}", skips=SkipTracker(), reduce=lambda t: all_reduce_sum(t, ctx))
                record.update(ema_val_loss=r.loss, ema_val_top1=r.top1, ema_val_top5=r.top5, ema_val_images=r.images)
        record["epoch_time"] = time.perf_counter() - t0
        return record

    # -- files (kanzoo.workflows.run_folder) ----------------------------------------------------------------
    def _log(self, record: Dict[str, Any]) -> None:
        append_log(self.run_dir, record)

    def _save_checkpoint(self, epochs_done: int, record: Dict[str, Any]) -> None:
        write_checkpoint(self.run_dir, {
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "model_ema": ({k: v.detach().cpu() for k, v in self.ema.module.state_dict().items()}
                          if self.ema is not None else None),
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
        })

    def _restore(self) -> Tuple[int, List[Dict[str, Any]]]:
        ckpt, cfg = self.ckpt, self.cfg
        if list(ckpt.get("label_names") or []) != list(self.classes):
            raise WorkflowError(f"the data's classes {self.classes[:5]}... differ from the run's "
                                f"{list(ckpt.get('label_names') or [])[:5]}...; resume with the same --data")
        changed = cfg.changed_from(ckpt.get("config") or {})
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
        if self.ema is not None and ckpt.get("model_ema") is not None:
            self.ema.module.load_state_dict(ckpt["model_ema"])
        self.num_updates = int(ckpt["num_updates"])
        start = int(ckpt["epoch"])
        history: List[Dict[str, Any]] = []
        if self.ctx.is_main:  # drop log lines of the epoch that was cut short
            history = trim_log(self.run_dir, start, self.num_updates)
        return start, history

    def _finish(self, history: List[Dict[str, Any]]) -> Optional[nn.Module]:
        """Writes the final model (merged, for an adapter run) and its config into the run folder (rank 0)."""
        if not self.ctx.is_main:
            return None
        if self.ema is not None:
            ema_state = {k: v.detach().cpu().contiguous() for k, v in self.ema.module.state_dict().items()}
            atomic_write(self.run_dir / EMA_NAME, lambda p: save_file(ema_state, str(p)))
        model = write_final_model(self.run_dir, self.model, self.cfg, adapters=self.peft_kwargs is not None,
                                  data_config=self.data_config, classes=self.classes,
                                  train_images=len(self.train_set), history=history)
        if self.show:
            files = sorted(p.name for p in self.run_dir.iterdir() if p.is_file() and not p.name.startswith("."))
            print(f"wrote {', '.join(files)} to {self.run_dir}", flush=True)
            print(f"next: kanzoo validate {self.arch} DATA --checkpoint {self.run_dir}; "
                  f"kanzoo push {self.arch} REPO --checkpoint {self.run_dir}; kanzoo plot {self.run_dir}", flush=True)
        return model


def _check_usable(epoch: int, used: int, skipped: int, max_fraction: float) -> None:
    """An epoch that trained on no image, or skipped more than ``max_fraction`` of its images as undecodable, is
    an error: a run must not finish "successfully" with weights that saw nothing."""
    total = used + skipped
    if used == 0:
        raise WorkflowError(f"epoch {epoch + 1} trained on no image: {skipped} of {total} file(s) would not decode"
                            if skipped else f"epoch {epoch + 1} trained on no image: the training set is empty")
    if skipped > max_fraction * total:
        raise WorkflowError(f"epoch {epoch + 1} skipped {skipped} of {total} training images that would not decode "
                            f"({100 * skipped / total:.2f}% > --max-skipped-fraction {max_fraction}); fix or remove "
                            f"them (the warnings above name them), or raise --max-skipped-fraction")


def grad_scaler(device: torch.device, amp: bool, dtype: torch.dtype) -> Optional[torch.amp.GradScaler]:
    """The gradient scaler of a float16 AMP run (checkpointed with the run); None otherwise."""
    return torch.amp.GradScaler(device.type) if amp and dtype == torch.float16 else None


def current_lr(opt: torch.optim.Optimizer) -> float:
    """The schedule's learning rate: the largest over the parameter groups (layer decay scales the others)."""
    return max(g["lr"] for g in opt.param_groups)


def _mix(tr: Trainer, images: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mixup / cutmix (timm.data.Mixup) of a batch, with soft targets. Mixup pairs the batch with itself
    flipped, so it needs an even count: an odd batch (an undecodable image left out) loses its last image, and a
    batch of one is only label-smoothed."""
    if len(targets) == 1:
        return images, mixup_target(targets, len(tr.classes), lam=1.0, smoothing=tr.cfg.smoothing)
    if len(targets) % 2:
        images, targets = images[:-1], targets[:-1]
    return tr.mixup_fn(images, targets)


def _optimizer_step(tr: Trainer, unsynced: bool) -> None:
    """One update from the accumulated gradients: (unscale,) clip, step, zero, EMA, count."""
    cfg = tr.cfg
    params = [p for p in tr.model.parameters() if p.requires_grad]
    if unsynced:  # the group's last backward ran under no_sync (its batch was empty everywhere)
        average_gradients(params, tr.ctx)
    if tr.scaler is not None:
        if cfg.clip_grad:
            tr.scaler.unscale_(tr.opt)
            dispatch_clip_grad(params, cfg.clip_grad, mode=cfg.clip_mode)
        tr.scaler.step(tr.opt)
        tr.scaler.update()
    else:
        if cfg.clip_grad:
            dispatch_clip_grad(params, cfg.clip_grad, mode=cfg.clip_mode)
        tr.opt.step()
    tr.opt.zero_grad(set_to_none=True)
    tr.num_updates += 1
    if tr.ema is not None:
        tr.ema.update(tr.model, step=tr.num_updates)


def train_one_epoch(tr: Trainer, epoch: int) -> Tuple[float, float, float]:
    """One pass over the training loader; returns (loss sum, correct, images) of this process.

    With ``grad_accum_steps`` K, batches are taken in groups of K per update (the last group of the epoch may be
    shorter: it updates at the epoch's end, so no gradient carries over an epoch boundary); each batch's loss is
    divided by its group's size, and DDP synchronises the gradients on the group's last batch only."""
    cfg, ctx = tr.cfg, tr.ctx
    tr.ddp.train()
    tr.opt.zero_grad(set_to_none=True)
    tr.sched.step(epoch)  # a schedule stepped per epoch (sched_on_updates False); else a no-op
    if tr.mixup_fn is not None:
        tr.mixup_fn.mixup_enabled = not cfg.mixup_off_epoch or epoch < cfg.mixup_off_epoch
    loss_sum, correct, seen = 0.0, 0.0, 0.0
    accum, batches = cfg.grad_accum_steps, max(tr.batches_per_epoch, 1)
    pending, unsynced, group_loss, group_n = 0, False, 0.0, 0
    bar = tqdm(tr.loader, desc=f"epoch {epoch + 1}/{tr.total_epochs}", unit="step", leave=False,
               disable=not tr.progress, dynamic_ncols=True)
    for i, (images, targets, errors) in enumerate(bar):
        tr.skips.add(errors)
        closes_group = (i + 1) % accum == 0 or i + 1 >= batches
        # every process must take the same steps: skip a batch that is empty (undecodable) on any of them
        if all_min(len(targets), ctx) > 0:
            if pending == 0:
                tr.sched.step_update(tr.num_updates)
            group_size = accum if i // accum < batches // accum else batches % accum
            images, targets = images.to(ctx.device, non_blocking=True), targets.to(ctx.device, non_blocking=True)
            if cfg.channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            hard = targets
            if tr.mixup_fn is not None:
                images, targets = _mix(tr, images, targets)
                hard = hard[:len(targets)]
            sync = contextlib.nullcontext() if closes_group or not ctx.distributed else tr.ddp.no_sync()
            with sync:
                with autocast(ctx.device, tr.amp, tr.amp_dtype):
                    logits = tr.ddp(images)
                    loss = tr.loss_fn(logits.float(), targets)
                if not torch.isfinite(loss):
                    raise WorkflowError(f"the loss is {loss.item()} at epoch {epoch + 1}, step {tr.num_updates + 1}; "
                                        f"lower --lr (now {cfg.lr}) or set --clip-grad")
                scaled = loss / group_size if group_size > 1 else loss
                if tr.scaler is not None:
                    tr.scaler.scale(scaled).backward()
                else:
                    scaled.backward()
            pending, unsynced = pending + 1, not closes_group and ctx.distributed
            n = len(hard)
            value = loss.item()
            loss_sum += value * n
            correct += (logits.argmax(-1) == hard).sum().item()
            seen += n
            group_loss, group_n = group_loss + value * n, group_n + n
        if not (closes_group and pending):
            continue
        _optimizer_step(tr, unsynced)
        pending, unsynced = 0, False
        if tr.progress:
            bar.set_postfix(loss=f"{group_loss / max(group_n, 1):.4f}", lr=f"{current_lr(tr.opt):.2e}")
        if tr.num_updates % cfg.log_interval == 0:  # the loss over the global batch (every process takes part)
            step_sums = all_reduce_sum(torch.tensor([group_loss, group_n], dtype=torch.float64), ctx)
            if ctx.is_main:
                tr._log({"kind": "step", "epoch": epoch + 1, "step": tr.num_updates,
                         "epoch_float": epoch + (i + 1) / batches,
                         "loss": (step_sums[0] / step_sums[1]).item(), "lr": current_lr(tr.opt)})
        group_loss, group_n = 0.0, 0
    if pending:  # a streaming loader ended early
        _optimizer_step(tr, unsynced)
    return loss_sum, correct, seen


def train(cfg: TrainConfig, resume: Optional[PathLike] = None) -> TrainResult:
    """Runs (or with ``resume``, continues) a training run; the run folder is described in
    :mod:`kanzoo.workflows.run_folder`."""
    cfg.check()
    ctx = setup(cfg.device)
    try:
        return Trainer(cfg, ctx, resume).run()
    finally:
        cleanup(ctx)
