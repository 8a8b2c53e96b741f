"""Model cards (a Hub ``README.md``: YAML metadata, then markdown) generated from the registry.

``kanzoo cards`` writes one card per pretrained tag into ``model_cards/``; ``push_to_hub`` writes one next to
the weights. Everything in a card comes from the pretrained cfg (:class:`~kanzoo.models._base.KANPretrainedCfg`:
description, papers, license, ``metrics``, ``dataset``, ``provenance``) and from the model itself (parameters,
GMACs), so a card cannot drift from the registry without the test that regenerates them failing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import timm
from huggingface_hub import EvalResult, ModelCardData
from timm.models import get_pretrained_cfg, model_entrypoint, split_model_name_tag
from torch import nn

from ..io import atomic_write_text
from ..models import create_model, list_models, list_pretrained
from ..models._base import model_task
from ..profile import count_macs
from ..weights import Upstream, is_full_commit

#: bibliographic facts for the papers kanzoo's cfgs cite: arXiv id -> (BibTeX key, authors, title, year)
PAPERS = {
    "2407.01092": ("drokin2024kolmogorov", "Ivan Drokin",
                   "Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies", 2024),
    "2409.10594": ("yang2024kolmogorov", "Xingyi Yang and Xinchao Wang", "Kolmogorov-Arnold Transformer", 2024),
    "2404.19756": ("liu2024kan", "Ziming Liu and Yixuan Wang and Sachin Vaidya and Fabian Ruehle and James Halverson "
                   "and Marin Soljačić and Thomas Y. Hou and Max Tegmark", "KAN: Kolmogorov-Arnold Networks", 2024),
}
_METRIC_NAMES = {"top1": "top-1 accuracy", "top5": "top-5 accuracy"}
_DATASET_NAMES = {"imagenet-1k": "ImageNet-1k"}


def _paper_ids(cfg: Dict[str, Any]) -> List[str]:
    ids = cfg.get("paper_ids") or []
    if isinstance(ids, str):
        ids = [p.strip() for p in ids.split(",") if p.strip()]
    return [p.split(":", 1)[1] if p.lower().startswith("arxiv:") else p for p in ids]


def _bibtex(arxiv_id: str) -> Optional[str]:
    if arxiv_id not in PAPERS:
        return None
    key, authors, title, year = PAPERS[arxiv_id]
    return (f"@misc{{{key},\n  title = {{{title}}},\n  author = {{{authors}}},\n  year = {{{year}}},\n"
            f"  eprint = {{{arxiv_id}}},\n  archivePrefix = {{arXiv}},\n  primaryClass = {{cs.CV}}\n}}")


def _fmt_tuple(v: Sequence[float]) -> str:
    return "(" + ", ".join(f"{x:.3f}" for x in v) + ")"


def card_tags() -> List[str]:
    """Every ``name.tag`` that gets a card: the tags with weights, and the announced ones, whose cfg records
    published metrics for weights that are not on the Hub yet (their cards say how to convert them)."""
    archs = set(list_models())
    tagged = [n for n in timm.list_models(include_tags=True) if "." in n and n.split(".", 1)[0] in archs]
    announced = [n for n, cfg in ((n, get_pretrained_cfg(n)) for n in tagged)
                 if getattr(cfg, "metrics", None) and not cfg.has_weights]
    return sorted(set(list_pretrained()) | set(announced))


_TASKS = {"classification": ("image-classification", "Image Classification"),
          "segmentation": ("image-segmentation", "Image Segmentation")}


def card_metadata(name: str, cfg: Dict[str, Any], metrics: Optional[Dict[str, float]], dataset: Optional[str],
                  base_model: Optional[str], basis: Optional[str], task: str = "classification") -> str:
    """The YAML block of a card (without the ``---`` fences), through huggingface_hub's ``ModelCardData``."""
    pipeline, task_name = _TASKS.get(task, _TASKS["classification"])
    tags = [pipeline, "timm", "kanzoo", "kan", "kolmogorov-arnold-network"]
    if basis:
        tags.append(f"{basis}-basis")
    tags += [f"arxiv:{p}" for p in _paper_ids(cfg)]
    eval_results = None
    if metrics and dataset:
        eval_results = [
            EvalResult(task_type=pipeline, task_name=task_name, dataset_type=dataset,
                       dataset_name=_DATASET_NAMES.get(dataset, dataset), dataset_split="validation",
                       metric_type=_metric_type(k, task), metric_name=_METRIC_NAMES.get(k, k), metric_value=v)
            for k, v in metrics.items()]
    data = ModelCardData(
        library_name="timm", pipeline_tag=pipeline, license=cfg.get("license"), tags=tags,
        datasets=[dataset] if dataset else None,
        metrics=sorted({_metric_type(k, task) for k in metrics}) if metrics else None,
        base_model=base_model, model_name=name, eval_results=eval_results)
    return data.to_yaml()


def _metric_type(key: str, task: str) -> str:
    """The Hub's metric id: accuracy for classification, the metric itself (iou, f1) for segmentation."""
    return "accuracy" if task == "classification" else key


def _describe(model: nn.Module, name: str) -> Dict[str, Any]:

    cfg = model.pretrained_cfg
    params = sum(p.numel() for p in model.parameters())
    try:
        macs = count_macs(model, tuple(cfg["input_size"]))[0]
    except (RuntimeError, NotImplementedError):  # data-dependent routing (MoE) cannot run on meta tensors
        macs = None
    return dict(params=params, macs=macs)


def model_card(name_or_model: Union[str, nn.Module], name: Optional[str] = None,
               metrics: Optional[Dict[str, float]] = None, dataset: Optional[str] = None,
               base_model: Optional[str] = None, provenance: Optional[str] = None) -> str:
    """The ``README.md`` text of a model card.

    Args:
        name_or_model: a registered ``name.tag`` (its cfg supplies metrics, dataset and provenance) or a model.
        name: the name shown on the card (default: the registered name or the model's architecture.tag).
        metrics, dataset, base_model, provenance: override or supply what the cfg does not record.
    """
    if isinstance(name_or_model, str):
        registered = get_pretrained_cfg(name_or_model)
        model = create_model(name_or_model, device="meta")
        name = name or name_or_model
    else:
        model = name_or_model
        cfg = model.pretrained_cfg
        tag = cfg.get("tag")
        registered = get_pretrained_cfg(f"{cfg['architecture']}.{tag}" if tag else cfg["architecture"])
        name = name or (f"{cfg['architecture']}.{tag}" if tag else cfg["architecture"])
        if getattr(model, "num_classes", None) != cfg.get("num_classes"):
            registered = None  # a new head: the published metrics do not apply
    cfg = model.pretrained_cfg
    arch = split_model_name_tag(name)[0] if isinstance(name_or_model, str) else cfg["architecture"]
    metrics = metrics if metrics is not None else getattr(registered, "metrics", None)
    dataset = dataset or getattr(registered, "dataset", None)
    provenance = provenance or getattr(registered, "provenance", None)
    if base_model is None and registered is not None and registered.hf_hub_id:
        base_model = registered.hf_hub_id.split("@")[0]
    basis = getattr(model, "basis", None)
    basis = basis if isinstance(basis, str) else None
    stats = _describe(model, name)
    task = model_task(model)
    announced = (registered is not None and "." in name and bool(getattr(registered, "metrics", None))
                 and not registered.has_weights)

    lines = ["---", card_metadata(name, cfg, metrics, dataset, base_model, basis, task).rstrip(), "---", "",
             f"# {name}", ""]
    intro = cfg.get("description") or f"A `{arch}` model from kanzoo, the model zoo for Kolmogorov-Arnold networks."
    lines += [intro.rstrip(".") + ".", ""]
    doc = _entrypoint_doc(arch)
    if doc:
        lines += [doc, ""]
    c, h, w = cfg["input_size"]
    details = [
        f"- **Architecture:** `{arch}` (`{type(model).__module__}.{type(model).__qualname__}`)",
        f"- **Parameters:** {stats['params']:,} ({stats['params'] / 1e6:.2f} M)",
    ]
    if stats["macs"] is not None:
        details.append(f"- **GMACs:** {stats['macs'] / 1e9:.3f} at {h}×{w} (convolutions and matmuls; the "
                       f"elementwise basis expansion is not counted)")
    details += [
        f"- **Input:** {c}×{h}×{w}; eval transform: resize to {round(h / cfg.get('crop_pct', 1.0))}, center crop "
        f"{h}, {cfg.get('interpolation', 'bilinear')} interpolation, mean {_fmt_tuple(cfg['mean'])}, "
        f"std {_fmt_tuple(cfg['std'])}",
        f"- **Classes:** {getattr(model, 'num_classes', cfg.get('num_classes'))}",
    ]
    if metrics:
        where = _DATASET_NAMES.get(dataset, dataset) if dataset else "the evaluation set"
        shown = ", ".join(f"{_METRIC_NAMES.get(k, k)} {v:g}%" for k, v in metrics.items())
        details.append(f"- **Results ({where} validation):** {shown}")
    if cfg.get("license"):
        details.append(f"- **License:** {cfg['license']}")
    papers = _paper_ids(cfg)
    if papers:
        title = f" ({cfg['paper_name']})" if cfg.get("paper_name") else ""
        details.append("- **Paper:** " + ", ".join(f"[arXiv:{p}](https://arxiv.org/abs/{p})" for p in papers) + title)
    if cfg.get("origin_url"):
        details.append(f"- **Original code:** {cfg['origin_url']}")
    lines += ["## Model details", "", *details, ""]

    family = type(model).__module__.rsplit(".", 1)[-1].replace("_", "")  # kanzoo convert --from FAMILY
    lines += ["## Usage", ""] + _usage(name, family, task, announced)
    upstream = getattr(registered, "upstream", None)
    if provenance or upstream is not None:
        lines += ["## Provenance", ""]
        lines += [provenance, ""] if provenance else []
        lines += provenance_lines(upstream, cfg.get("license"), metrics) if upstream is not None else []
    bib = [b for b in (_bibtex(p) for p in papers) if b]
    if bib:
        lines += ["## Citation", "", "```bibtex", "\n\n".join(bib), "```", ""]
    return "\n".join(lines)


def provenance_lines(upstream: Upstream, license: Optional[str], metrics: Optional[Dict[str, float]]) -> List[str]:
    """The card's record of an upstream file: where, which revision, which hash, whether that pins the download,
    where the metrics come from, the license, and how to reproduce kanzoo's copy."""
    rev = f"`{upstream.revision}`: {upstream.revision_note}" if upstream.revision else upstream.revision_note
    pin = ("yes, by " + " and ".join(w for w, on in (("the full commit", is_full_commit(upstream.revision)),
                                                      ("the sha256", upstream.sha256 is not None)) if on)
           if upstream.pinned else "no (see the revision line)")
    out = [
        f"- **Upstream file:** {upstream.location}",
        f"- **Revision:** {rev}",
        f"- **sha256:** `{upstream.sha256}`" if upstream.sha256 else "- **sha256:** not published",
        f"- **Download pinned:** {pin}",
    ]
    if metrics:
        out += [f"- **Published metrics:** {upstream.metrics_source or 'source not recorded'}",
                f"- **Weights the metrics belong to:** {upstream.metrics_revision}"]
    else:
        out.append(f"- **Published metrics:** none ({upstream.metrics_revision})")
    if license:
        out.append(f"- **License:** {license} (as published upstream)")
    out += [f"- **Reproduce:** {upstream.convert}", ""]
    return out


def _usage(name: str, family: str, task: str, announced: bool) -> List[str]:
    """The usage section: load by name (or, for announced tags, convert the authors' file first), then predict."""
    out: List[str] = []
    if announced:
        out += ["The weights are not on the Hugging Face Hub yet. Convert the authors' released checkpoint and load "
                "the converted folder:", "", "```bash", f"kanzoo convert --from {family} model.pth "
                f"{name.split('.', 1)[1]}/ --tag {name.split('.', 1)[1]}", "```", ""]
        load = f'model = kanzoo.create_model("local-dir:{name.split(".", 1)[1]}", pretrained=True).eval()'
    else:
        load = f'model = kanzoo.create_model("{name}", pretrained=True).eval()'
    out += ["```python", "import kanzoo  # registers kanzoo's architectures with timm", "import timm",
            "from PIL import Image", "", load, "config = timm.data.resolve_data_config({}, model=model)",
            "transform = timm.data.create_transform(**config)",
            'x = transform(Image.open("image.jpg").convert("RGB")).unsqueeze(0)']
    if task == "segmentation":
        out += ["logits = model(x)  # (1, num_classes, H, W)",
                "mask = logits.sigmoid() > 0.5 if logits.shape[1] == 1 else logits.argmax(1)"]
    else:
        out += ["top5 = model(x).softmax(-1).topk(5)"]
    out += ["```", "", "`timm.create_model(...)` works the same after `import kanzoo`.", ""]
    return out


def _entrypoint_doc(arch: str) -> str:
    doc = (model_entrypoint(arch).__doc__ or "").strip()
    return " ".join(line.strip() for line in doc.split("\n\n", 1)[0].splitlines()) if doc else ""


def card_filename(name: str) -> str:
    return f"{name}.md"


#: kept for existing callers: cards are written by :func:`kanzoo.io.atomic_write_text`
write_text_atomic = atomic_write_text


def write_model_cards(out_dir: Union[str, Path], names: Optional[Sequence[str]] = None) -> List[Path]:
    """Writes one card per pretrained tag (default: :func:`card_tags`) and removes stale ``*.md``
    cards for tags that no longer exist. Returns the written paths."""
    out_dir = Path(out_dir)
    names = list(names) if names is not None else card_tags()
    written = []
    for name in names:
        path = out_dir / card_filename(name)
        atomic_write_text(path, model_card(name))
        written.append(path)
    if names == card_tags():
        keep = {p.name for p in written} | {"README.md"}
        for stale in out_dir.glob("*.md"):
            if stale.name not in keep:
                stale.unlink()
    return written


def stale_model_cards(card_dir: Union[str, Path]) -> List[str]:
    """Names of cards in ``card_dir`` that differ from what the registry generates now (missing, changed or
    orphaned); empty when the cards are up to date."""
    card_dir = Path(card_dir)
    problems = []
    expected = {card_filename(n): n for n in card_tags()}
    for fname, name in expected.items():
        path = card_dir / fname
        if not path.is_file():
            problems.append(f"{fname} (missing)")
        elif path.read_text(encoding="utf-8") != model_card(name):
            problems.append(f"{fname} (out of date)")
    for path in card_dir.glob("*.md"):
        if path.name not in expected and path.name != "README.md":
            problems.append(f"{path.name} (no such pretrained tag)")
    return problems
