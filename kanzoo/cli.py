"""The ``kanzoo`` command."""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional


def _cmd_layers(args: argparse.Namespace) -> int:
    """Builds a KAN conv over every basis, runs a batch through it and prints what it measured."""
    import torch

    from .layers import KANConvNd, get_basis_class, list_bases

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, args.channels, args.size, args.size)
    header = f"{'basis':<10} {'class':<15} {'F':>3} {'params':>8} {'output':<18} {'fwd ms':>7} {'fwd+bwd ms':>10}"
    print(f"KANConv2d({args.channels}, {args.channels}, 3, padding=1) on input {tuple(x.shape)}, "
          f"{torch.get_num_threads()} threads")
    print(header)
    print("-" * len(header))
    for name in list_bases():
        layer = KANConvNd(args.channels, args.channels, 3, padding=1, basis=name)
        with torch.no_grad():
            layer.eval()(x)
            t0 = time.perf_counter()
            y = layer(x)
            fwd = time.perf_counter() - t0
        layer.train()
        xi = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        layer(xi).sum().backward()
        fb = time.perf_counter() - t0
        if not torch.isfinite(y).all() or not torch.isfinite(xi.grad).all():
            print(f"{name}: non-finite output or gradient", file=sys.stderr)
            return 1
        params = sum(p.numel() for p in layer.parameters())
        print(f"{name:<10} {get_basis_class(name).__name__:<15} {layer.num_basis:>3} {params:>8} "
              f"{str(tuple(y.shape)):<18} {fwd * 1e3:>7.1f} {fb * 1e3:>10.1f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="kanzoo", description="Kolmogorov-Arnold networks for computer vision.")
    p.add_argument("--version", action="version", version=f"kanzoo {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    lp = sub.add_parser("layers", help="run a KAN conv over every basis and print shapes and timings")
    lp.add_argument("--batch", type=int, default=8)
    lp.add_argument("--channels", type=int, default=16)
    lp.add_argument("--size", type=int, default=32)
    lp.add_argument("--threads", type=int, default=2)
    lp.add_argument("--seed", type=int, default=0)
    lp.set_defaults(func=_cmd_layers)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    for name in ("batch", "channels", "size", "threads"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
