"""The six published KAT checkpoints through the real huggingface_hub client and the local Hub server of
``fakehub.py``: each ``kat_*_patch16_224.{in1k,vitft_in1k}`` tag reaches its own upstream repo, which serves
``pytorch_model.bin`` (a flat float32 state dict, read with ``weights_only=True``) and timm's ``config.json`` as
upstream does, and reproduces the golden logits.

The served weights are the golden cases' rule weights (shared/golden/kat, section 3), not the real checkpoints:
the ``.in1k`` repos hold them as they are, the ``.vitft`` repos with ``head.bias + 1``, so the logits show which
repo a tag loaded (golden logits, or golden logits + 1).
"""
import hashlib
import time

import pytest
import timm
import torch

import kanzoo
from kanzoo.hub import WeightsIntegrityError
from tests.support.golden import load_case
from tests.support.upstream_files import KAT_CHECKPOINTS as CHECKPOINTS
from tests.support.upstream_files import KAT_HUB_CASES as HUB_CASES
from tests.support.upstream_files import kat_repo as _repo
from tests.support.upstream_files import kat_upstream

TAGS = [(arch, tag) for arch in sorted(HUB_CASES) for tag in ("in1k", "vitft_in1k")]


@pytest.fixture(scope="module")
def upstream():
    """(arch, tag) -> the files of its upstream repo (tests.support.upstream_files)."""
    return kat_upstream


def _golden(arch):
    case = HUB_CASES[arch]
    t, _ = load_case("kat", case)
    tol = case["tolerance_kernel"]["float32"]
    return t["input"].float(), t["output_kernel"].float(), dict(atol=tol["atol"], rtol=tol["rtol"])


def test_six_tags_six_repos():
    tags = sorted(kanzoo.list_pretrained("kat_*"))
    assert tags == sorted(f"{a}.{t}" for a, t in TAGS)
    for arch, tag in TAGS:
        cfg = kanzoo.models._factory.get_pretrained_cfg(f"{arch}.{tag}")
        info = CHECKPOINTS[_repo(arch, tag)]
        assert cfg.hf_hub_id == _repo(arch, tag) and cfg.hf_hub_filename == "pytorch_model.bin"
        assert cfg.sha256 == info["pytorch_model_bin"]["sha256"]  # None where it was never seen (base, scratch)
        assert cfg.metrics == {"top1": info["imagenet1k_top1_reported"]} and cfg.dataset == "imagenet-1k"
        assert info["timm_architecture"] == arch and info["hub_repo"] in HUB_CASES[arch]["hub_repos"]


def test_recorded_sha256_is_enforced(hub_env, upstream):
    """The recorded sha256 of the real file is checked: the test's stand-in weights are refused."""
    arch, tag = "kat_tiny_patch16_224", "in1k"
    hub_env.hub.create_repo(_repo(arch, tag), files=upstream(arch, tag))
    with pytest.raises(WeightsIntegrityError, match="the sha256 recorded in the pretrained cfg is 07ae82e0"):
        kanzoo.create_model(f"{arch}.{tag}", pretrained=True)


@pytest.mark.parametrize("arch,tag", TAGS, ids=[f"{a}.{t}" for a, t in TAGS])
def test_published_tag_loads(arch, tag, hub_env, upstream):
    hub = hub_env.hub
    repo = _repo(arch, tag)
    files = upstream(arch, tag)
    hub.create_repo(repo, files=files)
    served = hashlib.sha256(files["pytorch_model.bin"]).hexdigest()
    recorded = kanzoo.models._factory.get_pretrained_cfg(f"{arch}.{tag}").sha256
    # the stand-in weights replace the real file, so their hash replaces the recorded one (None stays None:
    # then the Hub's LFS sha256 is checked)
    overlay = dict(sha256=served) if recorded else {}
    t0 = time.perf_counter()
    model = kanzoo.create_model(f"{arch}.{tag}", pretrained=True, pretrained_cfg_overlay=overlay).eval()
    elapsed = time.perf_counter() - t0
    gets = [p for _, p in hub.requests_matching("GET", "*/resolve/*")]
    assert gets == [f"/{repo}/resolve/main/pytorch_model.bin"], gets
    blob = next((hub_env.repo_cache(repo) / "blobs").iterdir())
    assert blob.name == served  # the Hub's LFS ETag names the cached blob
    assert model.pretrained_cfg["hf_hub_id"] == repo and model.pretrained_cfg["tag"] == tag
    x, expected, tol = _golden(arch)
    with torch.no_grad():
        y = model(x)
    torch.testing.assert_close(y, expected + (1.0 if tag == "vitft_in1k" else 0.0), **tol)
    print(f"\n{arch}.{tag}: download + verify + build + strict load {elapsed:.1f} s "
          f"({len(files['pytorch_model.bin']) / 2**20:.0f} MiB)")


def test_timm_hf_hub_name_reads_upstream_config(hub_env, upstream):
    """``timm.create_model('hf-hub:adamdad/...')`` builds the architecture that config.json names (after
    ``import kanzoo``) and finds pytorch_model.bin after model.safetensors is missing."""
    arch = "kat_tiny_patch16_224"
    hub_env.hub.create_repo(_repo(arch, "vitft_in1k"), files=upstream(arch, "vitft_in1k"))
    model = timm.create_model(f"hf-hub:{_repo(arch, 'vitft_in1k')}", pretrained=True).eval()
    assert type(model).__name__ == "KAT" and model.num_classes == 1000
    x, expected, tol = _golden(arch)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected + 1.0, **tol)
