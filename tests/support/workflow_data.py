"""Tiny ImageFolders of generated PNGs for the workflow tests (kanzoo.workflows)."""
import json
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("cat", "dog", "eel")
#: what the tests pass so that a model trains in a second on CPU; the tiny datasets hold one undecodable image on
#: purpose, above the default 0.5% that a run allows
FAST = ["--model-kwargs", "width_scale=0.25", "--img-size", "16", "-j", "0", "-q", "--no-progress",
        "--max-skipped-fraction", "0.1"]


def make_imagefolder(root, classes=CLASSES, per_class=6, size=20, seed=0, broken=None):
    """``root/CLASS/i.png``: noisy images whose mean brightness depends on the class (learnable in a few steps).
    ``broken``: a class that also gets an undecodable ``broken.png``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for k, c in enumerate(classes):
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        level = 30 + 190 * k / max(len(classes) - 1, 1)
        for i in range(per_class):
            img = np.clip(rng.normal(level, 25, (size, size, 3)), 0, 255).astype("uint8")
            Image.fromarray(img).save(d / f"{i:02d}.png")
    if broken:
        (root / broken / "broken.png").write_bytes(b"\x89PNG but not really")
    return root


def make_dataset(root, per_class=6, val_per_class=2, broken="cat", seed=0):
    """``root/train`` (with an undecodable file when ``broken``) and ``root/val``."""
    root = Path(root)
    make_imagefolder(root / "train", per_class=per_class, seed=seed, broken=broken)
    make_imagefolder(root / "val", per_class=val_per_class, seed=seed + 1)
    return root


def weights(run_dir):
    """The final weights of a ``kanzoo train`` run folder."""
    from safetensors.torch import load_file

    return load_file(str(Path(run_dir) / "model.safetensors"))


def records(run_dir, kind=None):
    """The run's ``log.jsonl`` records (only those of ``kind``: "epoch", "selection", ... when given)."""
    recs = [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]
    return [r for r in recs if kind is None or r["kind"] == kind]
