"""Reading weight files safely, and hashing them.

safetensors files are read with ``safetensors``; ``.bin``/``.pth``/``.pt``/``.tar``/``.ckpt`` files only with
``torch.load(weights_only=True)``, which refuses pickles that hold more than tensors and plain containers.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Dict, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import WeightsFileError, WeightsNotFoundError, first_line

__all__ = ["LOCAL_FILES", "TORCH_SUFFIXES", "load_state_file", "file_sha256", "git_blob_sha1"]

#: local file names looked for in a ``local-dir:`` or run folder
LOCAL_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "pytorch_model.pth")
TORCH_SUFFIXES = (".bin", ".pth", ".pt", ".tar", ".ckpt")


def file_sha256(path: Union[str, Path], chunk_size: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha1(path: Union[str, Path], chunk_size: int = 1 << 22) -> str:
    """The git object id of a file: sha1 of ``b"blob <size>\\0" + content`` (the Hub's ETag of a non-LFS file)."""
    h = hashlib.sha1()
    h.update(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state_file(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Reads a weight file safely: safetensors, or a torch file with ``torch.load(weights_only=True)``."""
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in LOCAL_FILES if (path / n).is_file()]
        if not found:
            raise WeightsNotFoundError(f"folder {str(path)!r} has no weight file; expected one of {list(LOCAL_FILES)}")
        path = found[0]
    if not path.is_file():
        raise WeightsNotFoundError(f"weight file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as e:
            raise WeightsFileError(f"{str(path)!r} is not a readable safetensors file: {e}") from e
    if path.suffix not in TORCH_SUFFIXES:
        raise WeightsFileError(
            f"unknown weight file type {path.suffix!r} ({str(path)!r}): use .safetensors, or a torch file ending in "
            f"{', '.join(TORCH_SUFFIXES)}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused an object that is not a tensor or a container
        raise WeightsFileError(
            f"{str(path)!r} cannot be read with torch.load(weights_only=True) ({type(e).__name__}: {first_line(e)}); "
            f"kanzoo never unpickles arbitrary objects: re-save it as safetensors or as a plain state dict") from e
    except Exception as e:  # a cut-short or overwritten file fails inside the zip or pickle reader
        raise WeightsFileError(
            f"{str(path)!r} is damaged (truncated or not a torch file): torch.load failed with "
            f"{first_line(e, with_type=True)}; copy or download it again, or resume from another checkpoint") from e
    if not isinstance(obj, dict):
        raise WeightsFileError(f"{str(path)!r} holds a {type(obj).__name__}, not a state dict")
    return obj
