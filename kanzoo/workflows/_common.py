"""Small pieces shared by kanzoo's workflows: seeding, devices, dtypes, checks and warnings (the error type
and the file helpers live in :mod:`kanzoo.errors` and :mod:`kanzoo.io`)."""
from __future__ import annotations

import random
import sys
from typing import Optional

import numpy as np
import torch

from ..errors import WorkflowError

__all__ = ["seed_everything", "resolve_device", "resolve_dtype", "check_positive", "warn"]


def seed_everything(seed: int) -> None:
    """Seeds Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def resolve_device(device: Optional[str]) -> torch.device:
    """``None``/``'auto'`` -> CUDA when available, else CPU; anything else is checked."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise WorkflowError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise WorkflowError(f"device {device!r} asked for, but torch sees no CUDA GPU; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise WorkflowError(f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise WorkflowError(f"device {device!r} asked for, but MPS is not available; use --device cpu")
    return dev


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise WorkflowError(f"unknown dtype {name!r}; use float32, float16 or bfloat16") from None


def check_positive(name: str, value: Optional[float], minimum: float = 1, hint: str = "") -> None:
    """Raises :class:`WorkflowError` unless ``value >= minimum`` (``None`` passes)."""
    if value is not None and value < minimum:
        raise WorkflowError(f"{name} must be >= {minimum}, got {value}{'; ' + hint if hint else ''}")


def warn(msg: str) -> None:
    """A warning on stderr, in the command line's format."""
    print(f"kanzoo: warning: {msg}", file=sys.stderr, flush=True)

