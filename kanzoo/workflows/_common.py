"""Small pieces shared by kanzoo's workflows: the error type, atomic writes, seeding, devices, ``key=value``
options."""
from __future__ import annotations

import ast
import json
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Union

import torch

PathLike = Union[str, os.PathLike]


class WorkflowError(ValueError):
    """Bad input to a workflow (a missing folder, a batch size of 0, a checkpoint that does not fit...).

    The message says what was wrong, the value, and what to do; the command line prints it without a
    traceback.
    """


def atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Calls ``write(tmp_path)`` on a temporary file beside ``path``, then renames it into place with
    ``os.replace``: readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return atomic_write(path, write)


def write_json(path: PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: PathLike) -> Any:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise WorkflowError(f"{os.fspath(path)!r} is not valid JSON ({e}); was it written by kanzoo?") from None


def seed_everything(seed: int) -> None:
    """Seeds Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for kanzoo itself
        pass


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


def parse_value(text: str) -> Any:
    """A Python literal (``3``, ``0.5``, ``[2, 3]``, ``True``, ``None``) or, failing that, the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_kv(items: Optional[Iterable[str]], what: str) -> Dict[str, Any]:
    """``['width_scale=0.25', 'basis_kwargs={"degree": 4}']`` -> a dict; values are Python literals."""
    out: Dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise WorkflowError(f"{what} takes KEY=VALUE pairs (e.g. width_scale=0.25), got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def check_positive(name: str, value: Optional[float], minimum: float = 1, hint: str = "") -> None:
    """Raises :class:`WorkflowError` unless ``value >= minimum`` (``None`` passes)."""
    if value is not None and value < minimum:
        raise WorkflowError(f"{name} must be >= {minimum}, got {value}{'; ' + hint if hint else ''}")


def warn(msg: str) -> None:
    """A warning on stderr, in the command line's format."""
    print(f"kanzoo: warning: {msg}", file=sys.stderr, flush=True)


def fmt_count(n: int) -> str:
    return f"{n:,}"
