"""The cost of ``kanzoo train``'s training step over a bare PyTorch loop, on the same model and data.

Both sides train a copy of the same model (same initial weights) with the same optimizer (AdamW from
``timm.optim.create_optimizer_v2``, as ``kanzoo train`` builds it) on the same in-memory batches:

* **kanzoo**: :func:`kanzoo.workflows.train.train_one_epoch`, the loop ``kanzoo train`` runs, on a
  :class:`~kanzoo.workflows.train.Trainer` set up as ``Trainer.run`` sets it up (cosine schedule stepped every
  update, label-smoothed cross-entropy, the loss/accuracy bookkeeping, the empty-batch guard, logging every
  ``--log-interval`` steps to a temporary run folder), with the loader replaced by the in-memory batches;
* **bare**: ``zero_grad(); loss = cross_entropy(model(x), y, label_smoothing); loss.backward(); opt.step()``.

The two alternate round by round (kanzoo, bare, bare, kanzoo, ...: each round starts with the side that went
second in the previous one), each round timing ``--steps`` steps after a warm-up round per side; the figure
is the median over rounds of the per-step time, and the overhead is the median of the per-round ratios minus
one, by the wall clock and by the process's CPU time (less sensitive to other processes taking the cores). The
1-minute load average before and after is printed: on a shared machine, read the figures with it.
The target (issue 21) is at most 5 % overhead.

    python benchmarks/train_loop.py                       # simple_conv_kagn (width 0.25) at 32x32, batch 32, 2 threads
    python benchmarks/train_loop.py --model simple_conv_kagn --width-scale 0.5 --batch 64 --rounds 15
    python benchmarks/train_loop.py --out benchmarks/results/train_loop_cpu.txt
    python benchmarks/train_loop.py --device cuda --amp --model kat_tiny_patch16_224 --width-scale 1 \
        --img-size 224 --batch 128 --steps 10 --rounds 21          # a GPU at a real batch size, bf16 autocast

On CUDA both sides are synchronised before and after each round; the CPU-time column then measures the host.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from timm.optim import create_optimizer_v2  # noqa: E402

import kanzoo  # noqa: E402
from kanzoo.io import atomic_write  # noqa: E402
from kanzoo.workflows.data import SkipTracker  # noqa: E402
from kanzoo.workflows.distributed import DistContext  # noqa: E402
from kanzoo.workflows.train import TrainConfig, Trainer, train_one_epoch  # noqa: E402


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def kanzoo_side(model, batches, cfg: TrainConfig, run_dir: Path, device: torch.device, amp: bool) -> Trainer:
    """A Trainer in the state ``Trainer.run`` leaves it in before the epochs, on in-memory batches."""
    tr = Trainer.__new__(Trainer)
    tr.cfg, tr.ctx = cfg, DistContext(device=device)
    tr.show = tr.progress = False
    tr.skips = SkipTracker()
    tr.run_dir = run_dir
    tr.classes = [str(i) for i in range(model.num_classes)]
    tr.model = tr.ddp = model
    tr.loader = batches
    tr.batches_per_epoch = len(batches)
    tr.steps_per_epoch = len(batches)
    tr.opt, tr.sched = tr._optimizer(model)
    tr.mixup_fn, tr.ema, tr.scaler = None, None, None
    tr.loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.smoothing)
    tr.amp, tr.amp_dtype = amp, torch.bfloat16
    tr.num_updates = 0
    tr.schedule = None
    return tr


def bare_epoch(model, opt, batches, smoothing: float, amp: bool) -> None:
    model.train()
    device_type = next(model.parameters()).device.type
    for x, y, _ in batches:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=smoothing)
        loss.backward()
        opt.step()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="simple_conv_kagn")
    p.add_argument("--width-scale", type=float, default=0.25)
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=3, help="steps per round and side")
    p.add_argument("--rounds", type=int, default=61)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on both sides (CUDA only, as kanzoo train)")
    p.add_argument("--out", help="also write the report to this file")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {args.device}: this torch sees no CUDA device")
    if args.amp and device.type != "cuda":
        p.error("--amp autocasts on CUDA only, as kanzoo train does; drop it on cpu")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = kanzoo.create_model(args.model, num_classes=args.classes, width_scale=args.width_scale).to(device)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch, 3, args.img_size, args.img_size, generator=g).to(device),
                torch.randint(0, args.classes, (args.batch,), generator=g).to(device), [])
               for _ in range(args.steps)]
    cfg = TrainConfig(model=args.model, data="<in memory>", epochs=10_000, batch_size=args.batch, log_interval=50)
    lines: List[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    load_start = load()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    say(f"# torch {torch.__version__}, {where}, threads {torch.get_num_threads()}, "
        f"{'bf16 autocast' if args.amp else 'float32'}; {args.model} "
        f"width_scale={args.width_scale}, {args.img_size}x{args.img_size}, batch {args.batch}, {args.steps} steps "
        f"per round and side, {args.rounds} rounds (+1 warm-up), {os.cpu_count()} CPUs")
    say(f"# load average (1 min) at start {load_start:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        ours = kanzoo_side(copy.deepcopy(model), batches, cfg, Path(tmp), device, args.amp)
        bare_model = copy.deepcopy(model)
        bare_opt = create_optimizer_v2(bare_model, "adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        def timed(fn) -> Tuple[float, float]:
            """(wall, process CPU) seconds per step of one round."""
            sync()
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync()
            return (time.perf_counter() - w0) / len(batches), (time.process_time() - c0) / len(batches)

        sides = {"kanzoo": lambda: train_one_epoch(ours, 0),
                 "bare": lambda: bare_epoch(bare_model, bare_opt, batches, cfg.smoothing, args.amp)}
        timed(sides["kanzoo"]), timed(sides["bare"])  # warm-up
        times: Dict[str, List[Tuple[float, float]]] = {"kanzoo": [], "bare": []}
        for r in range(args.rounds):
            for name in (("kanzoo", "bare") if r % 2 == 0 else ("bare", "kanzoo")):
                times[name].append(timed(sides[name]))
    load_end = load()
    say("side    | clock  | median ms/step | min ms/step | max ms/step")
    say("--------|--------|----------------|-------------|------------")
    for i, clock in enumerate(("wall", "CPU")):
        for name, ts in times.items():
            col = [t[i] for t in ts]
            say(f"{name:<7} | {clock:<6} | {1e3 * statistics.median(col):14.2f} | {1e3 * min(col):11.2f} | "
                f"{1e3 * max(col):10.2f}")
    overhead = {}
    for i, clock in enumerate(("wall", "CPU")):
        ratios = [k[i] / b[i] for k, b in zip(times["kanzoo"], times["bare"])]
        overhead[clock] = statistics.median(ratios) - 1
        q = statistics.quantiles(ratios, n=4)
        say(f"{clock} per-round ratio kanzoo/bare: median {statistics.median(ratios):.3f}, quartiles "
            f"{q[0]:.3f}-{q[2]:.3f}, min {min(ratios):.3f}, max {max(ratios):.3f}")
    say(f"overhead (median of the per-round ratios - 1): wall {100 * overhead['wall']:+.1f} %, process CPU time "
        f"{100 * overhead['CPU']:+.1f} %; target <= 5 %: {'ok' if max(overhead.values()) <= 0.05 else 'MISSED'}")
    say(f"# load average (1 min) at end {load_end:.2f}")
    if args.out:
        atomic_write(Path(args.out), lambda p: Path(p).write_text("\n".join(lines) + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
