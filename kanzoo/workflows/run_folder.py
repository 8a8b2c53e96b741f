"""The run folder of ``kanzoo train`` / ``kanzoo finetune``: its files, how they are written and read back.

A run folder holds:

* ``args.json``: the :class:`~kanzoo.workflows.train_config.TrainConfig` of the run;
* ``log.jsonl``: one JSON record per logged step (``"kind": "step"``), per epoch (``"kind": "epoch"``) and
  per basis-selection event (``"kind": "selection"``);
* ``checkpoint.pth``: model, optimizer and progress after the last finished epoch, replaced atomically each
  epoch; ``--resume RUN`` continues from it;
* at the end, ``model.safetensors`` + ``config.json`` + ``README.md`` (:func:`kanzoo.save_pretrained`, with the
  class folder names as ``label_names``), so ``kanzoo push NAME REPO --checkpoint RUN``,
  ``kanzoo export`` and ``kanzoo.create_model('local-dir:RUN', pretrained=True)`` take it as it is; adapter
  runs also hold ``adapter_config.json`` + ``adapter_model.safetensors`` and the merged model.

Every file is written by rank 0 only; the trainer (:mod:`kanzoo.workflows.train`) decides when.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from .._version import __version__
from ..errors import WorkflowError
from ..hub import save_pretrained
from ..io import PathLike, atomic_write, read_json, write_json
from .loading import ARGS_NAME, CHECKPOINT_NAME, read_training_checkpoint
from .train_config import TrainConfig, current_names

__all__ = [
    "LOG_NAME", "append_log", "checkpoint_file", "default_output", "finished_epochs", "format_epoch",
    "new_run_dir", "read_checkpoint", "read_log", "saved_config", "start_run_folder", "trim_log",
    "write_checkpoint", "write_final_model",
]

LOG_NAME = "log.jsonl"


# ---------------------------------------------------------------------------------------------- the folder
def default_output(arch: str) -> str:
    return os.path.join("runs", f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}")


def new_run_dir(out: PathLike) -> Path:
    """``out`` as the folder of a new run, checked before any training: it must not hold a run already, and it
    must be a folder that can be created and written (not a file, not under a file, not read-only)."""
    run = Path(out)
    if (run / CHECKPOINT_NAME).exists():
        raise WorkflowError(f"run folder {str(run)!r} already holds a run ({CHECKPOINT_NAME}); continue it with "
                            f"--resume {run}, or choose another --output")
    if run.exists() and not run.is_dir():
        raise WorkflowError(f"--output {str(run)!r} is a file; give a folder")
    check_writable(run, "--output")
    return run


def check_writable(folder: Path, what: str) -> None:
    """Checks, without creating anything that stays, that ``folder`` can be created and written: its nearest
    existing ancestor must be a folder in which a probe file can be written and removed. Any failure (a parent
    that is a file, no permission, a read-only file system) is one :class:`~kanzoo.errors.WorkflowError`."""
    base = folder
    while not base.exists() and base.parent != base:
        base = base.parent
    if not base.is_dir():
        raise WorkflowError(f"{what} {str(folder)!r} cannot be created: {str(base)!r} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".kanzoo-write-test-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise WorkflowError(f"{what} {str(folder)!r} cannot be written ({e.strerror or type(e).__name__} in "
                            f"{str(base)!r}); choose a folder you can write to") from None


def remove_stale_temporaries(run_dir: Path) -> List[str]:
    """Removes what an interrupted write left in ``run_dir``: the hidden ``.NAME.*.tmp`` files of
    :func:`kanzoo.io.atomic_write` and the staging folders of ``save_pretrained``. Returns their names."""
    removed = []
    for p in run_dir.iterdir() if run_dir.is_dir() else ():
        stale_file = p.is_file() and p.name.startswith(".") and p.name.endswith(".tmp")
        stale_dir = p.is_dir() and p.name.startswith((".kanzoo-save-", ".kanzoo-export-"))
        if stale_file or stale_dir:
            shutil.rmtree(p, ignore_errors=True) if stale_dir else p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


def start_run_folder(run_dir: Path, cfg: TrainConfig, fresh: bool) -> None:
    """Creates the folder, removes the temporaries an interrupted run left, and writes ``args.json``; a fresh run
    drops the log left by a run that stopped in its first epoch (it has no checkpoint to resume)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(run_dir)
    write_json(run_dir / ARGS_NAME, dataclasses.asdict(cfg))
    if fresh and (run_dir / LOG_NAME).exists():
        (run_dir / LOG_NAME).unlink()


def saved_config(resume: PathLike) -> Dict[str, Any]:
    """The ``args.json`` of a run folder (or of the folder of a checkpoint file), for ``--resume``; settings an
    older kanzoo saved under other names (``label_smoothing``...) come back under today's."""
    path = Path(resume)
    run = path if path.is_dir() else path.parent
    if not path.exists():
        raise WorkflowError(f"nothing to resume: {str(path)!r} does not exist")
    if not (run / ARGS_NAME).is_file():
        raise WorkflowError(f"{str(run)!r} has no {ARGS_NAME}: it is not a run folder written by `kanzoo train`")
    return current_names(read_json(run / ARGS_NAME))


# ---------------------------------------------------------------------------------------------- checkpoint
def checkpoint_file(resume: PathLike) -> Path:
    """The checkpoint that ``--resume`` names: the run folder's ``checkpoint.pth``, or the file given."""
    path = Path(resume)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def read_checkpoint(path: Path) -> Dict[str, Any]:
    """The training checkpoint at ``path`` (from :func:`checkpoint_file`); raises when there is none."""
    if not path.is_file():
        raise WorkflowError(f"nothing to resume: {str(path)!r} does not exist (a run folder holds "
                            f"{CHECKPOINT_NAME} once its first epoch has finished)")
    return read_training_checkpoint(path)


def write_checkpoint(run_dir: Path, state: Dict[str, Any]) -> None:
    """Replaces the run's ``checkpoint.pth`` by ``state`` (stamped with the kanzoo version), atomically."""
    state = dict(state, kanzoo_version=__version__)
    atomic_write(run_dir / CHECKPOINT_NAME, lambda p: torch.save(state, p))


def finished_epochs(run_dir: Path) -> Optional[int]:
    """The epochs that the run's checkpoint holds; None before the first epoch finished."""
    ckpt = run_dir / CHECKPOINT_NAME
    if not ckpt.is_file():
        return None
    return torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]


# ---------------------------------------------------------------------------------------------- the log
def append_log(run_dir: Path, record: Dict[str, Any]) -> None:
    with open(run_dir / LOG_NAME, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_log(path: Path) -> List[Dict[str, Any]]:
    """The records of a ``log.jsonl`` (none when it does not exist); a line cut short by a crash is skipped."""
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


def trim_log(run_dir: Path, epochs_done: int, num_updates: int) -> List[Dict[str, Any]]:
    """Drops the log records written after the checkpoint (the epoch that was cut short) and returns the
    epoch records that remain."""
    log = run_dir / LOG_NAME
    kept = [r for r in read_log(log) if r.get("epoch", 0) <= epochs_done and
            not (r.get("kind") == "step" and r.get("step", 0) > num_updates)]
    atomic_write(log, lambda p: Path(p).write_text("".join(json.dumps(r) + "\n" for r in kept)))
    return [r for r in kept if r.get("kind") == "epoch"]


def format_epoch(rec: Dict[str, Any], epochs: int) -> str:
    """The line printed for an epoch record."""
    s = (f"epoch {rec['epoch']}/{epochs}  train loss {rec['train_loss']:.4f} top-1 {rec['train_top1']:.2f}%")
    if rec.get("val_top1") is not None:
        s += (f"  val loss {rec['val_loss']:.4f} top-1 {rec['val_top1']:.2f}% "
              f"top-{rec['val_topk']} {rec['val_top5']:.2f}%")
    if rec.get("ema_val_top1") is not None:
        s += f"  EMA val loss {rec['ema_val_loss']:.4f} top-1 {rec['ema_val_top1']:.2f}%"
    s += f"  lr {rec['lr']:.2e}  {rec['epoch_time']:.1f} s"
    if rec.get("skipped"):
        s += f"  ({rec['skipped']} undecodable images skipped)"
    return s


# ---------------------------------------------------------------------------------------------- the end
def write_final_model(run_dir: Path, model: nn.Module, cfg: TrainConfig, *, adapters: bool,
                      data_config: Mapping[str, Any], classes: Sequence[str], train_images: int,
                      history: List[Dict[str, Any]]) -> nn.Module:
    """Writes the trained model (for an adapter run: the adapters, then the merged model) with its config and
    model card into the run folder, and returns the model written (on the CPU, in eval mode)."""
    model = model.eval()
    if adapters:
        model.save_pretrained(run_dir)
        model = model.merge_and_unload().eval()
    model = model.cpu()
    model.pretrained_cfg = dict(model.pretrained_cfg, input_size=tuple(data_config["input_size"]),
                                crop_pct=data_config.get("crop_pct"), num_classes=model.num_classes)
    for key in ("tag", "hf_hub_id", "url", "file", "state_dict", "source"):
        model.pretrained_cfg.pop(key, None)
    last = history[-1] if history else {}
    metrics = ({"top1": round(last["val_top1"], 2), "top5": round(last["val_top5"], 2)}
               if last.get("val_top1") is not None else None)
    cooldown = f" (and {cfg.cooldown_epochs} cooldown epochs)" if cfg.cooldown_epochs else ""
    cmd = "finetune" if cfg.peft is not None else "train"
    how = (f"Trained with `kanzoo {cmd}` for {cfg.epochs} epochs{cooldown} on "
           f"{train_images} images in {len(classes)} classes (class folders: "
           f"{', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''}).")
    save_pretrained(model, run_dir, label_names=list(classes), card_kwargs=dict(metrics=metrics, provenance=how))
    return model
