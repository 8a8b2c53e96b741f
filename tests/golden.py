"""Access to the golden vectors in ../shared/golden (read-only material beside the repository)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("KANZOO_GOLDEN", Path(__file__).resolve().parents[2] / "shared" / "golden"))


def manifest(name: str):
    path = ROOT / name / "manifest.json"
    if not path.exists():
        pytest.skip(f"golden vectors not found at {path}; set KANZOO_GOLDEN", allow_module_level=True)
    return json.loads(path.read_text())


def load_case(name: str, case):
    from safetensors.torch import load_file
    t = load_file(str(ROOT / name / case["file"]))
    state = {k[len("state."):]: v for k, v in t.items() if k.startswith("state.")}
    return t, state
