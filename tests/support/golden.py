"""Access to the golden vectors in ../shared/golden (read-only material beside the repository).

Without them a parity test module skips, except under ``CI=true``, where missing vectors fail the run: CI
always has ``../shared`` beside the clone, so their absence is a broken setup, not a reason to pass.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.support import REPO

ROOT = Path(os.environ.get("KANZOO_GOLDEN", REPO.parent / "shared" / "golden"))


def required() -> bool:
    """Missing golden vectors are a failure (under ``CI=true``), not a skip."""
    return os.environ.get("CI", "").lower() == "true"


def manifest(name: str):
    path = ROOT / name / "manifest.json"
    if not path.exists():
        msg = f"golden vectors not found at {path}; set KANZOO_GOLDEN"
        if required():
            pytest.fail(f"{msg} (CI=true: the golden vectors are required)", pytrace=False)
        pytest.skip(msg, allow_module_level=True)
    return json.loads(path.read_text())


def load_case(name: str, case):
    t = load_file(str(ROOT / name / case["file"]))
    state = {k[len("state."):]: v for k, v in t.items() if k.startswith("state.")}
    return t, state
