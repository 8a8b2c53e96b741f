"""``kanzoo release``: every upstream checkpoint converted into kanzoo's layout, pushed to the Hub look-alike, and
loaded back through ``hf-hub:`` and through the one-line registry pin with the logits of the upstream file.

The upstream files are the golden weight-rule stand-ins of tests.support.upstream_files; the KAT repos' recorded
sha256s belong to the real files, so the test swaps in the stand-ins' hashes for its duration."""
import argparse
import hashlib

import pytest
import torch
from safetensors.torch import load_file, save_file
from timm.models import get_pretrained_cfg
from timm.models._registry import _model_pretrained_cfgs

import kanzoo
from kanzoo.cli import main
from kanzoo.compat.convert import load_reference_file
from kanzoo.errors import WorkflowError
from kanzoo.workflows.release import build_release, push_release, read_release, release_tags
from tests.support.upstream_files import kat_repo, kat_upstream, tck_upstream, ukan_hub_state, visionkan_state

FAMILIES = {
    "tck": lambda t: t.endswith(".tck_in1k"),
    "kat": lambda t: t.startswith("kat_"),
    "ukan": lambda t: t.startswith("ukan_"),
    "visionkan": lambda t: t.startswith("vision_kan_"),
}
#: Vision-KAN tag -> the golden case standing in for its authors' checkpoint (and the classes to keep)
VISIONKAN_SOURCES = {
    "vision_kan_tiny_patch16_224.in1k": ("vision_kan_deit_tiny_h192_in1k", 1000),
    "vision_kan_tiny_patch16_224.cifar100": ("vision_kan_deit_tiny_h192_in1k", 100),
    "vision_kan_tiny_h384_patch16_224.cifar100": ("vision_kan_deit_tiny_h384_c100", 100),
    "vision_kan_tiny_h768_patch16_224.cifar100": ("vision_kan_deit_tiny_h768_c100", 100),
}


def _probe(model):
    cfg = model.pretrained_cfg
    c, h, w = cfg["input_size"] if cfg.get("fixed_input_size") else (cfg.get("min_input_size") or (3, 64, 64))
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.eval()(x)


def test_every_upstream_tag_is_in_a_release_family():
    tags = release_tags()
    assert {"vgg_kagn_bn11sa_v4.tck_in1k", "kat_base_patch16_224.in1k", "ukan_small.ukan_glas"} <= set(tags)
    assert all(get_pretrained_cfg(t).upstream is not None for t in tags)
    uncovered = [t for t in tags if not any(f(t) for f in FAMILIES.values())]
    assert not uncovered, f"upstream tags no release test covers: {uncovered}"


def _serve_upstream(family, tags, hub, monkeypatch, tmp_path):
    """Publishes the stand-in upstream repos; returns the local source files of tags that are off the Hub."""
    sources = {}
    for tag in tags:
        arch, t = tag.split(".", 1)
        if family == "tck":
            hub.create_repo(f"brivangl/{arch}", files=tck_upstream(arch))
        elif family == "kat":
            files = kat_upstream(arch, t)
            hub.create_repo(kat_repo(arch, t), files=files)
            registered = _model_pretrained_cfgs[tag]  # the registry's own object (get_pretrained_cfg copies it)
            if registered.sha256:
                monkeypatch.setattr(registered, "sha256", hashlib.sha256(files["pytorch_model.bin"]).hexdigest())
        elif family == "ukan":
            path = tmp_path / "ukan_model.pth"
            if not path.exists():
                torch.save(ukan_hub_state(), path)
            sources[tag] = path
        elif family == "visionkan":  # main.py's training checkpoint: model, model_ema and the run's Namespace
            case, classes = VISIONKAN_SOURCES[tag]
            state = dict(visionkan_state(case), **{k: visionkan_state(case)[k][:classes] for k in ("head.weight",
                                                                                                  "head.bias")})
            sources[tag] = tmp_path / f"{tag}.pth"
            torch.save({"model": state, "model_ema": state, "epoch": 299,
                        "args": argparse.Namespace(model="deit_tiny_patch16_224_KAN")}, sources[tag])
    return sources


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_release_round_trip(family, hub_env, monkeypatch, tmp_path):
    tags = [t for t in release_tags() if FAMILIES[family](t)]
    sources = _serve_upstream(family, tags, hub_env.hub, monkeypatch, tmp_path)
    out = tmp_path / "release"
    report = build_release(out, tags=tags, sources=sources, org="kanzoo-mirror")
    assert [e.tag for e in report.released] == tags and not report.skipped
    for e in report.released:
        folder = out / e.folder
        assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
        assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == e.sha256
        card = (folder / "README.md").read_text()
        assert f"sha256 `{e.source_sha256}`" in card and f"`{e.sha256}`" in card and "## Provenance" in card

    pushed = push_release(out)
    assert read_release(out).released == pushed.released and all(e.revision for e in pushed.released)
    for i, e in enumerate(pushed.released):
        # the one-line registry change: the tag, pinned to its mirror by commit and sha256, loads the release's bytes
        pinned = kanzoo.create_model(e.tag, pretrained=True, pretrained_cfg_overlay=e.pin())
        released = load_file(str(out / e.folder / "model.safetensors"))
        assert pinned.state_dict().keys() == released.keys()
        assert all(torch.equal(v, released[k]) for k, v in pinned.state_dict().items()), e.tag
        if i == len(pushed.released) - 1:  # once per family: upstream, pinned mirror and repo alone agree
            overlay = dict(state_dict=load_reference_file(sources[e.tag])) if e.tag in sources else None
            expected = _probe(kanzoo.create_model(e.tag, pretrained=True, pretrained_cfg_overlay=overlay))
            mirror = kanzoo.create_model(f"hf-hub:{e.repo_id}@{e.revision}", pretrained=True)
            assert type(mirror) is type(pinned)
            assert torch.equal(_probe(pinned), expected) and torch.equal(_probe(mirror), expected), e.tag
        assert e.registry_line() == (f'hf_hub_id="kanzoo-mirror/{e.tag}@{e.revision}", '
                                     f'hf_hub_filename="model.safetensors", sha256="{e.sha256}"')


def test_off_hub_tag_without_source_is_skipped_with_the_reason(tmp_path):
    report = build_release(tmp_path / "r", tags=["ukan_small.ukan_busi"])
    assert not report.released
    assert "--source ukan_small.ukan_busi=FILE" in report.skipped["ukan_small.ukan_busi"]
    assert read_release(tmp_path / "r").skipped == report.skipped


def test_bad_requests_are_refused(tmp_path):
    with pytest.raises(WorkflowError, match=r"not an upstream tag: \['simple_conv_kagn'\]"):
        build_release(tmp_path / "r", tags=["simple_conv_kagn"])
    with pytest.raises(WorkflowError, match="does not exist"):
        build_release(tmp_path / "r", tags=["ukan_small.ukan_busi"], sources={"ukan_small.ukan_busi": tmp_path / "x"})
    wrong = tmp_path / "wrong.safetensors"
    save_file({"a": torch.zeros(1)}, str(wrong))
    with pytest.raises(WorkflowError, match="is not the upstream file of kat_tiny_patch16_224.in1k: its sha256"):
        build_release(tmp_path / "r", tags=["kat_tiny_patch16_224.in1k"],
                      sources={"kat_tiny_patch16_224.in1k": wrong})
    assert not (tmp_path / "r").exists()  # the folder it made for the failed release is gone
    with pytest.raises(WorkflowError, match="org must be"):
        build_release(tmp_path / "r", org="a/b")
    with pytest.raises(WorkflowError, match="holds no release.json"):
        push_release(tmp_path / "empty")


def test_cli_release_and_push(hub_env, tmp_path, capsys):
    src = tmp_path / "busi_model.pth"
    torch.save(ukan_hub_state(), src)
    out = tmp_path / "rel"
    assert main(["release", "--out", str(out), "--tags", "ukan_small.ukan_busi", "ukan_small.ukan_cvc",
                 "--source", f"ukan_small.ukan_busi={src}", "--org", "me", "--push"]) == 0
    printed = capsys.readouterr().out
    (entry,) = read_release(out).released
    assert entry.repo_id == "me/ukan_small.ukan_busi" and entry.revision
    assert f"pushed to me/ukan_small.ukan_busi@{entry.revision}; pin it with {entry.registry_line()}" in printed
    assert "ukan_small.ukan_cvc: skipped" in printed and "1 tag(s) released, 1 skipped" in printed
    assert main(["release", "--out", str(out), "--source", "no-equals-sign"]) == 1
    assert "--source takes TAG=FILE, got 'no-equals-sign'" in capsys.readouterr().err
