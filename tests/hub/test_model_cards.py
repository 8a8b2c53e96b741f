"""model_cards/: one card per pretrained tag, generated from the registry and kept up to date."""
import re
import shutil
from pathlib import Path

import pytest
import yaml

import kanzoo
from kanzoo.cli import main
from kanzoo.hub.cards import stale_model_cards
from tests.support import REPO
from tests.support.golden import ROOT, tck_hub_cases, tck_hub_checkpoints

CARDS = REPO / "model_cards"
PUBLISHED = tck_hub_checkpoints()
CASES = {arch: case for arch, (_, case) in tck_hub_cases().items()}


def test_cards_match_registry():
    stale = stale_model_cards(CARDS)
    assert not stale, f"model cards differ from the registry: {stale}; run `kanzoo cards --out model_cards`"
    assert sorted(p.stem for p in CARDS.glob("*.tck_in1k.md")) == sorted(f"{a}.tck_in1k" for a in CASES)


def _split(card: str):
    _, meta, body = card.split("---\n", 2)
    return yaml.safe_load(meta), body


@pytest.mark.parametrize("arch", sorted(CASES))
def test_card_content(arch):
    meta, body = _split((CARDS / f"{arch}.tck_in1k.md").read_text())
    repo = f"brivangl/{arch}"
    assert meta["library_name"] == "timm" and meta["pipeline_tag"] == "image-classification"
    assert meta["license"] == "mit" and meta["datasets"] == ["imagenet-1k"] and meta["base_model"] == repo
    assert "arxiv:2407.01092" in meta["tags"] and "kanzoo" in meta["tags"]
    reported = PUBLISHED[repo].get("imagenet_val_top1_reported")  # an independent record of the same number
    if reported is None:  # no accuracy published upstream: the card claims none
        assert "model-index" not in meta and "no accuracy" in body
    else:
        results = meta["model-index"][0]["results"][0]
        top1 = [m["value"] for m in results["metrics"] if m["name"] == "top-1 accuracy"]
        assert top1 == [reported]
        assert len(results["metrics"]) == 2
    assert f"**Parameters:** {CASES[arch]['num_params']:,}" in body
    assert f'kanzoo.create_model("{arch}.tck_in1k", pretrained=True)' in body
    assert "## Provenance" in body and "## Citation" in body and "eprint = {2407.01092}" in body


def test_stale_card_is_detected(tmp_path, capsys):
    """From the committed cards (test_cards_match_registry checks that they are current): a changed, a missing
    and an orphaned card are each reported, and ``kanzoo cards`` repairs all three."""
    out = tmp_path / "cards"
    shutil.copytree(CARDS, out)
    card = out / "vgg_kagn11_v4.tck_in1k.md"
    card.write_text(card.read_text().replace("61.17", "62.0"))
    (out / "vgg_kagn99.old.md").write_text("orphan")
    (out / "vgg_kagn11_v2.tck_in1k.md").unlink()
    capsys.readouterr()
    assert main(["cards", "--out", str(out), "--check"]) == 1
    printed = capsys.readouterr().out
    for what in ("vgg_kagn11_v4.tck_in1k.md (out of date)", "vgg_kagn11_v2.tck_in1k.md (missing)",
                 "vgg_kagn99.old.md (no such pretrained tag)"):
        assert what in printed
    assert main(["cards", "--out", str(out)]) == 0
    repaired = {p.name: p.read_bytes() for p in out.iterdir()}
    assert repaired == {p.name: p.read_bytes() for p in CARDS.iterdir()}


def test_card_for_a_finetuned_model_drops_published_metrics():
    model = kanzoo.create_model("vgg_kagn_bn11_v4.tck_in1k", num_classes=10)
    card = kanzoo.hub.model_card(model)
    meta, body = _split(card)
    assert "model-index" not in meta and "**Classes:** 10" in body


def _seed_paper_table():
    """dataset -> (IoU, F1) from the U-KAN results table of ../shared/notes/seed-papers.md (an independent record)."""
    text = (Path(ROOT).parent / "notes" / "seed-papers.md").read_text()
    rows = re.findall(r"^\| (BUSI|GlaS|CVC-ClinicDB) \| ([\d.]+) \| ([\d.]+) \|$", text, re.M)
    return {d: (float(i), float(f)) for d, i, f in rows}


def test_announced_segmentation_cards():
    """The U-KAN authors' checkpoints are not on the Hub: their tags get cards (with the published IoU/F1 and
    the conversion steps) but are not downloadable."""
    published = _seed_paper_table()
    assert len(published) == 3
    for dataset, tag in (("BUSI", "ukan_busi"), ("GlaS", "ukan_glas"), ("CVC-ClinicDB", "ukan_cvc")):
        name = f"ukan_small.{tag}"
        assert name not in kanzoo.list_pretrained()
        meta, body = _split((CARDS / f"{name}.md").read_text())
        assert meta["pipeline_tag"] == "image-segmentation" and meta["datasets"] == [dataset]
        metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
        assert (metrics["iou"], metrics["f1"]) == published[dataset]
        assert "kanzoo convert --from ukan model.pth" in body and f'"local-dir:{tag}"' in body
        with pytest.raises(RuntimeError, match="not on the Hub yet.*kanzoo convert"):
            kanzoo.create_model(name, pretrained=True)
