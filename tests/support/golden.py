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


#: golden folders with torch-conv-kan's published Hub checkpoints (cases ``hub_*``, ``hub_checkpoints.json``)
TCK_HUB_FOLDERS = ("tck", "tck_extra")
#: hub cases whose configuration is inferred, not confirmed: kanzoo registers their architecture (the vectors must
#: pass) but no tag for them
UNCONFIRMED_HUB_CASES = ("hub_vgg_kagn_bn11_v4_opt",)


def tck_hub_cases(confirmed_only: bool = True):
    """arch -> (golden folder, case) for torch-conv-kan's published checkpoints (``arch`` = the Hub repo name)."""
    out = {}
    for folder in TCK_HUB_FOLDERS:
        for case in manifest(folder)["cases"]:
            name = case["name"]
            if name.startswith("hub_") and not (confirmed_only and name in UNCONFIRMED_HUB_CASES):
                out[name[len("hub_"):]] = (folder, case)
    return out


def tck_hub_checkpoints():
    """``brivangl/<arch>`` -> its record in the folders' ``hub_checkpoints.json``."""
    out = {}
    for folder in TCK_HUB_FOLDERS:
        out.update(json.loads((ROOT / folder / "hub_checkpoints.json").read_text())["checkpoints"])
    return out
