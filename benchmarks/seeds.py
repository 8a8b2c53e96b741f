"""Speed and memory of the seed-paper models against their references (issue 11). Prints a table; not a test.

    python benchmarks/seeds.py --reference /path/to/U-KAN          # CPU, 2 threads, float32
    python benchmarks/seeds.py --reference /path/to/U-KAN --device cuda

Rows:

* ``mlp_kan_tiny_patch16_224`` against timm's ``deit_tiny_patch16_224`` (random weights): inference at batch 8,
  224², and one SGD train step at batch 4. Target: kanzoo at most 1.5× DeiT's time.
* ``ukan_small`` against the reference U-KAN (``Seg_UKAN/archs.py`` of a CUHK-AIM-Group/U-KAN checkout, given with
  ``--reference``; the row is skipped without it): inference and one Adam train step at batch 4, 256², and the
  train step's peak memory. Target: kanzoo at least 1.5× faster and at most 0.7× the memory.
* FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` at batch 1.

Timings run in one process and alternate the two sides (A, B, A, B, ...) after a warm-up, so that load changes
on a shared machine hit both; the median is reported. Peak memory of a train step is measured in a fresh
subprocess per side, over its first step: on CPU the growth of the resident set (sampled every 0.5 ms), on
CUDA ``torch.cuda.max_memory_allocated`` minus the memory held before the step.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ------------------------------------------------------------------------------------------------ models
def reference_ukan_dir(path: str) -> Path:
    """The folder holding the reference ``archs.py``: the checkout itself or its ``Seg_UKAN``."""
    p = Path(path)
    for cand in (p / "Seg_UKAN", p):
        if (cand / "archs.py").is_file() and (cand / "kan.py").is_file():
            return cand
    raise SystemExit(f"--reference {path!r}: no Seg_UKAN/archs.py and kan.py there; give a CUHK-AIM-Group/U-KAN "
                     f"checkout (git clone https://github.com/CUHK-AIM-Group/U-KAN)")


def build_reference_ukan(path: str) -> torch.nn.Module:
    """The reference UKAN(num_classes=1, embed_dims=[128, 160, 256]), the paper's configuration."""
    folder = reference_ukan_dir(path)
    # archs.py imports matplotlib.pyplot at module level without using it
    for name in ("matplotlib", "matplotlib.pyplot"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    sys.path.insert(0, str(folder))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import archs  # noqa: E402
    return archs.UKAN(1, embed_dims=[128, 160, 256])


def build(name: str, reference: Optional[str]) -> torch.nn.Module:
    import timm

    import kanzoo
    if name == "reference_ukan":
        return build_reference_ukan(reference)
    if name == "deit_tiny_patch16_224":
        return timm.create_model(name)
    return kanzoo.create_model(name)


# ------------------------------------------------------------------------------------------------ timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def inference_fn(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    model.eval()

    def run():
        with torch.no_grad():
            model(x)
    return run


def train_fn(model: torch.nn.Module, x: torch.Tensor, optimizer: str, task: str) -> Callable[[], None]:
    model.train()
    opt = (torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=1e-4))
    g = torch.Generator(device="cpu").manual_seed(0)
    if task == "segmentation":
        target = (torch.rand(x.shape[0], 1, *x.shape[2:], generator=g) > 0.5).float().to(x.device)
        loss_fn = torch.nn.functional.binary_cross_entropy_with_logits
    else:
        target = torch.randint(0, 1000, (x.shape[0],), generator=g).to(x.device)
        loss_fn = torch.nn.functional.cross_entropy

    def run():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), target).backward()
        opt.step()
    return run


CLOCK = time.perf_counter


def alternate(fa: Callable[[], None], fb: Callable[[], None], device: torch.device, reps: int,
              warmup: int = 2) -> Tuple[float, float]:
    """Median seconds of ``fa`` and ``fb``, run alternately (``CLOCK``: wall time, or the process's CPU time)."""
    for _ in range(warmup):
        fa()
        fb()
        _sync(device)
    ta: List[float] = []
    tb: List[float] = []
    for _ in range(reps):
        for f, out in ((fa, ta), (fb, tb)):
            _sync(device)
            t0 = CLOCK()
            f()
            _sync(device)
            out.append(CLOCK() - t0)
    return statistics.median(ta), statistics.median(tb)


# ------------------------------------------------------------------------------------------------ memory
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_train_memory(name: str, reference: Optional[str], device: str, batch: int, size: int,
                         optimizer: str, threads: int) -> int:
    """Peak memory growth (bytes) of the first train step of a fresh process, over the memory held once the
    model, the batch and the optimizer exist (the step's activations, gradients and optimizer state). The
    first step is measured because the C allocator keeps freed heap memory: later steps reuse it unseen."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    model = build(name, reference).to(dev)
    x = torch.randn(batch, 3, size, size, device=dev)
    task = "segmentation" if name in ("ukan_small", "reference_ukan") else "classification"
    step = train_fn(model, x, optimizer, task)
    _sync(dev)
    if dev.type == "cuda":
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        step()
        _sync(dev)
        return torch.cuda.max_memory_allocated(dev) - base
    import gc
    gc.collect()
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0005)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    step()
    done.set()
    th.join()
    return max(peak[0], _rss_bytes()) - base


def memory_in_subprocess(name: str, args) -> int:
    code = ("import sys, json; sys.path.insert(0, %r); from benchmarks.seeds import measure_train_memory; "
            "print(json.dumps(measure_train_memory(%r, %r, %r, %d, %d, %r, %d)))"
            % (str(REPO), name, args.reference, args.device, args.ukan_batch, args.ukan_size, "adam", args.threads))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement of {name} failed:\n{out.stderr[-2000:]}")
    return int(json.loads(out.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------------------ FLOPs
def count_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


# ------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", help="a CUHK-AIM-Group/U-KAN checkout (for the U-KAN rows)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=7, help="timed runs per side (median reported)")
    p.add_argument("--ukan-batch", type=int, default=4)
    p.add_argument("--ukan-size", type=int, default=256)
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--only", choices=("mlpkan", "ukan"), help="run one family's rows")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time (default), or the process's CPU time: with --threads 1 it hardly depends on "
                        "what else runs on a shared machine")
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, device {dev}, {torch.get_num_threads()} threads, float32, {args.clock} clock; "
          f"load average {load:.2f} at start")
    rows: List[Tuple[str, str, str, str, str]] = []

    # MLP-KAN vs DeiT
    if args.only != "ukan":
        rows += mlpkan_rows(dev, args)
    if args.only != "mlpkan":
        rows += ukan_rows(dev, args)
    print_table(rows)
    return 0


def mlpkan_rows(dev: torch.device, args) -> List[Tuple[str, str, str, str, str]]:
    rows = []
    kan, deit = build("mlp_kan_tiny_patch16_224", None).to(dev), build("deit_tiny_patch16_224", None).to(dev)
    x8 = torch.randn(8, 3, 224, 224, device=dev)
    ta, tb = alternate(inference_fn(kan, x8), inference_fn(deit, x8), dev, args.reps)
    rows.append(("mlp_kan_tiny vs deit_tiny: inference, batch 8, 224²", f"{ta * 1e3:.0f} ms", f"{tb * 1e3:.0f} ms",
                 f"{ta / tb:.2f}× DeiT", "≤ 1.5×"))
    x4 = torch.randn(4, 3, 224, 224, device=dev)
    ta, tb = alternate(train_fn(kan, x4, "sgd", "classification"), train_fn(deit, x4, "sgd", "classification"), dev,
                       args.reps)
    rows.append(("mlp_kan_tiny vs deit_tiny: SGD step, batch 4, 224²", f"{ta * 1e3:.0f} ms", f"{tb * 1e3:.0f} ms",
                 f"{ta / tb:.2f}× DeiT", "≤ 1.5×"))
    one = torch.randn(1, 3, 224, 224, device=dev)
    fa, fb = count_flops(kan, one), count_flops(deit, one)
    rows.append(("FLOPs (FlopCounterMode, batch 1, 224²)", f"{fa / 1e9:.2f} G", f"{fb / 1e9:.2f} G",
                 f"{fa / fb:.2f}×", "-"))
    counts = kan.parameter_counts()
    rows.append(("parameters (mlp_kan_tiny: total / active per token)",
                 f"{counts['total'] / 1e6:.2f} M / {counts['active'] / 1e6:.2f} M",
                 f"{sum(q.numel() for q in deit.parameters()) / 1e6:.2f} M", "-", "-"))
    return rows


def ukan_rows(dev: torch.device, args) -> List[Tuple[str, str, str, str, str]]:
    rows = []
    if args.reference:
        ours, ref = build("ukan_small", None).to(dev), build("reference_ukan", args.reference).to(dev)
        ours.load_state_dict(_reference_to_kanzoo(ref.state_dict()))
        x = torch.randn(args.ukan_batch, 3, args.ukan_size, args.ukan_size, device=dev)
        with torch.no_grad():
            diff = (ours.eval()(x) - ref.eval()(x)).abs().max().item()
        side = f"batch {args.ukan_batch}, {args.ukan_size}²"
        ta, tb = alternate(inference_fn(ours, x), inference_fn(ref, x), dev, args.reps)
        rows.append((f"ukan_small vs U-KAN: inference, {side}", f"{ta * 1e3:.0f} ms", f"{tb * 1e3:.0f} ms",
                     f"{tb / ta:.2f}× faster", "≥ 1.5×"))
        ta, tb = alternate(train_fn(ours, x, "adam", "segmentation"), train_fn(ref, x, "adam", "segmentation"), dev,
                           args.reps)
        rows.append((f"ukan_small vs U-KAN: Adam step, {side}", f"{ta * 1e3:.0f} ms", f"{tb * 1e3:.0f} ms",
                     f"{tb / ta:.2f}× faster", "≥ 1.5×"))
        if not args.skip_memory:
            ma, mb = memory_in_subprocess("ukan_small", args), memory_in_subprocess("reference_ukan", args)
            what = "peak allocated" if dev.type == "cuda" else "peak RSS growth"
            rows.append((f"ukan_small vs U-KAN: Adam step {what}", f"{ma / 2**20:.0f} MiB", f"{mb / 2**20:.0f} MiB",
                         f"{ma / mb:.2f}× U-KAN", "≤ 0.7×"))
        one = torch.randn(1, 3, args.ukan_size, args.ukan_size, device=dev)
        fa, fb = count_flops(ours, one), count_flops(ref, one)
        rows.append((f"FLOPs (FlopCounterMode, batch 1, {args.ukan_size}²)", f"{fa / 1e9:.2f} G", f"{fb / 1e9:.2f} G",
                     f"{fa / fb:.2f}×", "-"))
        rows.append(("same weights: max |kanzoo - reference| logits", f"{diff:.1e}", "", "", ""))
    else:
        rows.append(("ukan_small vs U-KAN", "skipped: give --reference PATH (a U-KAN checkout)", "", "", ""))
    return rows


def print_table(rows: List[Tuple[str, str, str, str, str]]) -> None:
    header = ("benchmark", "kanzoo", "reference", "ratio", "target")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(5)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.2f} at the end. FlopCounterMode counts convolutions, matmuls and attention only: "
          f"neither count includes the elementwise work (the B-spline/RSWAF bases, norms, activations, softmax), "
          f"pooling, interpolation, or MLP-KAN's routing gathers; MLP-KAN's count is that of the routes taken.")


def _reference_to_kanzoo(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    from kanzoo.compat.ukan import convert_ukan_state
    return convert_ukan_state(state)


if __name__ == "__main__":
    sys.exit(main())
