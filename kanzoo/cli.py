"""The ``kanzoo`` command."""
from __future__ import annotations

import argparse
import os
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


def _matching(pattern: Optional[str]) -> str:
    """A glob for ``kanzoo list``: a pattern without wildcards matches as a substring (``vgg`` -> ``*vgg*``)."""
    if not pattern:
        return "*"
    return pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"


def _cmd_list(args: argparse.Namespace) -> int:
    """Prints kanzoo's registered models (or ``name.tag`` entries with weights), one per line, then a count."""
    from .models import list_models

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


#: what torch.utils.flop_counter counts, of the ops kanzoo's models run
_COUNTED_OPS = "convolutions, matmuls (mm/addmm/bmm/baddbmm) and attention"


def count_macs(model, input_size, device: str = "meta"):
    """MACs (FLOPs / 2) of one batch-1 forward at ``input_size`` (C, H, W), by torch.utils.flop_counter.

    Counts only the ops FlopCounterMode has formulas for: convolutions, matmuls (mm/addmm/bmm/baddbmm) and
    attention. The basis expansion, norms, activations and pooling are elementwise and not counted. On the
    meta device nothing is computed or allocated. Returns ``(macs, {op: flops})``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, *input_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    per_op = {str(k).replace("aten.", ""): v for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return counter.get_total_flops() / 2, per_op


def _fmt_cfg_value(v) -> str:
    if isinstance(v, (tuple, list)):
        if all(isinstance(x, float) for x in v):
            return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
        return ", ".join(map(str, v)) if all(isinstance(x, str) for x in v) else str(tuple(v))
    return str(v)


def _cmd_info(args: argparse.Namespace) -> int:
    """Describes one model: class, family, parameters, MACs, pretrained cfg, tags and papers."""
    import torch
    from timm.models import get_arch_pretrained_cfgs, model_entrypoint, split_model_name_tag

    from .models import create_model, list_pretrained
    from .models._factory import model_module

    arch = split_model_name_tag(args.name)[0]
    model = create_model(args.name, device="meta")  # raises UnknownModelError with the closest names
    cfg = model.pretrained_cfg
    cls = type(model)
    doc = (model_entrypoint(arch).__doc__ or "").strip().splitlines()
    input_size = tuple(args.input_size) if args.input_size else tuple(cfg["input_size"])
    params = sum(p.numel() for p in model.parameters())

    rows = [
        ("architecture", arch),
        ("description", doc[0] if doc else "-"),
        ("family", f"{model_module(arch)} ({cls.__module__}.{cls.__qualname__})"),
        ("task", getattr(model, "task", "classification")),
        ("parameters", f"{params:,} ({params / 1e6:.2f} M)"),
    ]
    if not args.no_macs:
        how = "meta device"
        try:
            macs, per_op = count_macs(model, input_size)
        except (RuntimeError, NotImplementedError):  # data-dependent ops (MoE routing) need real tensors
            how = "real forward on CPU"
            torch.manual_seed(0)
            real = create_model(args.name)
            macs, per_op = count_macs(real, input_size, device="cpu")
        ops = ", ".join(f"{k} {v / 2e9:.3f}" for k, v in sorted(per_op.items(), key=lambda kv: -kv[1]))
        rows.append(("GMACs", f"{macs / 1e9:.3f} at {'x'.join(map(str, input_size))}"
                              + (f" ({ops})" if ops else "")))
        rows.append(("  counted", f"FLOPs/2 of {_COUNTED_OPS} (torch.utils.flop_counter, {how}); the basis "
                                  f"expansion, norms, activations and pooling are not counted"))

    tags = [c.split(".", 1)[1] for c in get_arch_pretrained_cfgs(arch) if "." in c]
    weighted = list_pretrained(f"{arch}.*")
    rows.append(("pretrained cfg", cfg.get("tag") and f"{arch}.{cfg['tag']}" or arch))
    for key in ("input_size", "min_input_size", "fixed_input_size", "num_classes", "mean", "std", "crop_pct",
                "crop_mode", "interpolation", "pool_size", "first_conv", "classifier", "hf_hub_id", "url",
                "license", "origin_url"):
        if cfg.get(key) not in (None, "", False):
            rows.append(("  " + key, _fmt_cfg_value(cfg[key])))
    rows.append(("tags", ", ".join(tags) if tags else "-"))
    rows.append(("tags with weights", ", ".join(weighted) if weighted else "none (pretrained=True raises an error)"))
    papers = cfg.get("paper_ids")
    if isinstance(papers, str):
        papers = [p.strip() for p in papers.split(",") if p.strip()]
    rows.append(("paper ids", ", ".join(papers) if papers else "-"))
    if cfg.get("paper_name"):
        rows.append(("paper", cfg["paper_name"]))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
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

    ls = sub.add_parser("list", help="list kanzoo's models (one per line, then a count)")
    ls.add_argument("pattern", nargs="?", default=None,
                    help="glob (vgg_*_v4) or substring (kagn); default: all")
    ls.add_argument("--pretrained", action="store_true", help="list name.tag entries that have weights")
    ls.add_argument("-q", "--quiet", action="store_true", help="names only, no count line")
    ls.set_defaults(func=_cmd_list)

    info = sub.add_parser("info", help="describe a model: family, parameters, GMACs, pretrained cfg, papers")
    info.add_argument("name", help="model name, optionally with a tag (vgg_kagn11_v4.tck_in1k)")
    info.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                      help="count MACs at this input size instead of the cfg's")
    info.add_argument("--no-macs", action="store_true", help="skip the MAC count")
    info.set_defaults(func=_cmd_info)
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
    from .models import UnknownModelError

    try:
        return args.func(args)
    except UnknownModelError as e:  # a usage error: the message names the closest models, no traceback
        print(f"kanzoo: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `kanzoo list | head`
        sys.stdout = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
