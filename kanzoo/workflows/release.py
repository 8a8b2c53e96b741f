"""``kanzoo release``: every upstream checkpoint in kanzoo's layout, one Hub-ready folder per tag.

For each tag whose cfg records an :class:`~kanzoo.weights.Upstream` file, :func:`build_release`

1. reads the upstream file: from the Hub through the tag's own verified download, or, for files the authors host
   elsewhere (OneDrive, Baidu Pan, Google Drive), from a local copy given in ``sources``;
2. builds the tag's model with those weights (the family's converter runs, strictly) and writes
   ``model.safetensors``, timm's ``config.json`` and a model card into ``OUT/<tag>/``;
3. reads the written tensors back and checks them against the converted model's, bit for bit;
4. records the sha256 of the source file and of the written ``model.safetensors`` in the card and in
   ``OUT/release.json``.

Each folder is written beside its final place and renamed into it, so a failure leaves no half-written folder.
:func:`push_release` uploads the folders as ``ORG/<tag>`` repos (timm's naming) and records the commit of each
upload; :meth:`ReleasedTag.registry_line` is then the one-line change that points a tag at its mirror, pinned by
commit and sha256.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from huggingface_hub import HfApi
from safetensors.torch import load_file
from timm.models import get_arch_pretrained_cfgs, get_pretrained_cfg

from .._version import __version__
from ..compat.convert import load_reference_file
from ..errors import WorkflowError
from ..hub import model_card, save_pretrained
from ..hub.publish import REPO_FILES
from ..io import atomic_write_text, read_json, write_json
from ..models import create_model, list_models
from ..weights import download_weights, file_sha256

__all__ = ["MANIFEST", "ReleasedTag", "ReleaseReport", "build_release", "push_release", "release_tags"]

PathLike = Union[str, os.PathLike]

#: the release's index, in the output folder
MANIFEST = "release.json"


@dataclass
class ReleasedTag:
    """One tag of a release: its folder, its future Hub repo, and the hashes on both sides of the conversion."""

    tag: str
    folder: str
    repo_id: str
    source: Dict[str, Any]
    source_sha256: str
    sha256: str
    revision: Optional[str] = None

    def pin(self) -> Dict[str, str]:
        """The pretrained cfg fields that point the tag at its pushed mirror, pinned by commit and sha256."""
        if self.revision is None:
            raise WorkflowError(f"{self.tag} is not pushed yet: run push_release (`kanzoo release --push`) first")
        return dict(hf_hub_id=f"{self.repo_id}@{self.revision}", hf_hub_filename="model.safetensors",
                    sha256=self.sha256)

    def registry_line(self) -> str:
        """:meth:`pin` as the one line to put in the tag's cfg."""
        return ", ".join(f'{k}="{v}"' for k, v in self.pin().items())


@dataclass
class ReleaseReport:
    out_dir: str
    released: List[ReleasedTag] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)


def release_tags() -> List[str]:
    """Every registered tag whose weights someone else published (its cfg has an ``upstream`` record)."""
    return sorted(n for arch in list_models() for n in get_arch_pretrained_cfgs(arch)
                  if "." in n and getattr(get_pretrained_cfg(n), "upstream", None) is not None)


def _check_tags(tags: Sequence[str]) -> List[str]:
    known = release_tags()
    unknown = [t for t in tags if t not in known]
    if unknown:
        raise WorkflowError(f"not an upstream tag: {unknown}; a release covers the tags with published upstream "
                            f"weights: {known}")
    return list(tags)


def _source_file(tag: str, sources: Mapping[str, PathLike]) -> Optional[Path]:
    """The upstream file of ``tag``: a local copy from ``sources``, else the verified Hub download; None when the
    file is off the Hub and no copy was given."""
    cfg = get_pretrained_cfg(tag)
    if tag in sources:
        path = Path(sources[tag])
        if not path.is_file():
            raise WorkflowError(f"the source file given for {tag} does not exist: {os.fspath(path)!r}")
        known = cfg.upstream.sha256
        if known and file_sha256(path) != known:
            raise WorkflowError(f"{os.fspath(path)!r} is not the upstream file of {tag}: its sha256 is "
                                f"{file_sha256(path)}, the published one is {known}")
        return path
    if not cfg.upstream.on_hub:
        return None
    return download_weights(cfg.hf_hub_id, filename=cfg.hf_hub_filename, sha256=cfg.sha256, model_name=tag)


def _check_written(path: Path, model: torch.nn.Module, tag: str, final: Path) -> None:
    """The written file must hold exactly the converted model's tensors (bit for bit, same keys)."""
    written = load_file(str(path))
    state = model.state_dict()
    bad = sorted(set(written) ^ set(state)) or [k for k in state if not torch.equal(written[k], state[k])]
    if bad:
        raise WorkflowError(f"the model.safetensors written for {tag} differs from the converted model at {bad[:3]}; "
                            f"nothing was written to {os.fspath(final)!r}")


def _release_card(tag: str, model: torch.nn.Module, entry: ReleasedTag) -> str:
    up = get_pretrained_cfg(tag).upstream
    lines = [model_card(model, name=tag).rstrip("\n"), "", "## This release", "",
             f"- **Converted from:** {up.location} (sha256 `{entry.source_sha256}`)",
             f"- **model.safetensors sha256:** `{entry.sha256}`",
             f"- **Made with:** kanzoo {__version__}, `kanzoo release --tags {tag}`; the written tensors were read "
             f"back and equal the converted model's, bit for bit", ""]
    return "\n".join(lines)


def _build_one(tag: str, source: Path, local: bool, out_dir: Path, org: str) -> ReleasedTag:
    source_sha = file_sha256(source)
    # a Hub download is read like any weight file; an authors' own file may be a training checkpoint that holds
    # its run's argparse.Namespace, which only the reference reader allows
    overlay = dict(state_dict=load_reference_file(source)) if local else dict(file=str(source))
    model = create_model(tag, pretrained=True, pretrained_cfg_overlay=overlay).eval()
    repo_id = f"{org}/{tag}"
    cfg = {k: v for k, v in model.pretrained_cfg.items() if k not in ("file", "state_dict")}
    model.pretrained_cfg = {**cfg, "hf_hub_id": repo_id, "hf_hub_filename": "model.safetensors"}

    final = out_dir / tag
    work = Path(tempfile.mkdtemp(prefix=f".{tag}.", dir=out_dir))
    try:
        save_pretrained(model, work, card="")
        entry = ReleasedTag(tag=tag, folder=tag, repo_id=repo_id, source=get_pretrained_cfg(tag).upstream.to_dict(),
                            source_sha256=source_sha, sha256=file_sha256(work / "model.safetensors"))
        atomic_write_text(work / "README.md", _release_card(tag, model, entry))
        _check_written(work / "model.safetensors", model, tag, final)
        old = out_dir / f".{tag}.old"
        if final.exists():
            os.replace(final, old)
        os.replace(work, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return entry


def build_release(out_dir: PathLike, tags: Optional[Sequence[str]] = None,
                  sources: Optional[Mapping[str, PathLike]] = None, org: str = "kanzoo") -> ReleaseReport:
    """Converts every upstream checkpoint (or ``tags``) into ``out_dir/<tag>/`` and writes ``release.json``.

    Args:
        out_dir: the release folder (created).
        tags: a subset of :func:`release_tags`.
        sources: tag -> local upstream file, for files off the Hub (without one such a tag is skipped, with the
            reason in the report) or to convert a copy already at hand.
        org: the Hub organisation the folders are meant for (each becomes ``org/<tag>``).
    """
    if not isinstance(org, str) or not org or "/" in org:
        raise WorkflowError(f"org must be a Hub user or organisation name without '/', got {org!r}")
    sources = dict(sources or {})
    tags = _check_tags(tags) if tags is not None else release_tags()
    _check_tags(list(sources))
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    report = ReleaseReport(out_dir=os.fspath(out))
    try:
        for tag in tags:
            source = _source_file(tag, sources)
            if source is None:
                up = get_pretrained_cfg(tag).upstream
                report.skipped[tag] = (f"its file is on {up.location}, not on the Hub: download it and give it "
                                       f"with --source {tag}=FILE")
                continue
            report.released.append(_build_one(tag, source, tag in sources, out, org))
    except BaseException:
        if created and not any(out.iterdir()):  # a folder this call made and nothing finished in it
            out.rmdir()
        raise
    _write_manifest(out, report)
    return report


def _write_manifest(out: Path, report: ReleaseReport) -> None:
    write_json(out / MANIFEST, {"kanzoo_version": __version__, "tags": {e.tag: asdict(e) for e in report.released},
                                "skipped": report.skipped})


def read_release(out_dir: PathLike) -> ReleaseReport:
    """The report a release folder's ``release.json`` records."""
    out = Path(out_dir)
    path = out / MANIFEST
    if not path.is_file():
        raise WorkflowError(f"{os.fspath(out)!r} holds no {MANIFEST}: build the release first (`kanzoo release "
                            f"--out {os.fspath(out)}`)")
    data = read_json(path)
    return ReleaseReport(out_dir=os.fspath(out), released=[ReleasedTag(**e) for e in data["tags"].values()],
                         skipped=data.get("skipped", {}))


def push_release(out_dir: PathLike, token: Optional[str] = None, private: Optional[bool] = None) -> ReleaseReport:
    """Uploads each folder of a built release to its ``org/<tag>`` repo (one commit per tag) and records the
    commit in ``release.json``. ``HF_ENDPOINT`` and ``HF_TOKEN`` apply."""
    report = read_release(out_dir)
    api = HfApi(token=token, library_name="kanzoo", library_version=__version__)
    out = Path(out_dir)
    for entry in report.released:
        folder = out / entry.folder
        if file_sha256(folder / "model.safetensors") != entry.sha256:
            raise WorkflowError(f"{os.fspath(folder)}/model.safetensors no longer has the sha256 that {MANIFEST} "
                                f"records ({entry.sha256}); rebuild the release")
        api.create_repo(entry.repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=entry.repo_id, folder_path=folder, allow_patterns=list(REPO_FILES),
                                 commit_message=f"kanzoo {__version__} release of {entry.tag}")
        entry.revision = info.oid
        _write_manifest(out, report)  # after every upload: a failure later keeps the commits already made
    return report

