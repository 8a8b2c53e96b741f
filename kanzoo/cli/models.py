"""``kanzoo list``, ``kanzoo info`` and ``kanzoo layers``: the registered models, one model's summary, and
every basis in a KAN convolution."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

import torch

from ..models import list_models
from ..workflows.info import model_summary, time_bases


def add_parsers(sub) -> None:
    """Adds ``layers``, ``list`` and ``info`` to the subcommands ``sub``."""
    lp = sub.add_parser("layers", help="run a KAN conv over every basis and print shapes and timings")
    lp.add_argument("--batch", type=int, default=8)
    lp.add_argument("--channels", type=int, default=16)
    lp.add_argument("--size", type=int, default=32)
    lp.add_argument("--threads", type=int, default=2)
    lp.add_argument("--seed", type=int, default=0)
    lp.set_defaults(func=run_layers)

    ls = sub.add_parser("list", help="list kanzoo's models (one per line, then a count)")
    ls.add_argument("pattern", nargs="?", default=None,
                    help="glob (vgg_*_v4) or substring (kagn); default: all")
    ls.add_argument("--pretrained", action="store_true", help="list name.tag entries that have weights")
    ls.add_argument("-q", "--quiet", action="store_true", help="names only, no count line")
    ls.set_defaults(func=run_list)

    info = sub.add_parser("info", help="describe a model: family, parameters, GMACs, pretrained cfg, papers")
    info.add_argument("name", help="model name, optionally with a tag (vgg_kagn11_v4.tck_in1k)")
    info.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                      help="count MACs at this input size instead of the cfg's")
    info.add_argument("--no-macs", action="store_true", help="skip the MAC count")
    info.set_defaults(func=run_info)


def run_layers(args: argparse.Namespace) -> int:
    """Prints a table of one KAN conv per basis; 1 when one of them gives a non-finite output or gradient."""
    torch.set_num_threads(args.threads)
    header = f"{'basis':<10} {'class':<15} {'F':>3} {'params':>8} {'output':<18} {'fwd ms':>7} {'fwd+bwd ms':>10}"
    print(f"KANConv2d({args.channels}, {args.channels}, 3, padding=1) on input "
          f"{(args.batch, args.channels, args.size, args.size)}, {torch.get_num_threads()} threads")
    print(header)
    print("-" * len(header))
    for t in time_bases(args.batch, args.channels, args.size, seed=args.seed):
        if not t.finite:
            print(f"{t.basis}: non-finite output or gradient", file=sys.stderr)
            return 1
        print(f"{t.basis:<10} {t.basis_class:<15} {t.num_basis:>3} {t.params:>8} {str(t.output_shape):<18} "
              f"{t.forward_ms:>7.1f} {t.forward_backward_ms:>10.1f}")
    return 0


def _matching(pattern: Optional[str]) -> str:
    """A glob for ``kanzoo list``: a pattern without wildcards matches as a substring (``vgg`` -> ``*vgg*``)."""
    if not pattern:
        return "*"
    return pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"


def run_list(args: argparse.Namespace) -> int:
    """Prints kanzoo's registered models (or ``name.tag`` entries with weights), one per line, then a count."""
    names = list_models(_matching(args.pattern), pretrained=args.pretrained)
    for n in names:
        print(n)
    what = "pretrained model tags" if args.pretrained else "models"
    if not args.quiet:
        suffix = f" matching {args.pattern!r}" if args.pattern else ""
        print(f"{len(names)} {what}{suffix}")
    if not names and args.pattern:
        print(f"kanzoo: no {what} match {args.pattern!r}; `kanzoo list` shows them all", file=sys.stderr)
        return 1
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Prints :func:`kanzoo.workflows.info.model_summary` as two aligned columns."""
    rows = model_summary(args.name, input_size=args.input_size, macs=not args.no_macs)
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0
