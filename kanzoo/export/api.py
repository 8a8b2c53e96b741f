"""``export_model``: a model by name (random, pretrained, a checkpoint, plus an adapter) to every format at
once, all-or-nothing; and the ``kanzoo export`` command built on it."""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .metadata import INTERPOLATIONS, model_name
from .onnx import to_onnx
from .pt2 import to_pt2
from .quantize import QUANTIZE_MODES
from .torchscript import TORCHSCRIPT_METHODS, to_torchscript
from .verify import ExportError, ExportReport

__all__ = ["FORMATS", "FILE_SUFFIXES", "export_model", "build_model", "load_checkpoint_state", "add_export_arguments",
           "run_export"]

FORMATS = ("onnx", "torchscript", "pt2")
FILE_SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "pt2": ".pt2"}
PathLike = Union[str, os.PathLike]


def load_checkpoint_state(path: PathLike) -> Dict[str, torch.Tensor]:
    """The weights in a checkpoint file, loaded without running pickled code.

    A safetensors file is read with safetensors; anything else with ``torch.load(weights_only=True)``, which
    refuses pickles that hold more than tensors and plain containers. Training checkpoints are unwrapped
    (``state_dict_ema`` > ``state_dict`` > ``model``) and a ``module.`` prefix (DataParallel) is dropped.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..models._base import unwrap_checkpoint

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state: Any = load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  (UnpicklingError, RuntimeError for non-checkpoint files ...)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{path} is neither a safetensors file nor a checkpoint that "
                             f"torch.load(weights_only=True) accepts ({first}); save the model's state_dict with "
                             f"safetensors.torch.save_file") from e
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    state = unwrap_checkpoint(state)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: entries {bad[:5]} are not tensors; give a file holding the model's state_dict")
    return state


def _infer_shape_kwargs(name: str, state: Mapping[str, torch.Tensor], kwargs: Dict[str, Any]) -> None:
    """Fills ``num_classes`` and ``in_chans`` from the checkpoint's classifier and stem weights, unless given."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        return
    classifier = cfg.classifier if isinstance(cfg.classifier, str) else None
    if "num_classes" not in kwargs and classifier and f"{classifier}.weight" in state:
        kwargs["num_classes"] = int(state[f"{classifier}.weight"].shape[0])
    first = cfg.first_conv if isinstance(cfg.first_conv, str) else None
    if "in_chans" not in kwargs and first and f"{first}.weight" in state and state[f"{first}.weight"].dim() >= 2:
        kwargs["in_chans"] = int(state[f"{first}.weight"].shape[1])


def build_model(name: str, pretrained: bool = False, checkpoint: Optional[PathLike] = None,
                adapter: Optional[PathLike] = None, model_kwargs: Optional[Mapping[str, Any]] = None) -> nn.Module:
    """The model a command exports: ``name`` with random weights, ``pretrained`` weights or a ``checkpoint``
    file (loaded strictly; ``num_classes``/``in_chans`` are read from its classifier and stem unless given in
    ``model_kwargs``), then an ``adapter`` folder merged in (``kanzoo.peft.load_adapter``). In eval mode."""
    from ..models import create_model

    if pretrained and checkpoint is not None:
        raise ValueError("give pretrained=True or a checkpoint file, not both")
    kwargs = dict(model_kwargs or {})
    if checkpoint is None:
        model = create_model(name, pretrained=pretrained, **kwargs)
    else:
        state = load_checkpoint_state(checkpoint)
        _infer_shape_kwargs(name, state, kwargs)
        model = create_model(name, **kwargs)
        filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
        if filter_fn is not None:
            state = filter_fn(state, model)
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
                  if k in own and v.shape != own[k].shape]
        if missing or unexpected or shapes:
            def few(keys: List[str]) -> str:
                return f"{keys[:5]}{' ...' if len(keys) > 5 else ''}"

            found = (("missing keys", missing), ("unexpected keys", unexpected),
                     ("shape mismatches (checkpoint vs model)", shapes))
            parts = [f"{what} {few(keys)}" for what, keys in found if keys]
            raise ValueError(
                f"checkpoint {checkpoint} does not fit {name}{' with ' + str(kwargs) if kwargs else ''}: "
                f"{'; '.join(parts)}; pass the model arguments it was trained with (CLI: --model-arg KEY=VALUE)")
        model.load_state_dict(state, strict=True)
    if adapter is not None:
        try:
            from ..peft import load_adapter
        except ImportError as e:
            raise ValueError(f"adapter {adapter} given but kanzoo.peft is not available ({e})") from e
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


# ------------------------------------------------------------------------------------------------ command
def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the arguments of ``kanzoo export NAME ...`` to ``parser`` (run it with :func:`run_export`)."""
    parser.add_argument("name", help="registered model name, optionally with a tag (vgg_kagn_bn11_v4.tck_in1k)")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", action="store_true", help="load the tag's published weights")
    weights.add_argument("--checkpoint", metavar="FILE",
                         help="weights file (safetensors, or a torch checkpoint loaded with weights_only=True)")
    parser.add_argument("--adapter", metavar="DIR", help="adapter folder to merge in (kanzoo.peft)")
    parser.add_argument("--format", dest="formats", action="append", choices=FORMATS + ("all",),
                        help="format to write; repeat for several (default: all)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write to (created if needed)")
    parser.add_argument("--input-size", type=int, nargs="+", metavar="N",
                        help="export size: SIDE, H W or C H W (default: the pretrained cfg's input_size)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the newest that torch's exporter writes and the "
                                                 "installed onnxruntime runs)")
    parser.add_argument("--quantize", choices=QUANTIZE_MODES, help="also write an int8 ONNX model")
    parser.add_argument("--calibration-dir", metavar="DIR", help="images to calibrate --quantize static on")
    parser.add_argument("--torchscript-method", choices=TORCHSCRIPT_METHODS, default="auto",
                        help="script, trace, or auto: script and fall back to trace (default)")
    parser.add_argument("--static-spatial", action="store_true",
                        help="fix height and width at the export size (default: dynamic where the model allows)")
    parser.add_argument("--num-classes", type=int, help="classifier size (default: the cfg's or the checkpoint's)")
    parser.add_argument("--in-chans", type=int, help="input channels (default: the cfg's or the checkpoint's)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="extra model argument, e.g. width_scale=0.25 (Python literal; repeatable)")
    parser.add_argument("--labels", metavar="FILE", help="class names: one per line, or a JSON list")
    parser.add_argument("--mean", type=float, nargs="+", help="normalisation mean to store (default: the cfg's)")
    parser.add_argument("--std", type=float, nargs="+", help="normalisation std to store (default: the cfg's)")
    parser.add_argument("--crop-pct", type=float, help="center-crop fraction to store (default: the cfg's)")
    parser.add_argument("--interpolation", choices=INTERPOLATIONS, help="resize interpolation to store")
    parser.add_argument("--rtol", type=float, default=1e-4,
                        help="verification tolerance, relative to the largest output (default 1e-4)")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    return parser


def _parse_model_args(items: Sequence[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--model-arg takes KEY=VALUE with KEY a Python name, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _read_labels(path: Optional[str]) -> Optional[List[str]]:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"labels file {p} does not exist")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        names = json.loads(text)
        if not isinstance(names, list):
            raise ValueError(f"{p} must hold a JSON list of class names")
        return [str(n) for n in names]
    return [line.strip() for line in text.splitlines() if line.strip()]


def run_export(args: argparse.Namespace) -> int:
    """Runs ``kanzoo export`` for parsed :func:`add_export_arguments` arguments; 0 on success, 1 with a
    one-line error on stderr otherwise."""
    try:
        model_kwargs = _parse_model_args(args.model_arg)
        if args.num_classes is not None:
            model_kwargs["num_classes"] = args.num_classes
        if args.in_chans is not None:
            model_kwargs["in_chans"] = args.in_chans
        data_config = {k: v for k, v in (("mean", args.mean), ("std", args.std), ("crop_pct", args.crop_pct),
                                         ("interpolation", args.interpolation)) if v is not None}
        size = args.input_size
        if size is not None and len(size) not in (1, 2, 3):
            raise ValueError(f"--input-size takes SIDE, H W or C H W, got {' '.join(map(str, size))}")
        export_model(
            args.name, args.out, formats=args.formats or ["all"], pretrained=args.pretrained,
            checkpoint=args.checkpoint, adapter=args.adapter, model_kwargs=model_kwargs,
            input_size=size[0] if size is not None and len(size) == 1 else size, opset=args.opset,
            quantize=args.quantize, calibration_dir=args.calibration_dir, label_names=_read_labels(args.labels),
            data_config=data_config or None, torchscript_method=args.torchscript_method,
            dynamic_spatial=False if args.static_spatial else None, rtol=args.rtol, verbose=not args.quiet)
    except (ValueError, TypeError, OSError, RuntimeError, ExportError) as e:
        msg = str(e).strip() or type(e).__name__
        print(f"kanzoo export: error: {msg}", file=sys.stderr)
        return 1
    return 0
