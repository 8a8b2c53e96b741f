"""The ``kanzoo`` command."""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List, Optional


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
    from timm.models import get_arch_pretrained_cfgs, get_pretrained_cfg, model_entrypoint, split_model_name_tag

    from .models import create_model, list_pretrained
    from .models._base import model_task
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
        ("task", model_task(model)),
        ("parameters", f"{params:,} ({params / 1e6:.2f} M)"),
    ]
    if not args.no_macs:
        from .profile import count

        how, counted = "meta device", model
        try:
            macs, per_op = count_macs(model, input_size)
        except (RuntimeError, NotImplementedError):  # data-dependent ops (MoE routing) need real tensors
            how = "real forward on CPU"
            torch.manual_seed(0)
            counted = create_model(args.name)
            macs, per_op = count_macs(counted, input_size, device="cpu")
        size = "x".join(map(str, input_size))
        ops = ", ".join(f"{k} {v / 2e9:.3f}" for k, v in sorted(per_op.items(), key=lambda kv: -kv[1]))
        rows.append(("GMACs", f"{macs / 1e9:.3f} at {size}" + (f" ({ops})" if ops else "")))
        rows.append(("  counted", f"FLOPs/2 of {COUNTED_OPS} (torch.utils.flop_counter, {how}); the basis "
                                  f"expansion, norms, activations and pooling are not counted"))
        prof = count(counted, input_size)
        rows.append(("GFLOPs", f"{prof.flops / 1e9:.3f} at {size} = dense {prof.dense_flops / 1e9:.3f} (2 x GMACs) "
                               f"+ KAN basis evaluation {prof.basis_flops / 1e9:.3f}"))
        rows.append(("  counted", "kanzoo.profile.count; activations and norms not counted (docs/profile.md)"))

    active = getattr(model, "num_active_parameters", None)
    n = active() if callable(active) else None
    if n is not None:  # sparse (top-k routed) models: the total counts every expert, an input uses fewer
        rows[4] = ("parameters", f"{params:,} ({params / 1e6:.2f} M) in total, every expert")
        unit = getattr(model, "routing_unit", "input")  # what a route is chosen for: a token, an image
        counts = getattr(model, "parameter_counts", None)
        span = counts() if callable(counts) else {}
        span = (f"; {span['active_min']:,} to {span['active_max']:,} by route"
                if "active_min" in span and "active_max" in span else "")
        rows.insert(5, ("active parameters", f"{n:,} ({n / 1e6:.2f} M) per {unit}, mean over routes (top-k "
                                             f"routing{span})"))
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
    for name in weighted:
        published = get_pretrained_cfg(name)
        metrics = getattr(published, "metrics", None)
        if metrics:
            where = getattr(published, "dataset", None) or "evaluation set"
            shown = ", ".join(f"{k.replace('top', 'top-')} {v:g}%" for k, v in metrics.items())
            rows.append((f"  {name.split('.', 1)[1]}", f"{shown} ({where}, published)"))
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
    """The model a command works on: NAME with --pretrained weights, a --checkpoint (a weight file, a training
    checkpoint or a run folder) and an --adapter (else random weights), with its class names."""
    from .workflows.loading import adapter_base, load_model

    pretrained = bool(getattr(args, "pretrained", False))
    checkpoint = getattr(args, "checkpoint", None)
    adapter = getattr(args, "adapter", None)
    if adapter and not (pretrained or checkpoint):  # the base the adapter was trained on, from its run folder
        pretrained, checkpoint = adapter_base(adapter)
        if not (pretrained or checkpoint):
            raise ValueError(f"--adapter {adapter} needs the base weights it was trained on: add --pretrained or "
                             f"--checkpoint FILE")
    return load_model(args.name, pretrained=pretrained, checkpoint=checkpoint, adapter=adapter,
                      model_kwargs=getattr(args, "model_kwargs", None) or {},
                      device=getattr(args, "device_obj", "cpu"))


def _convert_reference(args: argparse.Namespace, family: str) -> int:
    """``kanzoo convert --from ukan|mlpkan``: a U-KAN or MLP-KAN reference state dict -> kanzoo's layout."""
    import json

    from timm.models import get_pretrained_cfg

    from .compat.convert import FAMILIES, FAMILY_NAMES, convert_reference_checkpoint

    if args.revision:
        raise ValueError(f"--revision {args.revision} is for Hub sources (--from tck); --from {family} reads a local "
                         f"file: drop --revision")
    if not os.path.exists(args.source):
        raise ValueError(f"{args.source!r} does not exist; --from {family} reads a local reference checkpoint "
                         f"({FAMILIES[family]}): a .pth state dict or a .safetensors file")
    model, out = convert_reference_checkpoint(family, args.source, args.out, arch=args.arch, tag=args.tag,
                                              **args.model_kwargs)
    arch = model.pretrained_cfg["architecture"]
    name = f"{arch}.{args.tag}" if args.tag else arch
    params = sum(p.numel() for p in model.parameters())
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    margs = {k: v for k, v in (config.get("model_args") or {}).items() if k != "pretrained_cfg_overlay"}
    shown = ", ".join(f"{k}={v!r}" for k, v in margs.items())
    dropped = "; the blocks' unused mlp.fc1/fc2 (never run by the reference) dropped" if family == "mlpkan" else ""
    print(f"converted {args.source} ({FAMILY_NAMES[family]} reference checkpoint) -> {arch}"
          f"{f' ({shown})' if shown else ''}, {params:,} parameters, every reference key used{dropped}")
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir() if not p.name.startswith('.')))} to {out}")
    print(f"load it with kanzoo.create_model('local-dir:{out}', pretrained=True)")
    # by name, the overlay must repeat what differs from the registered cfg: timm drops a classifier whose
    # num_classes differs from the cfg's, and the input size drives the preprocessing
    registered, written = get_pretrained_cfg(name), config.get("pretrained_cfg") or {}
    overlay = f"file='{out / 'model.safetensors'}'"
    for key in ("num_classes", "input_size"):
        value, default = written.get(key), getattr(registered, key, None)
        if isinstance(value, list):
            value = tuple(value)
        if value is not None and value != (tuple(default) if isinstance(default, list) else default):
            overlay += f", {key}={value!r}"
    print(f"or with kanzoo.create_model('{name}', pretrained=True, pretrained_cfg_overlay=dict({overlay})"
          f"{''.join(f', {k}={v!r}' for k, v in margs.items())})")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    """Converts a reference checkpoint into kanzoo's layout (model.safetensors, config.json, README.md):
    torch-conv-kan (``--from tck``, the default), U-KAN or MLP-KAN (``--from ukan|mlpkan``)."""
    from .compat.tck.checkpoint import convert_checkpoint
    from .hub.publish import save_pretrained

    family = getattr(args, "from_family", None) or "tck"
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"OUT {args.out!r} is a file; give a folder for model.safetensors, config.json and "
                         f"README.md")
    if family != "tck":
        return _convert_reference(args, family)
    given = [f for f, v in (("--tag", getattr(args, "tag", None)),
                            ("--model-kwargs", getattr(args, "model_kwargs", None))) if v]
    if given:
        raise ValueError(f"{' and '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --from ukan|mlpkan "
                         f"only; torch-conv-kan checkpoints (--from tck) carry their config.json: drop "
                         f"{' and '.join(given)}")
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

    loaded = _load_model_for_cli(args)
    url = push_to_hub(loaded.model, args.repo, commit_message=args.message, private=args.private or None,
                      revision=args.revision, label_names=loaded.label_names)
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


class _KeyValues(argparse.Action):
    """``--opt KEY=VALUE ...`` -> a dict (values are Python literals, else strings); no pairs -> ``{}``."""

    def __call__(self, parser, namespace, values, option_string=None):
        from .workflows._common import WorkflowError, parse_kv

        try:
            setattr(namespace, self.dest, parse_kv(values, option_string or self.dest))
        except WorkflowError as e:
            parser.error(str(e))


def _add_source_args(p: argparse.ArgumentParser, adapter: bool = True) -> None:
    """--pretrained / --checkpoint / --adapter / --model-kwargs: which weights a command uses."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pretrained", action="store_true", help="the registry's weights for NAME (name.tag)")
    src.add_argument("--checkpoint", metavar="PATH",
                     help="a weight file (.safetensors, .pth), a training checkpoint, or a run folder")
    if adapter:
        p.add_argument("--adapter", metavar="DIR", help="merge this basis adapter (a `kanzoo finetune --peft` run "
                                                        "folder) into the model")
    p.add_argument("--model-kwargs", nargs="+", action=_KeyValues, default={}, metavar="KEY=VALUE",
                   help="model arguments, e.g. width_scale=0.25 (a run folder records its own)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")


def _progress(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() if args.progress is None else args.progress


def _task(args: argparse.Namespace, loaded) -> str:
    """--task, or the task the model declares (segmentation for U-KAN and friends, else classification)."""
    from .workflows.segmentation import resolve_task

    return resolve_task(loaded.model, getattr(args, "task", None), args.name or loaded.arch)


def _predict_masks(args: argparse.Namespace, loaded) -> int:
    """``kanzoo predict`` on a segmentation model: a PNG mask overlay per image, one line per image."""
    from .workflows.segmentation import DEFAULT_MASK_DIR, format_mask_prediction, predict_segmentation

    preds, skipped = predict_segmentation(loaded, args.images, out_dir=args.out or DEFAULT_MASK_DIR,
                                          batch_size=args.batch_size, device=args.device_obj, img_size=args.img_size,
                                          threshold=0.5 if args.threshold is None else args.threshold,
                                          save_masks=args.save_masks)
    for p in preds:
        print(format_mask_prediction(p))
    return _skipped_status(len(preds), skipped)


def _skipped_status(done: int, skipped: list) -> int:
    """Exit status of a predict run: 1, with a count on stderr, when some images were skipped."""
    if skipped:
        print(f"kanzoo: {len(skipped)} of {done + len(skipped)} image(s) skipped (missing or would not decode)",
              file=sys.stderr)
        return 1
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    """Top-k classes with probabilities for each image; a mask overlay per image for segmentation models."""
    from .workflows._common import resolve_device
    from .workflows.predict import format_predictions, predict

    args.device_obj = resolve_device(args.device)
    loaded = _load_model_for_cli(args)
    if _task(args, loaded) == "segmentation":
        return _predict_masks(args, loaded)
    given = [f for f, v in (("--out", args.out), ("--threshold", args.threshold), ("--save-masks", args.save_masks))
             if v not in (None, False)]
    if given:
        raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to segmentation models; "
                         f"{args.name or loaded.arch} is a classifier (it prints top-{args.topk} classes): drop "
                         f"{', '.join(given)}")
    preds, skipped = predict(loaded, args.images, topk=args.topk, batch_size=args.batch_size,
                             device=args.device_obj, img_size=args.img_size)
    if preds:
        print(format_predictions(preds))
    return _skipped_status(len(preds), skipped)


def _cmd_validate(args: argparse.Namespace) -> int:
    """top-1 / top-5 / loss on an ImageFolder; IoU and Dice/F1 on an images/masks folder (segmentation)."""
    from .workflows._common import resolve_device
    from .workflows.validate import format_result, validate

    args.device_obj = resolve_device(args.device)
    loaded = _load_model_for_cli(args)
    if _task(args, loaded) == "segmentation":
        from .workflows.segmentation import validate_segmentation

        if args.crop_pct is not None:
            raise ValueError(f"--crop-pct {args.crop_pct} applies to classification; segmentation images are "
                             f"resized whole to the input size (--img-size): drop --crop-pct")
        threshold = 0.5 if args.threshold is None else args.threshold
        r = validate_segmentation(loaded, args.data_dir, batch_size=args.batch_size, workers=args.workers,
                                  amp=args.amp, device=args.device_obj, img_size=args.img_size, threshold=threshold,
                                  progress=_progress(args))
        binary = " (binary, threshold {:g})".format(threshold) if loaded.model.num_classes == 1 else ""
        print(r.format(f"{args.name or loaded.arch} on {args.data_dir}{binary}"))
        return 0
    if args.threshold is not None:
        raise ValueError(f"--threshold applies to segmentation models; {args.name or loaded.arch} is a classifier: "
                         f"drop --threshold")
    r = validate(loaded, args.data_dir, batch_size=args.batch_size, workers=args.workers, amp=args.amp,
                 device=args.device_obj, img_size=args.img_size, crop_pct=args.crop_pct, progress=_progress(args))
    print(format_result(r, f"{args.name or loaded.arch} on {args.data_dir}"))
    return 0


def _train_config(args: argparse.Namespace):
    import dataclasses

    from .workflows.train import TrainConfig

    names = [f.name for f in dataclasses.fields(TrainConfig)]
    return TrainConfig.from_dict({n: getattr(args, n) for n in names if hasattr(args, n)})


def _cmd_train(args: argparse.Namespace) -> int:
    """Trains (or with --peft, adapts) a model on an ImageFolder; resumable, DDP under torchrun."""
    from .workflows.train import train

    if not args.model:
        raise ValueError(f"give the model NAME to {args.command} (or --resume RUN to continue a run)")
    if not args.data:
        raise ValueError("give the training images with --data DIR (DIR/train/CLASS/*.png and DIR/val/CLASS/*.png, "
                         "or DIR/CLASS/*.png)")
    if args.command == "finetune" and args.pretrained is None:
        args.pretrained = not args.checkpoint
    args.pretrained = bool(args.pretrained)
    train(_train_config(args), resume=args.resume)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    """Loss/accuracy curves of a run as a PNG."""
    from .workflows.plot import plot_run

    out = plot_run(args.run_dir, args.out)
    print(f"wrote {out}")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    """Parameters, GMACs, latency and throughput."""
    from .workflows.benchmark import benchmark

    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    r = benchmark(args.name, batch=args.batch, size=args.size, device=args.device, dtype=args.dtype,
                  iters=args.iters, warmup=args.warmup, train=args.train, model_kwargs=args.model_kwargs,
                  macs=not args.no_macs)
    print("\n".join(r.lines()))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """The offline end-to-end demo."""
    from .workflows.demo import run_demo

    return run_demo(epochs=args.epochs, adapt_epochs=args.adapt_epochs, fast=args.fast, output=args.output,
                    threads=args.threads, seed=args.seed)


def _add_workflow_parsers(sub) -> Dict[str, argparse.ArgumentParser]:
    """predict, validate, train, finetune, plot, benchmark, demo (and export when kanzoo.export is there)."""
    parsers: Dict[str, argparse.ArgumentParser] = {}
    tasks = ("classification", "segmentation")
    task_help = "default: the model's (segmentation for U-KAN/UKANet models, else classification)"
    pr = sub.add_parser("predict", help="top-k classes for image files, or PNG mask overlays (segmentation models)")
    pr.add_argument("name", help="model name (name.tag for registry weights)")
    pr.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of them")
    _add_source_args(pr)
    pr.add_argument("--task", choices=tasks, help=task_help)
    pr.add_argument("--topk", type=int, default=5, help="classification: classes shown per image")
    pr.add_argument("-b", "--batch-size", type=int, default=32)
    pr.add_argument("--img-size", type=int, help="input size instead of the pretrained cfg's")
    pr.add_argument("--out", metavar="DIR", help="segmentation: folder for the overlays, DIR/STEM_overlay.png "
                                                 "(default ./predicted_masks/)")
    pr.add_argument("--threshold", type=float, help="segmentation, binary models: foreground where "
                                                    "sigmoid(logit) > THRESHOLD (default 0.5)")
    pr.add_argument("--save-masks", action="store_true", help="segmentation: also write the bare mask, "
                                                              "DIR/STEM_mask.png (binary 0/255, else class indices)")
    pr.set_defaults(func=_cmd_predict)

    va = sub.add_parser("validate", help="top-1 / top-5 / loss on an ImageFolder, or IoU and Dice/F1 on an "
                                         "images/masks folder (segmentation models)")
    va.add_argument("name", help="model name (name.tag for registry weights)")
    va.add_argument("data_dir", metavar="DATA_DIR", help="classification: one subfolder per class (ImageNet synsets "
                                                         "for in1k models); segmentation: DATA_DIR/images/NAME.png "
                                                         "and DATA_DIR/masks/NAME.png")
    _add_source_args(va)
    va.add_argument("--task", choices=tasks, help=task_help)
    va.add_argument("-b", "--batch-size", type=int, default=64)
    va.add_argument("-j", "--workers", type=int, default=2)
    va.add_argument("--amp", action="store_true", help="bfloat16 autocast on GPU")
    va.add_argument("--img-size", type=int)
    va.add_argument("--crop-pct", type=float, help="classification only")
    va.add_argument("--threshold", type=float, help="segmentation, binary models: foreground where "
                                                    "sigmoid(logit) > THRESHOLD (default 0.5)")
    va.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bar (default: on a terminal)")
    va.set_defaults(func=_cmd_validate)

    for cmd, helptext in (("train", "train a model on an ImageFolder (DDP under torchrun)"),
                          ("finetune", "fine-tune pretrained weights, fully or with basis adapters (--peft)")):
        ft = cmd == "finetune"
        t = sub.add_parser(cmd, help=helptext)
        t.add_argument("model", nargs="?", default=None, metavar="NAME", help="model name (name.tag)")
        t.add_argument("--data", help="DIR/train + DIR/val, or one folder with a subfolder per class")
        t.add_argument("--val-data", help="validation folder (default DATA/val)")
        t.add_argument("-o", "--output", help="run folder (default runs/NAME-DATE-TIME)")
        t.add_argument("--resume", metavar="RUN", help="continue the run in this folder (its settings are the "
                                                       "defaults; options given here override them)")
        src = t.add_mutually_exclusive_group()
        src.add_argument("--pretrained", action="store_true", default=None if ft else False,
                         help="start from the registry's weights"
                              + (" (the default without --checkpoint)" if ft else ""))
        src.add_argument("--checkpoint", help="start from a weight file or run folder")
        t.add_argument("--model-kwargs", nargs="+", action=_KeyValues, default={}, metavar="KEY=VALUE")
        t.add_argument("--peft", nargs="*", action=_KeyValues, default=None, metavar="KEY=VALUE",
                       help="train basis adapters only (kanzoo.peft), e.g. --peft extra_degrees=1 rank=4; the run "
                            "folder gets the adapter and the merged model")
        g = t.add_argument_group("optimisation")
        g.add_argument("--epochs", type=int, default=5 if ft else 10)
        g.add_argument("-b", "--batch-size", type=int, default=64, help="per process (global = this x processes)")
        g.add_argument("--lr", type=float, default=5e-4 if ft else 1e-3, help="AdamW learning rate (global batch)")
        g.add_argument("--min-lr", type=float, default=1e-6)
        g.add_argument("--weight-decay", type=float, default=0.05)
        g.add_argument("--warmup-epochs", type=float, default=0.5 if ft else 1.0)
        g.add_argument("--warmup-lr", type=float, default=1e-6)
        g.add_argument("--label-smoothing", "--smoothing", type=float, default=0.1)
        g.add_argument("--clip-grad", type=float, default=None)
        g.add_argument("--amp", action="store_true", help="autocast on GPU")
        g.add_argument("--amp-dtype", default="bfloat16", choices=("bfloat16", "float16"))
        a = t.add_argument_group("data and augmentation (timm.data)")
        a.add_argument("--img-size", type=int, help="input size (default: the pretrained cfg's)")
        a.add_argument("--no-aug", action="store_true", help="no augmentation: resize and centre crop only")
        a.add_argument("--scale", type=float, nargs=2, default=(0.08, 1.0), metavar=("MIN", "MAX"))
        a.add_argument("--ratio", type=float, nargs=2, default=(3 / 4, 4 / 3), metavar=("MIN", "MAX"))
        a.add_argument("--hflip", type=float, default=0.5)
        a.add_argument("--vflip", type=float, default=0.0)
        a.add_argument("--color-jitter", type=float, default=0.4)
        a.add_argument("--aa", "--auto-augment", dest="auto_augment", help="e.g. rand-m9-mstd0.5")
        a.add_argument("--reprob", dest="re_prob", type=float, default=0.0, help="random erasing probability")
        a.add_argument("-j", "--workers", type=int, default=2)
        r = t.add_argument_group("run")
        r.add_argument("--seed", type=int, default=42)
        r.add_argument("--device", help="cpu, cuda (default: cuda when available; cuda:LOCAL_RANK under torchrun)")
        r.add_argument("--log-interval", type=int, default=50, help="log the loss every N steps")
        r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bars (default: on a terminal)")
        r.add_argument("-q", "--quiet", action=argparse.BooleanOptionalAction, default=False,
                       help="no per-epoch lines")
        s = t.add_argument_group("basis selection (S-KAN models with selectable KAN layers, e.g. s_convkan_*; "
                                 "defaults: the model's pretrained cfg; docs/selectable.md)")
        s.add_argument("--select-epoch", type=int, metavar="N",
                       help="train every candidate basis for N epochs, then keep each channel's top-k (their "
                            "mixing weights frozen)")
        s.add_argument("--prune-epoch", type=int, metavar="M",
                       help="prune to the kept bases after M epochs (N <= M <= --epochs; = --epochs: after the "
                            "last one); the optimizer is rebuilt, the lr schedule goes on")
        s.add_argument("--select-top-k", type=int, metavar="K", help="bases each channel keeps (default 1)")
        s.add_argument("--no-selection", action="store_true",
                       help="train the full mixture of bases throughout: no selection, no pruning")
        t.set_defaults(func=_cmd_train)
        parsers[cmd] = t

    pl = sub.add_parser("plot", help="draw a run's loss/accuracy curves to a PNG")
    pl.add_argument("run_dir", metavar="RUN_DIR")
    pl.add_argument("--out", help="PNG path (default RUN_DIR/curves.png)")
    pl.set_defaults(func=_cmd_plot)

    bm = sub.add_parser("benchmark", help="parameters, GMACs, latency and throughput of a model")
    bm.add_argument("name")
    bm.add_argument("--batch", type=int, default=1)
    bm.add_argument("--size", type=int, default=None, help="image size (default: the pretrained cfg's)")
    bm.add_argument("--device", default="cpu")
    bm.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    bm.add_argument("--iters", type=int, default=20)
    bm.add_argument("--warmup", type=int, default=5)
    bm.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    bm.add_argument("--train", action="store_true", help="time forward + backward")
    bm.add_argument("--no-macs", action="store_true")
    bm.add_argument("--model-kwargs", nargs="+", action=_KeyValues, default={}, metavar="KEY=VALUE")
    bm.set_defaults(func=_cmd_benchmark)

    dm = sub.add_parser("demo", help="offline end-to-end demo: train, validate, adapt, merge, export (CPU, minutes)")
    dm.add_argument("--epochs", type=int, default=None, help="training epochs (default 8; 1 with --fast)")
    dm.add_argument("--adapt-epochs", type=int, default=None, help="adapter epochs (default 10; 1 with --fast)")
    dm.add_argument("--fast", action="store_true", help="a reduced run (fewer images and epochs), for tests")
    dm.add_argument("-o", "--output", help="keep the runs in this folder (default: a temporary folder)")
    dm.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: the model is tiny, more threads mostly wait on each other)")
    dm.add_argument("--seed", type=int, default=0)
    dm.set_defaults(func=_cmd_demo)

    try:  # `kanzoo export` comes with kanzoo.export
        from .export import add_export_arguments
    except ImportError:  # a kanzoo without kanzoo.export: no export command
        pass
    else:
        ex = sub.add_parser("export", help="export a model to ONNX, TorchScript and .pt2, each verified against "
                                           "eager (--checkpoint also takes a run folder)")
        add_export_arguments(ex)
        ex.set_defaults(func=_cmd_export)
    return parsers


def _cmd_export(args: argparse.Namespace) -> int:
    """``kanzoo export`` (kanzoo.export's command); a run folder given as --checkpoint is loaded here, so its
    config.json supplies the model arguments, input size and class names."""
    from .export import run_export

    if not (args.checkpoint and os.path.isdir(args.checkpoint)):
        return run_export(args)
    from .export import ExportError, export_model
    from .workflows.loading import load_model

    given = [f for f, v in (("--model-arg", args.model_arg), ("--num-classes", args.num_classes),
                            ("--in-chans", args.in_chans), ("--labels", args.labels)) if v]
    if given:
        raise ValueError(f"{args.checkpoint} is a run folder: its config.json records the model arguments and class "
                         f"names, so drop {', '.join(given)}")
    loaded = load_model(args.name, checkpoint=args.checkpoint, adapter=args.adapter)
    size = args.input_size
    if size is not None and len(size) not in (1, 2, 3):
        raise ValueError(f"--input-size takes SIDE, H W or C H W, got {' '.join(map(str, size))}")
    data_config = {k: v for k, v in (("mean", args.mean), ("std", args.std), ("crop_pct", args.crop_pct),
                                     ("interpolation", args.interpolation)) if v is not None}
    try:
        export_model(loaded.model, args.out, formats=args.formats or ["all"],
                     input_size=size[0] if size is not None and len(size) == 1 else size, opset=args.opset,
                     quantize=args.quantize, calibration_dir=args.calibration_dir, label_names=loaded.label_names,
                     data_config=data_config or None, torchscript_method=args.torchscript_method,
                     dynamic_spatial=False if args.static_spatial else None, rtol=args.rtol, verbose=not args.quiet)
    except ExportError as e:
        raise ValueError(str(e).strip() or type(e).__name__) from None
    return 0


def _apply_resume_defaults(parser: argparse.ArgumentParser, sub: argparse.ArgumentParser,
                           argv: Optional[List[str]], args: argparse.Namespace) -> argparse.Namespace:
    """For ``train/finetune --resume RUN``: the run's saved settings become the defaults, so only the options
    given again on the command line change."""
    from .workflows.train import saved_config

    saved = saved_config(args.resume)
    sub.set_defaults(**{k: v for k, v in saved.items() if k not in ("output",)})
    return parser.parse_args(argv)


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

    cv = sub.add_parser("convert", help="convert a reference checkpoint (torch-conv-kan, U-KAN, MLP-KAN) to kanzoo's "
                                        "layout")
    cv.add_argument("source", help="tck: a folder with config.json + weights, a weight file, or a Hub repo id; "
                                   "ukan/mlpkan: a local .pth state dict or .safetensors file")
    cv.add_argument("out", help="output folder (model.safetensors, config.json, README.md)")
    cv.add_argument("--from", dest="from_family", default="tck", choices=("tck", "ukan", "mlpkan"),
                    help="what SOURCE is: tck = torch-conv-kan (default), ukan = CUHK-AIM-Group/U-KAN "
                         "segmentation weights (model.pth), mlpkan = DLYuanGod/MLP-KAN VisionKAN weights")
    cv.add_argument("--arch", help="kanzoo architecture; default: inferred from config.json and/or the weights")
    cv.add_argument("--revision", help="Hub revision of the source (--from tck)")
    cv.add_argument("--tag", help="--from ukan|mlpkan: a pretrained tag of the architecture whose cfg the output "
                                  "carries, e.g. ukan_busi")
    cv.add_argument("--model-kwargs", nargs="+", action=_KeyValues, default={}, metavar="KEY=VALUE",
                    help="--from ukan|mlpkan: architecture arguments the weights do not show, e.g. num_heads=3 "
                         "(MLP-KAN's heads; default embed_dim/64)")
    cv.set_defaults(func=_cmd_convert)

    ps = sub.add_parser("push", help="publish a model to a Hugging Face Hub repo (weights, config.json, card)")
    ps.add_argument("name", help="model name, optionally with a tag")
    ps.add_argument("repo", help="target repo id, user-or-org/name")
    src = ps.add_mutually_exclusive_group()
    src.add_argument("--pretrained", action="store_true", help="push the registry's weights for NAME")
    src.add_argument("--checkpoint", help="push the weights in this file (safetensors or a torch state dict) or "
                                          "run folder (`kanzoo train`'s output)")
    ps.add_argument("--private", action="store_true")
    ps.add_argument("--revision", help="branch to commit to (default main)")
    ps.add_argument("--message", help="commit message")
    ps.set_defaults(func=_cmd_push)

    cd = sub.add_parser("cards", help="write one model card per pretrained tag (or --check them)")
    cd.add_argument("--out", default="model_cards", help="folder (default model_cards)")
    cd.add_argument("--check", action="store_true", help="exit 1 if a card differs from the registry")
    cd.set_defaults(func=_cmd_cards)
    p._workflow_parsers = _add_workflow_parsers(sub)  # type: ignore[attr-defined]
    return p


#: options that must be >= 1 when a command has them
_POSITIVE = ("batch", "batch_size", "channels", "size", "threads", "topk", "epochs", "iters", "img_size",
             "log_interval", "adapt_epochs")


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .hub.download import PretrainedWeightsError
    from .models import UnknownModelError

    try:
        if getattr(args, "command", None) in ("train", "finetune") and args.resume:
            args = _apply_resume_defaults(parser, parser._workflow_parsers[args.command], argv, args)
        for name in _POSITIVE:
            value = getattr(args, name, None)
            if value is not None and value < 1:
                parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if getattr(args, "workers", 0) < 0:
            parser.error(f"--workers must be >= 0, got {args.workers}")
        return args.func(args)
    except UnknownModelError as e:  # a usage error: the message names the closest models, no traceback
        print(f"kanzoo: error: {e}", file=sys.stderr)
        return 2
    except (PretrainedWeightsError, FileNotFoundError, ValueError) as e:
        print(f"kanzoo: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kanzoo list | head`
        sys.stdout = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
