"""``kanzoo convert``: a reference checkpoint (torch-conv-kan, U-KAN, MLP-KAN, Vision-KAN) into kanzoo's layout
(model.safetensors, config.json, README.md)."""
from __future__ import annotations

import argparse
import os

from ..compat.convert import FAMILIES, FAMILY_NAMES, convert_reference_checkpoint
from ..compat.tck.checkpoint import convert_checkpoint
from ..hub import save_pretrained
from ..io import read_json
from ..workflows.loading import create_model_code, saved_model_args
from ._args import KeyValues


def add_parser(sub) -> None:
    """Adds ``convert`` to the subcommands ``sub``."""
    cv = sub.add_parser("convert", help="convert a reference checkpoint (torch-conv-kan, U-KAN, MLP-KAN, Vision-KAN) "
                                        "to kanzoo's layout")
    cv.add_argument("source", help="tck: a folder with config.json + weights, a weight file, or a Hub repo id; "
                                   "ukan/mlpkan/visionkan: a local .pth state dict or training checkpoint, or a "
                                   ".safetensors file")
    cv.add_argument("out", help="output folder (model.safetensors, config.json, README.md)")
    cv.add_argument("--from", dest="from_family", default="tck", choices=("tck", "ukan", "mlpkan", "visionkan"),
                    help="what SOURCE is: tck = torch-conv-kan (default), ukan = CUHK-AIM-Group/U-KAN "
                         "segmentation weights (model.pth), mlpkan = DLYuanGod/MLP-KAN VisionKAN weights, "
                         "visionkan = chenziwenhaoshuai/Vision-KAN weights (checkpoint.pth: its `model` entry)")
    cv.add_argument("--arch", help="kanzoo architecture; default: inferred from config.json and/or the weights")
    cv.add_argument("--revision", help="Hub revision of the source (--from tck)")
    cv.add_argument("--tag", help="--from ukan|mlpkan|visionkan: a pretrained tag of the architecture whose cfg the "
                                  "output carries, e.g. ukan_busi, in1k, cifar100")
    cv.add_argument("--model-kwargs", nargs="+", action=KeyValues, default={}, metavar="KEY=VALUE",
                    help="--from ukan|mlpkan|visionkan: architecture arguments the weights do not show, e.g. "
                         "num_heads=3 (MLP-KAN's and Vision-KAN's heads; default embed_dim/64)")
    cv.set_defaults(func=run_convert)


def _written(out) -> str:
    return ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith(".")))


def _convert_reference(args: argparse.Namespace, family: str) -> int:
    """``--from ukan|mlpkan|visionkan``: a U-KAN, MLP-KAN or Vision-KAN reference state dict -> kanzoo's layout."""
    if args.revision:
        raise ValueError(f"--revision {args.revision} is for Hub sources (--from tck); --from {family} reads a local "
                         f"file: drop --revision")
    if not os.path.exists(args.source):
        raise ValueError(f"{args.source!r} does not exist; --from {family} reads a local reference checkpoint "
                         f"({FAMILIES[family]}): a .pth state dict or training checkpoint, or a .safetensors file")
    model, out = convert_reference_checkpoint(family, args.source, args.out, arch=args.arch, tag=args.tag,
                                              **args.model_kwargs)
    arch = model.pretrained_cfg["architecture"]
    name = f"{arch}.{args.tag}" if args.tag else arch
    params = sum(p.numel() for p in model.parameters())
    config = read_json(out / "config.json")
    shown = ", ".join(f"{k}={v!r}" for k, v in saved_model_args(config).items())
    dropped = ("; the blocks' unused mlp.fc1/fc2 (never run by the reference) dropped"
               if family in ("mlpkan", "visionkan") else "")
    print(f"converted {args.source} ({FAMILY_NAMES[family]} reference checkpoint) -> {arch}"
          f"{f' ({shown})' if shown else ''}, {params:,} parameters, every reference key used{dropped}")
    print(f"wrote {_written(out)} to {out}")
    print(f"load it with kanzoo.create_model('local-dir:{out}', pretrained=True)")
    print(f"or with {create_model_code(name, out, config)}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """Converts a reference checkpoint into kanzoo's layout: torch-conv-kan (``--from tck``, the default),
    U-KAN, MLP-KAN or Vision-KAN (``--from ukan|mlpkan|visionkan``)."""
    family = args.from_family
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"OUT {args.out!r} is a file; give a folder for model.safetensors, config.json and "
                         f"README.md")
    if family != "tck":
        return _convert_reference(args, family)
    given = [f for f, v in (("--tag", args.tag), ("--model-kwargs", args.model_kwargs)) if v]
    if given:
        raise ValueError(f"{' and '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --from "
                         f"ukan|mlpkan|visionkan only; torch-conv-kan checkpoints (--from tck) carry their "
                         f"config.json: drop {' and '.join(given)}")
    model = convert_checkpoint(args.source, arch=args.arch, revision=args.revision)
    out = save_pretrained(model, args.out)
    arch = model.pretrained_cfg["architecture"]
    params = sum(p.numel() for p in model.parameters())
    print(f"converted {args.source} -> {arch} ({params:,} parameters), every upstream key used")
    print(f"wrote {_written(out)} to {out}")
    print(f"load it with kanzoo.create_model('local-dir:{out}', pretrained=True)")
    return 0
