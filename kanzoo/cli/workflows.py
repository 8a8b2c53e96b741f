"""``kanzoo predict``, ``validate``, ``train``, ``finetune``, ``plot``, ``benchmark`` and ``demo``: the commands
that run :mod:`kanzoo.workflows` (classification, and segmentation for the models that declare it)."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import List

import torch

from ..recipes import load_recipe
from ..workflows import train as training  # looked up at call time: kanzoo.workflows.train.train may be wrapped
from ..workflows._common import resolve_device
from ..workflows.benchmark import benchmark
from ..workflows.demo import run_demo
from ..workflows.loading import LoadedModel, load_model_with_adapter_base
from ..workflows.plot import plot_run
from ..workflows.predict import format_predictions, predict
from ..workflows.segmentation import (
    DEFAULT_MASK_DIR,
    TASKS,
    format_mask_prediction,
    predict_segmentation,
    resolve_task,
    validate_segmentation,
)
from ..workflows.train_config import CLIP_MODES, MIXUP_MODES, SCHEDULES
from ..workflows.train_recipe import settings_from_recipe
from ..workflows.validate import format_result, validate
from ._args import KeyValues, add_source_args, given_options, track_given

_TASK_HELP = "default: the model's (segmentation for U-KAN/UKANet models, else classification)"
_THRESHOLD_HELP = "segmentation, binary models: foreground where sigmoid(logit) > THRESHOLD (default 0.5)"


def add_parsers(sub) -> None:
    """Adds predict, validate, train, finetune, plot, benchmark and demo to the subcommands ``sub``."""
    _add_predict(sub)
    _add_validate(sub)
    for cmd in ("train", "finetune"):
        _add_train(sub, cmd)
    _add_plot(sub)
    _add_benchmark(sub)
    _add_demo(sub)


# ------------------------------------------------------------------------------------------------ predict
def _add_predict(sub) -> None:
    pr = sub.add_parser("predict", help="top-k classes for image files, or PNG mask overlays (segmentation models)")
    pr.add_argument("name", help="model name (name.tag for registry weights)")
    pr.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of them")
    add_source_args(pr)
    pr.add_argument("--task", choices=TASKS, help=_TASK_HELP)
    pr.add_argument("--topk", type=int, default=5, help="classification: classes shown per image")
    pr.add_argument("-b", "--batch-size", type=int, default=32)
    pr.add_argument("--img-size", type=int, help="input size instead of the pretrained cfg's")
    pr.add_argument("--out", metavar="DIR", help="segmentation: folder for the overlays, DIR/STEM_overlay.png "
                                                 "(default ./predicted_masks/)")
    pr.add_argument("--threshold", type=float, help=_THRESHOLD_HELP)
    pr.add_argument("--save-masks", action="store_true", help="segmentation: also write the bare mask, "
                                                              "DIR/STEM_mask.png (binary 0/255, else class indices)")
    pr.set_defaults(func=run_predict)


def _load(args: argparse.Namespace) -> LoadedModel:
    """The model a predict or validate run uses, on ``--device``."""
    args.device_obj = resolve_device(args.device)
    return load_model_with_adapter_base(args.name, pretrained=args.pretrained, checkpoint=args.checkpoint,
                                        adapter=args.adapter, model_kwargs=args.model_kwargs, device=args.device_obj)


def _task(args: argparse.Namespace, loaded: LoadedModel) -> str:
    """--task, or the task the model declares (segmentation for U-KAN and friends, else classification)."""
    return resolve_task(loaded.model, args.task, args.name or loaded.arch)


def _skipped_status(done: int, skipped: List) -> int:
    """Exit status of a predict run: 1, with a count on stderr, when some images were skipped."""
    if skipped:
        print(f"kanzoo: {len(skipped)} of {done + len(skipped)} image(s) skipped (missing or would not decode)",
              file=sys.stderr)
        return 1
    return 0


def _predict_masks(args: argparse.Namespace, loaded: LoadedModel) -> int:
    """``kanzoo predict`` on a segmentation model: a PNG mask overlay per image, one line per image."""
    preds, skipped = predict_segmentation(loaded, args.images, out_dir=args.out or DEFAULT_MASK_DIR,
                                          batch_size=args.batch_size, device=args.device_obj, img_size=args.img_size,
                                          threshold=0.5 if args.threshold is None else args.threshold,
                                          save_masks=args.save_masks)
    for p in preds:
        print(format_mask_prediction(p))
    return _skipped_status(len(preds), skipped)


def run_predict(args: argparse.Namespace) -> int:
    """Top-k classes with probabilities for each image; a mask overlay per image for segmentation models."""
    loaded = _load(args)
    if _task(args, loaded) == "segmentation":
        return _predict_masks(args, loaded)
    given = [f for f, v in (("--out", args.out), ("--threshold", args.threshold), ("--save-masks", args.save_masks))
             if v not in (None, False)]
    if given:
        raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to segmentation models; "
                         f"{args.name or loaded.arch} is a classifier (it prints top-{args.topk} classes): drop "
                         f"{', '.join(given)}")
    preds, skipped = predict(loaded, args.images, topk=args.topk, batch_size=args.batch_size,
                             device=args.device_obj, img_size=args.img_size)
    if preds:
        print(format_predictions(preds))
    return _skipped_status(len(preds), skipped)


# ----------------------------------------------------------------------------------------------- validate
def _add_validate(sub) -> None:
    va = sub.add_parser("validate", help="top-1 / top-5 / loss on an ImageFolder, or IoU and Dice/F1 on an "
                                         "images/masks folder (segmentation models)")
    va.add_argument("name", help="model name (name.tag for registry weights)")
    va.add_argument("data_dir", metavar="DATA_DIR", help="classification: one subfolder per class (ImageNet synsets "
                                                         "for in1k models); segmentation: DATA_DIR/images/NAME.png "
                                                         "and DATA_DIR/masks/NAME.png")
    add_source_args(va)
    va.add_argument("--task", choices=TASKS, help=_TASK_HELP)
    va.add_argument("-b", "--batch-size", type=int, default=64)
    va.add_argument("-j", "--workers", type=int, default=2)
    va.add_argument("--amp", action="store_true", help="bfloat16 autocast on GPU")
    va.add_argument("--img-size", type=int)
    va.add_argument("--crop-pct", type=float, help="classification only")
    va.add_argument("--threshold", type=float, help=_THRESHOLD_HELP)
    va.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bar (default: on a terminal)")
    va.set_defaults(func=run_validate)


def _progress(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() if args.progress is None else args.progress


def run_validate(args: argparse.Namespace) -> int:
    """top-1 / top-5 / loss on an ImageFolder; IoU and Dice/F1 on an images/masks folder (segmentation)."""
    loaded = _load(args)
    what = f"{args.name or loaded.arch} on {args.data_dir}"
    if _task(args, loaded) == "segmentation":
        if args.crop_pct is not None:
            raise ValueError(f"--crop-pct {args.crop_pct} applies to classification; segmentation images are "
                             f"resized whole to the input size (--img-size): drop --crop-pct")
        threshold = 0.5 if args.threshold is None else args.threshold
        r = validate_segmentation(loaded, args.data_dir, batch_size=args.batch_size, workers=args.workers,
                                  amp=args.amp, device=args.device_obj, img_size=args.img_size, threshold=threshold,
                                  progress=_progress(args))
        binary = f" (binary, threshold {threshold:g})" if loaded.model.num_classes == 1 else ""
        print(r.format(what + binary))
        return 0
    if args.threshold is not None:
        raise ValueError(f"--threshold applies to segmentation models; {args.name or loaded.arch} is a classifier: "
                         f"drop --threshold")
    r = validate(loaded, args.data_dir, batch_size=args.batch_size, workers=args.workers, amp=args.amp,
                 device=args.device_obj, img_size=args.img_size, crop_pct=args.crop_pct, progress=_progress(args))
    print(format_result(r, what))
    return 0


# ------------------------------------------------------------------------------------------ train, finetune
def _add_train(sub, cmd: str) -> None:
    ft = cmd == "finetune"
    t = sub.add_parser(cmd, help="fine-tune pretrained weights, fully or with basis adapters (--peft)" if ft
                       else "train a model on an ImageFolder (DDP under torchrun)")
    t.add_argument("model", nargs="?", default=None, metavar="NAME", help="model name (name.tag)")
    t.add_argument("--data", help="DIR/train + DIR/val, or one folder with a subfolder per class; or a timm dataset "
                                  "name (wds/NAME, hfds/NAME, hfids/NAME, tfds/NAME, torch/NAME) read from "
                                  "--data-dir through timm.data.create_dataset, streaming where timm streams it")
    t.add_argument("--data-dir", help="root of the timm dataset that --data names (e.g. the folder of the "
                                      "webdataset shards and their _info.json)")
    t.add_argument("--train-split", default="train", help="timm dataset: the training split (default train)")
    t.add_argument("--val-split", default="validation",
                   help="timm dataset: the validation split (default validation; '' for none)")
    t.add_argument("--num-classes", type=int, help="timm dataset without class names: the class count")
    t.add_argument("--train-num-samples", type=int, metavar="N",
                   help="streaming timm dataset whose size its files do not say: images per epoch")
    t.add_argument("--val-num-samples", type=int, metavar="N", help="the same for the validation split")
    t.add_argument("--val-data", help="validation folder (default DATA/val)")
    t.add_argument("-o", "--output", help="run folder (default runs/NAME-DATE-TIME)")
    t.add_argument("--resume", metavar="RUN", help="continue the run in this folder (its settings are the "
                                                   "defaults; options given here override them)")
    t.add_argument("--recipe", metavar="TAG", help="the published training recipe of a pretrained tag "
                                                   "(kanzoo.recipes, e.g. kat_tiny_patch16_224.in1k); options "
                                                   "given here override it")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--pretrained", action="store_true", default=None if ft else False,
                     help="start from the registry's weights" + (" (the default without --checkpoint)" if ft else ""))
    src.add_argument("--checkpoint", help="start from a weight file or run folder")
    src.add_argument("--initial-checkpoint", metavar="SRC",
                     help="start from another model's weights where they fit: a weight file or timm:ARCH.TAG "
                          "(tensors it lacks keep their init; a classifier of other classes is dropped)")
    t.add_argument("--model-kwargs", nargs="+", action=KeyValues, default={}, metavar="KEY=VALUE")
    t.add_argument("--drop", type=float, help="dropout rate (the model's drop_rate)")
    t.add_argument("--drop-path", type=float, help="stochastic depth rate (the model's drop_path_rate)")
    t.add_argument("--peft", nargs="*", action=KeyValues, default=None, metavar="KEY=VALUE",
                   help="train basis adapters only (kanzoo.peft), e.g. --peft extra_degrees=1 rank=4; the run "
                        "folder gets the adapter and the merged model")
    g = t.add_argument_group("optimisation (timm train.py's names)")
    g.add_argument("--epochs", type=int, default=5 if ft else 10)
    g.add_argument("-b", "--batch-size", type=int, default=64, help="per process (global = this x processes x "
                                                                     "--grad-accum-steps)")
    g.add_argument("--grad-accum-steps", type=int, default=1, help="batches per optimizer update")
    g.add_argument("--opt", default="adamw", help="timm optimizer name (default adamw)")
    g.add_argument("--opt-eps", type=float)
    g.add_argument("--opt-betas", type=float, nargs="+", metavar="BETA")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD-style optimizers (default 0.9)")
    g.add_argument("--lr", type=float, default=5e-4 if ft else 1e-3, help="learning rate (global batch)")
    g.add_argument("--layer-decay", type=float, help="layer-wise lr decay over the model's group_matcher groups")
    g.add_argument("--sched", default="cosine", choices=SCHEDULES, help="lr schedule (timm's; default cosine)")
    g.add_argument("--sched-on-updates", action=argparse.BooleanOptionalAction, default=True,
                   help="step the schedule every update (default) or, with --no-sched-on-updates, every epoch")
    g.add_argument("--decay-rate", type=float, default=0.1, help="step/multistep: lr factor per decay; poly: power")
    g.add_argument("--decay-epochs", type=float, default=90, help="step: epochs between decays")
    g.add_argument("--decay-milestones", type=int, nargs="+", default=(90, 180, 270), metavar="EPOCH",
                   help="multistep: the epochs of the decays")
    g.add_argument("--warmup-prefix", action=argparse.BooleanOptionalAction, default=True,
                   help="warm up before the schedule's epochs (default) or within them")
    g.add_argument("--min-lr", type=float, default=1e-6)
    g.add_argument("--cooldown-epochs", type=int, default=0, metavar="N",
                   help="train N more epochs after --epochs at the schedule's final lr (default 0)")
    g.add_argument("--weight-decay", type=float, default=0.05)
    g.add_argument("--warmup-epochs", type=float, default=0.5 if ft else 1.0)
    g.add_argument("--warmup-lr", type=float, default=1e-6)
    g.add_argument("--smoothing", "--label-smoothing", dest="smoothing", type=float, default=0.1)
    g.add_argument("--clip-grad", type=float, default=None)
    g.add_argument("--clip-mode", default="norm", choices=CLIP_MODES)
    g.add_argument("--model-ema", action=argparse.BooleanOptionalAction, default=False,
                   help="keep an exponential moving average of the weights, validated beside them")
    g.add_argument("--model-ema-decay", type=float, default=0.9998)
    g.add_argument("--model-ema-warmup", action=argparse.BooleanOptionalAction, default=False)
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False, help="autocast on GPU")
    g.add_argument("--amp-dtype", default="bfloat16", choices=("bfloat16", "float16"),
                   help="float16 adds a gradient scaler (checkpointed)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False)
    g.add_argument("--compile", "--torchcompile", dest="torchcompile", nargs="?", const="inductor", default=None,
                   metavar="BACKEND", help="torch.compile the model (kanzoo.compile_model; backend default inductor)")
    a = t.add_argument_group("data and augmentation (timm.data)")
    a.add_argument("--img-size", type=int, help="input size (default: the pretrained cfg's)")
    a.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"))
    a.add_argument("--crop-pct", type=float, help="validation centre-crop fraction")
    a.add_argument("--interpolation", help="resize interpolation (default: the pretrained cfg's)")
    a.add_argument("--train-interpolation", help="the training crop's interpolation (default: --interpolation)")
    a.add_argument("--mean", type=float, nargs="+")
    a.add_argument("--std", type=float, nargs="+")
    a.add_argument("--no-aug", action="store_true", help="no augmentation: resize and centre crop only")
    a.add_argument("--scale", type=float, nargs=2, default=(0.08, 1.0), metavar=("MIN", "MAX"))
    a.add_argument("--ratio", type=float, nargs=2, default=(3 / 4, 4 / 3), metavar=("MIN", "MAX"))
    a.add_argument("--hflip", type=float, default=0.5)
    a.add_argument("--vflip", type=float, default=0.0)
    a.add_argument("--color-jitter", type=float, default=0.4)
    a.add_argument("--aa", "--auto-augment", dest="aa", help="e.g. rand-m9-mstd0.5")
    a.add_argument("--reprob", type=float, default=0.0, help="random erasing probability")
    a.add_argument("--remode", default="pixel", help="random erasing mode")
    a.add_argument("--recount", type=int, default=1, help="random erasing count")
    a.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (on when > 0)")
    a.add_argument("--cutmix", type=float, default=0.0, help="cutmix alpha (on when > 0)")
    a.add_argument("--cutmix-minmax", type=float, nargs=2, metavar=("MIN", "MAX"))
    a.add_argument("--mixup-prob", type=float, default=1.0, help="probability of mixing a batch")
    a.add_argument("--mixup-switch-prob", type=float, default=0.5, help="probability of cutmix when both are on")
    a.add_argument("--mixup-mode", default="batch", choices=MIXUP_MODES)
    a.add_argument("--mixup-off-epoch", type=int, default=0, help="no mixing from this epoch on (0: never off)")
    a.add_argument("-j", "--workers", type=int, default=2)
    r = t.add_argument_group("run")
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--device", help="cpu, cuda (default: cuda when available; cuda:LOCAL_RANK under torchrun)")
    r.add_argument("--log-interval", type=int, default=50, help="log the loss every N steps")
    r.add_argument("--max-skipped-fraction", type=float, default=0.005, metavar="F",
                   help="stop when more than this fraction of an epoch's images will not decode (default 0.005)")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: on a terminal)")
    r.add_argument("-q", "--quiet", action=argparse.BooleanOptionalAction, default=False,
                   help="no per-epoch lines")
    s = t.add_argument_group("basis selection (S-KAN models with selectable KAN layers, e.g. s_convkan_*; "
                             "defaults: the model's pretrained cfg; docs/selectable.md)")
    s.add_argument("--select-epoch", type=int, metavar="N",
                   help="train every candidate basis for N epochs, then keep each channel's top-k (their "
                        "mixing weights frozen)")
    s.add_argument("--prune-epoch", type=int, metavar="M",
                   help="prune to the kept bases after M epochs (N <= M <= --epochs; = --epochs: after the "
                        "last one); the optimizer is rebuilt, the lr schedule goes on")
    s.add_argument("--select-top-k", type=int, metavar="K", help="bases each channel keeps (default 1)")
    s.add_argument("--no-selection", action="store_true",
                   help="train the full mixture of bases throughout: no selection, no pruning")
    # --resume makes the run's saved settings this parser's defaults (kanzoo.cli._args.apply_resume_defaults)
    t.set_defaults(func=run_train, command_parser=t)
    track_given(t)  # --recipe: the options typed on the command line win over the recipe's


def _train_config(args: argparse.Namespace) -> training.TrainConfig:
    names = [f.name for f in dataclasses.fields(training.TrainConfig)]
    return training.TrainConfig.from_dict({n: getattr(args, n) for n in names if hasattr(args, n)})


def _apply_recipe(args: argparse.Namespace) -> None:
    """``--recipe TAG``: the recipe's settings replace the defaults of every option not typed, the lr follows
    the global batch; what kanzoo does not apply is printed (rank 0) and kept in args.json."""
    recipe = load_recipe(args.recipe)
    names = [f.name for f in dataclasses.fields(training.TrainConfig)]
    world = int(os.environ.get("WORLD_SIZE") or 1)
    resolved = settings_from_recipe(recipe, {n: getattr(args, n) for n in names if hasattr(args, n)},
                                    given_options(args), world)
    for k, v in resolved.values.items():
        setattr(args, k, v)
    if os.environ.get("RANK", "0") == "0":
        print(f"recipe {recipe.tag} ({recipe.path.name})", flush=True)
        for line in resolved.notes:
            print(line, flush=True)


def run_train(args: argparse.Namespace) -> int:
    """Trains (or with --peft, adapts) a model on an ImageFolder; resumable, DDP under torchrun."""
    if args.resume and "recipe" in given_options(args):
        raise ValueError(f"--recipe sets up a new run; {args.resume} keeps the settings it started with (its "
                         f"args.json): drop --recipe, or give the options to change")
    if args.recipe and not args.resume:
        _apply_recipe(args)
    if not args.model:
        raise ValueError(f"give the model NAME to {args.command} (or --resume RUN to continue a run)")
    if not args.data:
        raise ValueError("give the training images with --data DIR (DIR/train/CLASS/*.png and DIR/val/CLASS/*.png, "
                         "or DIR/CLASS/*.png)")
    if args.command == "finetune" and args.pretrained is None:
        args.pretrained = not (args.checkpoint or args.initial_checkpoint)
    args.pretrained = bool(args.pretrained)
    training.train(_train_config(args), resume=args.resume)
    return 0


# ------------------------------------------------------------------------------------ plot, benchmark, demo
def _add_plot(sub) -> None:
    pl = sub.add_parser("plot", help="draw a run's loss/accuracy curves to a PNG")
    pl.add_argument("run_dir", metavar="RUN_DIR")
    pl.add_argument("--out", help="PNG path (default RUN_DIR/curves.png)")
    pl.set_defaults(func=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    """Loss/accuracy curves of a run as a PNG."""
    print(f"wrote {plot_run(args.run_dir, args.out)}")
    return 0


def _add_benchmark(sub) -> None:
    bm = sub.add_parser("benchmark", help="parameters, GMACs, latency and throughput of a model")
    bm.add_argument("name")
    bm.add_argument("--batch", type=int, default=1)
    bm.add_argument("--size", type=int, default=None, help="image size (default: the pretrained cfg's)")
    bm.add_argument("--device", default="cpu")
    bm.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    bm.add_argument("--iters", type=int, default=20)
    bm.add_argument("--warmup", type=int, default=5)
    bm.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    bm.add_argument("--train", action="store_true", help="time forward + backward")
    bm.add_argument("--no-macs", action="store_true")
    bm.add_argument("--model-kwargs", nargs="+", action=KeyValues, default={}, metavar="KEY=VALUE")
    bm.set_defaults(func=run_benchmark)


def run_benchmark(args: argparse.Namespace) -> int:
    """Parameters, GMACs, latency and throughput."""
    if args.threads:
        torch.set_num_threads(args.threads)
    r = benchmark(args.name, batch=args.batch, size=args.size, device=args.device, dtype=args.dtype,
                  iters=args.iters, warmup=args.warmup, train=args.train, model_kwargs=args.model_kwargs,
                  macs=not args.no_macs)
    print("\n".join(r.lines()))
    return 0


def _add_demo(sub) -> None:
    dm = sub.add_parser("demo", help="offline end-to-end demo: train, validate, adapt, merge, export (CPU, minutes)")
    dm.add_argument("--epochs", type=int, default=None, help="training epochs (default 8; 1 with --fast)")
    dm.add_argument("--adapt-epochs", type=int, default=None, help="adapter epochs (default 10; 1 with --fast)")
    dm.add_argument("--fast", action="store_true", help="a reduced run (fewer images and epochs), for tests")
    dm.add_argument("-o", "--output", help="keep the runs in this folder (default: a temporary folder)")
    dm.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: the model is tiny, more threads mostly wait on each other)")
    dm.add_argument("--seed", type=int, default=0)
    dm.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    """The offline end-to-end demo."""
    return run_demo(epochs=args.epochs, adapt_epochs=args.adapt_epochs, fast=args.fast, output=args.output,
                    threads=args.threads, seed=args.seed)
