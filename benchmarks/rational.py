"""Speed and memory of kanzoo's group-rational activation (GR-KAN, KAT: arXiv 2409.10594) and of the KAT models.

Every figure is a ratio to a baseline measured in the same process, timings interleaved round by round and the
fastest round kept, so machine speed and other processes' load cancel out:

* ``GroupRational`` (8 groups, swish init) against ``F.gelu`` on [8, 197, 768]: forward, and forward+backward
  with the coefficient gradients;
* ``kat_tiny_patch16_224`` against timm's ``vit_tiny_patch16_224``: inference at batch 8 on 224², and one SGD
  train step (forward, cross-entropy, backward, step) at batch 4; wall time (best round, and the median of the
  ratios within a round) and the process's CPU time, which a busy machine inflates less;
* the first call (compile included) in a fresh process with an empty inductor cache, and again with the cache
  that run left behind;
* the peak memory of one train step, in a fresh process (resident-set growth on CPU, peak allocated on CUDA).

    python benchmarks/rational.py                                  # 2 threads, float32, CPU
    python benchmarks/rational.py --reference ~/src/rational_kat_cu  # adds the reference's CPU path (and Triton)
    python benchmarks/rational.py --device cuda

This prints a table; it is not a test.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SHAPE = (8, 197, 768)
TARGETS = {"fwd": 1.5, "fwd_bwd": 3.0, "infer": 1.15, "train": 1.3}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_rounds(fns, rounds, warmup=2, clock=time.perf_counter):
    """Times each callable once per round, alternating; returns {name: [seconds per round]}."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = clock()
            fn()
            times[k].append(clock() - t0)
    return times


def time_interleaved(fns, rounds, warmup=2):
    """The fastest round per callable (other processes only ever add time, so on a shared machine the minimum
    is the steadiest estimate)."""
    return {k: min(v) for k, v in time_rounds(fns, rounds, warmup).items()}


def paired_ratios(times, base):
    """Median over rounds of each callable's time / the baseline's time in the same round."""
    return {k: statistics.median(t / b for t, b in zip(v, times[base])) for k, v in times.items()}


# ------------------------------------------------------------------------------------------------ activations
def load_reference(path, device):
    """{name: module factory} of the reference's activations found in a rational_kat_cu checkout."""
    path = Path(path).expanduser()
    out = {}
    spec = importlib.util.spec_from_file_location("_kat_ref_torch", path / "kat_rational" / "kat_1dgroup_torch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out["reference CPU path (torch)"] = lambda: mod.KAT_Group_Torch(num_groups=8, mode="swish")
    if device.type == "cuda":
        try:
            sys.path.insert(0, str(path))
            from kat_rational import KAT_Group
            out["reference Triton"] = lambda: KAT_Group(num_groups=8, mode="swish")
        except Exception as e:  # noqa: BLE001
            print(f"(reference Triton kernel unavailable: {type(e).__name__}: {e})", file=sys.stderr)
    return out


def activation_fns(device, reference):
    from kanzoo.layers import GroupRational, group_rational

    x = torch.randn(*SHAPE, device=device)
    gy = torch.randn(*SHAPE, device=device)
    xg = x.clone().requires_grad_(True)

    def pair(apply, params):
        def fwd():
            with torch.no_grad():
                apply(x)
            sync(device)

        def fwd_bwd():
            xg.grad = None
            for p in params:
                p.grad = None
            apply(xg).backward(gy)
            sync(device)
        return fwd, fwd_bwd

    rows = {"F.gelu (baseline)": pair(F.gelu, [])}
    for kernel in ("compiled", "eager"):
        m = GroupRational(8, "swish", kernel=kernel).to(device)
        rows[f"GroupRational, {kernel} kernel"] = pair(m, list(m.parameters()))
    m = GroupRational(8, "swish").to(device)
    rows["group_rational formula (autograd)"] = pair(
        lambda t, m=m: group_rational(t, m.weight_numerator, m.weight_denominator, 8), list(m.parameters()))
    for name, factory in (reference or {}).items():
        ref = factory().to(device)
        rows[name] = pair(ref, list(ref.parameters()))
    return rows


# ------------------------------------------------------------------------------------------------ models
def build_model(name, device, kernel=None):
    import timm

    import kanzoo
    torch.manual_seed(0)
    if name.startswith("kat"):
        return kanzoo.create_model(name, rational_kernel=kernel).to(device)
    return timm.create_model(name).to(device)


def model_fns(model, device, infer_batch=8, train_batch=4):
    x_inf = torch.randn(infer_batch, 3, 224, 224, device=device)
    x_tr = torch.randn(train_batch, 3, 224, 224, device=device)
    y_tr = torch.randint(0, 1000, (train_batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def infer():
        model.eval()
        with torch.no_grad():
            model(x_inf)
        sync(device)

    def train():
        model.train()
        loss = F.cross_entropy(model(x_tr), y_tr)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
    return infer, train


# ------------------------------------------------------------------------------------------------ subprocess probes
def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def probe_memory(name, device):
    """Peak memory growth of one train step (batch 4), after a warm-up step (compiles)."""
    model = build_model(name, device)
    _, train = model_fns(model, device)
    train()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        train()
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
    train()
    stop.set()
    th.join()
    return max(peak[0], _rss_bytes()) - base


def probe_first_call(device):
    """Seconds of the first GroupRational forward+backward on SHAPE and of the first kat_tiny train step, then
    of the second step (compiled)."""
    from kanzoo.layers import GroupRational

    m = GroupRational(8, "swish").to(device)
    x = torch.randn(*SHAPE, device=device, requires_grad=True)
    t0 = time.perf_counter()
    m(x).sum().backward()
    sync(device)
    act = time.perf_counter() - t0
    model = build_model("kat_tiny_patch16_224", device)
    _, train = model_fns(model, device)
    t0 = time.perf_counter()
    train()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    train()
    second = time.perf_counter() - t0
    return {"act_first": act, "train_first": first, "train_second": second}


def run_probe(what, args, env_extra=None):
    cmd = [sys.executable, __file__, "--_probe", what, "--threads", str(args.threads), "--device", args.device]
    env = dict(os.environ, **(env_extra or {}))
    # big blocks stay mmap-ed, so the resident set follows allocations and frees (CPU memory probe)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        print(f"(probe {what} failed: {res.stderr.strip().splitlines()[-1:] or res.returncode})", file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def fmt(v, digits=2):
    return "n/a" if v is None else f"{v:.{digits}f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reference", help="a rational_kat_cu checkout: adds its CPU path (and Triton kernel on cuda)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--skip-models", action="store_true", help="only the activation table")
    p.add_argument("--_probe", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if args._probe:
        if args._probe.startswith("memory:"):
            out = {"bytes": probe_memory(args._probe.split(":", 1)[1], device)}
        else:
            out = probe_first_call(device)
        print(json.dumps(out))
        return 0

    print(f"torch {torch.__version__}, {args.threads} threads, float32, device {device}; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} (before)")
    reference = load_reference(args.reference, device) if args.reference else None

    # -- activation
    rows = activation_fns(device, reference)
    fwd = time_interleaved({k: v[0] for k, v in rows.items()}, args.rounds)
    fb = time_interleaved({k: v[1] for k, v in rows.items()}, args.rounds)
    base = "F.gelu (baseline)"
    print(f"\nactivation on {list(SHAPE)} (best of {args.rounds}; fwd+bwd includes the coefficient gradients)")
    print(f"{'implementation':<36} {'fwd ms':>8} {'x gelu':>7} {'fwd+bwd ms':>11} {'x gelu':>7}")
    print("-" * 73)
    for k in rows:
        print(f"{k:<36} {fwd[k] * 1e3:8.2f} {fwd[k] / fwd[base]:7.2f} {fb[k] * 1e3:11.2f} {fb[k] / fb[base]:7.2f}")
    print(f"targets: GroupRational fwd <= {TARGETS['fwd']}x, fwd+bwd <= {TARGETS['fwd_bwd']}x")

    if not args.skip_models:
        models = {"vit_tiny_patch16_224 (baseline)": build_model("vit_tiny_patch16_224", device),
                  "kat_tiny_patch16_224": build_model("kat_tiny_patch16_224", device),
                  "kat_tiny_patch16_224, eager kernel": build_model("kat_tiny_patch16_224", device, "eager")}
        fns = {k: model_fns(m, device) for k, m in models.items()}
        rounds = max(3, args.rounds)
        base = "vit_tiny_patch16_224 (baseline)"
        inf_t = time_rounds({k: v[0] for k, v in fns.items()}, rounds, warmup=1)
        tr_t = time_rounds({k: v[1] for k, v in fns.items()}, rounds, warmup=1)
        inf, tr = {k: min(v) for k, v in inf_t.items()}, {k: min(v) for k, v in tr_t.items()}
        inf_p, tr_p = paired_ratios(inf_t, base), paired_ratios(tr_t, base)
        print(f"\nmodels (best of {rounds}; 'paired': median over rounds of the ratio within a round): inference "
              f"batch 8, SGD train step batch 4, 224x224")
        print(f"{'model':<36} {'infer ms':>9} {'x vit':>6} {'paired':>7} {'train ms':>9} {'x vit':>6} {'paired':>7}")
        print("-" * 86)
        for k in models:
            print(f"{k:<36} {inf[k] * 1e3:9.1f} {inf[k] / inf[base]:6.2f} {inf_p[k]:7.2f} {tr[k] * 1e3:9.1f} "
                  f"{tr[k] / tr[base]:6.2f} {tr_p[k]:7.2f}")
        # CPU time of this process (both threads): immune to being descheduled, though not to OpenMP spin-waits
        cpu = time.process_time
        inf_c = {k: min(v) for k, v in time_rounds({k: v[0] for k, v in fns.items()}, rounds, 0, cpu).items()}
        tr_c = {k: min(v) for k, v in time_rounds({k: v[1] for k, v in fns.items()}, rounds, 0, cpu).items()}
        label = f"same, CPU time (best of {rounds})"
        print(f"{label:<36} {'infer ms':>9} {'x vit':>6} {'':>7} {'train ms':>9} {'x vit':>6}")
        for k in models:
            print(f"{k:<36} {inf_c[k] * 1e3:9.1f} {inf_c[k] / inf_c[base]:6.2f} {'':>7} {tr_c[k] * 1e3:9.1f} "
                  f"{tr_c[k] / tr_c[base]:6.2f}")
        print(f"targets: kat_tiny inference <= {TARGETS['infer']}x, train step <= {TARGETS['train']}x")
        del models, fns

        with tempfile.TemporaryDirectory() as cache:
            env = {"TORCHINDUCTOR_CACHE_DIR": cache}
            cold = run_probe("first", args, env)
            warm = run_probe("first", args, env)
        print("\nfirst call, compile included (fresh process)")
        for label, r in (("empty inductor cache", cold), ("warm inductor cache", warm)):
            if r:
                print(f"  {label:<22} GroupRational fwd+bwd {r['act_first']:6.2f} s; kat_tiny first train step "
                      f"{r['train_first']:6.2f} s, second {r['train_second']:6.2f} s")
        mem = {n: run_probe(f"memory:{n}", args) for n in ("vit_tiny_patch16_224", "kat_tiny_patch16_224")}
        print("\npeak memory of one train step, batch 4 (fresh process, after a warm-up step)")
        for n, r in mem.items():
            print(f"  {n:<24} {fmt(r and r['bytes'] / 2**20, 1):>8} MiB")
        if all(mem.values()):
            print(f"  ratio kat/vit {mem['kat_tiny_patch16_224']['bytes'] / mem['vit_tiny_patch16_224']['bytes']:.2f}")
    print(f"\nload average {' '.join(f'{v:.2f}' for v in os.getloadavg())} (after)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
