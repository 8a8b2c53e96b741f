"""A fair comparison of KANs with MLPs and CNNs at equal parameters and equal FLOPs, after KANbeFair
(Yu, Yu, Wang, "KAN or MLP: A Fairer Comparison", arXiv 2407.16674), plus S-KAN's basis selection
(Yang et al., arXiv 2408.08338). Runs offline on 2 CPU cores (two single-threaded worker processes).

Tasks (fixed data; the seeds vary the model initialisation and batch order only):
  * ``digits``: scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes), flattened to 64 features,
    standardised with the training mean/std; stratified 80/20 split with ``random_state=0``. Metric: test
    accuracy (%).
  * ``digits_cnn``: the same images as 1×8×8 inputs, for a KAN CNN from the zoo (``simple_conv_kagn``:
    four Gram KAN convs) against a plain CNN (Conv-BN-ReLU ×4 with the same strides) matched by parameters
    and by FLOPs: the conv-KAN comparison KANbeFair's users asked for (its issue #13).
  * symbolic regression on SciPy special functions of x ∈ U[0,1)² (1,000 train and 1,000 test points, drawn
    with seed 0): ``ellipkinc(x0, x1)``, ``jv(x0, x1)`` and ``lpmv(0, x0, x1)`` (``ellipeinc`` and ``iv`` are
    available with ``--tasks``): the functions themselves, not the derivatives (jvp ...) that KANbeFair's
    loader returns under these names.
    Inputs are mapped to [-1, 1], targets standardised with the training mean/std. Metric: test MSE on the
    standardised targets (1.0 = predicting the mean).

Models, each a one-hidden-layer network ``[d_in, h, d_out]``:
  * ``kan_bspline``: two kanzoo KANLinear layers, B-spline G=5, K=3 on [-2, 2], SiLU base branch, no norm
    (the efficient-KAN form of KANbeFair's pykan KAN). It sets the budget: h ∈ BUDGET_WIDTHS[task].
  * ``kan_cheby``: KANLinear over Chebyshev polynomials of tanh(x), degree 3, no base branch (KACN).
  * ``mlp``: Linear - GELU - Linear.
  * ``bspline_mlp``: Linear - per-channel learnable B-spline activation (G=5, K=3 on [-2, 2], initialised to
    SiLU by least squares) - Linear: KANbeFair's "B-spline activation MLP" ablation.
  Every model but the budget KAN is built twice, with the width that matches its budget in parameters and
  in FLOPs (``kanzoo.profile.match``, kanzoo convention with activations and norms counted).
  * ``s_kan`` (symbolic tasks): SelectableKANLinear layers ``[2, h, 1]`` over the default pool (B-spline,
    Chebyshev, Gram, RBF, wavelet), trained in S-KAN's three phases (all bases / top-1 / pruned) for the
    same number of steps; reported after pruning, with the bases the neurons chose.

Training is the same for every model of a task (nothing tuned on the test split): Adam, lr 1e-2 with a
cosine decay to 0, no weight decay; digits: batch 128, 40 epochs; digits_cnn: batch 64, 20 epochs;
symbolic: full batch, 500 steps. The last step is evaluated. Mean ± std over seeds 0, 1, 2.

    python benchmarks/fair.py                   # full run, writes benchmarks/results/fair.{md,json,png}
    python benchmarks/fair.py --quick           # one seed, one budget, short training (smoke test)
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from kanzoo import profile  # noqa: E402
from kanzoo.io import atomic_write  # noqa: E402
from kanzoo.layers import KANLinear, SelectableKANLinear, selection_summary  # noqa: E402
from kanzoo.layers.bases import BSplineBasis  # noqa: E402
from kanzoo.workflows.selection import SelectionSchedule  # noqa: E402

GRID = dict(grid_size=5, spline_order=3, grid_range=(-2.0, 2.0))
SYMBOLIC = {
    "ellipkinc": lambda s, x: s.ellipkinc(x[:, 0], x[:, 1]),
    "ellipeinc": lambda s, x: s.ellipeinc(x[:, 0], x[:, 1]),
    "jv": lambda s, x: s.jv(x[:, 0], x[:, 1]),
    "lpmv0": lambda s, x: s.lpmv(0, x[:, 0], x[:, 1]),
    "iv": lambda s, x: s.iv(x[:, 0], x[:, 1]),
}
ALL_TASKS = ["digits", "digits_cnn"] + [f"sym_{k}" for k in SYMBOLIC]
TASKS = ["digits", "digits_cnn", "sym_ellipkinc", "sym_jv", "sym_lpmv0"]  # the default run
BUDGET_WIDTHS = {"digits": (4, 8, 16), **{f"sym_{k}": (2, 4, 8) for k in SYMBOLIC}}
CNN_SCALES = (0.125, 0.25)  # simple_conv_kagn width_scale: widths (4, 8, 16, 32) and (8, 16, 32, 64)
FAMILIES = ("kan_bspline", "kan_cheby", "mlp", "bspline_mlp")
SEEDS = (0, 1, 2)


# ------------------------------------------------------------------------------------------------ data
def load_task(task: str) -> Dict[str, torch.Tensor]:
    if task.startswith("digits"):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32)
        y = torch.tensor(d.target)
        idx = torch.arange(len(y)).numpy()
        tr, te = train_test_split(idx, test_size=0.2, stratify=d.target, random_state=0)
        tr, te = torch.as_tensor(tr), torch.as_tensor(te)
        mean, std = x[tr].mean(), x[tr].std()
        x = (x - mean) / std
        if task == "digits":
            x = x.flatten(1)
            # per-feature standardisation on top (constant border pixels stay 0)
            fm, fs = x[tr].mean(0), x[tr].std(0).clamp_min(1e-3)
            x = (x - fm) / fs
        else:
            x = x.unsqueeze(1)
        return dict(xtr=x[tr], ytr=y[tr], xte=x[te], yte=y[te])
    import numpy as np
    from scipy import special
    fn = SYMBOLIC[task[len("sym_"):]]
    rng = np.random.default_rng(0)
    xtr, xte = rng.random((1000, 2)), rng.random((1000, 2))
    ytr, yte = fn(special, xtr), fn(special, xte)
    if not (np.isfinite(ytr).all() and np.isfinite(yte).all()):
        raise RuntimeError(f"{task}: non-finite targets")
    mu, sd = ytr.mean(), ytr.std()
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return dict(xtr=t(xtr) * 2 - 1, ytr=t((ytr - mu) / sd).unsqueeze(1), xte=t(xte) * 2 - 1,
                yte=t((yte - mu) / sd).unsqueeze(1))


def dims(task: str) -> Tuple[int, int]:
    return (64, 10) if task == "digits" else (2, 1)


# ---------------------------------------------------------------------------------------------- models
class SplineActivation(nn.Module):
    r"""A learnable B-spline activation per channel: :math:`y_c = \sum_f c_{cf} B_f(x_c)` (KANbeFair's
    BSpline_MLP activation; no shortcut). Coefficients start as the least-squares fit of SiLU on the grid."""

    def __init__(self, channels: int):
        super().__init__()
        self.basis = BSplineBasis(**GRID)
        t = torch.linspace(GRID["grid_range"][0], GRID["grid_range"][1], 200)
        b = self.basis(t.view(-1, 1)).squeeze(1)                       # (200, F)
        coef = torch.linalg.lstsq(b, F.silu(t).unsqueeze(1)).solution.squeeze(1)
        self.coef = nn.Parameter(coef.expand(channels, -1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.basis(x) * self.coef).sum(-1)

    def _profile_flops(self, args, out, convention: str) -> int:
        # the Σ_f c_f B_f combination (multiply + add per basis value); KANbeFair's spline formula covers it
        return 0 if convention == "kanbefair" else 2 * self.basis.num_basis * out.numel()


def build(family: str, task: str, width: float) -> nn.Module:
    """The model of ``family`` at hidden width ``width`` (a width scale for the CNN families)."""
    d_in, d_out = dims(task)
    w = int(width)
    if family == "kan_bspline":
        kw = dict(basis="bspline", base_act="silu", norm_layer="none", act_layer="identity", **GRID)
        return nn.Sequential(KANLinear(d_in, w, **kw), KANLinear(w, d_out, **kw))
    if family == "kan_cheby":
        kw = dict(basis="chebyshev", degree=3, norm_layer="none", act_layer="identity")
        return nn.Sequential(KANLinear(d_in, w, **kw), KANLinear(w, d_out, **kw))
    if family == "mlp":
        return nn.Sequential(nn.Linear(d_in, w), nn.GELU(), nn.Linear(w, d_out))
    if family == "bspline_mlp":
        return nn.Sequential(nn.Linear(d_in, w), SplineActivation(w), nn.Linear(w, d_out))
    if family == "s_kan":
        return nn.Sequential(SelectableKANLinear(d_in, w), SelectableKANLinear(w, d_out))
    if family == "kan_cnn":
        import kanzoo
        return kanzoo.create_model("simple_conv_kagn", width_scale=width, in_chans=1, num_classes=10)
    if family == "cnn":
        layers, c = [], 1
        for out, s in zip((w, 2 * w, 4 * w, 8 * w), (1, 2, 2, 1)):
            layers += [nn.Conv2d(c, out, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))
    raise ValueError(f"unknown family {family!r}")


def input_size(task: str) -> Tuple[int, ...]:
    return (1, 8, 8) if task == "digits_cnn" else (dims(task)[0],)


def budgets(model: nn.Module, task: str) -> Dict[str, int]:
    """params, FLOPs (kanzoo convention, activations and norms counted) and KANbeFair-convention FLOPs."""
    size = input_size(task)
    a = profile.count(model, size, elementwise=True)
    b = profile.count(model, size, convention="kanbefair")
    return dict(params=a.params, flops=a.flops, flops_kanbefair=b.flops, params_kanbefair=b.params)


# --------------------------------------------------------------------------------------------- training
def _cosine(opt: torch.optim.Optimizer, total: int):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))


def train_run(job: Dict[str, Any]) -> Dict[str, Any]:
    """Trains one (task, family, width, seed) and returns its metric; runs in a worker process."""
    torch.set_num_threads(1)
    task, family, seed = job["task"], job["family"], job["seed"]
    steps_scale = job.get("steps_scale", 1.0)
    data = load_task(task)
    torch.manual_seed(seed)
    model = build(family, task, job["width"])
    t0, c0 = time.perf_counter(), time.process_time()
    extra: Dict[str, Any] = {}
    if task.startswith("digits"):
        epochs = max(1, int((40 if task == "digits" else 20) * steps_scale))
        batch = 128 if task == "digits" else 64
        n = len(data["ytr"])
        steps = epochs * math.ceil(n / batch)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        sched = _cosine(opt, steps)
        g = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(n, generator=g)
            for i in range(0, n, batch):
                idx = perm[i:i + batch]
                opt.zero_grad()
                F.cross_entropy(model(data["xtr"][idx]), data["ytr"][idx]).backward()
                opt.step()
                sched.step()
        model.eval()
        with torch.no_grad():
            metric = (model(data["xte"]).argmax(1) == data["yte"]).float().mean().item() * 100
    else:
        steps = max(16, int(500 * steps_scale))
        phases = None
        if family == "s_kan":  # S-KAN: 50% all bases, 25% top-1, 25% pruned; "epochs" of 1/8 of the steps
            chunk = steps // 8
            phases = SelectionSchedule(full_epochs=4, select_epochs=2, top_k=1)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        sched = _cosine(opt, steps)
        model.train()
        for s in range(steps):
            if phases is not None and s % chunk == 0 and s // chunk < 8:
                if phases.on_epoch_start(s // chunk, model) == "prune":
                    lr = opt.param_groups[0]["lr"]
                    opt = torch.optim.Adam(model.parameters(), lr=lr)
                    sched = _cosine(opt, steps - s)
                    sched.base_lrs = [lr]
            opt.zero_grad()
            F.mse_loss(model(data["xtr"]), data["ytr"]).backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            metric = F.mse_loss(model(data["xte"]), data["yte"]).item()
        if family == "s_kan":
            extra["selection"] = selection_summary(model)
            extra["budget_after_pruning"] = budgets(model, task)
    return dict(job, metric=metric, seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0, **extra)


# ------------------------------------------------------------------------------------------------ plan
def plan(tasks: List[str], seeds, budget_index: Optional[int], steps_scale: float) -> Tuple[List[dict], List[dict]]:
    """(models, jobs): every model to train with its budgets and what it was matched to, and the runs."""
    models: List[dict] = []
    for task in tasks:
        if task == "digits_cnn":
            scales = CNN_SCALES if budget_index is None else CNN_SCALES[:1]
            for level, scale in enumerate(scales):
                ref = build("kan_cnn", task, scale)
                b = budgets(ref, task)
                models.append(dict(task=task, level=level, family="kan_cnn", matched="budget", width=scale, **b))
                for by in ("params", "flops"):
                    res = profile.match(None, lambda w: build("cnn", task, w), by=by, input_size=input_size(task),
                                        target=b[by], elementwise=True)
                    models.append(dict(task=task, level=level, family="cnn", matched=by, width=res.width,
                                       **budgets(res.model, task)))
            continue
        widths = BUDGET_WIDTHS[task] if budget_index is None else BUDGET_WIDTHS[task][budget_index:budget_index + 1]
        for level, h in enumerate(widths):
            ref = build("kan_bspline", task, h)
            b = budgets(ref, task)
            models.append(dict(task=task, level=level, family="kan_bspline", matched="budget", width=h, **b))
            for family in FAMILIES[1:]:
                for by in ("params", "flops"):
                    res = profile.match(None, lambda w, f=family: build(f, task, w), by=by,
                                        input_size=input_size(task), target=b[by], elementwise=True)
                    models.append(dict(task=task, level=level, family=family, matched=by, width=res.width,
                                       **budgets(res.model, task)))
            if task.startswith("sym_") and level == len(widths) // 2:
                skan = build("s_kan", task, h)
                models.append(dict(task=task, level=level, family="s_kan", matched="width", width=h,
                                   **budgets(skan, task)))
    # a model matched to the same width by parameters and by FLOPs is trained once
    unique = {_key(m): m for m in models}
    jobs = [dict(task=m["task"], family=m["family"], width=m["width"], seed=s, key=k, steps_scale=steps_scale)
            for k, m in unique.items() for s in seeds]
    return models, jobs


def _key(m: dict) -> str:
    return f"{m['task']}|{m['family']}|{m['width']}"


# --------------------------------------------------------------------------------------------- reports
def _fmt_metric(task: str, values: List[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {sd:.2f}" if task.startswith("digits") else f"{mean:.4f} ± {sd:.4f}"


def _si(n: float) -> str:
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}"


def summarise(models: List[dict], results: List[dict]) -> Dict[str, Any]:
    by_key: Dict[str, List[dict]] = {}
    for r in results:
        by_key.setdefault(r["key"], []).append(r)
    rows = []
    for m in models:
        rs = by_key.get(_key(m), [])
        rows.append(dict(m, metrics=[r["metric"] for r in rs],
                         seconds=statistics.fmean(r["cpu_seconds"] for r in rs) if rs else 0.0,
                         selection=[r.get("selection") for r in rs if r.get("selection")],
                         after=[r.get("budget_after_pruning") for r in rs if r.get("budget_after_pruning")]))
    return dict(rows=rows)


def verdicts(rows: List[dict]) -> List[str]:
    """Per task and matching: which family is best at most budget levels (higher accuracy / lower MSE)."""
    lines = []
    tasks = sorted({r["task"] for r in rows}, key=ALL_TASKS.index)
    for task in tasks:
        higher = task.startswith("digits")
        for by in ("params", "flops"):
            wins: Dict[str, int] = {}
            levels = sorted({r["level"] for r in rows if r["task"] == task})
            for level in levels:
                cands = [r for r in rows if r["task"] == task and r["level"] == level and r["metrics"]
                         and r["matched"] in ("budget", by)]
                if not cands:
                    continue
                best = (max if higher else min)(cands, key=lambda r: statistics.fmean(r["metrics"]))
                wins[best["family"]] = wins.get(best["family"], 0) + 1
            lines.append(f"| {task} | {by} | " + ", ".join(f"{f} {n}/{len(levels)}" for f, n in
                                                         sorted(wins.items(), key=lambda kv: -kv[1])) + " |")
    return lines


def markdown(summary: Dict[str, Any], seeds, wall: float, cpu: float) -> str:
    rows = summary["rows"]
    out = ["# Fair comparison: KANs vs MLPs and CNNs at equal parameters and FLOPs", "",
           f"`python benchmarks/fair.py`: {len(seeds)} seed(s) per model, {wall / 60:.1f} min wall "
           f"({cpu / 60:.1f} CPU-minutes of training, single-threaded runs on 2 worker processes). Metric: test "
           "accuracy (%) on digits, test MSE of the standardised target on the symbolic tasks (1.0 = predicting "
           "the mean); mean ± std over seeds. FLOPs: `kanzoo.profile.count` (kanzoo convention, activations and "
           "norms counted) per sample; `KANbeFair FLOPs` is the same model under `convention='kanbefair'` "
           "(pykan's per-edge spline accounting for B-spline layers).", "",
           "## Best model per budget level", "",
           "| task | matched by | best family (levels won) |", "|---|---|---|", *verdicts(rows), "",
           "## All models", "",
           "| task | level | model | matched by | width | params | FLOPs | KANbeFair FLOPs | metric | CPU s/run |",
           "|---|---:|---|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        if not r["metrics"]:
            continue
        out.append(f"| {r['task']} | {r['level']} | {r['family']} | {r['matched']} | {r['width']} | "
                   f"{r['params']:,} | {_si(r['flops'])} | {_si(r['flops_kanbefair'])} | "
                   f"{_fmt_metric(r['task'], r['metrics'])} | {r['seconds']:.1f} |")
    sk = [r for r in rows if r["family"] == "s_kan" and r["selection"]]
    if sk:
        out += ["", "## S-KAN: bases chosen by the neurons (summed over seeds)", "",
                "S-KAN `[2, h, 1]` trained in three phases, reported after pruning (it trains with 465 parameters: "
                "all five bases). Counts are neurons per basis, hidden layer and output neuron; parameters and "
                "FLOPs after pruning are means over seeds.", "",
                "| task | h | test MSE | params after pruning | FLOPs after pruning | hidden layer | output |",
                "|---|---:|---|---:|---:|---|---|"]
        for r in sk:
            hidden: Dict[str, int] = {}
            outn: Dict[str, int] = {}
            for sel in r["selection"]:
                for layer, counts in sel.items():
                    tgt = hidden if layer == "0" else outn
                    for b, c in counts.items():
                        tgt[b] = tgt.get(b, 0) + c
            after = {k: statistics.fmean(a[k] for a in r["after"]) for k in ("params", "flops")}
            fmt = lambda d: ", ".join(f"{b} {c}" for b, c in sorted(d.items(), key=lambda kv: -kv[1]))  # noqa: E731
            out.append(f"| {r['task']} | {r['width']} | {_fmt_metric(r['task'], r['metrics'])} | "
                       f"{after['params']:,.0f} | {_si(after['flops'])} | {fmt(hidden)} | {fmt(outn)} |")
    return "\n".join(out) + "\n"


def plot(summary: Dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter
    rows = [r for r in summary["rows"] if r["metrics"]]
    tasks = [t for t in ALL_TASKS if any(r["task"] == t for r in rows)]
    fig, axes = plt.subplots(2, len(tasks), figsize=(3.3 * len(tasks), 6.6), squeeze=False)
    colors = {"kan_bspline": "C0", "kan_cheby": "C1", "mlp": "C2", "bspline_mlp": "C3", "kan_cnn": "C0", "cnn": "C2",
              "s_kan": "C4"}
    handles = {}
    for j, task in enumerate(tasks):
        for i, axis in enumerate(("params", "flops")):
            ax = axes[i][j]
            fams = sorted({(r["family"], r["matched"]) for r in rows if r["task"] == task})
            for family, matched in fams:
                sel = [r for r in rows if r["task"] == task and r["family"] == family and r["matched"] == matched]
                if family == "s_kan":  # plotted at its budget after pruning
                    pts = [(r["after"][0][axis], statistics.fmean(r["metrics"]),
                            statistics.stdev(r["metrics"]) if len(r["metrics"]) > 1 else 0.0)
                           for r in sel if r["after"]]
                else:
                    pts = sorted((r[axis], statistics.fmean(r["metrics"]),
                                  statistics.stdev(r["metrics"]) if len(r["metrics"]) > 1 else 0.0) for r in sel)
                if not pts:
                    continue
                xs, ys, es = zip(*pts)
                style = "*" if family == "s_kan" else ("-o" if matched in ("budget", "params") else "--s")
                label = {"budget": family, "width": f"{family} (pruned)"}.get(matched, f"{family} (= {matched})")
                h = ax.errorbar(xs, ys, yerr=es, fmt=style, color=colors.get(family, "k"), ms=9 if family == "s_kan"
                                else 4, lw=1.2, capsize=2, label=label)
                handles.setdefault(label, h)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            if not task.startswith("digits"):
                ax.set_yscale("log")
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("parameters" if axis == "params" else "FLOPs / sample")
            ax.set_title(task, fontsize=10)
            ax.set_ylabel("test accuracy (%)" if task.startswith("digits") else "test MSE (std. target)")
            ax.grid(alpha=0.3, which="both")
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=min(6, len(handles)),
               fontsize=8, frameon=False)
    fig.suptitle("KAN vs MLP/CNN at matched parameters (top) and FLOPs (bottom); mean ± std over seeds", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one seed, one budget level, 1/10 of the training")
    p.add_argument("--tasks", nargs="+", default=TASKS, choices=ALL_TASKS)
    p.add_argument("--workers", type=int, default=2, help="processes (1 thread each); default 2")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="output folder")
    p.add_argument("--report-only", type=Path, metavar="JSON",
                   help="only rewrite the markdown and PNG from a results JSON of an earlier run")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error(f"--workers must be >= 1, got {args.workers}")
    if args.report_only:
        saved = json.loads(args.report_only.read_text(encoding="utf-8"))
        name = args.report_only.stem
        report = markdown(saved, saved["seeds"], saved["wall_seconds"], saved["cpu_seconds"])
        _write_text(args.out / f"{name}.md", report)
        plot(saved, args.out / f"{name}.png")
        print(f"rewrote {args.out / name}.md/.png from {args.report_only}")
        return 0
    seeds = SEEDS[:1] if args.quick else SEEDS
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    models, jobs = plan(args.tasks, seeds, 1 if args.quick else None, 0.1 if args.quick else 1.0)
    print(f"{len(models)} models, {len(jobs)} runs on {args.workers} worker(s)", flush=True)
    results: List[dict] = []
    if args.workers == 1:
        for i, job in enumerate(jobs):
            results.append(train_run(job))
    else:
        with ProcessPoolExecutor(args.workers) as ex:
            for i, r in enumerate(ex.map(train_run, jobs)):
                results.append(r)
                if (i + 1) % 20 == 0:
                    print(f"  {i + 1}/{len(jobs)} runs, {time.perf_counter() - t0:.0f} s", flush=True)
    wall = time.perf_counter() - t0
    summary = summarise(models, results)
    cpu = sum(r["cpu_seconds"] for r in results)
    text = markdown(summary, seeds, wall, cpu)
    name = "fair_quick" if args.quick else "fair"
    _write_text(args.out / f"{name}.md", text)
    _write_text(args.out / f"{name}.json", json.dumps(dict(summary, wall_seconds=wall, cpu_seconds=cpu,
                                                           seeds=list(seeds)), indent=1))
    plot(summary, args.out / f"{name}.png")
    print(text)
    print(f"wrote {args.out / name}.md/.json/.png in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
