"""What ``kanzoo info`` and ``kanzoo layers`` report: a model's summary (class, family, task, parameters, MACs
and FLOPs, pretrained cfg, tags, papers) and one KAN convolution per basis, run and timed."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import torch
from timm.models import get_arch_pretrained_cfgs, get_pretrained_cfg, model_entrypoint, split_model_name_tag
from torch import nn

from ..layers import KANConvNd, get_basis_class, list_bases
from ..models import create_model, list_pretrained
from ..models._base import model_task
from ..profile import COUNTED_OPS, count, count_macs

__all__ = ["CFG_KEYS", "model_summary", "format_cfg_value", "BasisTiming", "time_bases"]

#: the pretrained cfg entries a summary shows, when set
CFG_KEYS = ("input_size", "min_input_size", "fixed_input_size", "num_classes", "mean", "std", "crop_pct", "crop_mode",
            "interpolation", "pool_size", "first_conv", "classifier", "hf_hub_id", "url", "license", "origin_url")


def format_cfg_value(v: Any) -> str:
    """A pretrained cfg value as one readable string: float tuples to 4 significant digits, string lists
    comma-separated."""
    if isinstance(v, (tuple, list)):
        if all(isinstance(x, float) for x in v):
            return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
        return ", ".join(map(str, v)) if all(isinstance(x, str) for x in v) else str(tuple(v))
    return str(v)


def _parameter_rows(model: nn.Module) -> List[Tuple[str, str]]:
    """``parameters``, plus ``active parameters`` for sparse (top-k routed) models, whose total counts every
    expert while an input uses fewer."""
    params = sum(p.numel() for p in model.parameters())
    active = getattr(model, "num_active_parameters", None)
    n = active() if callable(active) else None
    if n is None:
        return [("parameters", f"{params:,} ({params / 1e6:.2f} M)")]
    unit = getattr(model, "routing_unit", "input")  # what a route is chosen for: a token, an image
    counts = getattr(model, "parameter_counts", None)
    span = counts() if callable(counts) else {}
    span = (f"; {span['active_min']:,} to {span['active_max']:,} by route"
            if "active_min" in span and "active_max" in span else "")
    return [("parameters", f"{params:,} ({params / 1e6:.2f} M) in total, every expert"),
            ("active parameters", f"{n:,} ({n / 1e6:.2f} M) per {unit}, mean over routes (top-k routing{span})")]


def _cost_rows(name: str, model: nn.Module, input_size: Tuple[int, ...]) -> List[Tuple[str, str]]:
    """GMACs (torch's flop counter, on the meta device when the model allows) and GFLOPs (kanzoo.profile)."""
    how, counted = "meta device", model
    try:
        macs, per_op = count_macs(model, input_size)
    except (RuntimeError, NotImplementedError):  # data-dependent ops (MoE routing) need real tensors
        how = "real forward on CPU"
        torch.manual_seed(0)
        counted = create_model(name)
        macs, per_op = count_macs(counted, input_size, device="cpu")
    size = "x".join(map(str, input_size))
    ops = ", ".join(f"{k} {v / 2e9:.3f}" for k, v in sorted(per_op.items(), key=lambda kv: -kv[1]))
    prof = count(counted, input_size)
    return [
        ("GMACs", f"{macs / 1e9:.3f} at {size}" + (f" ({ops})" if ops else "")),
        ("  counted", f"FLOPs/2 of {COUNTED_OPS} (torch.utils.flop_counter, {how}); the basis expansion, norms, "
                      f"activations and pooling are not counted"),
        ("GFLOPs", f"{prof.flops / 1e9:.3f} at {size} = dense {prof.dense_flops / 1e9:.3f} (2 x GMACs) "
                   f"+ KAN basis evaluation {prof.basis_flops / 1e9:.3f}"),
        ("  counted", "kanzoo.profile.count; activations and norms not counted (docs/profile.md)"),
    ]


def _cfg_rows(arch: str, cfg: dict) -> List[Tuple[str, str]]:
    """The pretrained cfg, the architecture's tags, the published metrics of those with weights, and papers."""
    tags = [c.split(".", 1)[1] for c in get_arch_pretrained_cfgs(arch) if "." in c]
    weighted = list_pretrained(f"{arch}.*")
    rows = [("pretrained cfg", cfg.get("tag") and f"{arch}.{cfg['tag']}" or arch)]
    rows += [("  " + key, format_cfg_value(cfg[key])) for key in CFG_KEYS if cfg.get(key) not in (None, "", False)]
    rows.append(("tags", ", ".join(tags) if tags else "-"))
    rows.append(("tags with weights", ", ".join(weighted) if weighted else "none (pretrained=True raises an error)"))
    for tagged in weighted:
        published = get_pretrained_cfg(tagged)
        metrics = getattr(published, "metrics", None)
        if metrics:
            where = getattr(published, "dataset", None) or "evaluation set"
            shown = ", ".join(f"{k.replace('top', 'top-')} {v:g}%" for k, v in metrics.items())
            rows.append((f"  {tagged.split('.', 1)[1]}", f"{shown} ({where}, published)"))
    papers = cfg.get("paper_ids")
    if isinstance(papers, str):
        papers = [p.strip() for p in papers.split(",") if p.strip()]
    rows.append(("paper ids", ", ".join(papers) if papers else "-"))
    if cfg.get("paper_name"):
        rows.append(("paper", cfg["paper_name"]))
    return rows


def model_summary(name: str, input_size: Optional[Sequence[int]] = None, macs: bool = True
                  ) -> List[Tuple[str, str]]:
    """``(label, value)`` rows describing model ``name`` (``arch`` or ``arch.tag``): architecture, description,
    family, task, parameters (and active parameters of routed models), GMACs and GFLOPs at ``input_size``
    (default: the pretrained cfg's; skipped with ``macs=False``), pretrained cfg, tags and papers.

    The model is built on the meta device (no weights are loaded); an unknown name raises
    :class:`~kanzoo.errors.UnknownModelError` with the closest registered names.
    """
    arch = split_model_name_tag(name)[0]
    model = create_model(name, device="meta")
    cfg = model.pretrained_cfg
    cls = type(model)
    entrypoint = model_entrypoint(arch)
    family = entrypoint.__module__.rsplit(".", 1)[-1]  # the module timm registered the model from
    doc = (entrypoint.__doc__ or "").strip().splitlines()
    size = tuple(input_size) if input_size else tuple(cfg["input_size"])
    rows = [
        ("architecture", arch),
        ("description", doc[0] if doc else "-"),
        ("family", f"{family} ({cls.__module__}.{cls.__qualname__})"),
        ("task", model_task(model)),
    ]
    rows += _parameter_rows(model)
    if macs:
        rows += _cost_rows(name, model, size)
    return rows + _cfg_rows(arch, cfg)


@dataclass
class BasisTiming:
    """One basis in ``kanzoo layers``: a ``KANConv2d(C, C, 3, padding=1)`` run once forward (no grad, after a
    warm-up) and once forward + backward."""

    basis: str
    basis_class: str
    num_basis: int
    params: int
    output_shape: Tuple[int, ...]
    forward_ms: float
    forward_backward_ms: float
    finite: bool  # output and input gradient hold no NaN or inf


def time_bases(batch: int, channels: int, size: int, seed: int = 0) -> Iterator[BasisTiming]:
    """A :class:`BasisTiming` for every registered basis (:func:`kanzoo.layers.list_bases`), each as soon as
    it is measured, on one random ``(batch, channels, size, size)`` input drawn after ``torch.manual_seed(seed)``.
    Uses torch's current CPU thread count."""
    torch.manual_seed(seed)
    x = torch.randn(batch, channels, size, size)
    for name in list_bases():
        layer = KANConvNd(channels, channels, 3, padding=1, basis=name)
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
        yield BasisTiming(name, get_basis_class(name).__name__, layer.num_basis,
                          sum(p.numel() for p in layer.parameters()), tuple(y.shape), fwd * 1e3, fb * 1e3,
                          bool(torch.isfinite(y).all() and torch.isfinite(xi.grad).all()))
