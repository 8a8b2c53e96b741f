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
    from .models._stats import COUNTED_OPS, count_macs

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
        rows.append(("  counted", f"FLOPs/2 of {COUNTED_OPS} (torch.utils.flop_counter, {how}); the basis "
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


def _weights_cfg(name: str):
    """The pretrained cfg of ``name.tag`` that has weights (the default tag when none is given)."""
    from timm.models import get_pretrained_cfg, split_model_name_tag

    from .models import UnknownModelError, list_models, list_pretrained

    arch, _ = split_model_name_tag(name)
    if arch not in list_models(arch):
        raise UnknownModelError(f"unknown model {arch!r}; `kanzoo list` shows all models")
    cfg = get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise UnknownModelError(f"{name!r} has no weights on the Hub; tags that do: {list_pretrained()}")
    return cfg


def _cmd_download(args: argparse.Namespace) -> int:
    """Fetches weights into the Hugging Face cache (for offline use later) and prints where they are."""
    from .hub.download import download_weights, split_hub_id
    from .models import list_pretrained

    names = list_pretrained() if args.all else args.names
    if not names:
        print("kanzoo: error: give model names (name.tag or hf-hub:org/repo) or --all", file=sys.stderr)
        return 2
    for name in names:
        t0 = time.perf_counter()
        if name.startswith("hf-hub:"):
            from huggingface_hub import hf_hub_download

            repo_id, revision = split_hub_id(name[len("hf-hub:"):])
            hf_hub_download(repo_id, "config.json", revision=args.revision or revision, cache_dir=args.cache_dir,
                            library_name="kanzoo")
            path = download_weights(repo_id, revision=args.revision or revision, cache_dir=args.cache_dir,
                                    model_name=name)
        else:
            cfg = _weights_cfg(name)
            path = download_weights(cfg.hf_hub_id, filename=cfg.hf_hub_filename, revision=args.revision,
                                    sha256=getattr(cfg, "sha256", None), cache_dir=args.cache_dir, model_name=name)
        size = path.stat().st_size
        print(f"{name}: {path} ({size / 2**20:.1f} MiB, verified, {time.perf_counter() - t0:.1f} s)")
    return 0


def _load_model_for_cli(args: argparse.Namespace):
    """The model a command works on: NAME with --pretrained weights or a --checkpoint file (else random)."""
    from .models import create_model

    overlay = dict(file=args.checkpoint) if getattr(args, "checkpoint", None) else None
    pretrained = bool(getattr(args, "pretrained", False) or overlay)
    return create_model(args.name, pretrained=pretrained, pretrained_cfg_overlay=overlay).eval()


def _cmd_convert(args: argparse.Namespace) -> int:
    """Converts an upstream (torch-conv-kan) checkpoint into kanzoo's layout: model.safetensors, config.json,
    README.md."""
    from .compat.tck.checkpoint import convert_checkpoint
    from .hub.publish import save_pretrained

    model = convert_checkpoint(args.source, arch=args.arch, revision=args.revision)
    out = save_pretrained(model, args.out)
    arch = model.pretrained_cfg["architecture"]
    params = sum(p.numel() for p in model.parameters())
    print(f"converted {args.source} -> {arch} ({params:,} parameters), every upstream key used")
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir() if not p.name.startswith('.')))} to {out}")
    print(f"load it with kanzoo.create_model('local-dir:{out}', pretrained=True)")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    """Publishes a model (registry weights or a checkpoint) to a Hub repo with config.json and a model card."""
    from .hub.publish import push_to_hub

    model = _load_model_for_cli(args)
    url = push_to_hub(model, args.repo, commit_message=args.message, private=args.private or None,
                      revision=args.revision)
    print(f"pushed {args.name} to {args.repo}: {url}")
    print(f"load it with kanzoo.create_model('hf-hub:{args.repo}', pretrained=True)")
    return 0


def _cmd_cards(args: argparse.Namespace) -> int:
    """Writes (or with --check, compares) one model card per pretrained tag."""
    from .hub.cards import stale_model_cards, write_model_cards

    if args.check:
        stale = stale_model_cards(args.out)
        for s in stale:
            print(f"stale: {s}")
        if stale:
            print(f"kanzoo: {len(stale)} model card(s) differ from the registry; run `kanzoo cards --out {args.out}`",
                  file=sys.stderr)
            return 1
        print(f"model cards in {args.out} are up to date")
        return 0
    for path in write_model_cards(args.out):
        print(path)
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

    dl = sub.add_parser("download", help="fetch and verify pretrained weights into the Hugging Face cache")
    dl.add_argument("names", nargs="*", help="name.tag (vgg_kagn_bn11_v4.tck_in1k) or hf-hub:org/repo")
    dl.add_argument("--all", action="store_true", help="every kanzoo tag with weights")
    dl.add_argument("--revision", help="a branch, tag or commit instead of the cfg's")
    dl.add_argument("--cache-dir", help="default: HF_HUB_CACHE")
    dl.set_defaults(func=_cmd_download)

    cv = sub.add_parser("convert", help="convert an upstream (torch-conv-kan) checkpoint to kanzoo's layout")
    cv.add_argument("source", help="a folder with config.json + weights, a weight file, or a Hub repo id")
    cv.add_argument("out", help="output folder (model.safetensors, config.json, README.md)")
    cv.add_argument("--arch", help="kanzoo architecture; default: inferred from config.json and the weights")
    cv.add_argument("--revision", help="Hub revision of the source")
    cv.set_defaults(func=_cmd_convert)

    ps = sub.add_parser("push", help="publish a model to a Hugging Face Hub repo (weights, config.json, card)")
    ps.add_argument("name", help="model name, optionally with a tag")
    ps.add_argument("repo", help="target repo id, user-or-org/name")
    src = ps.add_mutually_exclusive_group()
    src.add_argument("--pretrained", action="store_true", help="push the registry's weights for NAME")
    src.add_argument("--checkpoint", help="push the weights in this file (safetensors or a torch state dict)")
    ps.add_argument("--private", action="store_true")
    ps.add_argument("--revision", help="branch to commit to (default main)")
    ps.add_argument("--message", help="commit message")
    ps.set_defaults(func=_cmd_push)

    cd = sub.add_parser("cards", help="write one model card per pretrained tag (or --check them)")
    cd.add_argument("--out", default="model_cards", help="folder (default model_cards)")
    cd.add_argument("--check", action="store_true", help="exit 1 if a card differs from the registry")
    cd.set_defaults(func=_cmd_cards)
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
    from .hub.download import PretrainedWeightsError
    from .models import UnknownModelError

    try:
        return args.func(args)
    except UnknownModelError as e:  # a usage error: the message names the closest models, no traceback
        print(f"kanzoo: error: {e}", file=sys.stderr)
        return 2
    except (PretrainedWeightsError, FileNotFoundError, ValueError) as e:
        print(f"kanzoo: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `kanzoo list | head`
        sys.stdout = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
