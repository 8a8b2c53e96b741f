"""Exported models in onnxruntime against PyTorch eager: latency, and what int8 costs in accuracy.

1. Latency (median of ``--repeat`` runs after warm-up, same thread count for both runtimes) at batch 1 and 8
   for ``vgg_kagn_bn11_v4`` (3×224×224, the published architecture, random weights) and a tiny model
   (``simple_conv_kagn`` at width 1/4, 3×32×32). The models are exported with :func:`kanzoo.export.to_onnx`
   (verified, dynamic batch); the int8 column is the same file after ``quantize='dynamic'``.
2. int8 on real data: ``simple_conv_kagn`` (width 1/4, 1 channel, 10 classes) trained on scikit-learn's
   digits upscaled to 16×16 the way ``benchmarks/peft.py`` trains its digits model (Adam 2e-3, cosine
   decay, batch 64, inputs standardised with the training set's mean/std), 70/30 stratified split; then the
   test accuracy of PyTorch, the ONNX float model, ``quantize='dynamic'`` and ``quantize='static'``
   (calibrated on 200 training images written as PNG files), and the file sizes.
3. ``--zoo``: every registered model, small (width 1/8, a small input), exported to every format (.pt2 with a
   fixed height/width); one line per model (slow: tens of minutes on 2 cores).

    python benchmarks/export.py                 # tables 1 and 2 (a few minutes on 2 cores)
    python benchmarks/export.py --threads 4 --repeat 50
    python benchmarks/export.py --zoo

This prints tables; it is not a test.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import kanzoo  # noqa: E402
from kanzoo.export import onnx_session, to_onnx, to_pt2, to_torchscript  # noqa: E402

LATENCY_MODELS = {
    "vgg_kagn_bn11_v4": (dict(), (3, 224, 224)),
    "simple_conv_kagn": (dict(width_scale=0.25), (3, 32, 32)),
}


def median_ms(fn: Callable[[], object], warmup: int, repeat: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def latency_table(threads: int, repeat: int, workdir: Path) -> List[str]:
    rows = [f"{'model':<18} {'input':<11} {'batch':>5} {'eager ms':>9} {'ORT ms':>8} {'speedup':>8} "
            f"{'ORT int8 ms':>11} {'int8 speedup':>12}"]
    rows.append("-" * len(rows[0]))
    for name, (kwargs, size) in LATENCY_MODELS.items():
        torch.manual_seed(0)
        model = kanzoo.create_model(name, **kwargs).eval()
        path = workdir / f"{name}.onnx"
        report = to_onnx(model, path, input_size=size, quantize="dynamic", verbose=False)
        sess = onnx_session(path, threads=threads)
        sess_q = onnx_session(report.quantized.path, threads=threads)
        for batch in (1, 8):
            x = torch.randn(batch, *size, generator=torch.Generator().manual_seed(batch))
            xn = x.numpy()
            with torch.no_grad():
                eager = median_ms(lambda: model(x), 3, repeat)
            ort = median_ms(lambda: sess.run(None, {"input": xn}), 3, repeat)
            ort_q = median_ms(lambda: sess_q.run(None, {"input": xn}), 3, repeat)
            rows.append(f"{name:<18} {'x'.join(map(str, size)):<11} {batch:>5} {eager:>9.2f} {ort:>8.2f} "
                        f"{eager / ort:>7.2f}x {ort_q:>11.2f} {eager / ort_q:>11.2f}x")
    return rows


# ------------------------------------------------------------------------------------------------ digits
def load_digits_split(size: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(digits.target)
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y.numpy(), random_state=0)
    return x, y, tr, te


def train(model, x, y, epochs: int, lr: float = 2e-3, batch: int = 64, seed: int = 0) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    steps = epochs * -(-len(x) // batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(batch):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            schedule.step()
    return time.perf_counter() - start


def digits_table(epochs: int, size: int, workdir: Path) -> List[str]:
    from PIL import Image

    x, y, tr, te = load_digits_split(size)
    mean, std = float(x[tr].mean()), float(x[tr].std())
    norm = lambda t: (t - mean) / std  # noqa: E731
    torch.manual_seed(0)
    model = kanzoo.create_model("simple_conv_kagn", in_chans=1, num_classes=10, width_scale=0.25)
    seconds = train(model, norm(x[tr]), y[tr], epochs)
    model.eval()
    xt, yt = norm(x[te]), y[te].numpy()
    with torch.no_grad():
        torch_acc = 100 * float((model(xt).argmax(1).numpy() == yt).mean())
    calib = workdir / "calibration"
    calib.mkdir(exist_ok=True)
    for i in tr[:200]:
        Image.fromarray((x[i, 0].numpy() * 255).round().astype(np.uint8), mode="L").save(calib / f"{i}.png")
    # the stored preprocessing reproduces the training inputs from 8-bit images: /255, then standardise
    data = dict(mean=(mean,), std=(std,), crop_pct=1.0, interpolation="bilinear")
    rows = [f"simple_conv_kagn (width 0.25, {sum(p.numel() for p in model.parameters()):,} params) trained "
            f"{epochs} epochs on digits at {size}x{size} in {seconds:.0f} s; test split {len(te)} images",
            f"{'model':<26} {'file bytes':>11} {'size':>6} {'test acc %':>10} {'change':>7} {'agree w/ float':>14}"]
    rows.append("-" * len(rows[1]))
    rows.append(f"{'PyTorch eager':<26} {'':>11} {'':>6} {torch_acc:>10.2f}")
    float_pred = None
    for mode in ("none", "dynamic", "static"):
        q = None if mode == "none" else mode
        report = to_onnx(model, workdir / f"digits_{mode}.onnx", input_size=(1, size, size), data_config=data,
                         quantize=q, calibration_dir=calib if mode == "static" else None, verbose=False)
        r = report if q is None else report.quantized
        pred = onnx_session(r.path).run(None, {"input": xt.numpy()})[0].argmax(1)
        float_pred = pred if q is None else float_pred
        acc = 100 * float((pred == yt).mean())
        agree = 100 * float((pred == float_pred).mean())
        label = "ONNX float32" if q is None else f"ONNX int8 {mode}"
        rel = r.size_bytes / report.size_bytes
        rows.append(f"{label:<26} {r.size_bytes:>11,} {rel:>5.2f}x {acc:>10.2f} {acc - torch_acc:>+7.2f} "
                    f"{agree:>13.1f}%")
    return rows


# ------------------------------------------------------------------------------------------------ zoo
def zoo_table(workdir: Path) -> List[str]:
    """Every registered model at width 1/8 and a small input, exported to ONNX, TorchScript and .pt2."""
    from kanzoo.layers.selectable import prune_model, select_model, selectable_layers

    rows = [f"{'model':<30} {'input':<10} {'onnx':>9} {'torchscript':>11} {'pt2':>9}  notes"]
    print(rows[0], flush=True)
    for name in kanzoo.list_models():
        torch.manual_seed(0)
        try:
            model = kanzoo.create_model(name, width_scale=0.125).eval()
        except TypeError:
            model = kanzoo.create_model(name).eval()
        if selectable_layers(model):
            select_model(model, top_k=1)
            prune_model(model)
        cfg = model.pretrained_cfg
        c, h, w = cfg["input_size"]
        c = getattr(model, "in_chans", c)
        if not cfg.get("fixed_input_size"):
            r = max(1, h // (cfg.get("pool_size") or (h, w))[0])
            side = max(32, (cfg.get("min_input_size") or (c, 1, 1))[1], 2 * r)
            h = w = r * math.ceil(side / r)
        cells, notes = [], []
        # .pt2 at a fixed height/width: torch.export's reasoning about dynamic sizes costs up to 20 s a model
        for fn, kw in ((to_onnx, {}), (to_torchscript, dict(method="auto")), (to_pt2, dict(dynamic_spatial=False))):
            path = workdir / f"{name}.{fn.__name__}.pt2"
            try:
                r = fn(model, path, input_size=(c, h, w), verbose=False, **kw)
                cells.append(f"{r.max_abs_diff / max(r.output_scale, 1e-12):.1e}")
                notes += [n.split(";")[0][:60] for n in r.notes]
                path.unlink()
            except Exception as e:  # noqa: BLE001  (report and go on)
                cells.append("FAIL")
                notes.append(f"{fn.__name__}: {str(e).splitlines()[0][:100]}")
        rows.append(f"{name:<30} {f'{c}x{h}x{w}':<10} {cells[0]:>9} {cells[1]:>11} {cells[2]:>9}  "
                    f"{'; '.join(dict.fromkeys(notes))}")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and onnxruntime (default 2)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per cell (default 20)")
    parser.add_argument("--epochs", type=int, default=20, help="digits training epochs (default 20)")
    parser.add_argument("--size", type=int, default=16, help="digits image side (default 16)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-quant", action="store_true")
    parser.add_argument("--zoo", action="store_true", help="also export every registered model (slow)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger().setLevel(logging.ERROR)   # onnxruntime.quantization logs through the root logger
    import onnxruntime as ort

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads, "
          f"{os.cpu_count()} CPUs, load average at start {load:.1f}")
    with tempfile.TemporaryDirectory(prefix="kanzoo-bench-export-") as tmp:
        work = Path(tmp)
        if not args.skip_latency:
            print("\nLatency, median of", args.repeat, "runs")
            print("\n".join(latency_table(args.threads, args.repeat, work)))
        if not args.skip_quant:
            print("\nint8 quantization on digits")
            print("\n".join(digits_table(args.epochs, args.size, work)))
        if args.zoo:
            print("\nEvery registered model (max |artifact - eager| / output scale)")
            rows = zoo_table(work)
            failed = sum("FAIL" in r for r in rows[1:])
            print(f"{len(rows) - 1} models, {failed} with a failed format")
    if hasattr(os, "getloadavg"):
        print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
