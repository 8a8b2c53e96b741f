"""Upstream records (kanzoo.weights.Upstream) and the pins on every tag whose weights someone else published."""
import pytest
from timm.models import get_pretrained_cfg

import kanzoo
from kanzoo.hub.cards import card_tags
from kanzoo.weights import Upstream, is_full_commit, split_hub_id

SHA = "ab" * 32
FULL = "0123456789abcdef0123456789abcdef01234567"


def _upstream(**kw):
    base = dict(repo="org/repo", file="model.safetensors", revision_note="seen", convert="load it")
    return Upstream(**{**base, **kw})


def test_pinned_only_by_full_commit_or_sha256():
    assert not _upstream(revision="7f5bcc9").pinned
    assert _upstream(revision=FULL).pinned and _upstream(revision=FULL).hub_id == f"org/repo@{FULL}"
    assert _upstream(revision="7f5bcc9").hub_id == "org/repo"  # an abbreviated commit does not pin a download
    assert _upstream(sha256=SHA).pinned
    assert _upstream(host="onedrive").hub_id is None
    assert is_full_commit(FULL) and not is_full_commit(FULL[:7]) and not is_full_commit(None)


@pytest.mark.parametrize("kw,match", [
    (dict(revision="main"), r"revision 'main' of org/repo is not a commit id"),
    (dict(revision="7F5BCC9"), "not a commit id"),
    (dict(sha256="abc"), r"sha256 'abc' of org/repo/model.safetensors is not 64"),
    (dict(host="dropbox"), r"host 'dropbox' is not one of"),
    (dict(revision_note=" "), "say what revision"),
    (dict(convert=""), "say how kanzoo's copy is made"),
])
def test_bad_records_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        _upstream(**kw)


def _published_tags():
    """Every tag with published metrics (the ones someone else trained), taken from the registry itself."""
    return [n for n in card_tags() if getattr(get_pretrained_cfg(n), "metrics", None)
            or getattr(get_pretrained_cfg(n), "upstream", None)]


def test_every_published_tag_records_its_upstream():
    tags = _published_tags()
    assert "vgg_kagn_bn11sa_v4.tck_in1k" in tags and "kat_base_patch16_224.in1k" in tags
    missing = [n for n in tags if get_pretrained_cfg(n).upstream is None]
    assert not missing, f"published tags without an Upstream record: {missing}"


@pytest.mark.parametrize("name", _published_tags())
def test_download_is_as_pinned_as_the_record_allows(name):
    cfg = get_pretrained_cfg(name)
    up = cfg.upstream
    assert up.revision or up.revision_note  # a commit, or why there is none
    if not up.on_hub:  # weights off the Hub: the tag refuses pretrained=True until a converted copy is on it
        assert not cfg.hf_hub_id and not cfg.has_weights
        return
    repo, revision = split_hub_id(cfg.hf_hub_id)
    if repo == up.repo:  # downloads come from upstream: every pin the record has is used
        assert cfg.hf_hub_id == up.hub_id
        assert revision == (up.revision if is_full_commit(up.revision) else None)
        assert cfg.sha256 == up.sha256
    else:  # a mirror: it must be pinned by itself
        assert is_full_commit(revision) and cfg.sha256


def test_pins_reach_the_model_card():
    card = kanzoo.hub.model_card("kat_tiny_patch16_224.in1k")
    up = get_pretrained_cfg("kat_tiny_patch16_224.in1k").upstream
    assert f"- **sha256:** `{up.sha256}`" in card and "- **Download pinned:** yes, by the sha256" in card
    assert "`46ebed4`" in card and "Adamdad/kat@ecb0eb7" in card
    card = kanzoo.hub.model_card("vgg_kagn_bn11sa_v4.tck_in1k")
    assert "- **Download pinned:** no" in card and "no commit of this repo is in the public record" in card
    assert "- **Published metrics:** none" in card
