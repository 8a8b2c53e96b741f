"""benchmarks/gpu.py runs end to end on CPU at tiny sizes and writes its table (this checks only that it runs;
the figures come from a GPU run)."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_runs_on_cpu(tmp_path):
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--device", "cpu", "--batch-infer", "2",
           "--batch-train", "2", "--img-size", "32", "--no-compile", "--rounds", "1", "--warmup", "0",
           "--models", "kat", "ukan", "--bases", "gram", "--conv-batch", "2", "--conv-size", "8",
           "--conv-channels", "8", "--threads", "1", "--out", str(tmp_path)]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO), env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads((tmp_path / "gpu.json").read_text(encoding="utf-8"))
    got = [(r.get("pair") or r.get("basis"), r["mode"], r["phase"]) for r in data["rows"]]
    assert got == [("kat", "eager", "infer"), ("kat", "eager", "train"), ("gram", "eager", "fwd"),
                   ("gram", "eager", "fwd+bwd")]
    for r in data["rows"]:
        assert "error" not in r, r
        assert r["ratio"] > 0
    assert data["rows"][0]["kan_img_s"] > 0 and data["rows"][0]["base_img_s"] > 0
    assert data["rows"][2]["floor_in"] == 5 * 8  # gram: 4 basis functions + the base branch, 8 channels each
    assert any("--reference-ukan" in n for n in data["notes"])  # ukan asked for, omitted without a checkout
    table = (tmp_path / "gpu.md").read_text(encoding="utf-8")
    assert "| kat_tiny_patch16_224 | vit_tiny_patch16_224 | eager | infer |" in table
    assert "| gram | 40 | eager | fwd+bwd |" in table
    assert "ukan_small" in table

