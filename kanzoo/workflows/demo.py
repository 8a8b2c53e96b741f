"""``kanzoo demo``: the whole workflow offline on a CPU in a few minutes.

1. data: scikit-learn's bundled digits (1,797 8x8 images) as PNG ImageFolders; task A = digits 0-4,
   task B = digits 5-9, each split 80/20 into train/val;
2. model: a small KAN CNN from the zoo (``simple_conv_kagn`` at a quarter width);
3. train it on task A (:func:`~kanzoo.workflows.train.train`: AdamW, cosine schedule, label smoothing);
4. validate it (:func:`~kanzoo.workflows.validate.validate`);
5. adapt it to task B with basis adapters (``kanzoo.peft``: one extra basis degree and a new head), merge the
   adapters and check the merged model against the adapted one;
6. export the merged model to ONNX and check the export with onnxruntime.

Every step prints one line with what it measured. The runs are ordinary run folders (``--output`` keeps
them), so ``kanzoo predict/validate/push/export`` work on them afterwards.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from .. import peft
from ..errors import WorkflowError
from ..export import to_onnx
from ..profile import count_macs
from .data import ImageFolder, build_transform, data_config_for, make_loader
from .loading import load_model
from .train import TrainConfig, train
from .validate import validate

MODEL = "simple_conv_kagn"
MODEL_KWARGS = {"width_scale": 0.25}
IMG_SIZE = 16
TASK_A, TASK_B = tuple(range(5)), tuple(range(5, 10))
#: the basis adapter of step 5: one extra Gram degree per KAN conv, rank-2 coefficient deltas, a new head
ADAPTER = {"extra_degrees": 1, "rank": 2}


def _step(i: int, n: int, what: str, text: str, seconds: float) -> None:
    print(f"[{i}/{n}] {what:<9} {text}  ({seconds:.1f} s)", flush=True)


def write_digits(root: Path, seed: int = 0, per_class: Optional[int] = None) -> Dict[str, Tuple[int, int]]:
    """scikit-learn's digits as ``root/{a,b}/{train,val}/<digit>/<i>.png`` (8x8 grayscale, 0-255).

    Returns ``{task: (train images, val images)}``. ``per_class`` keeps only that many images per digit.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise WorkflowError("kanzoo demo needs scikit-learn for its data (bundled, no download): "
                            "pip install scikit-learn (or pip install -e '.[dev]')") from None

    digits = load_digits()
    images = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype("uint8")
    rng = np.random.default_rng(seed)
    counts: Dict[str, List[int]] = {"a": [0, 0], "b": [0, 0]}
    for d in range(10):
        task = "a" if d in TASK_A else "b"
        idx = rng.permutation(np.flatnonzero(digits.target == d))
        if per_class:
            idx = idx[:per_class]
        n_val = max(1, int(round(0.2 * len(idx))))
        for split, part in (("val", idx[:n_val]), ("train", idx[n_val:])):
            folder = root / task / split / str(d)
            folder.mkdir(parents=True, exist_ok=True)
            for i in part:
                Image.fromarray(images[i]).save(folder / f"{i:04d}.png")
            counts[task][0 if split == "train" else 1] += len(part)
    return {k: (v[0], v[1]) for k, v in counts.items()}


def _export_onnx(model: torch.nn.Module, path: Path, input_size: Tuple[int, ...],
                 label_names: Optional[List[str]] = None) -> str:
    """Exports ``model`` with ``kanzoo.export.to_onnx`` (which verifies the file against eager before writing
    it); returns a short description of the export."""

    report = to_onnx(model, str(path), input_size=tuple(input_size), label_names=label_names, verbose=False)
    opset = (report.extra or {}).get("opset")
    dims = ", ".join(report.dynamic_dims or ())
    return f"kanzoo.export.to_onnx{', opset ' + str(opset) if opset else ''}{', dynamic ' + dims if dims else ''}"


def _val_batches(model, folder: Path, batch_size: int = 256):
    """(images, targets) batches of an ImageFolder with the model's eval transform."""

    ds = ImageFolder(folder, transform=build_transform(data_config_for(model), False))
    for x, y, _ in make_loader(ds, batch_size):
        yield x, y


def run_demo(epochs: Optional[int] = None, adapt_epochs: Optional[int] = None, fast: bool = False,
             output: Optional[str] = None, threads: Optional[int] = 1, seed: int = 0) -> int:
    """Runs the six steps, printing one line each; returns 0 when every check passed."""

    t_all = time.perf_counter()
    epochs = epochs or (1 if fast else 8)
    adapt_epochs = adapt_epochs or (1 if fast else 10)
    keep = output is not None
    if keep and Path(output).exists() and any(Path(output).iterdir()):
        raise WorkflowError(f"--output {output!r} is not empty; give a new folder")
    root = Path(output) if keep else Path(tempfile.mkdtemp(prefix="kanzoo-demo-"))
    # one thread by default: the tensors are tiny, so intra-op threads gain little, and on cores that other
    # processes also use, every parallel region can stall for a time slice (measured: 35 s with 1 thread vs
    # 10 min with 2 on two busy cores)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads or 1)
    n = 6
    print(f"kanzoo demo: offline, {torch.get_num_threads()} CPU thread(s), torch {torch.__version__}; "
          f"{'runs in ' + str(root) if keep else 'temporary folder (keep it with --output DIR)'}", flush=True)
    ok = True
    try:
        # 1. data
        t0 = time.perf_counter()
        counts = write_digits(root / "data", seed=seed, per_class=40 if fast else None)
        _step(1, n, "data", f"scikit-learn digits as PNG ImageFolders: task A = digits 0-4 "
              f"({counts['a'][0]} train / {counts['a'][1]} val), task B = digits 5-9 ({counts['b'][0]} / "
              f"{counts['b'][1]}); 8x8 upscaled to {IMG_SIZE}x{IMG_SIZE} by timm transforms",
              time.perf_counter() - t0)

        # 2. model
        t0 = time.perf_counter()
        probe = load_model(MODEL, model_kwargs=dict(MODEL_KWARGS, num_classes=len(TASK_A))).model
        params = sum(p.numel() for p in probe.parameters())
        macs = count_macs(load_model(MODEL, model_kwargs=dict(MODEL_KWARGS, num_classes=5), device="meta").model,
                          (3, IMG_SIZE, IMG_SIZE))[0]
        widths = [s.out_channels for s in probe.stages]
        _step(2, n, "model", f"{MODEL} (Gram-basis KAN convs, degree 3, widths {widths}): {params:,} parameters, "
              f"{macs / 1e6:.2f} MMACs per {IMG_SIZE}x{IMG_SIZE} image", time.perf_counter() - t0)
        del probe

        aug = dict(scale=(0.8, 1.0), ratio=(0.9, 1.1), hflip=0.0, color_jitter=0.0)
        common = dict(img_size=IMG_SIZE, batch_size=32, workers=0, seed=seed, progress=False, quiet=True,
                      device="cpu", log_interval=10, **aug)

        # 3. train on task A
        t0 = time.perf_counter()
        run_a = root / "run_a"
        ra = train(TrainConfig(model=MODEL, data=str(root / "data" / "a"), output=str(run_a),
                               model_kwargs=dict(MODEL_KWARGS), epochs=epochs, lr=5e-3, warmup_epochs=0.5,
                               weight_decay=0.05, smoothing=0.1, **common))
        h = ra.history
        _step(3, n, "train", f"task A, {epochs} epoch(s) x {h[-1]['step'] // epochs} steps, AdamW + cosine + label "
              f"smoothing 0.1: train loss {h[0]['train_loss']:.3f} -> {h[-1]['train_loss']:.3f}, val top-1 "
              f"{h[-1]['val_top1']:.1f}%", time.perf_counter() - t0)

        # 4. validate
        t0 = time.perf_counter()
        loaded_a = load_model(MODEL, checkpoint=run_a)
        va = validate(loaded_a, root / "data" / "a" / "val", batch_size=128, workers=0)
        _step(4, n, "validate", f"task A val ({va.images} images) from {run_a.name}/model.safetensors: top-1 "
              f"{va.top1:.2f}%, top-{va.topk} {va.top5:.2f}%, loss {va.loss:.4f}", time.perf_counter() - t0)

        # 5. adapt to task B with basis adapters, merge
        t0 = time.perf_counter()
        run_b = root / "run_b"
        rb = train(TrainConfig(model=MODEL, data=str(root / "data" / "b"), output=str(run_b), checkpoint=str(run_a),
                               peft=dict(ADAPTER), epochs=adapt_epochs, lr=1e-2, warmup_epochs=0.5,
                               weight_decay=0.0, smoothing=0.1, **common))
        merged = load_model(MODEL, checkpoint=run_b).model
        adapted = _adapted(run_a, run_b)
        diff, correct, total = 0.0, 0, 0
        with torch.no_grad():
            for x, y in _val_batches(merged, root / "data" / "b" / "val"):
                m_out, a_out = merged(x), adapted(x)
                diff = max(diff, (m_out - a_out).abs().max().item())
                correct += (m_out.argmax(-1) == y).sum().item()
                total += len(y)
        degree = merged.stages[0].num_basis - 1
        ok &= diff < 1e-4
        _step(5, n, "adapt", f"task B (new classes 5-9) with basis adapters (+1 degree, rank-2 deltas, new head): "
              f"{rb.trainable_params:,} of {rb.params:,} parameters trained "
              f"({100 * rb.trainable_params / rb.params:.1f}%), "
              f"{adapt_epochs} epoch(s): val top-1 {100 * correct / total:.1f}%; merged to degree {degree}: "
              f"max |merged - adapted| = {diff:.1e}{'' if diff < 1e-4 else ' (TOO LARGE)'}", time.perf_counter() - t0)

        # 6. export to ONNX, check with onnxruntime
        t0 = time.perf_counter()
        onnx_path = root / "run_b" / "model.onnx"
        how = _export_onnx(merged, onnx_path, (3, IMG_SIZE, IMG_SIZE), load_model(MODEL, checkpoint=run_b).label_names)
        import onnxruntime as ort
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        diff, correct, total = 0.0, 0, 0
        with torch.no_grad():
            for x, y in _val_batches(merged, root / "data" / "b" / "val"):
                out = torch.from_numpy(sess.run(None, {name: x.numpy()})[0])
                diff = max(diff, (out - merged(x)).abs().max().item())
                correct += (out.argmax(-1) == y).sum().item()
                total += len(y)
        ok &= diff < 1e-4
        _step(6, n, "export", f"ONNX ({how}, {onnx_path.stat().st_size / 1e6:.2f} MB) run by onnxruntime "
              f"{ort.__version__}: max |onnxruntime - torch| = {diff:.1e}{'' if diff < 1e-4 else ' (TOO LARGE)'}, "
              f"top-1 {100 * correct / total:.1f}% on task B val", time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads_before)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    total_s = time.perf_counter() - t_all
    if ok:
        print(f"done in {total_s:.0f} s: every check passed" +
              (f"; try `kanzoo predict {MODEL} {root}/data/b/val/7/*.png --checkpoint {root}/run_b`" if keep else ""),
              flush=True)
        return 0
    print(f"kanzoo demo: a check failed (see the lines above), {total_s:.0f} s", file=sys.stderr, flush=True)
    return 1


def _adapted(run_a: Path, run_b: Path) -> torch.nn.Module:
    """Task A's model with task B's adapter loaded but not merged (the model the adapter was trained as)."""

    base = load_model(MODEL, checkpoint=run_a).model
    return peft.PeftModel.from_pretrained(base, run_b).eval()
