"""``kanzoo demo``: the README's main job, reduced (``--fast``: 40 images per digit, one epoch per phase)."""
import re

import pytest

from kanzoo.cli import main
from tests.support.kan_layer_cases import single_thread

STEPS = ("data", "model", "train", "validate", "adapt", "export")

# tiny tensors: intra-op threads only add synchronisation (and stall on busy shared cores)
_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)


def test_demo_fast_runs_every_step_and_checks_them(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    assert main(["demo", "--fast", "--output", str(out_dir)]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0].startswith("kanzoo demo: offline") and lines[-1].startswith("done in ")
    assert "every check passed" in lines[-1]
    steps = lines[1:-1]
    assert len(steps) == 6, out
    for i, (line, name) in enumerate(zip(steps, STEPS), 1):
        assert re.match(rf"^\[{i}/6\] {name} +.*  \(\d+\.\d s\)$", line), line
    assert "task A = digits 0-4 (160 train / 40 val)" in steps[0]
    assert re.search(r"\d[\d,]* parameters, [\d.]+ MMACs", steps[1])
    assert re.search(r"val top-1 \d+\.\d%", steps[2])
    assert re.search(r"top-1 [\d.]+%, top-5 [\d.]+%, loss [\d.]+", steps[3])
    m = re.search(r"max \|merged - adapted\| = ([\d.e+-]+)", steps[4])
    assert m and float(m.group(1)) < 1e-4 and "merged to degree 4" in steps[4]
    m = re.search(r"max \|onnxruntime - torch\| = ([\d.e+-]+)", steps[5])
    assert m and float(m.group(1)) < 1e-4
    assert "TOO LARGE" not in out and "Traceback" not in err
    # the runs are ordinary run folders
    for run in ("run_a", "run_b"):
        assert (out_dir / run / "model.safetensors").is_file() and (out_dir / run / "config.json").is_file()
    assert (out_dir / "run_b" / "adapter_config.json").is_file() and (out_dir / "run_b" / "model.onnx").is_file()
    # and a second demo refuses to mix its files into them
    assert main(["demo", "--fast", "--output", str(out_dir)]) == 1
    assert "is not empty" in capsys.readouterr().err


def test_demo_needs_no_network(monkeypatch, capsys):
    import socket

    def no_network(*a, **k):
        raise AssertionError("kanzoo demo tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["demo", "--fast", "--epochs", "1", "--adapt-epochs", "1"]) == 0
    assert "every check passed" in capsys.readouterr().out
