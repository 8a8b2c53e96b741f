"""GPU benchmark at real sizes (issue 19, item 4): kanzoo's KAN models against their MLP/conv counterparts, and
every basis's KAN conv against its floor. Writes a table (markdown and JSON); not a test.

    python benchmarks/gpu.py --device cuda                                   # bf16 autocast, eager and compiled
    python benchmarks/gpu.py --device cuda --reference-ukan ~/src/U-KAN      # adds ukan_small vs the reference
    python benchmarks/gpu.py --device cpu --batch-infer 2 --batch-train 2 --img-size 32 --no-compile --rounds 1

Rows, each eager and ``torch.compile``-d (``--no-compile``: eager only):

* model pairs, kanzoo first: ``kat_tiny_patch16_224`` vs timm's ``vit_tiny_patch16_224``,
  ``mlp_kan_tiny_patch16_224`` vs ``deit_tiny_patch16_224``, ``vgg_kagn_bn11_v4`` vs ``vgg11_bn`` (inference at
  ``--batch-infer``, one AdamW train step, forward + loss + backward + step, at ``--batch-train``, 224²), and
  ``ukan_small`` vs the reference U-KAN (``Seg_UKAN/archs.py`` of a CUHK-AIM-Group/U-KAN checkout given with
  ``--reference-ukan``; batch ``--ukan-batch`` at 256², both phases; the row is omitted without it). Figures:
  images/s of each side, the ratio kanzoo/baseline of images/s (> 1: kanzoo faster), and the peak memory of
  one call above what was allocated before it (activations, gradients; CUDA only, ``n/a`` on CPU).
* every basis's ``KANConvNd(64, 64, 3, padding=1, basis=name)`` (defaults) against its floor: one plain
  ``Conv2d`` over (num_basis + 1 if the layer has a base branch)·64 precomputed channels -> 64, the convolution
  any KAN conv of that basis must at least do. Figures: ms of forward and of forward+backward, and the ratio
  KAN/floor of times (the floor is 1; lower is better).
* KAT's ``GroupRational`` (8 groups, swish) on [``--batch-train``, 197, 768] activations, the hand-written
  Triton kernel (``kernel="triton"``) against the compiled (inductor) kernel that "auto" picks: ms of forward
  and of forward+backward (coefficient gradients included) under autocast, and the ratio triton/compiled
  (< 1: Triton faster). CUDA only (the Triton kernel runs CPU tensors only under its interpreter).

The two sides of a row run alternately round by round after a warm-up (which compiles), and the median of
``--rounds`` rounds is reported, so load changes hit both sides. On CUDA the forward runs under bf16 autocast
(``--dtype``; float32 on CPU by default). A side that runs out of memory reads ``OOM``.
"""
from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

#: key -> (kanzoo model, baseline model, task)
PAIRS = {
    "kat": ("kat_tiny_patch16_224", "vit_tiny_patch16_224", "classification"),
    "mlpkan": ("mlp_kan_tiny_patch16_224", "deit_tiny_patch16_224", "classification"),
    "ukan": ("ukan_small", "reference_ukan", "segmentation"),
    "vgg": ("vgg_kagn_bn11_v4", "vgg11_bn", "classification"),
}
VIT_LIKE = ("kat_", "vit_", "mlp_kan_", "deit_")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gpu_slug(device: torch.device) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``h100``: the results folder of this device."""
    if device.type != "cuda":
        return device.type
    words = [w for w in torch.cuda.get_device_name(device).split() if w.lower() not in ("nvidia", "tesla")]
    return re.sub(r"[^a-z0-9]+", "-", (words or ["gpu"])[0].lower()).strip("-") or "gpu"


# ------------------------------------------------------------------------------------------------ building
def build_model(name: str, img_size: int, reference_ukan: Optional[str]) -> nn.Module:
    import timm

    import kanzoo
    torch.manual_seed(0)
    kw = dict(img_size=img_size) if name.startswith(VIT_LIKE) and img_size != 224 else {}
    if name == "reference_ukan":
        from benchmarks.seeds import build_reference_ukan
        return build_reference_ukan(reference_ukan)
    if name in kanzoo.list_models():
        return kanzoo.create_model(name, **kw)
    return timm.create_model(name, **kw)


def floor_channels(layer: nn.Module) -> int:
    """(num_basis + 1 if the layer has a base branch): the floor conv's input channels per input channel."""
    return layer.basis.num_basis + (1 if getattr(layer, "weight", None) is not None else 0)


# ------------------------------------------------------------------------------------------------ steps
class Bench:
    def __init__(self, device: torch.device, dtype: torch.dtype, compile_: bool):
        self.device, self.dtype, self.compile = device, dtype, compile_

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def wrap(self, module: nn.Module) -> Callable:
        return torch.compile(module) if self.compile else module

    def infer(self, model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
        fn = self.wrap(model.eval())

        def run():
            with torch.no_grad(), self.autocast():
                fn(x)
        return run

    def train(self, model: nn.Module, x: torch.Tensor, task: str) -> Callable[[], None]:
        fn = self.wrap(model.train())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        target: Dict[str, torch.Tensor] = {}
        g = torch.Generator().manual_seed(0)

        def loss_of(out: torch.Tensor) -> torch.Tensor:
            if "t" not in target:  # fixed per side, from the first output's shape
                if task == "segmentation":
                    target["t"] = (torch.rand(out.shape, generator=g) > 0.5).float().to(out.device)
                else:
                    target["t"] = torch.randint(0, out.shape[1], (out.shape[0],), generator=g).to(out.device)
            if task == "segmentation":
                return F.binary_cross_entropy_with_logits(out.float(), target["t"])
            return F.cross_entropy(out.float(), target["t"])

        def run():
            opt.zero_grad(set_to_none=True)
            with self.autocast():
                loss = loss_of(fn(x))
            loss.backward()
            opt.step()
        return run

    def layer_fns(self, layer: nn.Module, x: torch.Tensor) -> Tuple[Callable[[], None], Callable[[], None]]:
        fn = self.wrap(layer.train())
        xg = x.detach().clone().requires_grad_(True)

        def fwd():
            with torch.no_grad(), self.autocast():
                fn(x)

        def fwd_bwd():
            layer.zero_grad(set_to_none=True)
            xg.grad = None
            with self.autocast():
                out = fn(xg)
            out.float().sum().backward()
        return fwd, fwd_bwd


def alternate(fns: Dict[str, Callable[[], None]], device: torch.device, rounds: int,
              warmup: int) -> Dict[str, float]:
    """Median seconds per callable, run alternately round by round after ``warmup`` calls each."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    sync(device)
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            sync(device)
            t0 = time.perf_counter()
            f()
            sync(device)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def peak_mib(fn: Callable[[], None], device: torch.device) -> Optional[float]:
    """Peak allocated memory of one call above what was allocated before it (CUDA), else None."""
    if device.type != "cuda":
        return None
    sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


# ------------------------------------------------------------------------------------------------ rows
def measure_pair(key: str, bench: Bench, args) -> List[dict]:
    """Inference and train rows of one model pair in the current mode."""
    kan_name, base_name, task = PAIRS[key]
    dev = bench.device
    size = 256 if key == "ukan" and args.img_size is None else (args.img_size or 224)
    b_inf, b_tr = (args.ukan_batch, args.ukan_batch) if key == "ukan" else (args.batch_infer, args.batch_train)
    mode = "compiled" if bench.compile else "eager"
    rows = []
    models = {"kan": build_model(kan_name, size, args.reference_ukan).to(dev),
              "base": build_model(base_name, size, args.reference_ukan).to(dev)}
    g = torch.Generator().manual_seed(0)
    for phase, batch in (("infer", b_inf), ("train", b_tr)):
        row = dict(group="models", pair=key, kan=kan_name, baseline=base_name, mode=mode, phase=phase,
                   batch=batch, img_size=size)
        x = torch.randn(batch, 3, size, size, generator=g).to(dev)
        try:
            fns = {side: (bench.infer(m, x) if phase == "infer" else bench.train(m, x, task))
                   for side, m in models.items()}
            t = alternate(fns, dev, args.rounds, args.warmup)
            row.update(kan_img_s=batch / t["kan"], base_img_s=batch / t["base"], ratio=t["base"] / t["kan"],
                       kan_peak_mib=peak_mib(fns["kan"], dev), base_peak_mib=peak_mib(fns["base"], dev))
        except Exception as e:  # noqa: BLE001  (one row's failure is reported, the others still run)
            row["error"] = "OOM" if is_oom(e) else f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
        rows.append(row)
        del x
        release(dev)
    del models
    release(dev)
    return rows


def measure_basis(name: str, bench: Bench, args) -> List[dict]:
    """Forward and forward+backward rows of one basis's KAN conv against its floor, in the current mode."""
    from kanzoo.layers import KANConvNd
    dev = bench.device
    mode = "compiled" if bench.compile else "eager"
    c, s, b = args.conv_channels, args.conv_size, args.conv_batch
    torch.manual_seed(0)
    layer = KANConvNd(c, c, 3, padding=1, basis=name).to(dev)
    per = floor_channels(layer)
    floor = nn.Conv2d(per * c, c, 3, padding=1, bias=False).to(dev)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, c, s, s, generator=g).to(dev)
    xf = torch.randn(b, per * c, s, s, generator=g).to(dev)
    rows = []
    try:
        kan_f, kan_fb = bench.layer_fns(layer, x)
        floor_f, floor_fb = bench.layer_fns(floor, xf)
        for phase, fk, ff in (("fwd", kan_f, floor_f), ("fwd+bwd", kan_fb, floor_fb)):
            t = alternate({"kan": fk, "floor": ff}, dev, args.rounds, args.warmup)
            rows.append(dict(group="conv", basis=name, floor_in=per * c, mode=mode, phase=phase, batch=b,
                             size=s, kan_ms=t["kan"] * 1e3, floor_ms=t["floor"] * 1e3, ratio=t["kan"] / t["floor"],
                             kan_peak_mib=peak_mib(fk, dev), floor_peak_mib=peak_mib(ff, dev)))
    except Exception as e:  # noqa: BLE001
        err = "OOM" if is_oom(e) else f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
        rows.append(dict(group="conv", basis=name, floor_in=per * c, mode=mode, phase="fwd", batch=b, size=s,
                         error=err))
    del layer, floor, x, xf
    release(dev)
    return rows


def measure_rational(bench: Bench, args) -> List[dict]:
    """Forward and forward+backward rows of GroupRational: the Triton kernel against the compiled one."""
    from kanzoo.layers import GroupRational
    dev = bench.device
    shape = (args.batch_train, 197, 768)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(dev, bench.dtype)
    layers = {k: GroupRational(8, "swish", kernel=k).to(dev) for k in ("triton", "compiled")}
    plain = Bench(dev, bench.dtype, False)  # the kernels are the thing measured: no outer compile
    rows = []
    try:
        fns = {k: plain.layer_fns(m, x) for k, m in layers.items()}
        for i, phase in enumerate(("fwd", "fwd+bwd")):
            t = alternate({k: f[i] for k, f in fns.items()}, dev, args.rounds, args.warmup)
            rows.append(dict(group="rational", shape=list(shape), phase=phase, triton_ms=t["triton"] * 1e3,
                             compiled_ms=t["compiled"] * 1e3, ratio=t["triton"] / t["compiled"],
                             triton_peak_mib=peak_mib(fns["triton"][i], dev),
                             compiled_peak_mib=peak_mib(fns["compiled"][i], dev)))
    except Exception as e:  # noqa: BLE001
        err = "OOM" if is_oom(e) else f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
        rows.append(dict(group="rational", shape=list(shape), phase="fwd", error=err))
    del layers, x
    release(dev)
    return rows


# ------------------------------------------------------------------------------------------------ output
def _f(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def markdown(meta: dict, rows: List[dict], notes: List[str]) -> str:
    out = [f"# benchmarks/gpu.py on {meta['device_name']}", "",
           f"torch {meta['torch']}, {meta['dtype']}{' autocast' if meta['dtype'] != 'float32' else ''}, "
           f"{meta['rounds']} rounds (median), load average {meta['load_start']} at start, "
           f"{meta['load_end']} at the end.", ""]
    models = [r for r in rows if r["group"] == "models"]
    if models:
        out += ["## Models (images/s; ratio = kanzoo/baseline images/s, > 1: kanzoo faster; peak MiB above the "
                "memory held before the call)", "",
                "| kanzoo | baseline | mode | phase | batch | size | kanzoo img/s | baseline img/s | ratio | "
                "kanzoo peak MiB | baseline peak MiB |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in models:
            if "error" in r:
                out.append(f"| {r['kan']} | {r['baseline']} | {r['mode']} | {r['phase']} | {r['batch']} | "
                           f"{r['img_size']} | {r['error']} | | | | |")
                continue
            out.append(f"| {r['kan']} | {r['baseline']} | {r['mode']} | {r['phase']} | {r['batch']} | "
                       f"{r['img_size']} | {r['kan_img_s']:.1f} | {r['base_img_s']:.1f} | {r['ratio']:.2f} | "
                       f"{_f(r['kan_peak_mib'], '.0f')} | {_f(r['base_peak_mib'], '.0f')} |")
        out.append("")
    convs = [r for r in rows if r["group"] == "conv"]
    if convs:
        r0 = convs[0]
        out += [f"## KAN conv vs its floor (KANConvNd(C, C, 3, padding=1) at C = {meta['conv_channels']}, batch "
                f"{r0['batch']}, {r0['size']}²; floor: one Conv2d over floor_in channels; ratio = KAN/floor time)",
                "", "| basis | floor_in | mode | phase | KAN ms | floor ms | ratio | KAN peak MiB | floor peak MiB |",
                "|---|---:|---|---|---:|---:|---:|---:|---:|"]
        for r in convs:
            if "error" in r:
                out.append(f"| {r['basis']} | {r['floor_in']} | {r['mode']} | {r['phase']} | {r['error']} | | | | |")
                continue
            out.append(f"| {r['basis']} | {r['floor_in']} | {r['mode']} | {r['phase']} | {r['kan_ms']:.2f} | "
                       f"{r['floor_ms']:.2f} | {r['ratio']:.2f} | {_f(r['kan_peak_mib'], '.0f')} | "
                       f"{_f(r['floor_peak_mib'], '.0f')} |")
        out.append("")
    rational = [r for r in rows if r["group"] == "rational"]
    if rational:
        out += [f"## GroupRational (8 groups) on {rational[0]['shape']}: Triton kernel vs compiled (inductor) kernel "
                f"(ratio = triton/compiled time, < 1: Triton faster)", "",
                "| phase | triton ms | compiled ms | ratio | triton peak MiB | compiled peak MiB |",
                "|---|---:|---:|---:|---:|---:|"]
        for r in rational:
            if "error" in r:
                out.append(f"| {r['phase']} | {r['error']} | | | | |")
                continue
            out.append(f"| {r['phase']} | {r['triton_ms']:.3f} | {r['compiled_ms']:.3f} | {r['ratio']:.2f} | "
                       f"{_f(r['triton_peak_mib'], '.0f')} | {_f(r['compiled_peak_mib'], '.0f')} |")
        out.append("")
    out += [f"- {n}" for n in notes]
    return "\n".join(out).rstrip() + "\n"


def parse_args(argv=None):
    from kanzoo.layers import list_bases
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), help="autocast dtype (default: bfloat16 on cuda, float32 on cpu)")
    p.add_argument("--batch-infer", type=int, default=256)
    p.add_argument("--batch-train", type=int, default=128)
    p.add_argument("--ukan-batch", type=int, default=16, help="U-KAN batch, both phases")
    p.add_argument("--img-size", type=int, help="image size of every model (default 224; U-KAN 256)")
    p.add_argument("--models", nargs="*", default=list(PAIRS), choices=list(PAIRS), metavar="PAIR",
                   help=f"model pairs to run, of {list(PAIRS)} (none: no model rows)")
    p.add_argument("--bases", nargs="*", default=None, metavar="BASIS",
                   help="bases whose KAN conv to run (default: every registered basis; none: no conv rows)")
    p.add_argument("--conv-batch", type=int, default=64)
    p.add_argument("--conv-size", type=int, default=56)
    p.add_argument("--conv-channels", type=int, default=64)
    p.add_argument("--reference-ukan", metavar="PATH", help="a CUHK-AIM-Group/U-KAN checkout (the U-KAN rows)")
    p.add_argument("--no-compile", action="store_true", help="eager rows only")
    p.add_argument("--no-rational", action="store_true", help="skip GroupRational Triton vs compiled (CUDA)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    p.add_argument("--out", help="folder for gpu.md and gpu.json (default: benchmarks/results/<device>/)")
    args = p.parse_args(argv)
    known = list_bases()
    args.bases = known if args.bases is None else args.bases
    for b in args.bases:
        if b not in known:
            p.error(f"--bases {b!r} is not a registered basis; choose from {known}")
    for flag in ("batch_infer", "batch_train", "ukan_batch", "conv_batch", "conv_size", "conv_channels", "rounds"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.device.split(":")[0] == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {args.device!r}: CUDA is not available here; use --device cpu")
    return args


def main(argv=None) -> int:
    from kanzoo.io import atomic_write_text, write_json
    args = parse_args(argv)
    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype or ("bfloat16" if dev.type == "cuda" else "float32")]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    out_dir = Path(args.out) if args.out else REPO / "benchmarks" / "results" / gpu_slug(dev)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, device {dev} ({name}), {str(dtype).replace('torch.', '')}"
          f"{' autocast' if dtype != torch.float32 else ''}, {args.rounds} rounds; load average {load} at start",
          flush=True)
    notes = []
    pairs = list(args.models)
    if "ukan" in pairs and not args.reference_ukan:
        pairs.remove("ukan")
        notes.append("ukan_small vs the reference U-KAN omitted: give --reference-ukan PATH (a U-KAN checkout)")
    if dev.type != "cuda":
        notes.append("peak memory is measured on CUDA only (n/a here)")
        if not args.no_rational:
            notes.append("GroupRational Triton vs compiled omitted: CUDA only")
    rows: List[dict] = []
    meta = dict(device=str(dev), device_name=name, torch=torch.__version__, dtype=str(dtype).replace("torch.", ""),
                rounds=args.rounds, warmup=args.warmup, conv_channels=args.conv_channels, load_start=load,
                argv=list(sys.argv[1:] if argv is None else argv))
    t_start = time.perf_counter()

    def save(what: str) -> str:
        """Writes the table so far (a run cut short keeps what it measured)."""
        meta["load_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
        text = markdown(meta, rows, notes)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "gpu.md", text)
        write_json(out_dir / "gpu.json", dict(meta=meta, rows=rows, notes=notes))
        print(f"  {what} done ({time.perf_counter() - t_start:.0f} s)", flush=True)
        return text

    if dev.type == "cuda" and not args.no_rational:  # first: short, and what decides the Triton kernel's fate
        rows += measure_rational(Bench(dev, dtype, False), args)
        save("GroupRational kernels")
    for compile_ in ((False,) if args.no_compile else (False, True)):
        bench = Bench(dev, dtype, compile_)
        mode = "compiled" if compile_ else "eager"
        for key in pairs:
            rows += measure_pair(key, bench, args)
            save(f"{key} ({mode})")
        for basis in args.bases:
            rows += measure_basis(basis, bench, args)
        if args.bases:
            save(f"KAN convs ({mode})")
    text = save("all")
    print(text)
    print(f"wrote {out_dir / 'gpu.md'} and {out_dir / 'gpu.json'}")
    failed = [r for r in rows if r.get("error") not in (None, "OOM")]
    for r in failed:
        print(f"error in {r.get('pair') or r.get('basis') or r['group']} ({r.get('mode', '')}, {r['phase']}): "
              f"{r['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
