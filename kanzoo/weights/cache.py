"""Housekeeping of the huggingface_hub cache: partial downloads that no download will resume.

``hf_hub_download`` writes a file to ``blobs/<etag>.incomplete`` and resumes it when the same file is asked for
again. A download killed for good (the repo's file changed, the user gave up) leaves that partial blob behind
for ever. kanzoo removes a repo's partial blobs that nothing has written to for ``STALE_AFTER_S`` before it
downloads from that repo; a download in progress writes to its file continuously and is never touched.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import List, Optional, Union

from huggingface_hub import constants
from huggingface_hub.file_download import repo_folder_name

__all__ = ["STALE_AFTER_S", "remove_stale_partial_downloads"]

_logger = logging.getLogger(__name__)

#: a partial blob untouched for this long (one day) belongs to a download that has ended
STALE_AFTER_S = 24 * 3600.0


def remove_stale_partial_downloads(repo_id: str, cache_dir: Optional[Union[str, Path]] = None,
                                   max_age_s: float = STALE_AFTER_S, repo_type: str = "model") -> List[Path]:
    """Deletes ``*.incomplete`` blobs of ``repo_id`` in the cache not modified for ``max_age_s`` seconds and
    returns their paths (a file another process removes first, or that cannot be removed, is skipped)."""
    blobs = Path(cache_dir or constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type) / "blobs"
    if not blobs.is_dir():
        return []
    now, removed = time.time(), []
    for path in blobs.glob("*.incomplete"):
        try:
            if now - path.stat().st_mtime >= max_age_s:
                path.unlink()
                removed.append(path)
        except OSError:  # gone already, or not ours to remove
            continue
    if removed:
        _logger.info("removed %d stale partial download(s) of %s from the Hub cache", len(removed), repo_id)
    return removed
