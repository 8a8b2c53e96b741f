"""``kanzoo export``: a model (random, ``--pretrained``, a ``--checkpoint`` file or run folder, plus an
``--adapter``) to ONNX, TorchScript and .pt2, each verified against eager, with :func:`kanzoo.export.export_model`."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import List, Optional

from ..errors import WorkflowError
from ..export import FORMATS, QUANTIZE_MODES, TORCHSCRIPT_METHODS, export_model
from ..export.metadata import INTERPOLATIONS
from ..io import parse_kv, read_json
from ..workflows.loading import load_model
from ._args import ErrorReport

#: kanzoo export reports what the exporters raise (TypeError, RuntimeError) as one line too, and every error,
#: an unknown model name included, with status 1
ERRORS = ErrorReport(also=(TypeError, RuntimeError), unknown_model_status=1)


def add_parser(sub) -> None:
    """Adds ``export`` to the subcommands ``sub``."""
    parser = sub.add_parser("export", help="export a model to ONNX, TorchScript and .pt2, each verified against "
                                           "eager (--checkpoint also takes a run folder)")
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
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the newest that torch's exporter writes and "
                                                 "the installed onnxruntime runs)")
    parser.add_argument("--quantize", choices=QUANTIZE_MODES, help="also write an int8 ONNX model")
    parser.add_argument("--calibration-dir", metavar="DIR", help="images to calibrate --quantize static on")
    parser.add_argument("--torchscript-method", choices=TORCHSCRIPT_METHODS, default="auto",
                        help="script, trace, or auto: script and fall back to trace (default)")
    parser.add_argument("--static-spatial", action="store_true",
                        help="fix height and width at the export size (default: dynamic where the model allows)")
    parser.add_argument("--num-classes", type=int, help="classifier size (default: the cfg's or the checkpoint's)")
    parser.add_argument("--in-chans", type=int, help="input channels (default: the cfg's or the checkpoint's)")
    parser.add_argument("--model-kwargs", "--model-arg", dest="model_arg", nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE", help="model arguments, e.g. width_scale=0.25 (Python literals), as in the "
                                                  "other commands; --model-arg is the older spelling")
    parser.add_argument("--labels", metavar="FILE", help="class names: one per line, or a JSON list")
    parser.add_argument("--mean", type=float, nargs="+", help="normalisation mean to store (default: the cfg's)")
    parser.add_argument("--std", type=float, nargs="+", help="normalisation std to store (default: the cfg's)")
    parser.add_argument("--crop-pct", type=float, help="center-crop fraction to store (default: the cfg's)")
    parser.add_argument("--interpolation", choices=INTERPOLATIONS, help="resize interpolation to store")
    parser.add_argument("--rtol", type=float, default=1e-4,
                        help="verification tolerance, relative to the largest output (default 1e-4)")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    parser.set_defaults(func=run_export, errors=ERRORS)


def _read_labels(path: Optional[str]) -> Optional[List[str]]:
    """``--labels FILE``: one class name per line, or a JSON list."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"labels file {p} does not exist")
    if p.suffix.lower() == ".json":
        names = read_json(p)
        if not isinstance(names, list):
            raise WorkflowError(f"{p} must hold a JSON list of class names")
        return [str(n) for n in names]
    return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_export(args: argparse.Namespace) -> int:
    """Exports NAME; a run folder given as --checkpoint brings its own model arguments, input size and class
    names (its config.json), so --model-arg, --num-classes, --in-chans and --labels do not apply to it."""
    size = args.input_size
    if size is not None and len(size) not in (1, 2, 3):
        raise WorkflowError(f"--input-size takes SIDE, H W or C H W, got {' '.join(map(str, size))}")
    data_config = {k: v for k, v in (("mean", args.mean), ("std", args.std), ("crop_pct", args.crop_pct),
                                     ("interpolation", args.interpolation)) if v is not None}
    options = dict(formats=args.formats or ["all"], input_size=size[0] if size is not None and len(size) == 1 else size,
                   opset=args.opset, quantize=args.quantize, calibration_dir=args.calibration_dir,
                   data_config=data_config or None, torchscript_method=args.torchscript_method,
                   dynamic_spatial=False if args.static_spatial else None, rtol=args.rtol, verbose=not args.quiet)
    if args.checkpoint and os.path.isdir(args.checkpoint):
        given = [f for f, v in (("--model-arg", args.model_arg), ("--num-classes", args.num_classes),
                                ("--in-chans", args.in_chans), ("--labels", args.labels)) if v]
        if given:
            raise WorkflowError(f"{args.checkpoint} is a run folder: its config.json records the model arguments and "
                                f"class names, so drop {', '.join(given)}")
        loaded = load_model(args.name, checkpoint=args.checkpoint, adapter=args.adapter)
        export_model(loaded.model, args.out, label_names=loaded.label_names, **options)
        return 0
    model_kwargs = parse_kv(args.model_arg, "--model-arg")
    if args.num_classes is not None:
        model_kwargs["num_classes"] = args.num_classes
    if args.in_chans is not None:
        model_kwargs["in_chans"] = args.in_chans
    export_model(args.name, args.out, pretrained=args.pretrained, checkpoint=args.checkpoint, adapter=args.adapter,
                 model_kwargs=model_kwargs, label_names=_read_labels(args.labels), **options)
    return 0
