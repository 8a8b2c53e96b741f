"""``kanzoo predict``: top-k classes with probabilities for image files."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from ..errors import WorkflowError
from ..io import PathLike
from ._common import check_positive, warn
from .data import DECODE_ERRORS, build_transform, data_config_for, list_images, load_image
from .loading import LoadedModel, model_labels


@dataclass
class Prediction:
    path: str
    top: List[Tuple[int, str, float]]  # (class index, class name, probability)


def expand_images(paths: Sequence[PathLike]) -> List[str]:
    """The image files to classify: files as given, folders replaced by the images inside them (sorted)."""
    out: List[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = list_images(p)
            if not found:
                warn(f"folder {os.fspath(p)!r} holds no images")
            out.extend(found)
        else:
            out.append(os.fspath(p))
    return out


def read_images(files: Sequence[PathLike], read) -> Tuple[List[Tuple[str, torch.Tensor]], List[str]]:
    """``([(path, read(path)), ...], skipped paths)``: a missing file or one that will not decode is skipped with
    a warning, so one bad file does not stop a batch."""
    done: List[Tuple[str, torch.Tensor]] = []
    skipped: List[str] = []
    for path in files:
        try:
            done.append((str(path), read(path)))
        except FileNotFoundError:
            warn(f"skipped {str(path)!r}: no such file")
            skipped.append(str(path))
        except DECODE_ERRORS as e:
            warn(f"skipped an image that will not decode: {path}: {type(e).__name__}: {e}")
            skipped.append(str(path))
    return done, skipped


def predict(loaded: LoadedModel, images: Sequence[PathLike], topk: int = 5, batch_size: int = 32,
            device=None, img_size: Optional[int] = None) -> Tuple[List[Prediction], List[str]]:
    """Classifies ``images`` (files, or folders of them) with ``loaded.model``, preprocessed as its pretrained
    cfg says (through ``timm.data``).

    Returns the predictions and the files skipped because they would not decode (each also warned about).
    """
    check_positive("--topk", topk)
    check_positive("--batch-size", batch_size)
    files = expand_images(images)
    if not files:
        raise WorkflowError(f"no image files to classify in {[os.fspath(p) for p in images][:5]}")
    model = loaded.model.eval()
    device = device or next(model.parameters()).device
    transform = build_transform(data_config_for(model, img_size=img_size), training=False)
    labels = model_labels(model, loaded.label_names)
    k = min(topk, model.num_classes)
    todo, skipped = read_images(files, lambda path: transform(load_image(path)))
    out: List[Prediction] = []
    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        x = torch.stack([t for _, t in chunk]).to(device)
        with torch.no_grad():
            probs = model(x).float().softmax(-1)
        p, idx = probs.topk(k, dim=-1)
        for (path, _), pr, ix in zip(chunk, p.tolist(), idx.tolist()):
            names = [labels.name(j) if labels else f"class {j}" for j in ix]
            out.append(Prediction(path, list(zip(ix, names, pr))))
    return out, skipped


def format_predictions(preds: Sequence[Prediction]) -> str:
    """One block per image: its path, then ``rank. probability  name (index)`` lines."""
    lines = []
    for pred in preds:
        lines.append(pred.path)
        for r, (i, name, p) in enumerate(pred.top, 1):
            lines.append(f"  {r}. {100 * p:6.2f}%  {name} ({i})")
    return "\n".join(lines)
