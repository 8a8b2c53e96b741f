"""A Hugging Face Hub-compatible HTTP server for tests, and the pytest fixtures that point the real client at it.

kanzoo downloads and publishes weights through the real ``huggingface_hub`` client. CI has no internet, so the tests
start :class:`FakeHub` on ``127.0.0.1`` (a free port) and select it with ``HF_ENDPOINT``. The server speaks the subset
of the Hub protocol that ``huggingface_hub`` 2.4 uses for models and datasets:

* ``HEAD|GET /{repo}/resolve/{revision}/{path}`` with ``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag``/``X-Linked-Size``
  (LFS files), ``Content-Length``, ``Accept-Ranges`` and ``Range: bytes=N-[M]`` (206), errors signalled with
  ``X-Error-Code`` (``RepoNotFound`` / ``RevisionNotFound`` / ``EntryNotFound``) and ``X-Error-Message``;
* ``/api/{models|datasets}/{repo}[/revision/{rev}]``, ``.../tree/{rev}[/{path}]``, ``.../refs``, ``.../commits/{rev}``;
* ``POST /api/repos/create``, ``DELETE /api/repos/delete``, ``POST /api/validate-yaml``, ``.../preupload/{rev}``,
  ``.../commit/{rev}`` (ndjson), ``.../tag/{rev}``, ``.../branch/{name}``;
* the git-LFS "basic" transfer: ``POST /{repo}.git/info/lfs/objects/batch``, ``PUT`` upload, ``POST`` verify;
* ``GET /api/whoami-v2`` and ``GET /api/agent-harnesses``.

It never sends ``X-Xet-*`` headers or ``xetHash`` fields, so the client stays on plain HTTP (uploads need
``HF_HUB_DISABLE_XET=1``, which :func:`hub_env` sets). Every other request gets a 404 JSON error and is recorded in
:attr:`FakeHub.unhandled`, so a test can assert that the client never hit something the fake does not implement.

Storage model (in memory): a repo is a list of commits, each commit a full snapshot ``{path: bytes}``; branches and
tags map names to commit ids. A file is an LFS file when its name matches :data:`LFS_PATTERNS` or it is larger than
:data:`LFS_SIZE_THRESHOLD` (and is not empty). Its ETag is then the sha256 of the bytes; a regular file's ETag is its
git blob id ``sha1(b"blob <len>\\0" + data)``, exactly as on the Hub.

Fixtures (import both into a test module, or into ``conftest.py``: ``from fakehub import fake_hub, hub_env``):

* ``fake_hub``: one server per test process, reset before each test; after the test it fails if the client hit an
  unimplemented endpoint or the server raised.
* ``hub_env``: points the client at the server and at a fresh cache under ``tmp_path`` (environment variables for
  subprocesses *and* the values ``huggingface_hub`` already read at import), and makes the client's retry back-off
  instantaneous. A developer's real token, cache or endpoint are never used.
"""
from __future__ import annotations

import atexit
import base64
import fnmatch
import hashlib
import http.server
import json
import os
import re
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Iterator, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

__all__ = [
    "LFS_PATTERNS", "LFS_SIZE_THRESHOLD", "Commit", "Fault", "FakeHub", "HubEnv", "RequestRecord",
    "fake_hub", "git_blob_sha1", "hub_env", "is_lfs", "lfs_pointer", "set_offline", "sha256_hex",
]

LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.onnx")
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
FAKE_USER = "fakehub-user"
FAKE_TOKEN = "hf_fake_token"

_REPO_TYPES = {"models": "model", "datasets": "dataset"}
_URL_PREFIX = {"model": "", "dataset": "datasets/"}
_REPO_NAME = re.compile(r"[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9_])?")
_COMMIT_ID = re.compile(r"[0-9a-f]{40}")
_API_VERBS = {"revision", "tree", "refs", "commits", "preupload", "commit", "tag", "branch"}


# ---------------------------------------------------------------------------------------------------------------------
# Hashes and file kinds, as the Hub computes them


def git_blob_sha1(data: bytes) -> str:
    """Git blob id of ``data``: ``sha1(b"blob <len>\\0" + data)`` (the ETag of a regular file on the Hub)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256_hex(data: bytes) -> str:
    """sha256 of ``data`` (the ETag / LFS oid of an LFS file on the Hub)."""
    return hashlib.sha256(data).hexdigest()


def is_lfs(path: str, size: int) -> bool:
    """Whether the Hub stores ``path`` with LFS: a weight-file name or more than 10 MiB. Empty files are never LFS."""
    if size == 0:
        return False
    return size > LFS_SIZE_THRESHOLD or any(fnmatch.fnmatch(PurePosixPath(path).name, p) for p in LFS_PATTERNS)


def lfs_pointer(data: bytes) -> bytes:
    """The git-LFS pointer file that git stores in place of an LFS file."""
    return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
        sha256_hex(data).encode(), len(data))


def _etag(path: str, data: bytes) -> str:
    return sha256_hex(data) if is_lfs(path, len(data)) else git_blob_sha1(data)


def _git_oid(path: str, data: bytes) -> str:
    """The blob id git would store: of the pointer for LFS files, of the content otherwise."""
    return git_blob_sha1(lfs_pointer(data) if is_lfs(path, len(data)) else data)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _gitattributes() -> bytes:
    lines = [f"{p} filter=lfs diff=lfs merge=lfs -text" for p in LFS_PATTERNS]
    return ("\n".join(lines) + "\n").encode()


def _front_matter(readme: bytes) -> tuple[dict | None, str | None]:
    """Parse the YAML front matter of a model card: ``(metadata or None, error message or None)``.

    PyYAML is a dependency of huggingface_hub; without it, the front matter is accepted unparsed.
    """
    text = readme.decode("utf-8", errors="replace")
    if not text.startswith("---"):
        return None, None
    match = re.match(r"^---[ \t]*\r?\n(.*?)(?:\r?\n)?^---[ \t]*$", text, flags=re.S | re.M)
    if match is None:
        return None, "the YAML front matter opened with '---' is never closed by a '---' line"
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML ships with huggingface_hub
        return None, None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as e:
        return None, f"YAML front matter is not valid YAML: {e}"
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return None, f"YAML front matter must be a mapping, got {type(data).__name__}"
    return data, None


# ---------------------------------------------------------------------------------------------------------------------
# Server state


@dataclass(frozen=True)
class Commit:
    """One commit: id, first parent, title/description, UTC date and the full file snapshot after it."""
    oid: str
    parent: str | None
    title: str
    message: str
    date: str
    files: Mapping[str, bytes]


@dataclass
class _Repo:
    repo_id: str
    repo_type: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content (uploaded or committed)
    corrupted: dict[str, bytes] = field(default_factory=dict)  # path -> bytes served instead by GET

    def resolve(self, revision: str) -> Commit | None:
        """A branch, then a tag, then a full commit id (the Hub's order)."""
        oid = self.branches.get(revision) or self.tags.get(revision)
        if oid is None and _COMMIT_ID.fullmatch(revision):
            oid = revision
        return self.commits.get(oid) if oid is not None else None

    def history(self, head: Commit) -> Iterator[Commit]:
        commit: Commit | None = head
        while commit is not None:
            yield commit
            commit = self.commits.get(commit.parent) if commit.parent else None

    def last_commit_touching(self, head: Commit, path: str) -> Commit:
        """Newest commit on the first-parent chain that changed ``path`` (a file, or anything under a folder)."""
        def view(c: Commit | None) -> Any:
            if c is None:
                return None
            if path in c.files:
                return c.files[path]
            prefix = path.rstrip("/") + "/"
            return sorted((p, d) for p, d in c.files.items() if p.startswith(prefix))

        for commit in self.history(head):
            parent = self.commits.get(commit.parent) if commit.parent else None
            if view(commit) != view(parent):
                return commit
        return head


@dataclass
class Fault:
    """An injected error answer: ``status`` for requests whose path matches ``path_glob`` (and ``method``)."""
    status: int
    path_glob: str
    method: str | None = None
    times: int | None = None  # None: forever
    headers: dict[str, str] = field(default_factory=dict)
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return (self.method is None or self.method == method) and fnmatch.fnmatchcase(path, self.path_glob)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it (raw, still-quoted path) and the status it answered."""
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    status: int


@dataclass
class _Request:
    method: str
    path: str  # raw (quoted) path, without the query
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as e:
            raise _HttpError(400, f"request body is not JSON: {e}") from None


@dataclass
class _Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: int | None = None  # advertised on HEAD when there is no body

    @classmethod
    def json(cls, data: Any, status: int = 200, **headers: str) -> _Response:
        return cls(status, json.dumps(data).encode(), {"Content-Type": "application/json", **headers})


class _HttpError(Exception):
    """An error answer: JSON ``{"error": message}`` plus ``X-Error-Message`` (and ``X-Error-Code`` when given)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, dict(headers or {})

    def response(self) -> _Response:
        headers = {"X-Error-Message": self.message, **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
        return _Response.json({"error": self.message}, self.status, **headers)


class _Unhandled(Exception):
    """The request is outside what the fake implements."""


# ---------------------------------------------------------------------------------------------------------------------
# The server


class FakeHub:
    """In-memory Hugging Face Hub speaking HTTP on ``127.0.0.1``.

    Test-side API: :meth:`create_repo`, :meth:`add_files`, :meth:`tag`, :meth:`branch`, :meth:`files`,
    :meth:`commits`, :attr:`requests` (``(method, raw path)`` pairs, clear with ``hub.requests.clear()``),
    :attr:`log` (full :class:`RequestRecord` entries), :attr:`unhandled`, :attr:`server_errors`, fault injection
    with :meth:`corrupt`, :meth:`fail` and :meth:`down` / :meth:`up` (connection refused on the same port).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._lock = threading.RLock()
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._seq = 0
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.log: list[RequestRecord] = []
        self.unhandled: list[tuple[str, str]] = []
        self.server_errors: list[str] = []
        self.faults: list[Fault] = []

    # -- lifecycle ----------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (stable across :meth:`down` / :meth:`up`)."""
        if not self._port:
            raise RuntimeError("FakeHub has no port yet: call start() first")
        return f"http://{self._host}:{self._port}"

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def start(self) -> FakeHub:
        """Bind (port 0 picks a free port the first time) and serve from a daemon thread."""
        with self._lock:
            if self._server is not None:
                return self
            server = _Server((self._host, self._port), _Handler)
            server.hub = self
            self._server, self._port = server, server.server_address[1]
            self._thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05),
                                            name=f"fakehub:{self._port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket: new connections are refused."""
        with self._lock:
            server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def down(self) -> None:
        """Simulate an unreachable Hub: the port refuses connections until :meth:`up`."""
        self.stop()

    def up(self) -> None:
        """Serve again on the same port, with the same repos."""
        self.start()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget repos, logs, faults and corruptions (the server keeps running on its port)."""
        with self._lock:
            self._seq = 0
            self.repos.clear()
            self.requests.clear()
            self.log.clear()
            self.unhandled.clear()
            self.server_errors.clear()
            self.faults.clear()

    # -- test-side API ------------------------------------------------------------------------------------------------

    def create_repo(self, repo_id: str, *, repo_type: str = "model", private: bool = False, exist_ok: bool = False,
                    files: Mapping[str, bytes | str] | None = None, message: str = "Upload files") -> str:
        """Create a repo whose first commit holds a ``.gitattributes``; with ``files``, commit them on top.

        Returns the head commit id of ``main``.
        """
        _check_repo_id(repo_id)
        if repo_type not in _URL_PREFIX:
            raise ValueError(f"repo_type must be one of {sorted(_URL_PREFIX)}, got {repo_type!r}")
        with self._lock:
            repo = self.repos.get((repo_type, repo_id))
            if repo is not None and not exist_ok:
                raise ValueError(f"{repo_type} repo {repo_id!r} already exists; pass exist_ok=True to reuse it")
            if repo is None:
                repo = _Repo(repo_id, repo_type, private, _now())
                self.repos[(repo_type, repo_id)] = repo
                self._commit(repo, "main", {".gitattributes": _gitattributes()}, "initial commit")
            if files:
                return self.add_files(repo_id, files, message=message, repo_type=repo_type)
            return repo.branches["main"]

    def add_files(self, repo_id: str, files: Mapping[str, bytes | str], *, message: str = "Upload files",
                  revision: str = "main", delete: tuple[str, ...] | list[str] = (), repo_type: str = "model") -> str:
        """Commit ``files`` (``str`` values are UTF-8 encoded) and delete ``delete`` paths on branch ``revision``.

        Returns the new commit id.
        """
        with self._lock:
            repo = self._repo_or_raise(repo_id, repo_type)
            if revision not in repo.branches:
                raise ValueError(f"{repo_id!r} has no branch {revision!r} (branches: {sorted(repo.branches)}); "
                                 f"create it with hub.branch()")
            snapshot = dict(repo.commits[repo.branches[revision]].files)
            for path in delete:
                if snapshot.pop(_check_path(path), None) is None:
                    raise ValueError(f"cannot delete {path!r}: not in {repo_id}@{revision}")
            for path, data in files.items():
                if isinstance(data, str):
                    data = data.encode()
                if not isinstance(data, bytes):
                    raise TypeError(f"file {path!r}: expected bytes or str, got {type(data).__name__}")
                snapshot[_check_path(path)] = data
            return self._commit(repo, revision, snapshot, message).oid

    def tag(self, repo_id: str, tag: str, revision: str = "main", *, repo_type: str = "model") -> str:
        """Tag ``revision`` (branch, tag or commit id); returns the tagged commit id."""
        with self._lock:
            repo = self._repo_or_raise(repo_id, repo_type)
            commit = self._resolve_or_raise(repo, revision)
            if tag in repo.tags or tag in repo.branches:
                raise ValueError(f"{repo_id!r} already has a ref named {tag!r}")
            repo.tags[tag] = commit.oid
            return commit.oid

    def branch(self, repo_id: str, name: str, revision: str = "main", *, repo_type: str = "model") -> str:
        """Create branch ``name`` at ``revision``; returns its commit id."""
        with self._lock:
            repo = self._repo_or_raise(repo_id, repo_type)
            commit = self._resolve_or_raise(repo, revision)
            if name in repo.tags or name in repo.branches:
                raise ValueError(f"{repo_id!r} already has a ref named {name!r}")
            repo.branches[name] = commit.oid
            return commit.oid

    def files(self, repo_id: str, revision: str = "main", *, repo_type: str = "model") -> dict[str, bytes]:
        """Snapshot ``{path: bytes}`` at ``revision``."""
        with self._lock:
            return dict(self._resolve_or_raise(self._repo_or_raise(repo_id, repo_type), revision).files)

    def commits(self, repo_id: str, revision: str = "main", *, repo_type: str = "model") -> list[Commit]:
        """First-parent history of ``revision``, newest first (the last one is the initial commit)."""
        with self._lock:
            repo = self._repo_or_raise(repo_id, repo_type)
            return list(repo.history(self._resolve_or_raise(repo, revision)))

    def corrupt(self, repo_id: str, path: str, data: bytes | None, *, repo_type: str = "model") -> None:
        """Serve ``data`` as the body of GET ``path`` (any revision) while HEAD keeps advertising the original ETag and
        size, as a flaky CDN or disk would. ``data=None`` restores the real content."""
        with self._lock:
            repo = self._repo_or_raise(repo_id, repo_type)
            if data is None:
                repo.corrupted.pop(path, None)
            else:
                repo.corrupted[_check_path(path)] = bytes(data)

    def fail(self, status: int, path_glob: str = "*", *, method: str | None = None, times: int | None = None,
             headers: Mapping[str, str] | None = None) -> Fault:
        """Answer ``status`` (JSON error, no ``X-Error-Code``) to requests whose raw path matches ``path_glob``
        (``fnmatch``; ``*`` crosses ``/``), optionally only for ``method`` and only the first ``times`` matches.
        Returns the :class:`Fault`; its ``hits`` counts the answers given. Remove with :meth:`clear_faults`."""
        if not 400 <= status <= 599:
            raise ValueError(f"fail() injects error answers: status must be in 400..599, got {status}")
        fault = Fault(status, path_glob, method.upper() if method else None, times, dict(headers or {}))
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def requests_matching(self, method: str | None = None, path_glob: str = "*") -> list[tuple[str, str]]:
        """The recorded ``(method, path)`` pairs filtered by method and ``fnmatch`` glob."""
        with self._lock:
            return [(m, p) for m, p in self.requests
                    if (method is None or m == method) and fnmatch.fnmatchcase(p, path_glob)]

    # -- internals: state ---------------------------------------------------------------------------------------------

    def _repo_or_raise(self, repo_id: str, repo_type: str) -> _Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise KeyError(f"no {repo_type} repo {repo_id!r} on the fake hub; create it with hub.create_repo()")
        return repo

    @staticmethod
    def _resolve_or_raise(repo: _Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise KeyError(f"{repo.repo_id!r} has no revision {revision!r} "
                           f"(branches {sorted(repo.branches)}, tags {sorted(repo.tags)})")
        return commit

    def _commit(self, repo: _Repo, branch: str, snapshot: dict[str, bytes], title: str, message: str = "") -> Commit:
        parent = repo.branches.get(branch)
        self._seq += 1
        h = hashlib.sha1(f"{parent}\n{self._seq}\n{title}\n{message}\n".encode())
        for path in sorted(snapshot):
            h.update(f"{path}\0{_git_oid(path, snapshot[path])}\n".encode())
        commit = Commit(h.hexdigest(), parent, title, message, _now(), MappingProxyType(dict(snapshot)))
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        for path, data in snapshot.items():
            if is_lfs(path, len(data)):
                repo.lfs_objects.setdefault(sha256_hex(data), data)
        return commit

    # -- internals: HTTP ----------------------------------------------------------------------------------------------

    def _handle(self, request: _Request) -> _Response:
        """Answer one request (called from the server threads)."""
        with self._lock:
            fault = next((f for f in self.faults if f.matches(request.method, request.path)), None)
            if fault is not None:
                fault.hits += 1
        if fault is not None:
            message = f"fakehub: injected {fault.status} for {request.method} {request.path}"
            response = _Response.json({"error": message}, fault.status, **fault.headers)
        else:
            try:
                with self._lock:
                    response = self._route(request)
            except _HttpError as e:
                response = e.response()
            except _Unhandled as e:
                with self._lock:
                    self.unhandled.append((request.method, request.path))
                message = f"fakehub does not implement {request.method} {request.path}" + (f": {e}" if str(e) else "")
                response = _Response.json({"error": message}, 404)
            except Exception:  # a bug in the fake: report it to the test instead of hiding it
                tb = traceback.format_exc()
                with self._lock:
                    self.server_errors.append(f"{request.method} {request.path}\n{tb}")
                response = _Response.json({"error": f"fakehub internal error:\n{tb}"}, 500)
        with self._lock:
            self.requests.append((request.method, request.path))
            self.log.append(RequestRecord(request.method, request.path, MappingProxyType(request.query),
                                          MappingProxyType(request.headers), response.status))
        return response

    def _route(self, request: _Request) -> _Response:
        method, path = request.method, request.path
        if path == "/api/agent-harnesses" and method == "GET":
            return _Response.json({"standardEnvVars": [], "harnesses": {}})
        if path == "/api/whoami-v2" and method == "GET":
            return self._api_whoami(request)
        if path == "/api/repos/create" and method == "POST":
            return self._api_create_repo(request)
        if path == "/api/repos/delete" and method == "DELETE":
            return self._api_delete_repo(request)
        if path == "/api/validate-yaml" and method == "POST":
            return self._api_validate_yaml(request)
        if path.startswith("/api/"):
            return self._api_repo(request)
        if path.startswith("/__lfs/"):
            return self._lfs_transfer(request)
        match = re.fullmatch(r"/(datasets/)?(.+)\.git/info/lfs/objects/batch", path)
        if match and method == "POST":
            repo = self._repo_for_api("dataset" if match.group(1) else "model", unquote(match.group(2)))
            return self._lfs_batch(request, repo)
        if method in ("GET", "HEAD"):
            return self._resolve(request)
        raise _Unhandled()

    def _repo_for_api(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise _HttpError(404, "Repository not found", "RepoNotFound")
        return repo

    def _split_repo(self, repo_type: str, segments: list[str], verbs: set[str]) -> tuple[str, list[str]]:
        """Split raw path segments into ``(repo_id, rest)``; ids are ``namespace/name`` or legacy ``name``."""
        if len(segments) >= 2 and (repo_type, f"{segments[0]}/{segments[1]}") in self.repos:
            return f"{segments[0]}/{segments[1]}", segments[2:]
        if segments and (repo_type, segments[0]) in self.repos:
            return segments[0], segments[1:]
        if len(segments) >= 2 and segments[1] not in verbs:
            return f"{segments[0]}/{segments[1]}", segments[2:]
        return (segments[0] if segments else ""), segments[1:]

    @staticmethod
    def _revision_or_404(repo: _Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # /{repo}/resolve/{revision}/{path}
    def _resolve(self, request: _Request) -> _Response:
        segments = request.path.lstrip("/").split("/")
        repo_type = "model"
        if segments and segments[0] == "datasets":
            repo_type, segments = "dataset", segments[1:]
        if "resolve" not in segments[1:3]:
            raise _Unhandled()
        repo_id, rest = self._split_repo(repo_type, segments, {"resolve"})
        if not rest or rest[0] != "resolve" or len(rest) < 3:
            raise _Unhandled()
        repo = self._repo_for_api(repo_type, unquote(repo_id))
        commit = self._revision_or_404(repo, unquote(rest[1]))
        filename = unquote("/".join(rest[2:]))
        data = commit.files.get(filename)
        if data is None:
            raise _HttpError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{_etag(filename, data)}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if is_lfs(filename, len(data)):
            headers["X-Linked-Etag"] = f'"{sha256_hex(data)}"'
            headers["X-Linked-Size"] = str(len(data))
        if request.method == "HEAD":
            return _Response(200, b"", headers, content_length=len(data))
        body = repo.corrupted.get(filename, data)
        return _ranged(request, body, headers)

    # /api/{models|datasets}/...
    def _api_repo(self, request: _Request) -> _Response:
        segments = request.path[len("/api/"):].split("/")
        repo_type = _REPO_TYPES.get(segments[0])
        if repo_type is None:
            raise _Unhandled(f"repo kind {segments[0]!r}")
        repo_id, rest = self._split_repo(repo_type, segments[1:], _API_VERBS)
        repo = self._repo_for_api(repo_type, unquote(repo_id))
        method, verb = request.method, rest[0] if rest else None
        if method == "GET" and verb is None:
            return self._api_info(request, repo, repo.resolve("main"))
        if method == "GET" and verb == "revision" and len(rest) == 2:
            return self._api_info(request, repo, self._revision_or_404(repo, unquote(rest[1])))
        if method == "GET" and verb == "tree" and len(rest) >= 2:
            return self._api_tree(request, repo, self._revision_or_404(repo, unquote(rest[1])),
                                  unquote("/".join(rest[2:])))
        if method == "GET" and verb == "refs" and len(rest) == 1:
            return self._api_refs(repo)
        if method == "GET" and verb == "commits" and len(rest) == 2:
            return self._api_commits(repo, self._revision_or_404(repo, unquote(rest[1])))
        if "create_pr" in request.query:
            raise _Unhandled("pull requests (create_pr=1)")
        if method == "POST" and verb == "preupload" and len(rest) == 2:
            return self._api_preupload(request, repo, self._revision_or_404(repo, unquote(rest[1])))
        if method == "POST" and verb == "commit" and len(rest) == 2:
            return self._api_commit(request, repo, unquote(rest[1]))
        if verb == "tag" and len(rest) == 2 and method in ("POST", "DELETE"):
            return self._api_tag(request, repo, unquote(rest[1]))
        if verb == "branch" and len(rest) == 2 and method in ("POST", "DELETE"):
            return self._api_branch(request, repo, unquote(rest[1]))
        raise _Unhandled()

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.url}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    def _api_info(self, request: _Request, repo: _Repo, commit: Commit) -> _Response:
        blobs = request.query.get("blobs", ["false"])[-1].lower() in ("1", "true")
        card, _ = _front_matter(commit.files.get("README.md", b""))
        card = card or {}
        siblings = []
        for path in sorted(commit.files):
            data = commit.files[path]
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=len(data), blobId=_git_oid(path, data))
                if is_lfs(path, len(data)):
                    sibling["lfs"] = {"sha256": sha256_hex(data), "size": len(data),
                                      "pointerSize": len(lfs_pointer(data))}
            siblings.append(sibling)
        tags = card.get("tags") or []
        info = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None,
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(tags) if isinstance(tags, list) else [tags],
            "siblings": siblings,
            "usedStorage": sum(len(d) for d in commit.files.values()),
        }
        if card:
            info["cardData"] = card
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
            info["library_name"] = card.get("library_name")
            info["pipeline_tag"] = card.get("pipeline_tag")
            info["spaces"] = []
        return _Response.json(info)

    def _api_tree(self, request: _Request, repo: _Repo, commit: Commit, path: str) -> _Response:
        recursive = request.query.get("recursive", ["false"])[-1].lower() in ("1", "true")
        expand = request.query.get("expand", ["false"])[-1].lower() in ("1", "true")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        under = {p: d for p, d in commit.files.items() if p.startswith(prefix)}
        if prefix and not under:
            raise _HttpError(404, f"{path} does not exist on {commit.oid}", "EntryNotFound",
                             {"X-Repo-Commit": commit.oid})
        folders: set[str] = set()
        files: list[str] = []
        for p in under:
            parts = p[len(prefix):].split("/")
            if not recursive and len(parts) > 1:
                folders.add(prefix + parts[0])
                continue
            files.append(p)
            if recursive:
                folders.update(prefix + "/".join(parts[:i]) for i in range(1, len(parts)))
        entries: list[dict[str, Any]] = []
        for folder in sorted(folders):
            listing = "".join(f"{p}\0{_git_oid(p, d)}\n" for p, d in sorted(commit.files.items())
                              if p.startswith(folder + "/"))
            entries.append({"type": "directory", "oid": git_blob_sha1(listing.encode()), "size": 0, "path": folder})
        for p in sorted(files):
            data = commit.files[p]
            entry: dict[str, Any] = {"type": "file", "oid": _git_oid(p, data), "size": len(data), "path": p}
            if is_lfs(p, len(data)):
                entry["lfs"] = {"oid": sha256_hex(data), "size": len(data), "pointerSize": len(lfs_pointer(data))}
            entries.append(entry)
        if expand:
            for entry in entries:
                last = repo.last_commit_touching(commit, entry["path"])
                entry["lastCommit"] = {"id": last.oid, "title": last.title, "date": last.date}
        return _Response.json(entries)

    def _api_refs(self, repo: _Repo) -> _Response:
        def refs(names: dict[str, str], kind: str) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": oid} for n, oid in sorted(names.items())]
        return _Response.json({"branches": refs(repo.branches, "heads"), "tags": refs(repo.tags, "tags"),
                               "converts": [], "pullRequests": []})

    def _api_commits(self, repo: _Repo, commit: Commit) -> _Response:
        return _Response.json([
            {"id": c.oid, "title": c.title, "message": c.message, "date": c.date, "authors": [{"user": FAKE_USER}]}
            for c in repo.history(commit)
        ])

    def _api_whoami(self, request: _Request) -> _Response:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            raise _HttpError(401, "Invalid credentials in Authorization header")
        return _Response.json({
            "type": "user", "id": "0" * 24, "name": FAKE_USER, "fullname": "Fake Hub User", "email": None,
            "emailVerified": False, "canPay": False, "isPro": False, "periodEnd": None, "avatarUrl": "", "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "fakehub", "role": "write"}},
        })

    def _api_create_repo(self, request: _Request) -> _Response:
        payload = request.json() or {}
        name, organization = payload.get("name"), payload.get("organization")
        repo_type = payload.get("type") or "model"
        if repo_type not in _URL_PREFIX:
            raise _Unhandled(f"repo type {repo_type!r}")
        if not isinstance(name, str):
            raise _HttpError(400, f"'name' must be a string, got {name!r}")
        repo_id = f"{organization or FAKE_USER}/{name}"
        try:
            _check_repo_id(repo_id)
        except ValueError as e:
            raise _HttpError(400, str(e)) from None
        url = f"{self.url}/{_URL_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            return _Response.json({"error": f"You already created this {repo_type} repo", "url": url}, 409)
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        self.create_repo(repo_id, repo_type=repo_type, private=private)
        return _Response.json({"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})

    def _api_delete_repo(self, request: _Request) -> _Response:
        payload = request.json() or {}
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or FAKE_USER}/{payload.get('name')}"
        if self.repos.pop((repo_type, repo_id), None) is None:
            raise _HttpError(404, "Repository not found", "RepoNotFound")
        return _Response(200)

    def _api_validate_yaml(self, request: _Request) -> _Response:
        payload = request.json() or {}
        content = payload.get("content")
        if not isinstance(content, str):
            raise _HttpError(400, "'content' must be a string")
        _, error = _front_matter(content.encode())
        if error:
            return _Response.json({"errors": [{"message": error}], "warnings": []}, 400)
        return _Response.json({"errors": [], "warnings": []})

    def _api_preupload(self, request: _Request, repo: _Repo, commit: Commit) -> _Response:
        files = (request.json() or {}).get("files")
        if not isinstance(files, list):
            raise _HttpError(400, "'files' must be a list of {path, sample, size}")
        answer = []
        for item in files:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not isinstance(
                    item.get("size"), int):
                raise _HttpError(400, f"malformed preupload entry: {item!r}")
            path, size = item["path"], item["size"]
            remote = commit.files.get(path)
            oid = None if remote is None else _etag(path, remote)
            answer.append({"path": path, "uploadMode": "lfs" if is_lfs(path, size) else "regular",
                           "shouldIgnore": False, "oid": oid})
        return _Response.json({"files": answer, "commitOid": commit.oid})

    def _api_commit(self, request: _Request, repo: _Repo, branch: str) -> _Response:
        if branch not in repo.branches:
            raise _HttpError(404, f"Invalid rev id: {branch} (commits go to a branch)", "RevisionNotFound")
        if "x-ndjson" not in request.headers.get("content-type", ""):
            raise _HttpError(400, "commit payload must be application/x-ndjson")
        try:
            lines = [json.loads(line) for line in request.body.splitlines() if line.strip()]
        except ValueError as e:
            raise _HttpError(400, f"commit payload is not valid ndjson: {e}") from None
        if not lines or lines[0].get("key") != "header":
            raise _HttpError(400, "commit payload must start with a 'header' line")
        header = lines[0].get("value") or {}
        summary = header.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            raise _HttpError(400, "commit summary (title) is empty")
        head = repo.commits[repo.branches[branch]]
        parent = header.get("parentCommit")
        if parent is not None and parent != head.oid:
            raise _HttpError(412, f"A commit has happened since parent commit {parent}: {branch} is at {head.oid}")
        snapshot = dict(head.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path")
            if not isinstance(path, str):
                raise _HttpError(400, f"operation {key!r} has no path: {value!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise _HttpError(400, f"{path}: only base64 file content is supported")
                try:
                    snapshot[path] = base64.b64decode(value.get("content", ""), validate=True)
                except ValueError as e:
                    raise _HttpError(400, f"{path}: content is not valid base64: {e}") from None
            elif key == "lfsFile":
                oid, size = value.get("oid"), value.get("size")
                data = repo.lfs_objects.get(oid) if value.get("algo", "sha256") == "sha256" else None
                if data is None:
                    raise _HttpError(400, f"{path}: LFS object sha256:{oid} was never uploaded to {repo.repo_id}; "
                                          f"upload it through the LFS batch API before committing")
                if size is not None and size != len(data):
                    raise _HttpError(400, f"{path}: LFS object sha256:{oid} has {len(data)} bytes, commit says {size}")
                snapshot[path] = data
            elif key == "deletedFile":
                if snapshot.pop(path, None) is None:
                    raise _HttpError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                doomed = [p for p in snapshot if p.startswith(prefix)]
                if not doomed:
                    raise _HttpError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del snapshot[p]
            else:
                raise _Unhandled(f"commit operation {key!r}")
        commit = self._commit(repo, branch, snapshot, summary, header.get("description") or "")
        return _Response.json({"success": True, "commitOid": commit.oid, "pullRequestUrl": None,
                               "commitUrl": f"{self._repo_url(repo)}/commit/{commit.oid}"})

    def _api_tag(self, request: _Request, repo: _Repo, name: str) -> _Response:
        if request.method == "DELETE":
            if repo.tags.pop(name, None) is None:
                raise _HttpError(404, f"Tag {name} does not exist", "RevisionNotFound")
            return _Response(200)
        commit = self._revision_or_404(repo, name)
        tag = (request.json() or {}).get("tag")
        if not isinstance(tag, str) or not tag:
            raise _HttpError(400, f"'tag' must be a non-empty string, got {tag!r}")
        if tag in repo.tags or tag in repo.branches:
            raise _HttpError(409, f"Tag {tag} already exists")
        repo.tags[tag] = commit.oid
        return _Response.json({"name": tag, "ref": f"refs/tags/{tag}", "targetCommit": commit.oid})

    def _api_branch(self, request: _Request, repo: _Repo, name: str) -> _Response:
        if request.method == "DELETE":
            if name == "main" or repo.branches.pop(name, None) is None:
                raise _HttpError(404 if name != "main" else 403, f"Cannot delete branch {name}")
            return _Response(200)
        if name in repo.branches or name in repo.tags:
            raise _HttpError(409, f"Reference {name} already exists")
        start = (request.json() or {}).get("startingPoint") or "main"
        repo.branches[name] = self._revision_or_404(repo, start).oid
        return _Response(200)

    # git-LFS basic transfer
    def _lfs_batch(self, request: _Request, repo: _Repo) -> _Response:
        payload = request.json() or {}
        if payload.get("operation") != "upload":
            raise _Unhandled(f"LFS operation {payload.get('operation')!r}")
        if "basic" not in payload.get("transfers", ["basic"]):
            raise _Unhandled(f"LFS transfers {payload.get('transfers')!r} (only 'basic')")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not (isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid) and isinstance(size, int)):
                entry["error"] = {"code": 422, "message": f"invalid LFS object {obj!r}"}
            elif oid not in repo.lfs_objects:
                href = f"{self.url}/__lfs/{repo.repo_type}s/{repo.repo_id}/{oid}"
                entry["actions"] = {"upload": {"href": href}, "verify": {"href": f"{href}/verify"}}
            objects.append(entry)
        return _Response(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                         {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_transfer(self, request: _Request) -> _Response:
        match = re.fullmatch(r"/__lfs/(models|datasets)/(.+)/([0-9a-f]{64})(/verify)?", request.path)
        if match is None:
            raise _Unhandled()
        repo = self._repo_for_api(_REPO_TYPES[match.group(1)], match.group(2))
        oid = match.group(3)
        if match.group(4) and request.method == "POST":
            size = (request.json() or {}).get("size")
            data = repo.lfs_objects.get(oid)
            if data is None or size != len(data):
                raise _HttpError(404, f"LFS object sha256:{oid} ({size} bytes) was not uploaded")
            return _Response.json({"success": True})
        if not match.group(4) and request.method == "PUT":
            if sha256_hex(request.body) != oid:
                raise _HttpError(400, f"uploaded bytes hash to sha256:{sha256_hex(request.body)}, not {oid}")
            repo.lfs_objects[oid] = request.body
            return _Response(200)
        raise _Unhandled()


def _ranged(request: _Request, body: bytes, headers: dict[str, str]) -> _Response:
    """200 with the whole body, or 206 for ``Range: bytes=start-[end]`` (416 if unsatisfiable)."""
    spec = request.headers.get("range")
    if spec is None:
        return _Response(200, body, headers)
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", spec.strip())
    if match is None:
        raise _HttpError(400, f"unsupported Range header {spec!r} (only 'bytes=N-' and 'bytes=N-M')")
    start = int(match.group(1))
    end = min(int(match.group(2)) if match.group(2) else len(body) - 1, len(body) - 1)
    if start >= len(body) or end < start:
        raise _HttpError(416, f"Range {spec} not satisfiable for {len(body)} bytes",
                         headers={"Content-Range": f"bytes */{len(body)}"})
    return _Response(206, body[start:end + 1], {**headers, "Content-Range": f"bytes {start}-{end}/{len(body)}"})


def _check_repo_id(repo_id: str) -> None:
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if not 1 <= len(parts) <= 2 or not all(_REPO_NAME.fullmatch(p) for p in parts) or "--" in repo_id \
            or ".." in repo_id or repo_id.endswith(".git"):
        raise ValueError(f"invalid repo id {repo_id!r}: expected 'namespace/name' (letters, digits, '-', '_', '.'; "
                         f"no '--' or '..')")


def _check_path(path: str) -> str:
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path \
            or any(part in ("", ".", "..") for part in path.split("/")):
        raise ValueError(f"invalid path in repo {path!r}: use a relative POSIX path like 'sub/model.safetensors'")
    return path


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: FakeHub


class _Handler(http.server.BaseHTTPRequestHandler):
    """Reads one request, lets :meth:`FakeHub._handle` answer it, writes the answer and closes the connection.

    ``Connection: close`` on every answer keeps the client from reusing a socket across :meth:`FakeHub.down`.
    """
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # silence the per-request stderr lines
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        split = urlsplit(self.path)
        request = _Request(self.command, split.path, parse_qs(split.query, keep_blank_values=True),
                           {k.lower(): v for k, v in self.headers.items()}, self._read_body())
        response = self.server.hub._handle(request)
        self.close_connection = True
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            length = response.content_length if self.command == "HEAD" and response.content_length is not None \
                else len(response.body)
            self.send_header("Content-Length", str(length))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. a timeout); nothing to answer

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _serve


# ---------------------------------------------------------------------------------------------------------------------
# pytest fixtures

_SHARED_HUB: FakeHub | None = None


def _shared_hub() -> FakeHub:
    """One server per test process (pytest-xdist workers each get their own), started on first use."""
    global _SHARED_HUB
    if _SHARED_HUB is None:
        _SHARED_HUB = FakeHub().start()
        atexit.register(_SHARED_HUB.stop)
    return _SHARED_HUB


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    """A running, empty :class:`FakeHub`. After the test, fails if the client hit an endpoint the fake does not
    implement (``hub.unhandled``) or the fake raised (``hub.server_errors``)."""
    hub = _shared_hub()
    hub.up()
    hub.reset()
    yield hub
    unhandled, errors = list(hub.unhandled), list(hub.server_errors)
    hub.up()
    hub.reset()
    assert not unhandled, f"the client called endpoints that fakehub does not implement: {unhandled}"
    assert not errors, "fakehub raised while answering:\n" + "\n".join(errors)


@dataclass
class HubEnv:
    """What :func:`hub_env` set up: the server, the fresh ``HF_HOME`` and hub cache, the environment for
    subprocesses (a full copy of ``os.environ``), and the back-off sleeps the client asked for (not slept)."""
    hub: FakeHub
    home: Path
    cache: Path
    env: dict[str, str]
    sleeps: list[float]

    def repo_cache(self, repo_id: str, repo_type: str = "model") -> Path:
        """``<cache>/models--org--name`` (or ``datasets--...``)."""
        return self.cache / f"{repo_type}s--{repo_id.replace('/', '--')}"


# patched even if missing (raises): without them the client would talk to the real Hub or use the real cache
_REQUIRED_CONSTANTS = {"ENDPOINT", "HUGGINGFACE_CO_URL_TEMPLATE", "HF_HOME", "HF_HUB_CACHE", "HF_TOKEN_PATH",
                       "HF_HUB_OFFLINE", "HF_HUB_DISABLE_XET", "HF_HUB_DISABLE_TELEMETRY"}


class _InstantSleep:
    """Stands in for the ``time`` module inside the client's HTTP helpers: ``sleep`` records instead of waiting."""

    def __init__(self, sleeps: list[float]):
        self._sleeps = sleeps

    def sleep(self, seconds: float) -> None:
        self._sleeps.append(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def set_offline(monkeypatch: pytest.MonkeyPatch, offline: bool = True) -> None:
    """Switch ``huggingface_hub`` offline mode the way ``HF_HUB_OFFLINE=1`` at start-up would.

    ``constants.HF_HUB_OFFLINE`` is read once at import; ``is_offline_mode()`` and the request hook that blocks all
    HTTP calls read that constant, so it is patched along with the variable (kept for subprocesses).
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", bool(offline))


@pytest.fixture
def hub_env(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubEnv]:
    """Point the real ``huggingface_hub`` client (in this process and in subprocesses) at ``fake_hub`` and at a fresh
    cache in ``tmp_path``; Xet and telemetry off, online, token ``hf_fake_token``, instant retry back-off."""
    from huggingface_hub import constants, file_download, hf_api
    from huggingface_hub.utils import _http

    home = tmp_path / "hf_home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    url = fake_hub.url

    for name in ("HF_TOKEN_PATH", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_CACHE", "HUGGINGFACE_ASSETS_CACHE",
                 "TRANSFORMERS_OFFLINE", "HUGGINGFACE_CO_STAGING", "HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN",
                 "HF_HUB_DISABLE_IMPLICIT_TOKEN", "HF_HUB_DISABLE_SYMLINKS", "HF_DEBUG", "HF_HUB_ETAG_TIMEOUT",
                 "HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_USER_AGENT_ORIGIN", "TIMM_USE_OLD_CACHE"):
        monkeypatch.delenv(name, raising=False)
    env_vars = {
        "HF_ENDPOINT": url,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_OFFLINE": "0",
        "HF_TOKEN": FAKE_TOKEN,
        "TORCH_HOME": str(tmp_path / "torch_home"),
    }
    for name, value in env_vars.items():
        monkeypatch.setenv(name, value)

    # values huggingface_hub computed from the environment when it was imported
    patched = {
        "ENDPOINT": url,
        "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(home),
        "default_cache_path": str(cache),
        "HF_HUB_CACHE": str(cache),
        "HUGGINGFACE_HUB_CACHE": str(cache),
        "default_assets_cache_path": str(home / "assets"),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HUGGINGFACE_ASSETS_CACHE": str(home / "assets"),
        "default_xet_cache_path": str(home / "xet"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "CHECK_FOR_UPDATE_DONE_PATH": str(home / ".check_for_update_done"),
        "CHECK_FOR_SKILL_UPDATE_DONE_PATH": str(home / ".check_for_skill_update_done"),
        "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_PROGRESS_BARS": True,
        "HF_HUB_DISABLE_UPDATE_CHECK": True,
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": False,
        "HF_HUB_DISABLE_SYMLINKS": False,
        "HF_HUB_DISABLE_SHARED_BLOBS": True,
        "HF_HUB_ETAG_TIMEOUT": constants.DEFAULT_ETAG_TIMEOUT,
        "HF_HUB_DOWNLOAD_TIMEOUT": constants.DEFAULT_DOWNLOAD_TIMEOUT,
        "HF_HUB_USER_AGENT_ORIGIN": None,
        "HF_DEBUG": False,
    }
    for name, value in patched.items():
        if name in _REQUIRED_CONSTANTS or hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {urlsplit(url).hostname})
    if hasattr(_http, "_HUB_ORIGINS"):  # origins whose redirects keep the auth header, computed at import
        monkeypatch.setattr(_http, "_HUB_ORIGINS", _http._HUB_ORIGINS | {_http._url_origin(url)})
    # modules that copied a constant with `from ..constants import X`
    for module_name, attr, value in (("huggingface_hub.utils._cache_manager", "HF_HUB_CACHE", str(cache)),
                                     ("huggingface_hub.utils._cache_assets", "HF_ASSETS_CACHE", str(home / "assets")),
                                     ("huggingface_hub.utils._git_credential", "ENDPOINT", url),
                                     ("huggingface_hub.utils.tqdm", "HF_HUB_DISABLE_PROGRESS_BARS", True)):
        module = __import__(module_name, fromlist=[attr])
        if hasattr(module, attr):
            monkeypatch.setattr(module, attr, value)
    # the module-level HfApi behind huggingface_hub.model_info / create_repo / upload_folder / ... (and timm's
    # `from huggingface_hub import model_info`) captured the endpoint when it was constructed at import
    monkeypatch.setattr(hf_api.api, "endpoint", url)

    sleeps: list[float] = []
    monkeypatch.setattr(_http, "time", _InstantSleep(sleeps))
    monkeypatch.setattr(file_download, "time", _InstantSleep(sleeps))

    # the client's shared httpx session reads proxy variables when it is created: bypass proxies for the loopback
    # server and start from a session created under this environment
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), "127.0.0.1,localhost"]))
    monkeypatch.setenv("NO_PROXY", no_proxy)
    monkeypatch.setenv("no_proxy", no_proxy)
    _http.close_session()
    try:
        yield HubEnv(hub=fake_hub, home=home, cache=cache, env=dict(os.environ), sleeps=sleeps)
    finally:
        _http.close_session()
