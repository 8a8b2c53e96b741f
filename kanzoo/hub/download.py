"""Pretrained weights: where a pretrained cfg points, download through ``huggingface_hub``, verify, load safely.

Every kanzoo model builds through :func:`kanzoo.models._base.build_kan_model`, which calls
:func:`resolve_pretrained_state` before timm's ``load_pretrained``. So ``kanzoo.create_model``,
``timm.create_model`` and ``torch.hub.load`` all take this one path:

1. the weight source is chosen in timm's order: an ``hf-hub:`` name, a ``local-dir:`` folder, an in-memory
   ``state_dict``, a local ``file``, the cfg's ``hf_hub_id`` (``org/repo`` or ``org/repo@revision``);
2. a Hub file is fetched with ``hf_hub_download`` (the user's ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_ENDPOINT``,
   ``HF_HUB_OFFLINE`` and ``HF_TOKEN`` apply, and its progress bar shows): ``model.safetensors`` first, then
   ``pytorch_model.bin``;
3. the file is checked against the cfg's ``sha256`` when one is recorded, otherwise against the Hub's own
   content hash (the ETag, which names the cached blob: sha256 for LFS files, git blob sha1 otherwise). A
   mismatch removes the file from the cache and raises :class:`WeightsIntegrityError`;
4. safetensors files are read with ``safetensors``; ``.bin``/``.pth`` only with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

#: Hub file names tried, in order, when the cfg names none (safetensors first)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: local file names looked for in a ``local-dir:`` folder
_LOCAL_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "pytorch_model.pth")
_TORCH_SUFFIXES = (".bin", ".pth", ".pt", ".tar", ".ckpt")


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be found, fetched, verified or read."""


class WeightsNotFoundError(PretrainedWeightsError, FileNotFoundError):
    """The repo, revision or weight file does not exist (or is private and no token was given)."""


class WeightsOfflineError(PretrainedWeightsError, ConnectionError):
    """The weights are not in the local cache and the Hub cannot be reached (or offline mode is on)."""


class WeightsIntegrityError(PretrainedWeightsError, ValueError):
    """A downloaded file's hash differs from the recorded sha256 or the Hub's content hash."""


def split_hub_id(hf_hub_id: str) -> Tuple[str, Optional[str]]:
    """``'org/repo@rev'`` -> ``('org/repo', 'rev')``; ``'org/repo'`` -> ``('org/repo', None)``."""
    repo_id, _, revision = hf_hub_id.partition("@")
    return repo_id, revision or None


def file_sha256(path: Union[str, Path], chunk_size: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha1(path: Union[str, Path], chunk_size: int = 1 << 22) -> str:
    """The git object id of a file: sha1 of ``b"blob <size>\\0" + content`` (the Hub's ETag of a non-LFS file)."""
    h = hashlib.sha1()
    h.update(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


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
    from huggingface_hub import constants

    why = ("offline mode is on (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE
           else f"the Hub at {constants.ENDPOINT} cannot be reached")
    rev = f"@{revision}" if revision else ""
    name = model_name or f"hf-hub:{repo_id}"
    return (f"cannot load pretrained weights for {_weight_name(model_name, repo_id)}: {repo_id}{rev}/{filename} is "
            f"not in the local cache ({constants.HF_HUB_CACHE}) and {why}; connect to the network or set HF_ENDPOINT "
            f"to a reachable mirror, run `kanzoo download {name}` on a connected machine and copy its cache here, or "
            f"load a local file with pretrained_cfg_overlay=dict(file=...) (CLI: --checkpoint FILE)")


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
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                        LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)

    from .. import __version__

    repo_id, pinned = split_hub_id(hf_hub_id)
    revision = revision or pinned
    candidates = [filename] if filename else list(WEIGHT_FILES)
    missing: List[str] = []
    offline: Optional[BaseException] = None
    for name in candidates:
        try:
            path = hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir,
                                   force_download=force_download, local_files_only=local_files_only, token=token,
                                   library_name="kanzoo", library_version=__version__)
        except GatedRepoError as e:
            raise WeightsNotFoundError(
                f"{repo_id} is a gated repo: accept its terms on the Hub and log in (`hf auth login`) or set "
                f"HF_TOKEN ({_first_line(e)})") from e
        except RepositoryNotFoundError as e:
            raise WeightsNotFoundError(
                f"no repo {repo_id!r} on the Hub at {_endpoint()} (or it is private and no token was given): check "
                f"the hf_hub_id of {_weight_name(model_name, repo_id)}, or set HF_TOKEN for a private repo") from e
        except RevisionNotFoundError as e:
            raise WeightsNotFoundError(
                f"repo {repo_id!r} has no revision {revision!r}: use a branch, tag or commit that exists "
                f"(`hf_hub_id='{repo_id}@<revision>'`)") from e
        except LocalEntryNotFoundError as e:  # not cached and no network: another candidate may be cached
            offline = offline or e
            continue
        except EntryNotFoundError:
            missing.append(name)
            continue
        except HfHubHTTPError as e:
            raise WeightsNotFoundError(f"the Hub refused {repo_id}/{name}: {_first_line(e)}") from e
        source = f"{repo_id}{'@' + revision if revision else ''}/{name}"
        verify_file(path, sha256=sha256, source=source)
        return Path(path)
    if offline is not None:
        raise WeightsOfflineError(offline_message(model_name, repo_id, candidates[0], revision)) from offline
    raise WeightsNotFoundError(
        f"repo {repo_id!r}{' at ' + revision if revision else ''} has none of the weight files {missing}: give the "
        f"file name with pretrained_cfg_overlay=dict(hf_hub_filename=...), or upload model.safetensors")


def _endpoint() -> str:
    from huggingface_hub import constants
    return constants.ENDPOINT


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def load_state_file(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Reads a weight file safely: safetensors, or a torch file with ``torch.load(weights_only=True)``."""
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in _LOCAL_FILES if (path / n).is_file()]
        if not found:
            raise WeightsNotFoundError(f"folder {str(path)!r} has no weight file; expected one of {list(_LOCAL_FILES)}")
        path = found[0]
    if not path.is_file():
        raise WeightsNotFoundError(f"weight file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as e:
            raise PretrainedWeightsError(f"{str(path)!r} is not a readable safetensors file: {e}") from e
    if path.suffix not in _TORCH_SUFFIXES:
        raise PretrainedWeightsError(
            f"unknown weight file type {path.suffix!r} ({str(path)!r}): use .safetensors, or a torch file ending in "
            f"{', '.join(_TORCH_SUFFIXES)}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors come in many types
        raise PretrainedWeightsError(
            f"{str(path)!r} cannot be read with torch.load(weights_only=True) ({type(e).__name__}: {_first_line(e)}); "
            f"kanzoo never unpickles arbitrary objects: re-save it as safetensors or as a plain state dict") from e
    if not isinstance(obj, dict):
        raise PretrainedWeightsError(f"{str(path)!r} holds a {type(obj).__name__}, not a state dict")
    return obj


def _cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    return cfg.get(key, default) if isinstance(cfg, dict) else getattr(cfg, key, default)


def weight_source(cfg: Any) -> Tuple[str, Any]:
    """Where a pretrained cfg's weights come from, in timm's order: ``('hf-hub', id)``, ``('local-dir', dir)``,
    ``('state_dict', sd)``, ``('file', path)``, ``('hf-hub', id)`` from ``hf_hub_id``, ``('url', url)`` or
    ``('', None)``."""
    source = _cfg_get(cfg, "source") or ""
    if source == "hf-hub" and _cfg_get(cfg, "hf_hub_id"):
        return "hf-hub", _cfg_get(cfg, "hf_hub_id")
    if source == "local-dir":
        return "local-dir", _cfg_get(cfg, "file")
    for key, kind in (("state_dict", "state_dict"), ("file", "file"), ("hf_hub_id", "hf-hub"), ("url", "url")):
        value = _cfg_get(cfg, key)
        if value:
            return kind, value
    return "", None


def resolve_pretrained_state(cfg: Any, model_name: Optional[str] = None, cache_dir: Optional[str] = None
                             ) -> Optional[Dict[str, torch.Tensor]]:
    """The state dict a pretrained cfg points to, fetched and verified; ``None`` for a ``url`` source (left to
    timm, which downloads it with ``weights_only=True``).

    Raises :class:`WeightsNotFoundError` when the cfg has no weight source at all (timm would only log a
    warning and keep the random initialisation).
    """
    kind, where = weight_source(cfg)
    if kind == "state_dict":
        return where
    if kind in ("file", "local-dir"):
        return load_state_file(where)
    if kind == "hf-hub":
        path = download_weights(where, filename=_cfg_get(cfg, "hf_hub_filename"), sha256=_cfg_get(cfg, "sha256"),
                                cache_dir=cache_dir, model_name=model_name)
        return load_state_file(path)
    if kind == "url":
        return None
    raise WeightsNotFoundError(
        f"{model_name or 'this model'} has no pretrained weights: its pretrained cfg names no hf_hub_id, file or "
        f"url. Use pretrained=False, a tag with weights (`kanzoo list --pretrained`), or a local file with "
        f"pretrained_cfg_overlay=dict(file=...)")
