"""Pretrained weights through the real huggingface_hub client, against the Hub-compatible server of
``fakehub.py``: the three published torch-conv-kan checkpoints (upstream layout, weight-rule tensors), hash
verification, missing repos and files, offline behaviour, pinned revisions, and publishing."""
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch

import kanzoo
from kanzoo.errors import WeightsMismatchError
from kanzoo.hub import WeightsIntegrityError, WeightsNotFoundError, WeightsOfflineError
from tests.support import REPO
from tests.support.fakehub import set_offline
from tests.support.golden import load_case, tck_hub_cases
from tests.support.hub_files import tiny_repo_files
from tests.support.upstream_files import tck_upstream

HUB_CASES = tck_hub_cases()
CASES = {arch: case for arch, (_, case) in HUB_CASES.items()}


@pytest.fixture(scope="module")
def upstream_files():
    """arch -> the files of its upstream repo (tests.support.upstream_files)."""
    return tck_upstream


def _publish(hub, arch, files):
    hub.create_repo(f"brivangl/{arch}", files=files)


def _golden(arch):
    t, _ = load_case(*HUB_CASES[arch])
    tol = CASES[arch]["tolerance"]["float32"]
    return t["input"].float(), t["output_fp32"], dict(atol=tol["atol"], rtol=tol["rtol"])


@pytest.mark.parametrize("arch", sorted(CASES))
def test_published_checkpoint_round_trip(arch, hub_env, upstream_files):
    """create_model / timm.create_model / torch.hub.load with pretrained=True fetch the upstream repo's
    model.safetensors and reproduce the golden logits; the second and third calls hit only the cache (HEAD)."""
    hub = hub_env.hub
    files = upstream_files(arch)
    _publish(hub, arch, files)
    x, expected, tol = _golden(arch)

    t0 = time.perf_counter()
    model = kanzoo.create_model(f"{arch}.tck_in1k", pretrained=True).eval()
    elapsed = time.perf_counter() - t0
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, **tol)
    gets = hub.requests_matching("GET", f"/brivangl/{arch}/resolve/*")
    assert [p.rsplit("/", 1)[1] for _, p in gets] == ["model.safetensors"]
    blob = next((hub_env.repo_cache(f"brivangl/{arch}") / "blobs").iterdir())
    assert blob.name == hashlib.sha256(files["model.safetensors"]).hexdigest()
    assert model.pretrained_cfg["hf_hub_id"] == f"brivangl/{arch}" and "state_dict" not in model.pretrained_cfg

    hub.requests.clear()
    via_timm = timm.create_model(f"{arch}.tck_in1k", pretrained=True).eval()
    via_hub = torch.hub.load(str(REPO), arch, source="local", pretrained=True).eval()
    assert not hub.requests_matching("GET", "*/resolve/*")  # served from the cache
    with torch.no_grad():
        torch.testing.assert_close(via_timm(x), expected, **tol)
        torch.testing.assert_close(via_hub(x), expected, **tol)
    print(f"\n{arch}: download + verify + convert + build {elapsed:.2f} s "
          f"({len(files['model.safetensors']) / 2**20:.1f} MiB)")


def test_inferred_opt_architecture_loads_the_upstream_repo_by_overlay(hub_env, upstream_files):
    """vgg_kagn_bn11_v4_opt has no tag (its configuration is inferred). Whoever can reach
    brivangl/vgg_kagn_bn11_v4_opt loads it with the overlay its cfg documents and gets the golden logits; a file of
    another configuration (the width-2 vgg_kagn_bn11_v4 file under a repo of that name) fails the strict load with
    the mismatch report instead of loading."""
    hub = hub_env.hub
    arch = "vgg_kagn_bn11_v4_opt"
    _publish(hub, arch, upstream_files(arch))
    folder, case = tck_hub_cases(confirmed_only=False)[arch]
    t, _ = load_case(folder, case)
    tol = case["tolerance"]["float32"]
    model = kanzoo.create_model(arch, pretrained=True,
                                pretrained_cfg_overlay=dict(hf_hub_id=f"brivangl/{arch}")).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(t["input"].float()), t["output_fp32"], atol=tol["atol"], rtol=tol["rtol"])
    assert model.pretrained_cfg["hf_hub_id"] == f"brivangl/{arch}"

    hub.create_repo(f"someone/{arch}", files=upstream_files("vgg_kagn_bn11_v4"))
    with pytest.raises(WeightsMismatchError, match=r"does not fit vgg_kagn_bn11_v4_opt: 78 shapes differ "
                                                   r"\(features\.0\.weight \(32, 3, 3, 3\) vs \(48, 3, 3, 3\)"):
        kanzoo.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=f"someone/{arch}"))


def test_corrupted_download_is_rejected_and_evicted(hub_env):
    hub = hub_env.hub
    model, files = tiny_repo_files()
    hub.create_repo("org/tiny", files=files)
    good = files["model.safetensors"]
    bad = bytearray(good)
    bad[-5] ^= 0xFF  # same length: the client's size check cannot see it
    hub.corrupt("org/tiny", "model.safetensors", bytes(bad))
    overlay = dict(hf_hub_id="org/tiny")
    with pytest.raises(WeightsIntegrityError, match=r"corrupt: its hash is .* the Hub's LFS sha256 \(ETag\)"):
        kanzoo.create_model("simple_conv_kagn", pretrained=True, pretrained_cfg_overlay=overlay)
    repo_cache = hub_env.repo_cache("org/tiny")
    assert not list((repo_cache / "blobs").iterdir()), "the corrupt blob must not stay in the cache"
    assert not list(repo_cache.glob("snapshots/*/model.safetensors"))

    hub.corrupt("org/tiny", "model.safetensors", None)
    loaded = kanzoo.create_model("simple_conv_kagn", pretrained=True,
                                 pretrained_cfg_overlay=overlay).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_recorded_sha256_is_checked(hub_env):
    hub = hub_env.hub
    _, files = tiny_repo_files()
    hub.create_repo("org/tiny", files=files)
    right = hashlib.sha256(files["model.safetensors"]).hexdigest()
    kanzoo.create_model("simple_conv_kagn", pretrained=True,
                        pretrained_cfg_overlay=dict(hf_hub_id="org/tiny", sha256=right))
    with pytest.raises(WeightsIntegrityError, match="the sha256 recorded in the pretrained cfg is 0000"):
        kanzoo.create_model("simple_conv_kagn", pretrained=True,
                            pretrained_cfg_overlay=dict(hf_hub_id="org/tiny", sha256="0" * 64))
    assert not list((hub_env.repo_cache("org/tiny") / "blobs").iterdir())


def test_missing_repo_file_and_revision(hub_env):
    hub = hub_env.hub
    with pytest.raises(WeightsNotFoundError, match=r"no repo 'org/nope' on the Hub"):
        kanzoo.create_model("simple_conv_kagn", pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id="org/nope"))
    hub.create_repo("org/empty", files={"README.md": b"nothing here\n"})
    with pytest.raises(WeightsNotFoundError, match=r"none of the weight files \['model.safetensors', "
                                                  r"'pytorch_model.bin'\]"):
        kanzoo.create_model("simple_conv_kagn", pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id="org/empty"))
    with pytest.raises(WeightsNotFoundError, match=r"has no revision 'v9'"):
        kanzoo.create_model("simple_conv_kagn", pretrained=True,
                            pretrained_cfg_overlay=dict(hf_hub_id="org/empty@v9"))


def test_no_weight_source_is_an_error_not_a_random_model():
    with pytest.raises(WeightsNotFoundError, match="names no hf_hub_id, file or url"):
        kanzoo.create_model("simple_conv_kagn", pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=None))


def test_pinned_revision(hub_env):
    hub = hub_env.hub
    m1, f1 = tiny_repo_files(seed=1)
    m2, f2 = tiny_repo_files(seed=2)
    hub.create_repo("org/tiny", files=f1)
    hub.tag("org/tiny", "v1")
    hub.add_files("org/tiny", f2)
    x = torch.randn(1, 3, 32, 32)
    kw = dict(pretrained=True)
    with torch.no_grad():
        latest = kanzoo.create_model("simple_conv_kagn", pretrained_cfg_overlay=dict(hf_hub_id="org/tiny"), **kw)
        pinned = kanzoo.create_model("simple_conv_kagn", pretrained_cfg_overlay=dict(hf_hub_id="org/tiny@v1"), **kw)
        assert torch.equal(latest.eval()(x), m2(x))
        assert torch.equal(pinned.eval()(x), m1(x))
    # a commit that is already cached needs no request at all
    commit = hub.commits("org/tiny", "v1")[0].oid
    hub.requests.clear()
    kanzoo.create_model("simple_conv_kagn", pretrained_cfg_overlay=dict(hf_hub_id=f"org/tiny@{commit}"), **kw)
    assert hub.requests == []


def test_bin_fallback_loads_with_weights_only(hub_env, tmp_path):
    import io
    hub = hub_env.hub
    model, _ = tiny_repo_files()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    hub.create_repo("org/binonly", files={"pytorch_model.bin": buf.getvalue()})
    loaded = kanzoo.create_model("simple_conv_kagn", pretrained=True,
                                 pretrained_cfg_overlay=dict(hf_hub_id="org/binonly")).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))

    # a pickle that would run code is refused, and the code does not run
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buf = io.BytesIO()
    torch.save({"weight": Evil()}, buf)
    hub.create_repo("org/evil", files={"pytorch_model.bin": buf.getvalue()})
    with pytest.raises(kanzoo.hub.PretrainedWeightsError, match=r"weights_only=True"):
        kanzoo.create_model("simple_conv_kagn", pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id="org/evil"))
    assert not marker.exists()


def test_offline_warm_cache_and_cold_cache(hub_env, monkeypatch, upstream_files):
    hub = hub_env.hub
    _, files = tiny_repo_files()
    hub.create_repo("org/tiny", files=files)
    overlay = dict(hf_hub_id="org/tiny")
    kanzoo.create_model("simple_conv_kagn", pretrained=True, pretrained_cfg_overlay=overlay)
    set_offline(monkeypatch, True)
    hub.requests.clear()
    kanzoo.create_model("simple_conv_kagn", pretrained=True, pretrained_cfg_overlay=overlay)
    assert hub.requests == []
    with pytest.raises(WeightsOfflineError) as e:
        kanzoo.create_model("vgg_kagn_bn11_v4.tck_in1k", pretrained=True)
    msg = str(e.value)
    assert "\n" not in msg and msg.count(". ") == 0, msg  # one sentence
    for part in ("brivangl/vgg_kagn_bn11_v4/model.safetensors is not in the local cache", "HF_HUB_OFFLINE=1",
                 "HF_ENDPOINT", "kanzoo download vgg_kagn_bn11_v4.tck_in1k",
                 "pretrained_cfg_overlay=dict(file=...)", "--checkpoint FILE"):
        assert part in msg
    assert hub.requests == []


def test_unreachable_hub_with_warm_and_cold_cache(hub_env):
    hub = hub_env.hub
    _, files = tiny_repo_files()
    hub.create_repo("org/tiny", files=files)
    overlay = dict(hf_hub_id="org/tiny")
    kanzoo.create_model("simple_conv_kagn", pretrained=True, pretrained_cfg_overlay=overlay)
    hub.down()
    try:
        kanzoo.create_model("simple_conv_kagn", pretrained=True, pretrained_cfg_overlay=overlay)
        with pytest.raises(WeightsOfflineError, match=f"the Hub at {hub.url} cannot be reached"):
            kanzoo.create_model("simple_conv_kagn", pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id="org/x"))
    finally:
        hub.up()


def test_push_to_hub_then_hf_hub_round_trip(hub_env):
    hub = hub_env.hub
    torch.manual_seed(0)
    model = kanzoo.create_model("simple_conv_kagn", num_classes=5).eval()
    url = kanzoo.push_to_hub(model, "me/tiny-kagn", commit_message="first")
    assert "me/tiny-kagn" in url
    files = hub.files("me/tiny-kagn")
    assert sorted(files) == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    config = json.loads(files["config.json"])
    assert config["architecture"] == "simple_conv_kagn" and config["num_classes"] == 5
    assert "sha256" not in config["pretrained_cfg"] and "hf_hub_id" not in config["pretrained_cfg"]
    card = files["README.md"].decode()
    assert card.startswith("---\n") and "library_name: timm" in card and "simple_conv_kagn" in card
    assert hub.requests_matching("POST", "/api/validate-yaml")

    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        for create in (kanzoo.create_model, timm.create_model):
            loaded = create("hf-hub:me/tiny-kagn", pretrained=True).eval()
            assert type(loaded) is type(model)
            assert torch.equal(loaded(x), expected)

    # pushing the same weights again changes nothing on the server
    n = len(hub.commits("me/tiny-kagn"))
    kanzoo.push_to_hub(model, "me/tiny-kagn")
    assert len(hub.commits("me/tiny-kagn")) == n


def test_push_rejects_bad_input(hub_env):
    with pytest.raises(ValueError, match="repo_id must look like 'user-or-org/name', got 'nope'"):
        kanzoo.push_to_hub(kanzoo.create_model("simple_conv_kagn"), "nope")
    with pytest.raises(ValueError, match="meta device"):
        kanzoo.push_to_hub(kanzoo.create_model("simple_conv_kagn", device="meta"), "me/x")
    with pytest.raises(TypeError, match="built by kanzoo.create_model"):
        kanzoo.push_to_hub(torch.nn.Linear(2, 2), "me/x")


def test_hf_hub_name_errors(hub_env, monkeypatch):
    with pytest.raises(WeightsNotFoundError, match="no repo 'me/none'"):
        kanzoo.create_model("hf-hub:me/none", pretrained=True)
    set_offline(monkeypatch, True)
    with pytest.raises(WeightsOfflineError, match="me/none/config.json is not in the local cache"):
        kanzoo.create_model("hf-hub:me/none", pretrained=True)


def test_save_pretrained_is_atomic(tmp_path, monkeypatch):
    model = kanzoo.create_model("simple_conv_kagn").eval()
    out = tmp_path / "out"
    kanzoo.save_pretrained(model, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["README.md", "config.json", "model.safetensors"]

    from kanzoo.hub import publish

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(publish, "_write_config", broken)
    torch.manual_seed(1)
    with pytest.raises(OSError, match="disk full"):
        kanzoo.save_pretrained(kanzoo.create_model("simple_conv_kagn"), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # old files intact, no temp files left


def test_cli_download_push_convert(hub_env, upstream_files, tmp_path, capsys):
    hub = hub_env.hub
    arch = "vgg_kagn_bn11_v4"
    _publish(hub, arch, upstream_files(arch))
    # huggingface_hub draws its bar on a terminal; TQDM_POSITION=-1 makes it draw into this pipe too
    env = dict(hub_env.env, HF_HUB_DISABLE_PROGRESS_BARS="0", TQDM_POSITION="-1", PYTHONPATH=str(REPO))
    run = lambda *a, **kw: subprocess.run([sys.executable, "-m", "kanzoo", *a], env=kw.get("env", env),  # noqa: E731
                                          capture_output=True, text=True, timeout=300)

    r = run("download", f"{arch}.tck_in1k")
    assert r.returncode == 0, r.stderr
    assert f"{arch}.tck_in1k: " in r.stdout and "verified" in r.stdout
    assert "model.safetensors" in r.stderr and "100%" in r.stderr  # huggingface_hub's progress bar
    # the subprocess read HF_ENDPOINT, HF_HUB_CACHE and HF_TOKEN from its environment
    assert any(Path(p).is_file() for p in hub_env.repo_cache(f"brivangl/{arch}").glob("snapshots/*/model.safetensors"))
    heads = [rec for rec in hub.log if rec.method == "HEAD" and rec.path.endswith("/model.safetensors")]
    assert heads and all(rec.headers.get("authorization") == f"Bearer {hub_env.env['HF_TOKEN']}" for rec in heads)
    assert all("kanzoo/" in rec.headers.get("user-agent", "") for rec in heads)


    from kanzoo.cli import main
    out = tmp_path / "converted"
    assert main(["convert", f"brivangl/{arch}", str(out)]) == 0
    assert f"-> {arch} (7,252,115 parameters)" in capsys.readouterr().out
    converted = kanzoo.create_model(f"local-dir:{out}", pretrained=True).eval()
    x, expected, tol = _golden(arch)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), expected, **tol)

    assert main(["push", "simple_conv_kagn", "me/cli-push"]) == 0
    assert "pushed simple_conv_kagn to me/cli-push" in capsys.readouterr().out
    assert "model.safetensors" in hub.files("me/cli-push")
    assert main(["push", "simple_conv_kagn", "bad-repo-id"]) == 1
    assert "repo_id must look like" in capsys.readouterr().err

    offline_env = dict(env, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "empty"))
    r = run("download", "vgg_kagn11_v4.tck_in1k", env=offline_env)
    assert r.returncode == 1
    assert r.stderr.startswith("kanzoo: error: cannot load pretrained weights for 'vgg_kagn11_v4.tck_in1k'")
    assert len(r.stderr.strip().splitlines()) == 1
