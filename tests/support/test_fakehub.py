"""The fake Hub (tests/fakehub.py) driven by the real ``huggingface_hub`` client: downloads and cache layout, uploads
through the LFS basic transfer, error mapping, outages, offline mode and fault injection.

Expected hashes are computed here with ``hashlib`` (git blob id = ``sha1(b"blob <len>\\0" + data)``, LFS ETag =
``sha256(data)``), independently of the server's helpers.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub as hfh
import pytest
from huggingface_hub import constants, errors
from huggingface_hub.utils import get_session, hf_raise_for_status

from tests.support.fakehub import FakeHub, set_offline

REPO = "kanzoo/tiny"
WEIGHTS = bytes(range(256)) * 4 + b"kan"  # 1027 bytes, LFS by name
CONFIG = b'{"architecture": "kagn_tiny", "num_classes": 10}'
README = b"---\nlicense: apache-2.0\nlibrary_name: timm\ntags:\n- kan\n- image-classification\n---\n# tiny\n"


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob " + str(len(data)).encode() + b"\x00" + data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resolve_path(repo_id: str, revision: str, filename: str) -> str:
    return f"/{repo_id}/resolve/{revision}/{filename}"


@pytest.fixture
def tiny(hub_env):
    """``kanzoo/tiny`` with one LFS and one regular file; returns the head commit id."""
    sha = hub_env.hub.create_repo(REPO, files={"model.safetensors": WEIGHTS, "config.json": CONFIG})
    hub_env.hub.requests.clear()
    return sha


# ---------------------------------------------------------------------------------------------------------------------
# downloads


def test_download_lfs_and_regular_file_cache_layout(hub_env, tiny):
    weights = Path(hfh.hf_hub_download(REPO, "model.safetensors"))
    config = Path(hfh.hf_hub_download(REPO, "config.json"))
    assert weights.read_bytes() == WEIGHTS and config.read_bytes() == CONFIG

    repo_dir = hub_env.cache / "models--kanzoo--tiny"
    assert weights == repo_dir / "snapshots" / tiny / "model.safetensors"
    assert config == repo_dir / "snapshots" / tiny / "config.json"
    # blobs are named after the ETag: sha256 for LFS files, git blob id for regular files
    assert weights.is_symlink() and weights.resolve() == (repo_dir / "blobs" / sha256(WEIGHTS)).resolve()
    assert config.is_symlink() and config.resolve() == (repo_dir / "blobs" / git_sha1(CONFIG)).resolve()
    assert (repo_dir / "refs" / "main").read_text() == tiny
    assert hub_env.hub.requests == [
        ("HEAD", resolve_path(REPO, "main", "model.safetensors")),
        ("GET", resolve_path(REPO, "main", "model.safetensors")),
        ("HEAD", resolve_path(REPO, "main", "config.json")), ("GET", resolve_path(REPO, "main", "config.json")),
    ]
    # the client sent the fixture's fake token, never a developer's
    assert {r.headers.get("authorization") for r in hub_env.hub.log} == {"Bearer hf_fake_token"}


def test_second_download_is_served_from_cache(hub_env, tiny):
    hfh.hf_hub_download(REPO, "model.safetensors")
    hub_env.hub.requests.clear()
    path = hfh.hf_hub_download(REPO, "model.safetensors")
    assert Path(path).read_bytes() == WEIGHTS
    assert hub_env.hub.requests == [("HEAD", resolve_path(REPO, "main", "model.safetensors"))]  # no GET

    hub_env.hub.requests.clear()
    pinned = hfh.hf_hub_download(REPO, "model.safetensors", revision=tiny)
    assert pinned == path and hub_env.hub.requests == []  # a cached commit id needs no request at all


def test_tags_and_branches_resolve_to_their_commit(hub_env, tiny):
    hub = hub_env.hub
    hub.tag(REPO, "v1.0", tiny)
    new_weights = WEIGHTS[::-1]
    head = hub.add_files(REPO, {"model.safetensors": new_weights}, message="retrain")
    hub.branch(REPO, "exp/degree-5", tiny)
    hub.requests.clear()

    assert Path(hfh.hf_hub_download(REPO, "model.safetensors")).read_bytes() == new_weights
    assert Path(hfh.hf_hub_download(REPO, "model.safetensors", revision="v1.0")).read_bytes() == WEIGHTS
    on_branch = Path(hfh.hf_hub_download(REPO, "model.safetensors", revision="exp/degree-5"))
    assert on_branch.read_bytes() == WEIGHTS
    refs = hub_env.repo_cache(REPO) / "refs"
    assert (refs / "main").read_text() == head
    assert (refs / "v1.0").read_text() == tiny
    assert (refs / "exp" / "degree-5").read_text() == tiny
    # revisions travel url-quoted as one path segment
    assert ("HEAD", resolve_path(REPO, "exp%2Fdegree-5", "model.safetensors")) in hub.requests
    # the tagged and branched files share one blob; the new weights have their own
    assert sorted(p.name for p in (hub_env.repo_cache(REPO) / "blobs").iterdir()) == sorted(
        [sha256(WEIGHTS), sha256(new_weights)])


def test_snapshot_download_lists_tree_then_fetches_files(hub_env, tiny):
    hub = hub_env.hub
    head = hub.add_files(REPO, {"README.md": README, "sub/dir/notes.txt": b"deep"}, message="docs")
    hub.requests.clear()

    folder = Path(hfh.snapshot_download(REPO))
    assert folder == hub_env.repo_cache(REPO) / "snapshots" / head
    got = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert got == hub.files(REPO)
    assert set(got) == {".gitattributes", "model.safetensors", "config.json", "README.md", "sub/dir/notes.txt"}
    assert hub.requests[:2] == [("GET", f"/api/models/{REPO}/revision/main"),
                                ("GET", f"/api/models/{REPO}/tree/{head}")]
    assert sorted(p for m, p in hub.requests[2:] if m == "GET") == sorted(
        resolve_path(REPO, head, f) for f in got)
    tree = json.loads((hub_env.repo_cache(REPO) / "trees" / f"{head}.json").read_text())
    assert "sub/dir/notes.txt" in json.dumps(tree)

    hub.requests.clear()
    only_config = Path(hfh.snapshot_download(REPO, revision="main", allow_patterns=["*.json"]))
    assert only_config == folder
    assert [p for m, p in hub.requests if m == "GET" and "/resolve/" in p] == []  # all cached already


def test_model_info_file_exists_and_listings(hub_env, tiny):
    hub = hub_env.hub
    head = hub.add_files(REPO, {"README.md": README, "sub/notes.txt": b"n"}, message="card")
    api = hfh.HfApi()

    info = api.model_info(REPO, files_metadata=True)
    assert info.id == REPO and info.sha == head
    siblings = {s.rfilename: s for s in info.siblings}
    assert set(siblings) == {".gitattributes", "model.safetensors", "config.json", "README.md", "sub/notes.txt"}
    assert siblings["model.safetensors"].lfs.sha256 == sha256(WEIGHTS)
    assert siblings["model.safetensors"].size == len(WEIGHTS)
    assert siblings["config.json"].lfs is None and siblings["config.json"].blob_id == git_sha1(CONFIG)
    assert info.card_data.license == "apache-2.0" and info.library_name == "timm"
    assert info.tags == ["kan", "image-classification"]
    assert hfh.model_info(REPO, revision=tiny).sha == tiny  # module-level alias, pinned revision

    assert api.file_exists(REPO, "config.json")
    assert not api.file_exists(REPO, "nope.bin")
    assert not api.file_exists("kanzoo/missing", "config.json")
    assert api.repo_exists(REPO) and not api.repo_exists("kanzoo/missing")
    assert api.revision_exists(REPO, tiny) and not api.revision_exists(REPO, "v9")

    assert sorted(api.list_repo_files(REPO)) == sorted(hub.files(REPO))
    top = {entry.path: type(entry).__name__ for entry in api.list_repo_tree(REPO)}
    assert top == {".gitattributes": "RepoFile", "model.safetensors": "RepoFile", "config.json": "RepoFile",
                   "README.md": "RepoFile", "sub": "RepoFolder"}
    (weights,) = [e for e in api.list_repo_tree(REPO, expand=True) if e.path == "model.safetensors"]
    assert weights.lfs.sha256 == sha256(WEIGHTS) and weights.last_commit.oid == tiny
    assert [c.commit_id for c in api.list_repo_commits(REPO)] == [c.oid for c in hub.commits(REPO)]
    assert [c.title for c in api.list_repo_commits(REPO)] == ["card", "Upload files", "initial commit"]
    assert [b.name for b in api.list_repo_refs(REPO).branches] == ["main"]


def test_dataset_repos_use_their_url_prefix(hub_env):
    hub_env.hub.create_repo("kanzoo/toy-data", repo_type="dataset", files={"data.csv": b"x,y\n1,2\n"})
    path = hfh.hf_hub_download("kanzoo/toy-data", "data.csv", repo_type="dataset")
    assert Path(path).read_bytes() == b"x,y\n1,2\n"
    assert Path(path).is_relative_to(hub_env.cache / "datasets--kanzoo--toy-data")
    assert hfh.HfApi().dataset_info("kanzoo/toy-data").sha == hub_env.hub.commits("kanzoo/toy-data",
                                                                                  repo_type="dataset")[0].oid
    assert ("HEAD", "/datasets/kanzoo/toy-data/resolve/main/data.csv") in hub_env.hub.requests


def test_timm_reads_weights_through_the_fake_hub(hub_env):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save
    from timm.models._hub import load_state_dict_from_hf

    state = {"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    sha = hub_env.hub.create_repo(REPO, files={"model.safetensors": save(state)})
    loaded = load_state_dict_from_hf(f"{REPO}@{sha}")  # timm asks for pytorch_model.bin, prefers .safetensors
    torch.testing.assert_close(loaded["weight"], state["weight"])
    assert hub_env.hub.requests_matching("GET", "*/resolve/*") == [("GET", resolve_path(REPO, sha,
                                                                                          "model.safetensors"))]


# ---------------------------------------------------------------------------------------------------------------------
# uploads


def _folder(tmp_path: Path, readme: bytes = README) -> Path:
    folder = tmp_path / "to_upload"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(WEIGHTS)
    (folder / "config.json").write_bytes(CONFIG)
    (folder / "README.md").write_bytes(readme)
    return folder


def test_create_repo_and_upload_folder_round_trip(hub_env, tmp_path):
    hub = hub_env.hub
    url = hfh.create_repo("kanzoo/new")
    assert url.repo_id == "kanzoo/new" and url.startswith(hub.url)
    assert hfh.create_repo("kanzoo/new", exist_ok=True).repo_id == "kanzoo/new"
    with pytest.raises(errors.HfHubHTTPError) as exc:
        hfh.create_repo("kanzoo/new")
    assert exc.value.response.status_code == 409
    assert hub.files("kanzoo/new") == {".gitattributes": hub.files("kanzoo/new")[".gitattributes"]}

    hub.requests.clear()
    info = hfh.upload_folder(repo_id="kanzoo/new", folder_path=_folder(tmp_path), commit_message="add weights")
    assert info.oid == hub.commits("kanzoo/new")[0].oid and hub.commits("kanzoo/new")[0].title == "add weights"
    oid = sha256(WEIGHTS)
    assert hub.requests == [
        ("POST", "/api/validate-yaml"), ("POST", "/api/validate-yaml"),  # README.md metadata, checked twice
        ("POST", "/api/models/kanzoo/new/preupload/main"),
        ("POST", "/kanzoo/new.git/info/lfs/objects/batch"),  # safetensors goes through LFS (Xet disabled)
        ("PUT", f"/__lfs/models/kanzoo/new/{oid}"), ("POST", f"/__lfs/models/kanzoo/new/{oid}/verify"),
        ("POST", "/api/models/kanzoo/new/commit/main"),
    ]
    files = hub.files("kanzoo/new")
    assert {k: files[k] for k in ("model.safetensors", "config.json", "README.md")} == {
        "model.safetensors": WEIGHTS, "config.json": CONFIG, "README.md": README}
    assert Path(hfh.hf_hub_download("kanzoo/new", "model.safetensors")).read_bytes() == WEIGHTS
    assert hfh.model_info("kanzoo/new").card_data.library_name == "timm"


def test_unchanged_upload_makes_no_commit_and_tags_work(hub_env, tmp_path):
    hub = hub_env.hub
    hub.create_repo("kanzoo/new")
    folder = _folder(tmp_path)
    first = hfh.upload_folder(repo_id="kanzoo/new", folder_path=folder, commit_message="v1")
    hub.requests.clear()
    again = hfh.upload_folder(repo_id="kanzoo/new", folder_path=folder, commit_message="v1 again")
    assert again.oid == first.oid and len(hub.commits("kanzoo/new")) == 2
    assert hub.requests_matching("POST", "*/commit/*") == [] and hub.requests_matching("PUT") == []
    assert ("GET", "/api/models/kanzoo/new/revision/main") in hub.requests

    (folder / "config.json").write_bytes(b'{"num_classes": 5}')
    changed = hfh.upload_file(path_or_fileobj=folder / "config.json", path_in_repo="config.json", repo_id="kanzoo/new")
    assert changed.oid != first.oid and hub.files("kanzoo/new")["config.json"] == b'{"num_classes": 5}'

    hfh.create_tag("kanzoo/new", tag="v1", revision=first.oid)
    hfh.create_tag("kanzoo/new", tag="v1", revision=first.oid, exist_ok=True)
    with pytest.raises(errors.HfHubHTTPError):
        hfh.create_tag("kanzoo/new", tag="v1")
    assert Path(hfh.hf_hub_download("kanzoo/new", "config.json", revision="v1")).read_bytes() == CONFIG
    assert Path(hfh.hf_hub_download("kanzoo/new", "config.json")).read_bytes() == b'{"num_classes": 5}'


def test_invalid_card_metadata_is_rejected_before_any_upload(hub_env, tmp_path):
    hub_env.hub.create_repo("kanzoo/new")
    hub_env.hub.requests.clear()
    bad = b"---\nlicense: [apache-2.0\n---\n# unclosed flow sequence\n"
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        hfh.upload_folder(repo_id="kanzoo/new", folder_path=_folder(tmp_path, readme=bad))
    assert hub_env.hub.requests == [("POST", "/api/validate-yaml")]
    assert len(hub_env.hub.commits("kanzoo/new")) == 1


def test_commit_needs_uploaded_lfs_objects_and_current_parent(hub_env, tiny):
    url = f"{hub_env.hub.url}/api/models/{REPO}/commit/main"
    missing = {"path": "other.safetensors", "algo": "sha256", "oid": sha256(b"never uploaded"), "size": 14}
    body = b"".join(json.dumps(line).encode() + b"\n" for line in (
        {"key": "header", "value": {"summary": "sneak", "description": ""}}, {"key": "lfsFile", "value": missing}))
    response = get_session().post(url, content=body, headers={"Content-Type": "application/x-ndjson"})
    with pytest.raises(errors.BadRequestError, match="never uploaded"):
        hf_raise_for_status(response, endpoint_name="commit")
    assert hub_env.hub.commits(REPO)[0].oid == tiny

    hub_env.hub.add_files(REPO, {"config.json": b"{}"}, message="moved on")
    with pytest.raises(errors.HfHubHTTPError) as exc:
        hfh.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, parent_commit=tiny)
    assert exc.value.response.status_code == 412

    hub_env.hub.add_files(REPO, {"sub/a.txt": b"a", "sub/deeper/b.txt": b"b"}, message="folder")
    hfh.delete_file("config.json", repo_id=REPO)
    hfh.delete_folder("sub", repo_id=REPO)
    assert sorted(hub_env.hub.files(REPO)) == [".gitattributes", "model.safetensors"]
    with pytest.raises(errors.EntryNotFoundError, match="doesn't exist"):
        hfh.delete_file("config.json", repo_id=REPO)


# ---------------------------------------------------------------------------------------------------------------------
# errors, outages, offline mode, fault injection


def test_errors_map_to_the_client_exceptions(hub_env, tiny):
    with pytest.raises(errors.RepositoryNotFoundError):
        hfh.hf_hub_download("kanzoo/missing", "config.json")
    with pytest.raises(errors.RepositoryNotFoundError):
        hfh.model_info("kanzoo/missing")
    with pytest.raises(errors.RevisionNotFoundError):
        hfh.hf_hub_download(REPO, "config.json", revision="no-such-branch")
    with pytest.raises(errors.RevisionNotFoundError):
        hfh.snapshot_download(REPO, revision="no-such-branch")
    with pytest.raises(errors.EntryNotFoundError):
        hfh.hf_hub_download(REPO, "pytorch_model.bin")
    # the negative cache: X-Repo-Commit on the 404 lets the client remember the file is absent at that commit
    assert (hub_env.repo_cache(REPO) / ".no_exist" / tiny / "pytorch_model.bin").is_file()
    assert hfh.try_to_load_from_cache(REPO, "pytorch_model.bin", cache_dir=hub_env.cache) is not None
    assert not hub_env.sleeps  # 404s are final: no retries


def test_server_down(hub_env, tiny):
    hub = hub_env.hub
    warm = hfh.hf_hub_download(REPO, "config.json")
    hfh.snapshot_download(REPO)
    hub.down()
    hub.requests.clear()
    # warm cache: served from refs/main -> snapshots/<sha>, no retries
    assert hfh.hf_hub_download(REPO, "config.json") == warm
    assert hfh.snapshot_download(REPO) == str(hub_env.repo_cache(REPO) / "snapshots" / tiny)
    assert hub_env.sleeps == []
    # cold cache: one quick try, then the client retries with back-off (1+2+4+8+8 s, not slept here) and gives up
    with pytest.raises(errors.LocalEntryNotFoundError):
        hfh.hf_hub_download("kanzoo/other", "config.json")
    assert hub_env.sleeps == [1, 2, 4, 8, 8]
    assert hub.requests == []  # connection refused: nothing reached the server
    hub.up()
    assert Path(hfh.hf_hub_download(REPO, "model.safetensors")).read_bytes() == WEIGHTS


def test_injected_5xx_and_transient_429(hub_env, tiny):
    hub = hub_env.hub
    warm = hfh.hf_hub_download(REPO, "config.json")
    fault = hub.fail(503, f"/{REPO}/resolve/*")
    assert hfh.hf_hub_download(REPO, "config.json") == warm  # 503 + warm cache: cached file, no retry
    assert fault.hits == 1 and hub_env.sleeps == []
    with pytest.raises(errors.LocalEntryNotFoundError):
        hfh.hf_hub_download(REPO, "model.safetensors")  # 503 + cold cache: 1 + 6 tries, then give up
    assert fault.hits == 1 + 7 and hub_env.sleeps == [1, 2, 4, 8, 8]

    hub.clear_faults()
    hub_env.sleeps.clear()
    hub.requests.clear()
    once = hub.fail(429, f"/{REPO}/resolve/*", method="GET", times=1)
    assert Path(hfh.hf_hub_download(REPO, "model.safetensors")).read_bytes() == WEIGHTS
    assert once.hits == 1 and hub_env.sleeps == [1]
    assert [m for m, _ in hub.requests] == ["HEAD", "GET", "GET"]


def test_offline_mode(hub_env, tiny, monkeypatch):
    warm = hfh.hf_hub_download(REPO, "config.json")
    hfh.snapshot_download(REPO)
    set_offline(monkeypatch, True)
    assert constants.is_offline_mode() and os.environ["HF_HUB_OFFLINE"] == "1"
    hub_env.hub.requests.clear()
    assert hfh.hf_hub_download(REPO, "config.json") == warm
    assert hfh.snapshot_download(REPO) == str(hub_env.repo_cache(REPO) / "snapshots" / tiny)
    with pytest.raises(errors.LocalEntryNotFoundError):
        hfh.hf_hub_download("kanzoo/other", "config.json")
    with pytest.raises(errors.LocalEntryNotFoundError):
        hfh.snapshot_download("kanzoo/other")
    assert hub_env.hub.requests == [] and hub_env.sleeps == []
    set_offline(monkeypatch, False)
    assert not constants.is_offline_mode()
    hfh.hf_hub_download(REPO, "model.safetensors")  # online again: the client checks the Hub for a newer commit
    assert hub_env.hub.requests == [("HEAD", resolve_path(REPO, "main", "model.safetensors"))]


def test_corruption_of_same_length_goes_undetected_by_the_client(hub_env, tiny):
    """What a verifier in kanzoo has to catch: ``huggingface_hub`` checks only the size of a plain HTTP download,
    so same-length corrupt bytes land in the cache under the blob name of the *advertised* sha256."""
    flipped = bytes([WEIGHTS[0] ^ 0xFF]) + WEIGHTS[1:]
    hub_env.hub.corrupt(REPO, "model.safetensors", flipped)
    path = Path(hfh.hf_hub_download(REPO, "model.safetensors"))
    assert path.read_bytes() == flipped != WEIGHTS
    assert path.resolve().name == sha256(WEIGHTS) != sha256(path.read_bytes())  # name and content disagree

    # a different length fails the client's size check, and nothing is left in the cache
    hub_env.hub.corrupt(REPO, "config.json", CONFIG + b" ")
    with pytest.raises(OSError, match="Consistency check failed"):
        hfh.hf_hub_download(REPO, "config.json")
    assert not (hub_env.repo_cache(REPO) / "blobs" / git_sha1(CONFIG)).exists()
    assert not (hub_env.repo_cache(REPO) / "snapshots" / tiny / "config.json").exists()

    hub_env.hub.corrupt(REPO, "config.json", None)
    assert Path(hfh.hf_hub_download(REPO, "config.json")).read_bytes() == CONFIG


def test_range_requests(hub_env, tiny):
    url = hfh.hf_hub_url(REPO, "model.safetensors")
    head = get_session().head(url)
    assert head.headers["X-Repo-Commit"] == tiny and head.headers["Accept-Ranges"] == "bytes"
    assert head.headers["X-Linked-Etag"] == f'"{sha256(WEIGHTS)}"' and head.headers["X-Linked-Size"] == "1027"
    assert not any(name.lower().startswith("x-xet") for name in head.headers)
    part = get_session().get(url, headers={"Range": "bytes=1000-"})
    assert part.status_code == 206 and part.content == WEIGHTS[1000:]
    assert part.headers["Content-Range"] == f"bytes 1000-1026/{len(WEIGHTS)}"
    middle = get_session().get(url, headers={"Range": "bytes=10-19"})
    assert middle.status_code == 206 and middle.content == WEIGHTS[10:20]
    assert get_session().get(url, headers={"Range": "bytes=5000-"}).status_code == 416
    regular = get_session().head(hfh.hf_hub_url(REPO, "config.json"))
    assert regular.headers["ETag"] == f'"{git_sha1(CONFIG)}"' and "X-Linked-Etag" not in regular.headers
    assert regular.headers["Content-Length"] == str(len(CONFIG))


# ---------------------------------------------------------------------------------------------------------------------
# the harness itself


def test_unimplemented_endpoints_are_recorded(hub_env):
    response = get_session().get(f"{hub_env.hub.url}/api/spaces/kanzoo/demo")
    assert response.status_code == 404 and "does not implement GET /api/spaces/kanzoo/demo" in response.text
    assert hub_env.hub.unhandled == [("GET", "/api/spaces/kanzoo/demo")]
    hub_env.hub.unhandled.clear()  # the fake_hub fixture fails any test that leaves entries here


def test_hub_env_isolates_client_state(hub_env, tmp_path):
    assert constants.ENDPOINT == hub_env.hub.url == hfh.hf_api.api.endpoint
    assert Path(constants.HF_HUB_CACHE) == hub_env.cache and hub_env.cache.is_relative_to(tmp_path)
    assert Path(constants.HF_TOKEN_PATH).is_relative_to(tmp_path)
    assert constants.HF_HUB_DISABLE_XET and not constants.is_offline_mode()
    assert hfh.hf_hub_url(REPO, "a b.txt", revision="v/1") == f"{hub_env.hub.url}/{REPO}/resolve/v%2F1/a%20b.txt"
    assert hub_env.env["HF_ENDPOINT"] == hub_env.hub.url and hub_env.env["HF_TOKEN"] == "hf_fake_token"


def test_subprocess_uses_the_env_dict(hub_env):
    sha = hub_env.hub.create_repo(REPO, files={"config.json": CONFIG})
    code = ("import sys; from huggingface_hub import hf_hub_download; "
            "sys.stdout.write(open(hf_hub_download('kanzoo/tiny', 'config.json'), 'rb').read().decode())")
    out = subprocess.run([sys.executable, "-c", code], env=hub_env.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == CONFIG.decode()
    assert (hub_env.repo_cache(REPO) / "refs" / "main").read_text() == sha


def test_server_side_api_validates_input():
    with FakeHub() as hub:
        sha = hub.create_repo("kanzoo/x", files={"a.txt": "text is utf-8"})
        assert hub.files("kanzoo/x")["a.txt"] == b"text is utf-8"
        assert hub.commits("kanzoo/x")[0].oid == sha and len(hub.commits("kanzoo/x")) == 2
        with pytest.raises(ValueError, match="already exists"):
            hub.create_repo("kanzoo/x")
        with pytest.raises(ValueError, match="invalid repo id"):
            hub.create_repo("kanzoo/bad--name")
        with pytest.raises(ValueError, match="invalid path"):
            hub.add_files("kanzoo/x", {"../escape": b""})
        with pytest.raises(KeyError, match="create_repo"):
            hub.add_files("kanzoo/missing", {"a": b""})
        with pytest.raises(KeyError, match="no revision"):
            hub.files("kanzoo/x", revision="nope")
        with pytest.raises(ValueError, match="400..599"):
            hub.fail(302)
        port = hub.url
        hub.down()
        assert not hub.is_up
        hub.up()
        assert hub.url == port and hub.files("kanzoo/x")["a.txt"] == b"text is utf-8"
