"""``export_model``: a model by name (random, pretrained, a checkpoint, plus an adapter) to every format at
once, all-or-nothing (the ``kanzoo export`` command, :mod:`kanzoo.cli.export`, is built on it)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ..io import file_mode
from ..models import create_model
from ..peft import load_adapter
from ..weights import load_state_file, unwrap_checkpoint
from .metadata import model_name
from .onnx import to_onnx
from .pt2 import to_pt2
from .torchscript import to_torchscript
from .verify import ExportReport

__all__ = ["FORMATS", "FILE_SUFFIXES", "export_model", "build_model", "load_checkpoint_state"]

FORMATS = ("onnx", "torchscript", "pt2")
FILE_SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "pt2": ".pt2"}
PathLike = Union[str, os.PathLike]


def load_checkpoint_state(path: PathLike) -> Dict[str, torch.Tensor]:
    """The weights in a checkpoint file, read without running pickled code and unwrapped
    (:func:`kanzoo.weights.load_state_file` and :func:`kanzoo.weights.unwrap_checkpoint`)."""
    state = unwrap_checkpoint(load_state_file(path))
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: entries {bad[:5]} are not tensors; give a file holding the model's state_dict")
    return state


def build_model(name: str, pretrained: bool = False, checkpoint: Optional[PathLike] = None,
                adapter: Optional[PathLike] = None, model_kwargs: Optional[Mapping[str, Any]] = None) -> nn.Module:
    """The model a command exports: ``name`` with random weights, ``pretrained`` weights or a ``checkpoint``
    file (``kanzoo.create_model(name, checkpoint_path=...)``: loaded strictly, ``num_classes``/``in_chans`` read
    from its classifier and stem unless given in ``model_kwargs``), then an ``adapter`` folder merged in
    (``kanzoo.peft.load_adapter``). In eval mode."""
    if pretrained and checkpoint is not None:
        raise ValueError("give pretrained=True or a checkpoint file, not both")
    kwargs = dict(model_kwargs or {})
    if checkpoint is None:
        model = create_model(name, pretrained=pretrained, **kwargs)
    else:
        model = create_model(name, checkpoint_path=checkpoint, **kwargs)
    if adapter is not None:
        if not Path(adapter).is_dir():
            raise FileNotFoundError(f"adapter folder {adapter} does not exist")
        model = load_adapter(model, adapter, merge=True)
    return model.eval()


def _check_formats(formats: Union[str, Sequence[str]]) -> List[str]:
    if isinstance(formats, str):
        formats = [formats]
    out: List[str] = []
    for f in formats:
        for g in (FORMATS if f == "all" else [f]):
            if g not in FORMATS:
                raise ValueError(f"unknown export format {g!r}; choose from {list(FORMATS)} or 'all'")
            if g not in out:
                out.append(g)
    if not out:
        raise ValueError(f"no export format given; choose from {list(FORMATS)} or 'all'")
    return out


def export_model(
    name_or_model: Union[str, nn.Module],
    out_dir: PathLike,
    formats: Union[str, Sequence[str]] = FORMATS,
    pretrained: bool = False,
    checkpoint: Optional[PathLike] = None,
    adapter: Optional[PathLike] = None,
    model_kwargs: Optional[Mapping[str, Any]] = None,
    input_size: Any = None,
    opset: Optional[int] = None,
    quantize: Optional[str] = None,
    calibration_dir: Optional[PathLike] = None,
    label_names: Optional[Sequence[str]] = None,
    data_config: Optional[Mapping[str, Any]] = None,
    torchscript_method: str = "auto",
    dynamic_spatial: Optional[bool] = None,
    rtol: float = 1e-4,
    stem: Optional[str] = None,
    verbose: bool = True,
) -> List[ExportReport]:
    """Exports a model to each of ``formats`` in ``out_dir``, all verified, all or nothing.

    ``name_or_model`` is a registered name (built with :func:`build_model` from ``pretrained``,
    ``checkpoint``, ``adapter`` and ``model_kwargs``) or a model. Files are named ``<stem>.onnx``
    (``<stem>.int8-<mode>.onnx`` with ``quantize``), ``<stem>.torchscript.pt`` and ``<stem>.pt2``, with ``stem``
    the name as given (``vgg_kagn_bn11_v4.tck_in1k``) or the model's architecture by default. Every artifact is
    written and verified in a staging folder inside ``out_dir``
    and moved into place only when all of them pass; on any error nothing is left behind. The other arguments
    go to :func:`~kanzoo.export.to_onnx`, :func:`~kanzoo.export.to_torchscript` (``torchscript_method``) and
    :func:`~kanzoo.export.to_pt2`.

    Returns:
        One :class:`~kanzoo.export.ExportReport` per written file (the int8 model's after the ONNX one).
    """
    formats = _check_formats(formats)
    if quantize is not None and "onnx" not in formats:
        raise ValueError("quantize needs the onnx format")
    if isinstance(name_or_model, str):
        model = build_model(name_or_model, pretrained, checkpoint, adapter, model_kwargs)
    elif isinstance(name_or_model, nn.Module):
        if pretrained or checkpoint is not None or adapter is not None or model_kwargs:
            raise ValueError("pretrained, checkpoint, adapter and model_kwargs apply to a model name, not a model")
        model = name_or_model
    else:
        raise TypeError(f"name_or_model must be a model name or an nn.Module, got {type(name_or_model).__name__}")
    stem = stem or (name_or_model if isinstance(name_or_model, str) else model_name(model))
    if not stem or any(c in stem for c in "/\\") or stem.startswith("."):
        raise ValueError(f"stem must be a plain file name, got {stem!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a folder")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    common = dict(input_size=input_size, label_names=label_names, data_config=data_config, rtol=rtol, verbose=False)
    staging = Path(tempfile.mkdtemp(prefix=".kanzoo-export-", dir=out_dir))
    done = False
    try:
        reports: List[ExportReport] = []
        for fmt in formats:
            target = staging / f"{stem}{FILE_SUFFIXES[fmt]}"
            if fmt == "onnx":
                report = to_onnx(model, target, opset=opset, dynamic_spatial=dynamic_spatial, quantize=quantize,
                                 calibration_dir=calibration_dir, **common)
            elif fmt == "torchscript":
                report = to_torchscript(model, target, method=torchscript_method, **common)
            else:
                report = to_pt2(model, target, dynamic_spatial=dynamic_spatial, **common)
            reports.append(report)
            if report.quantized is not None:
                reports.append(report.quantized)
        for report in reports:
            final = out_dir / Path(report.path).name
            os.chmod(report.path, file_mode())
            os.replace(report.path, final)
            report.path = str(final)
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done and created and not any(out_dir.iterdir()):
            out_dir.rmdir()   # a folder this call created, left empty by the failure
    if verbose:
        for report in reports:
            print(report.summary(include_quantized=False))
    return reports

