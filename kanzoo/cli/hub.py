"""``kanzoo download``, ``kanzoo push``, ``kanzoo release`` and ``kanzoo cards``: pretrained weights into the Hugging
Face cache, a model onto the Hub, every upstream checkpoint as a Hub-ready release, and the model cards of the
registry."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Dict, List

from ..errors import WorkflowError
from ..hub import push_to_hub, stale_model_cards, write_model_cards
from ..models import list_pretrained
from ..workflows.loading import download_pretrained, load_model
from ..workflows.release import build_release, push_release
from ._args import KeyValues


def add_download_parser(sub) -> None:
    """Adds ``download`` to the subcommands ``sub``."""
    dl = sub.add_parser("download", help="fetch and verify pretrained weights into the Hugging Face cache")
    dl.add_argument("names", nargs="*", help="name.tag (vgg_kagn_bn11_v4.tck_in1k) or hf-hub:org/repo")
    dl.add_argument("--all", action="store_true", help="every kanzoo tag with weights")
    dl.add_argument("--revision", help="a branch, tag or commit instead of the cfg's")
    dl.add_argument("--cache-dir", help="default: HF_HUB_CACHE")
    dl.set_defaults(func=run_download)


def add_publish_parsers(sub) -> None:
    """Adds ``push`` and ``cards`` to the subcommands ``sub``."""
    ps = sub.add_parser("push", help="publish a model to a Hugging Face Hub repo (weights, config.json, card)")
    ps.add_argument("name", help="model name, optionally with a tag")
    ps.add_argument("repo", help="target repo id, user-or-org/name")
    src = ps.add_mutually_exclusive_group()
    src.add_argument("--pretrained", action="store_true", help="push the registry's weights for NAME")
    src.add_argument("--checkpoint", help="push the weights in this file (safetensors or a torch state dict) or "
                                          "run folder (`kanzoo train`'s output)")
    ps.add_argument("--model-kwargs", nargs="+", action=KeyValues, default={}, metavar="KEY=VALUE",
                    help="model arguments, e.g. width_scale=0.25 (a run folder records its own)")
    ps.add_argument("--private", action="store_true")
    ps.add_argument("--revision", help="branch to commit to (default main)")
    ps.add_argument("--message", help="commit message")
    ps.set_defaults(func=run_push)

    rl = sub.add_parser("release", help="convert every upstream checkpoint into kanzoo's layout, one Hub-ready "
                                        "folder per tag (and --push them)")
    rl.add_argument("--out", required=True, help="release folder (one subfolder per tag, plus release.json)")
    rl.add_argument("--tags", nargs="+", help="a subset of the upstream tags (default: all)")
    rl.add_argument("--source", action="append", default=[], metavar="TAG=FILE",
                    help="the authors' file for a tag they host off the Hub (repeatable)")
    rl.add_argument("--org", default="kanzoo", help="Hub user or organisation of the repos ORG/<tag> (default kanzoo)")
    rl.add_argument("--push", action="store_true", help="upload the built folders and record each commit")
    rl.set_defaults(func=run_release)

    cd = sub.add_parser("cards", help="write one model card per pretrained tag (or --check them)")
    cd.add_argument("--out", default="model_cards", help="folder (default model_cards)")
    cd.add_argument("--check", action="store_true", help="exit 1 if a card differs from the registry")
    cd.set_defaults(func=run_cards)


def run_download(args: argparse.Namespace) -> int:
    """Fetches weights into the Hugging Face cache (for offline use later) and prints where they are."""
    names = list_pretrained() if args.all else args.names
    if not names:
        print("kanzoo: error: give model names (name.tag or hf-hub:org/repo) or --all", file=sys.stderr)
        return 2
    for name in names:
        t0 = time.perf_counter()
        path = download_pretrained(name, revision=args.revision, cache_dir=args.cache_dir)
        size = path.stat().st_size
        print(f"{name}: {path} ({size / 2**20:.1f} MiB, verified, {time.perf_counter() - t0:.1f} s)")
    return 0


def run_push(args: argparse.Namespace) -> int:
    """Publishes a model (registry weights or a checkpoint) to a Hub repo with config.json and a model card."""
    loaded = load_model(args.name, pretrained=args.pretrained, checkpoint=args.checkpoint,
                        model_kwargs=args.model_kwargs)
    url = push_to_hub(loaded.model, args.repo, commit_message=args.message, private=args.private or None,
                      revision=args.revision, label_names=loaded.label_names)
    print(f"pushed {args.name} to {args.repo}: {url}")
    print(f"load it with kanzoo.create_model('hf-hub:{args.repo}', pretrained=True)")
    return 0


def _sources(pairs: List[str]) -> Dict[str, str]:
    out = {}
    for pair in pairs:
        tag, sep, path = pair.partition("=")
        if not sep or not tag or not path:
            raise WorkflowError(f"--source takes TAG=FILE, got {pair!r}")
        out[tag] = path
    return out


def run_release(args: argparse.Namespace) -> int:
    """Builds a release folder of every upstream checkpoint (or --tags), then with --push uploads it."""
    report = build_release(args.out, tags=args.tags, sources=_sources(args.source), org=args.org)
    for e in report.released:
        print(f"{e.tag}: {args.out}/{e.folder} (source sha256 {e.source_sha256[:12]}…, model.safetensors "
              f"{e.sha256[:12]}…)")
    for tag, why in report.skipped.items():
        print(f"{tag}: skipped, {why}")
    if args.push:
        for e in push_release(args.out).released:
            print(f"{e.tag}: pushed to {e.repo_id}@{e.revision}; pin it with {e.registry_line()}")
    print(f"{len(report.released)} tag(s) released, {len(report.skipped)} skipped; index: {args.out}/release.json")
    return 0


def run_cards(args: argparse.Namespace) -> int:
    """Writes (or with --check, compares) one model card per pretrained tag."""
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
