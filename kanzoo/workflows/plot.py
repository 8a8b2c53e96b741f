"""``kanzoo plot RUN``: loss and accuracy curves of a training run, from its ``log.jsonl``, as a PNG (matplotlib,
rendered off-screen with Agg)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from ..errors import WorkflowError
from ..io import PathLike, atomic_write
from .run_folder import LOG_NAME, read_log

PLOT_NAME = "curves.png"


def _series(records: List[Dict[str, Any]], x: str, y: str):
    pts = [(r[x], r[y]) for r in records if r.get(y) is not None and r.get(x) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_run(run_dir: PathLike, out: Optional[PathLike] = None, dpi: int = 120) -> Path:
    """Draws train/val loss (left) and top-1/top-5 accuracy (right) per epoch, plus the logged step losses,
    into ``out`` (default ``RUN/curves.png``), written atomically. Returns the path."""
    try:  # a bare Figure renders with Agg and leaves pyplot's global state (and backend) alone
        from matplotlib.figure import Figure
    except ImportError:
        raise WorkflowError("kanzoo plot needs matplotlib: pip install matplotlib") from None

    run = Path(run_dir)
    log = run / LOG_NAME if run.is_dir() else run
    if not log.is_file():
        raise WorkflowError(f"no {LOG_NAME} in {str(run)!r}: give a run folder written by `kanzoo train`")
    records = read_log(log)
    epochs = [r for r in records if r.get("kind") == "epoch"]
    steps = [r for r in records if r.get("kind") == "step"]
    if not epochs and not steps:
        raise WorkflowError(f"{str(log)!r} holds no finished step or epoch yet; plot again after the first epoch")
    out = Path(out) if out else (run if run.is_dir() else run.parent) / PLOT_NAME
    if out.suffix.lower() != ".png":
        raise WorkflowError(f"--out must end in .png, got {str(out)!r}")

    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    if steps:
        ax_loss.plot(*_series(steps, "epoch_float", "loss"), lw=0.8, alpha=0.5, label="train loss (steps)")
    for key, label, style in (("train_loss", "train loss", "o-"), ("val_loss", "val loss", "s-")):
        xs, ys = _series(epochs, "epoch", key)
        if xs:
            ax_loss.plot(xs, ys, style, label=label)
    k = next((r["val_topk"] for r in reversed(epochs) if r.get("val_topk")), 5)
    for key, label, style in (("train_top1", "train top-1", "o-"), ("val_top1", "val top-1", "s-"),
                              ("val_top5", f"val top-{k}", "^-")):
        xs, ys = _series(epochs, "epoch", key)
        if xs:
            ax_acc.plot(xs, ys, style, label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(run.name if run.is_dir() else run.parent.name)
    fig.tight_layout()
    atomic_write(out, lambda p: fig.savefig(p, dpi=dpi, format="png"))
    return out
