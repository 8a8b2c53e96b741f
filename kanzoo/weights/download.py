"""Weights on the Hugging Face Hub: download through ``huggingface_hub``, then verify.

A Hub file is fetched with ``hf_hub_download`` (the user's ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_ENDPOINT``,
``HF_HUB_OFFLINE`` and ``HF_TOKEN`` apply, and its progress bar shows): ``model.safetensors`` first, then
``pytorch_model.bin``. The file is checked against the cfg's ``sha256`` when one is recorded, otherwise against
the Hub's own content hash (the ETag, which names the cached blob: sha256 for LFS files, git blob sha1
otherwise). A mismatch removes the file from the cache and raises
:class:`~kanzoo.errors.WeightsIntegrityError`. Partial downloads of the repo that have not been written to for a
day are removed first (:mod:`kanzoo.weights.cache`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Tuple, Union

from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .._version import __version__
from ..errors import WeightsIntegrityError, WeightsNotFoundError, WeightsOfflineError, first_line
from .cache import remove_stale_partial_downloads
from .files import file_sha256, git_blob_sha1

__all__ = ["WEIGHT_FILES", "split_hub_id", "verify_file", "offline_message", "fetch_file", "download_weights"]

#: Hub file names tried, in order, when the cfg names none (safetensors first)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def split_hub_id(hf_hub_id: str) -> Tuple[str, Optional[str]]:
    """``'org/repo@rev'`` -> ``('org/repo', 'rev')``; ``'org/repo'`` -> ``('org/repo', None)``."""
    repo_id, _, revision = hf_hub_id.partition("@")
    return repo_id, revision or None


def _is_hex(s: str, n: int) -> bool:
    return len(s) == n and all(c in "0123456789abcdef" for c in s)


def _cache_entry(path: Path) -> Tuple[Optional[Path], Optional[str]]:
    """(blob path, ETag) of a file in the huggingface_hub cache: snapshot files link to ``blobs/<etag>``."""
    blob = Path(os.path.realpath(path))
    if blob.parent.name == "blobs":
        return blob, blob.name
    return None, None


def _evict(path: Path, blob: Optional[Path]) -> None:
    """Removes a bad file from the cache: the snapshot entry and the blob it points to."""
    for p in (path, blob):
        if p is not None:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def verify_file(path: Union[str, Path], sha256: Optional[str] = None, source: str = "") -> str:
    """Checks a downloaded weight file; returns how it was checked.

    With ``sha256`` the file must hash to it. Otherwise, for a file in the huggingface_hub cache, its content
    must hash to the ETag the Hub sent (the blob's name): sha256 for LFS files, git blob sha1 otherwise. A file
    that fails is removed from the cache (so the next call downloads it again) and
    :class:`WeightsIntegrityError` is raised.
    """
    path = Path(path)
    blob, etag = _cache_entry(path)
    if sha256:
        expected, actual, what = sha256.lower(), file_sha256(path), "the sha256 recorded in the pretrained cfg"
    elif etag and _is_hex(etag, 64):
        expected, actual, what = etag, file_sha256(path), "the Hub's LFS sha256 (ETag)"
    elif etag and _is_hex(etag, 40):
        expected, actual, what = etag, git_blob_sha1(path), "the Hub's git blob sha1 (ETag)"
    else:
        return "not verified (no recorded sha256 and no Hub ETag)"
    if actual == expected:
        return f"sha256 {actual}" if len(actual) == 64 else f"git sha1 {actual}"
    if blob is not None:
        _evict(path, blob)
        fate = "it was removed from the cache, so the next call downloads it again"
    else:
        fate = f"the file was left at {path}"
    raise WeightsIntegrityError(
        f"{source or path} is corrupt: its hash is {actual}, but {what} is {expected}; {fate}. If this repeats, "
        f"the upload, a proxy or HF_ENDPOINT serves bad bytes; if the weights were re-published on purpose, pin a "
        f"revision (hf_hub_id='org/repo@<commit>') or update the recorded sha256")


def _weight_name(model_name: Optional[str], repo_id: str) -> str:
    return f"{model_name!r} ({repo_id})" if model_name else repr(repo_id)


def offline_message(model_name: Optional[str], repo_id: str, filename: str, revision: Optional[str]) -> str:
    """The one sentence a user gets when the weights are neither cached nor downloadable."""
    why = ("offline mode is on (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE
           else f"the Hub at {constants.ENDPOINT} cannot be reached")
    rev = f"@{revision}" if revision else ""
    name = model_name or f"hf-hub:{repo_id}"
    return (f"cannot load pretrained weights for {_weight_name(model_name, repo_id)}: {repo_id}{rev}/{filename} is "
            f"not in the local cache ({constants.HF_HUB_CACHE}) and {why}; connect to the network or set HF_ENDPOINT "
            f"to a reachable mirror, run `kanzoo download {name}` on a connected machine and copy its cache here, or "
            f"load a local file with pretrained_cfg_overlay=dict(file=...) (CLI: --checkpoint FILE)")


def _is_transport_error(e: BaseException) -> bool:
    """A connection that failed or broke mid-transfer, whichever HTTP client huggingface_hub uses."""
    return any(t.__module__.split(".")[0] in _TRANSPORT_MODULES for t in type(e).__mro__)


_TRANSPORT_MODULES = ("httpx", "httpx2", "httpcore", "requests", "urllib3", "h11")


def _hub_download(repo_id: str, filename: str, revision: Optional[str], model_name: Optional[str],
                  **kwargs) -> str:
    """``hf_hub_download`` with the Hub's errors turned into kanzoo's; a missing file
    (``EntryNotFoundError``) and a file that is neither cached nor downloadable (``LocalEntryNotFoundError``)
    pass through for the caller to decide on."""
    try:
        return hf_hub_download(repo_id, filename, revision=revision, library_name="kanzoo",
                               library_version=__version__, **kwargs)
    except GatedRepoError as e:
        raise WeightsNotFoundError(
            f"{repo_id} is a gated repo: accept its terms on the Hub and log in (`hf auth login`) or set "
            f"HF_TOKEN ({first_line(e)})") from e
    except RepositoryNotFoundError as e:
        raise WeightsNotFoundError(
            f"no repo {repo_id!r} on the Hub at {_endpoint()} (or it is private and no token was given): check the "
            f"name{' (the hf_hub_id of ' + _weight_name(model_name, repo_id) + ')' if model_name else ''}, or set "
            f"HF_TOKEN for a private repo") from e
    except RevisionNotFoundError as e:
        raise WeightsNotFoundError(
            f"repo {repo_id!r} has no revision {revision!r}: use a branch, tag or commit that exists "
            f"(`hf_hub_id='{repo_id}@<revision>'`)") from e
    except (LocalEntryNotFoundError, EntryNotFoundError):
        raise
    except HfHubHTTPError as e:
        raise WeightsNotFoundError(f"the Hub refused {repo_id}/{filename}: {first_line(e)}") from e
    except Exception as e:
        if _is_transport_error(e):
            raise WeightsOfflineError(
                f"the download of {repo_id}/{filename} from {_endpoint()} failed ({first_line(e, with_type=True)}); "
                f"run the command again: a partial download resumes") from e
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
            raise WeightsIntegrityError(
                f"the download of {repo_id}/{filename} from {_endpoint()} is incomplete ({first_line(e)}); run the "
                f"command again, or check HF_ENDPOINT if it repeats") from e
        raise


def fetch_file(repo_id: str, filename: str, revision: Optional[str] = None,
               cache_dir: Optional[Union[str, Path]] = None, model_name: Optional[str] = None,
               missing_hint: str = "", **kwargs) -> Path:
    """Any file of a Hub repo (``config.json``, ...) into the huggingface_hub cache, with kanzoo's errors:
    :class:`~kanzoo.errors.WeightsNotFoundError` (no repo, revision or file),
    :class:`~kanzoo.errors.WeightsOfflineError` (not cached and not downloadable, or the connection broke) and
    :class:`~kanzoo.errors.WeightsIntegrityError` (an incomplete download). ``missing_hint`` ends the message
    for a file the repo lacks."""
    try:
        return Path(_hub_download(repo_id, filename, revision, model_name, cache_dir=cache_dir, **kwargs))
    except LocalEntryNotFoundError as e:
        raise WeightsOfflineError(offline_message(model_name, repo_id, filename, revision)) from e
    except EntryNotFoundError as e:
        raise WeightsNotFoundError(f"repo {repo_id!r}{' at ' + revision if revision else ''} has no file "
                                   f"{filename!r}{missing_hint}") from e


def download_weights(
        hf_hub_id: str,
        filename: Optional[str] = None,
        revision: Optional[str] = None,
        sha256: Optional[str] = None,
        cache_dir: Optional[Union[str, Path]] = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: Optional[Union[str, bool]] = None,
        model_name: Optional[str] = None,
) -> Path:
    """Fetches a weight file from the Hub into the huggingface_hub cache, verifies it and returns its path.

    Args:
        hf_hub_id: ``'org/repo'`` or ``'org/repo@revision'`` (a branch, tag or commit; a commit that is already
            cached makes no request at all).
        filename: the file in the repo; default ``model.safetensors``, then ``pytorch_model.bin``.
        revision: overrides the ``@revision`` part of ``hf_hub_id``.
        sha256: expected sha256 of the file; default: the Hub's content hash (see :func:`verify_file`).
        cache_dir: default ``HF_HUB_CACHE``.
        model_name: the kanzoo name, for error messages.

    Raises:
        WeightsNotFoundError: no such repo, revision or file.
        WeightsOfflineError: not cached, and the Hub is unreachable or offline mode is on.
        WeightsIntegrityError: the file's hash is wrong (the file is removed from the cache).
    """
    repo_id, pinned = split_hub_id(hf_hub_id)
    revision = revision or pinned
    remove_stale_partial_downloads(repo_id, cache_dir)
    candidates = [filename] if filename else list(WEIGHT_FILES)
    missing: List[str] = []
    offline: Optional[BaseException] = None
    for name in candidates:
        try:
            path = _hub_download(repo_id, name, revision, model_name, cache_dir=cache_dir,
                                 force_download=force_download, local_files_only=local_files_only, token=token)
        except LocalEntryNotFoundError as e:  # not cached and no network: another candidate may be cached
            offline = offline or e
            continue
        except EntryNotFoundError:
            missing.append(name)
            continue
        source = f"{repo_id}{'@' + revision if revision else ''}/{name}"
        verify_file(path, sha256=sha256, source=source)
        return Path(path)
    if offline is not None:
        raise WeightsOfflineError(offline_message(model_name, repo_id, candidates[0], revision)) from offline
    raise WeightsNotFoundError(
        f"repo {repo_id!r}{' at ' + revision if revision else ''} has none of the weight files {missing}: give the "
        f"file name with pretrained_cfg_overlay=dict(hf_hub_filename=...), or upload model.safetensors")


def _endpoint() -> str:
    return constants.ENDPOINT
