"""Partial downloads that nothing resumes are removed from the Hub cache (issue 22); live ones are kept."""
import os
import time

from kanzoo.weights import download_weights
from kanzoo.weights.cache import STALE_AFTER_S, remove_stale_partial_downloads
from tests.support.hub_files import tiny_repo_files


def _partial(blobs, name, age_s):
    path = blobs / f"{name}.incomplete"
    path.write_bytes(b"half a file")
    past = time.time() - age_s
    os.utime(path, (past, past))
    return path


def test_download_removes_stale_partial_blobs_and_keeps_live_ones(hub_env):
    _, files = tiny_repo_files()
    hub_env.hub.create_repo("org/tiny", files=files)
    blobs = hub_env.repo_cache("org/tiny") / "blobs"
    blobs.mkdir(parents=True)
    stale = _partial(blobs, "a" * 64, STALE_AFTER_S + 60)
    live = _partial(blobs, "b" * 64, 60)  # another process's download, written to a minute ago
    path = download_weights("org/tiny")
    assert path.read_bytes() == files["model.safetensors"]
    assert not stale.exists() and live.exists()


def test_only_partial_blobs_of_that_repo_past_the_age(tmp_path):
    blobs = tmp_path / "models--org--x" / "blobs"
    blobs.mkdir(parents=True)
    old = _partial(blobs, "c" * 64, 7200)
    complete = blobs / ("d" * 64)
    complete.write_bytes(b"whole")
    os.utime(complete, (0, 0))
    other = tmp_path / "models--org--y" / "blobs"
    other.mkdir(parents=True)
    foreign = _partial(other, "e" * 64, 7200)
    assert remove_stale_partial_downloads("org/x", tmp_path, max_age_s=3600) == [old]
    assert not old.exists() and complete.exists() and foreign.exists()
    assert remove_stale_partial_downloads("org/missing", tmp_path) == []
