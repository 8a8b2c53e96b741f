"""benchmarks/train_loop.py runs end to end on CPU at a tiny size and reports both sides and the overhead (this
checks only that it runs and what it prints; the figures come from full runs, see benchmarks/results/)."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "train_loop.py"


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=str(REPO),
                          env=env, timeout=300)


def test_train_loop_benchmark_runs_on_cpu(tmp_path):
    out = tmp_path / "loop.txt"
    res = _run("--rounds", "2", "--steps", "1", "--img-size", "16", "--batch", "2", "--threads", "1",
               "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    text = out.read_text()
    assert text == res.stdout.replace("\r", "")[-len(text):]
    rows = [ln.split("|") for ln in text.splitlines() if ln.startswith(("kanzoo ", "bare "))]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [("kanzoo", "wall"), ("bare", "wall"),
                                                             ("kanzoo", "CPU"), ("bare", "CPU")]
    assert all(float(r[2]) > 0 for r in rows)
    assert "cpu, threads 1, float32; simple_conv_kagn" in text and "overhead (median of the per-round" in text


def test_train_loop_benchmark_refuses_amp_on_cpu():
    res = _run("--amp")
    assert res.returncode == 2 and "--amp autocasts on CUDA only" in res.stderr
