"""Where a published checkpoint comes from: :class:`Upstream`, recorded on each upstream tag's pretrained cfg.

A tag's weights must not change because someone pushed upstream. Two things pin them:

* a **revision**: a full 40-character commit in ``hf_hub_id='org/repo@<commit>'``, so the download reads that
  commit whatever ``main`` says later;
* a **sha256** of the file, so that any other bytes are refused (:func:`kanzoo.weights.verify_file`).

The public record of most upstream repos shows only abbreviated commits (``7f5bcc9``), which the Hub's download
endpoints are not documented to resolve, so :class:`Upstream` records the commit as it was seen and
:attr:`Upstream.pinned` says whether the download is actually pinned. What cannot be pinned says why in
``revision_note``; a kanzoo release (``kanzoo release``) mirrors the file under a full commit and a sha256.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional

__all__ = ["HOSTS", "Upstream", "is_full_commit"]

#: where upstream files live: host id -> how a card names it
HOSTS = {
    "hf-hub": "Hugging Face Hub",
    "onedrive": "OneDrive",
    "baidu-pan": "Baidu Pan",
    "google-drive": "Google Drive",
}

_SHORT_COMMIT = re.compile(r"[0-9a-f]{7,40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_full_commit(revision: Optional[str]) -> bool:
    """True for a 40-character hexadecimal commit id (the only revision form that pins a Hub download)."""
    return bool(revision) and len(revision) == 40 and bool(_SHORT_COMMIT.fullmatch(revision))


@dataclass(frozen=True)
class Upstream:
    """The upstream file a tag's weights come from, as far as the public record shows.

    Attributes:
        repo: Hub repo id (``brivangl/vgg_kagn_bn11_v4``) or, off the Hub, the page that links the file.
        file: file name in the repo, or what the authors call it (``model.pth``).
        host: one of :data:`HOSTS`.
        revision: the upstream commit the tag was verified against (abbreviated as in the public record, or full).
        revision_note: what that commit is, or why none is recorded.
        sha256: sha256 of the upstream file, where it is known.
        metrics_source: where the published metrics are stated (document and commit).
        metrics_revision: which upstream revision the published metrics belong to, or why that is unknown.
        convert: how to reproduce kanzoo's copy of the weights from the upstream file.
    """

    repo: str
    file: str
    host: str = "hf-hub"
    revision: Optional[str] = None
    revision_note: str = ""
    sha256: Optional[str] = None
    metrics_source: Optional[str] = None
    metrics_revision: str = "unknown"
    convert: str = ""

    def __post_init__(self) -> None:
        if self.host not in HOSTS:
            raise ValueError(f"Upstream host {self.host!r} is not one of {sorted(HOSTS)}")
        if self.revision is not None and not _SHORT_COMMIT.fullmatch(self.revision):
            raise ValueError(f"Upstream revision {self.revision!r} of {self.repo} is not a commit id (7 to 40 "
                             f"lowercase hex digits); record branches and tags in revision_note instead")
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"Upstream sha256 {self.sha256!r} of {self.repo}/{self.file} is not 64 lowercase hex "
                             f"digits")
        if not self.revision_note.strip():
            raise ValueError(f"Upstream {self.repo}: say what revision {self.revision!r} is, or why none is "
                             f"recorded (revision_note)")
        if not self.convert.strip():
            raise ValueError(f"Upstream {self.repo}: say how kanzoo's copy is made from {self.file} (convert)")

    @property
    def on_hub(self) -> bool:
        return self.host == "hf-hub"

    @property
    def pinned(self) -> bool:
        """Whether a download from upstream can only ever return these bytes: a full commit or a sha256."""
        return is_full_commit(self.revision) or self.sha256 is not None

    @property
    def hub_id(self) -> Optional[str]:
        """``repo@commit`` when the revision pins a download, else ``repo``; None off the Hub."""
        if not self.on_hub:
            return None
        return f"{self.repo}@{self.revision}" if is_full_commit(self.revision) else self.repo

    @property
    def location(self) -> str:
        """One line: host, repo, file and revision."""
        rev = f" at {self.revision}" if self.revision else ""
        where = f"`{self.repo}`" if self.on_hub else self.repo
        return f"{HOSTS[self.host]} {where}, file `{self.file}`{rev}"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)
