"""Speed and memory of kanzoo's KAN conv layers, measured against plain-conv floors.

Each KAN conv's own **floor** is the one convolution it cannot avoid: a plain Conv2d (same kernel, stride,
padding, groups) over (num_basis + 1 if it has a base branch)·C_in precomputed channels, built from the layer
itself. The targets (issue 19) are forward+backward within 1.5x of that floor for every basis, built with its
defaults, and the B-spline's forward within 2x; the edge-wise wavelet conv has no basis stack and is compared
with torch-conv-kan's WavKAN instead (at least 3x faster forward+backward, with ``--reference``).

The older **limit proxy** is one fixed Conv2d over (degree+1)·C_in precomputed channels plus one
C_in -> C_out Conv2d for the base branch, the same for every layer. Every figure is a ratio measured in the
same process (timings interleaved round by round, medians), so machine speed cancels out.

    python benchmarks/layers.py                                  # 2 threads, float32, CPU
    python benchmarks/layers.py --reference ~/src/torch-conv-kan  # adds the reference layers
    python benchmarks/layers.py --device cuda
    python benchmarks/layers.py --no-memory --layers bspline,relu   # a subset, floors only

Peak training memory is one forward+backward in a fresh process (resident-set growth on CPU, peak
allocated bytes on CUDA), divided by the proxy's. This prints a table; it is not a test.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

POLY = ("gram", "legendre", "chebyshev", "jacobi", "bernstein")

# name -> (kanzoo constructor kwargs, reference class, reference kwargs, target note)
FB_TARGET = "fb/floor<=1.5"
LAYERS = {
    "gram": (dict(basis="gram"), "KAGNConv2DLayer", {}, FB_TARGET),
    "legendre": (dict(basis="legendre"), "KALNConv2DLayer", {}, FB_TARGET),
    "chebyshev": (dict(basis="chebyshev"), "KACNConv2DLayer", {}, FB_TARGET),
    "jacobi": (dict(basis="jacobi"), "KAJNConv2DLayer", {}, FB_TARGET),
    "bernstein": (dict(basis="bernstein"), "KABNConv2DLayer", {}, FB_TARGET),
    "bspline": (dict(basis="bspline"), "KANConv2DLayer", {}, "fwd/floor<=2 " + FB_TARGET),
    "rbf": (dict(basis="rbf"), "FastKANConv2DLayer", {}, FB_TARGET),
    "relu": (dict(basis="relu"), "ReLUKANConv2DLayer", {}, FB_TARGET),
    "rswaf": (dict(basis="rswaf"), None, {}, FB_TARGET),
    "wavelet_basis": (dict(basis="wavelet"), None, {}, FB_TARGET),
    "bspline_compiled": (dict(basis="bspline", compiled=True), "KANConv2DLayer", {}, ""),
    "rbf_compiled": (dict(basis="rbf", compiled=True), "FastKANConv2DLayer", {}, ""),
    "wavelet_edge": (dict(kind="wavelet_edge"), "WavKANConv2DLayer", {}, ">=3x ref fb"),
    "bottleneck_gram": (dict(kind="bottleneck", basis="gram"), "BottleNeckKAGNConv2DLayer", {}, ""),
}
#: layers whose reference takes seconds per step: timed for at most ``--slow-rounds`` rounds
SLOW = ("wavelet_edge",)


def build_kanzoo(name, c_in, c_out, k, degree, device):
    from kanzoo import layers as L
    kw = dict(LAYERS[name][0])
    kind = kw.pop("kind", "kan")
    compiled = kw.pop("compiled", False)
    if kw.get("basis") in POLY:
        kw["degree"] = degree
    if kind == "wavelet_edge":
        return L.WaveletKANConv2d(c_in, c_out, k, padding=k // 2, device=device)
    if kind == "bottleneck":
        return L.BottleneckKANConvNd(c_in, c_out, k, padding=k // 2, device=device, **kw)
    layer = L.KANConvNd(c_in, c_out, k, padding=k // 2, device=device, **kw)
    if compiled:  # torch.compile of the basis function (compiled during the warm-up rounds)
        L.compile_bases(layer)
    return layer


def build_reference(name, c_in, c_out, k, degree, device, ref_path):
    sys.path.insert(0, str(ref_path))
    import kan_convs
    cls_name, extra = LAYERS[name][1], dict(LAYERS[name][2])
    if cls_name is None:
        return None
    if name in POLY or name == "bottleneck_gram":
        extra["degree"] = degree
    return getattr(kan_convs, cls_name)(c_in, c_out, k, padding=k // 2, **extra).to(device)


class Proxy(nn.Module):
    """One conv over (degree+1)·C_in precomputed channels plus one C_in -> C_out conv."""

    def __init__(self, c_in, c_out, k, degree, device):
        super().__init__()
        self.poly = nn.Conv2d((degree + 1) * c_in, c_out, k, padding=k // 2, bias=False, device=device)
        self.base = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False, device=device)

    def forward(self, inputs):
        basis, x = inputs
        return self.poly(basis) + self.base(x)


class Floor(nn.Module):
    """A KAN conv's floor: one plain conv over its stacked (num_basis + base)·C_in channels, precomputed."""

    def __init__(self, layer, device):
        super().__init__()
        self.channels = layer.num_basis + (1 if layer.weight is not None else 0)
        self.conv = nn.Conv2d(self.channels * layer.in_channels, layer.out_channels, layer.kernel_size,
                              stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                              groups=layer.groups, bias=False, device=device)

    def forward(self, stacked):
        return self.conv(stacked)


def floor_of(model, args, device):
    """The floor module and its input for a KAN conv (None for layers without one basis stack)."""
    from kanzoo.layers import KANConvNd
    if not isinstance(model, KANConvNd):
        return None, None
    floor = Floor(model, device)
    g = torch.Generator().manual_seed(0)
    stacked = torch.randn(args.batch, floor.channels * model.in_channels, args.size, args.size, generator=g)
    return floor, stacked.to(device)


def make_inputs(which, args, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.channels, args.size, args.size, generator=g).to(device)
    if which == "proxy":
        basis = torch.randn(args.batch, (args.degree + 1) * args.channels, args.size, args.size, generator=g)
        return (basis.to(device), x)
    return x


def build(which, name, args, device):
    c, k, d = args.channels, args.kernel, args.degree
    if which == "proxy":
        return Proxy(c, c, k, d, device)
    if which == "kanzoo":
        return build_kanzoo(name, c, c, k, d, device)
    return build_reference(name, c, c, k, d, device, args.reference)


def with_grad(inputs):
    if isinstance(inputs, tuple):
        return tuple(t.detach().requires_grad_(True) for t in inputs)
    return inputs.detach().requires_grad_(True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_fns(model, inputs, device):
    def fwd():
        with torch.no_grad():
            model(inputs)
        sync(device)

    def fwd_bwd():
        out = model(with_grad(inputs))
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()
        sync(device)
    return fwd, fwd_bwd


def time_interleaved(fns, rounds, warmup=3):
    """Times each callable once per round, alternating, and returns the median per callable."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_memory_here(which, name, args):
    """One forward+backward in this process; returns the peak memory growth in bytes."""
    device = torch.device(args.device)
    model = build(which, name, args, device).train()
    inputs = with_grad(make_inputs(which, args, device))
    if which == "kanzoo" and LAYERS[name][0].get("compiled"):
        out = model(inputs)  # compile first: measure the compiled kernel, not the compiler
        out.sum().backward()
        model.zero_grad(set_to_none=True)
        inputs = with_grad(make_inputs(which, args, device))
        del out
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = model(inputs)
        (out[0] if isinstance(out, tuple) else out).sum().backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0005)
    th = threading.Thread(target=poll, daemon=True)
    th.start()
    out = model(inputs)
    (out[0] if isinstance(out, tuple) else out).sum().backward()
    peak[0] = max(peak[0], _rss_bytes())
    stop.set()
    th.join()
    return peak[0] - base


def measure_memory(which, name, args):
    cmd = [sys.executable, __file__, "--_memory", f"{which}:{name}", "--threads", str(args.threads),
           "--batch", str(args.batch), "--channels", str(args.channels), "--size", str(args.size),
           "--kernel", str(args.kernel), "--degree", str(args.degree), "--device", args.device]
    if args.reference:
        cmd += ["--reference", str(args.reference)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])["bytes"]


def fmt(v, digits=2):
    return "n/a" if v is None else f"{v:.{digits}f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--degree", type=int, default=3)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--slow-rounds", type=int, default=5, help="rounds for " + ", ".join(SLOW))
    p.add_argument("--device", default="cpu")
    p.add_argument("--reference", type=Path, default=None, help="a torch-conv-kan checkout")
    p.add_argument("--layers", default=",".join(LAYERS), help="comma-separated subset of: " + ",".join(LAYERS))
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--_memory", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args._memory:
        which, name = args._memory.split(":")
        print(json.dumps({"bytes": measure_memory_here(which, name, args)}))
        return
    device = torch.device(args.device)
    names = [n for n in args.layers.split(",") if n]
    unknown = [n for n in names if n not in LAYERS]
    if unknown:
        p.error(f"unknown layers {unknown}; choose from {list(LAYERS)}")

    print(f"# torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, float32, "
          f"batch {args.batch}, {args.channels}->{args.channels} ch, {args.size}x{args.size}, "
          f"kernel {args.kernel}, degree {args.degree}, rounds {args.rounds} (slow layers {args.slow_rounds}), "
          f"KANZOO_BASIS_KERNEL={os.environ.get('KANZOO_BASIS_KERNEL', 'auto')}")
    proxy = build("proxy", None, args, device)
    pf, pfb = step_fns(proxy, make_inputs("proxy", args, device), device)
    for _ in range(5):  # warm the thread pool and the allocator before the first layer's rounds
        pf(), pfb()
    proxy_mem = None if args.no_memory else measure_memory("proxy", "proxy", args)
    cols = ["layer", "floor ch", "fwd/floor", "fb/floor", "fwd/proxy", "fb/proxy", "mem/proxy"]
    if args.reference:
        cols += ["ref fwd/proxy", "ref fb/proxy", "ref mem/proxy", "ref/kanzoo fwd", "ref/kanzoo fb"]
    cols += ["target", "status"]
    widths = [max(len(c), 9) for c in cols]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-|-".join("-" * w for w in widths), flush=True)
    for name in names:
        fns = {"proxy_f": pf, "proxy_fb": pfb}
        model = build("kanzoo", name, args, device)
        fns["k_f"], fns["k_fb"] = step_fns(model, make_inputs("kanzoo", args, device), device)
        floor, stacked = floor_of(model, args, device)
        if floor is not None:
            fns["fl_f"], fns["fl_fb"] = step_fns(floor, stacked, device)
        ref = build("reference", name, args, device) if args.reference else None
        if ref is not None:
            fns["r_f"], fns["r_fb"] = step_fns(ref, make_inputs("reference", args, device), device)
            try:
                fns["r_fb"]()
            except RuntimeError:  # e.g. KABN: the reference cannot backpropagate to its input
                fns.pop("r_fb")
        rounds = min(args.rounds, args.slow_rounds) if name in SLOW else args.rounds
        t = time_interleaved(fns, rounds)
        ratio = {k: (t[a] / t[b] if a in t and b in t else None) for k, (a, b) in dict(
            ffl=("k_f", "fl_f"), fbfl=("k_fb", "fl_fb"), rf=("r_f", "k_f"), rfb=("r_fb", "k_fb")).items()}
        row = [name, f"{floor.channels}xC" if floor is not None else "-", ratio["ffl"], ratio["fbfl"],
               t["k_f"] / t["proxy_f"], t["k_fb"] / t["proxy_fb"]]
        mem = None if args.no_memory else measure_memory("kanzoo", name, args)
        row.append(None if mem is None or not proxy_mem else mem / proxy_mem)
        if args.reference:
            rmem = None if (ref is None or args.no_memory) else measure_memory("reference", name, args)
            row += [t["r_f"] / t["proxy_f"] if "r_f" in t else None,
                    t["r_fb"] / t["proxy_fb"] if "r_fb" in t else None,
                    None if rmem is None or not proxy_mem else rmem / proxy_mem, ratio["rf"], ratio["rfb"]]
        target = LAYERS[name][3]
        row += [target, status(target, ratio)]
        cells = row[:2] + [fmt(v) + ("x" if v is not None else "") for v in row[2:-2]] + row[-2:]
        print(" | ".join(str(c).ljust(w) for c, w in zip(cells, widths)), flush=True)
    print(f"proxy: fwd {t['proxy_f'] * 1e3:.1f} ms, fwd+bwd {t['proxy_fb'] * 1e3:.1f} ms, "
          f"peak train memory {fmt(proxy_mem and proxy_mem / 2**20, 1)} MiB")


def status(target, ratio):
    """'ok', 'OVER' or '' (no target, or nothing measured to check it against)."""
    checks = []
    if "fwd/floor<=2" in target:
        checks.append(ratio["ffl"] is not None and ratio["ffl"] <= 2.0)
    if "fb/floor<=1.5" in target:
        checks.append(ratio["fbfl"] is not None and ratio["fbfl"] <= 1.5)
    if ">=3x ref fb" in target and ratio["rfb"] is not None:
        checks.append(ratio["rfb"] >= 3.0)
    if not checks:
        return ""
    return "ok" if all(checks) else "OVER"


if __name__ == "__main__":
    main()
