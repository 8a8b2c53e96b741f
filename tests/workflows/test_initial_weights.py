"""``--initial-checkpoint`` (kanzoo.workflows.initial_weights): a KAT starts from a ViT's weights, as KAT's
``.vitft`` recipes do; the rational activations keep their initialisation and a classifier of other classes is
dropped. Files and ``timm:ARCH.TAG`` (through the Hub look-alike) as sources; misfits are one-line errors."""
import json

import pytest
import timm
import torch
from safetensors.torch import save, save_file

import kanzoo
from kanzoo.errors import WorkflowError
from kanzoo.recipes import load_recipe
from kanzoo.workflows.initial_weights import load_initial_weights, read_initial_state
from kanzoo.workflows.train_config import TrainConfig
from tests.support.cli_run import run
from tests.support.fakehub import set_offline
from tests.support.workflow_data import make_dataset

KAT = "kat_tiny_patch16_224"
RATIONAL = (".act1.", ".act2.")


def _small_kat(num_classes=3):
    torch.manual_seed(0)
    return kanzoo.create_model(KAT, width_scale=0.25, depth=2, num_classes=num_classes)


def _matching_vit(kat, num_classes):
    """A timm ViT with the KAT's geometry (its MLP where the KAT has its GR-KAN)."""
    torch.manual_seed(1)
    hidden = kat.blocks[0].mlp.fc1.out_features
    return timm.create_model("vit_tiny_patch16_224", embed_dim=kat.embed_dim, depth=len(kat.blocks),
                             num_heads=kat.blocks[0].attn.num_heads, mlp_ratio=hidden / kat.embed_dim,
                             num_classes=num_classes)


@pytest.mark.parametrize("vit_classes", [3, 10])
def test_a_kat_starts_from_a_vit(vit_classes):
    kat = _small_kat(num_classes=3)
    before = {k: v.clone() for k, v in kat.state_dict().items()}
    vit = _matching_vit(kat, vit_classes).state_dict()
    assert set(vit) < set(before)  # a ViT's tensors are a subset of a KAT's
    report = load_initial_weights(kat, vit, "vit", classifier=("head",))
    after = kat.state_dict()
    heads = {"head.weight", "head.bias"}
    expected_loaded = set(vit) - (heads if vit_classes != 3 else set())
    assert set(report.loaded) == expected_loaded
    assert set(report.kept) == set(before) - expected_loaded
    assert set(report.dropped) == (heads if vit_classes != 3 else set())
    for k in after:
        if k in expected_loaded:
            assert torch.equal(after[k], vit[k]), k
        else:  # the rationals (and a dropped head's replacement) keep their initialisation
            assert torch.equal(after[k], before[k]), k
    assert all(any(r in k for r in RATIONAL) or k in heads for k in report.kept)
    line = report.summary()
    assert line.startswith(f"initial weights from vit: {len(expected_loaded)} tensors loaded")
    assert ("has other classes and was dropped" in line) == (vit_classes != 3)


def test_a_tensor_that_fits_nowhere_is_an_error_and_the_model_is_unchanged():
    kat = _small_kat()
    before = {k: v.clone() for k, v in kat.state_dict().items()}
    vit = _matching_vit(kat, 3).state_dict()
    wrong = dict(vit, **{"blocks.0.attn.qkv.weight": torch.zeros(5, 5), "extra.weight": torch.zeros(2)})
    with pytest.raises(WorkflowError, match=r"2 tensor\(s\) fit nowhere in KAT: blocks.0.attn.qkv.weight \[5, 5\] "
                                            r"\(the model's is \[\d+, \d+\]\), extra.weight \(not in the model\)"):
        load_initial_weights(kat, wrong, "bad.safetensors", classifier=("head",))
    assert all(torch.equal(v, before[k]) for k, v in kat.state_dict().items())
    with pytest.raises(WorkflowError, match="no tensor of it fits KAT"):
        load_initial_weights(kat, {"head.weight": torch.zeros(7, 4)}, "x", classifier=("head",))


def test_sources_files_and_bad_names(tmp_path):
    kat = _small_kat()
    vit = _matching_vit(kat, 3).state_dict()
    save_file(vit, str(tmp_path / "vit.safetensors"))
    torch.save({"state_dict": vit, "epoch": 3}, tmp_path / "ckpt.pth")
    for name in ("vit.safetensors", "ckpt.pth"):
        state = read_initial_state(str(tmp_path / name))
        assert state.keys() == vit.keys() and all(torch.equal(state[k], vit[k]) for k in vit)
    with pytest.raises(WorkflowError, match=r"\.npz files \(Google's ViT layout\) are read by timm.*timm:ARCH.TAG"):
        read_initial_state(str(tmp_path / "Ti_16.npz"))
    with pytest.raises(WorkflowError, match="'vit_tiny_patch16_224' is not a timm pretrained tag; give ARCH.TAG"):
        read_initial_state("timm:vit_tiny_patch16_224")
    with pytest.raises(WorkflowError, match="is not a timm pretrained tag"):
        read_initial_state("timm:vit_tiny_patch16_224.nosuchtag")
    with pytest.raises(WorkflowError, match="give one of --pretrained, --checkpoint and --initial-checkpoint"):
        TrainConfig(model=KAT, data="d", checkpoint="a", initial_checkpoint="b").check()


def test_the_vitft_recipe_starts_from_its_timm_vit_through_the_hub(hub_env, tmp_path, capsys, monkeypatch):
    """kat_tiny_patch16_224.vitft_in1k names timm's vit_tiny_patch16_224.augreg_in21k_ft_in1k (the authors'
    AugReg file): kanzoo train --recipe downloads it (verified), loads it into the KAT and records it."""
    tag = load_recipe("kat_tiny_patch16_224.vitft_in1k").extras["kanzoo_init_timm_tag"]
    assert tag == "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    torch.manual_seed(2)
    vit = timm.create_model("vit_tiny_patch16_224").state_dict()
    hub_env.hub.create_repo(f"timm/{tag}", files={"model.safetensors": save(vit)})
    set_offline(monkeypatch)  # cold cache, offline: one error that says how to go on
    with pytest.raises(WorkflowError, match=r"not in the local Hugging Face cache.*--initial-checkpoint FILE"):
        read_initial_state(f"timm:{tag}")
    set_offline(monkeypatch, False)
    state = read_initial_state(f"timm:{tag}")
    assert state.keys() == vit.keys() and all(torch.equal(state[k], vit[k]) for k in vit)

    data = make_dataset(tmp_path / "data", broken=None)
    rc, out, err = run(capsys, "train", KAT, "--recipe", "kat_tiny_patch16_224.vitft_in1k", "--data", data,
                       "--epochs", "1", "-b", "4", "-o", tmp_path / "run", "-j", "0", "--no-progress")
    assert rc == 0, err
    assert f"initial checkpoint timm:{tag}: the weights the authors started from (Ti_16-i21k-" in out
    assert f"initial weights from timm:{tag}: 150 tensors loaded, 50 keep their initialisation" in out
    assert "has other classes and was dropped" in out  # 1000 ImageNet classes, 3 here
    args = json.loads((tmp_path / "run" / "args.json").read_text())
    assert args["initial_checkpoint"] == f"timm:{tag}"
    assert not any(k.startswith("kanzoo_init") for k in args["recipe_unapplied"])


def test_the_option_is_exclusive_with_the_other_starts(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:  # argparse's usage error
        run(capsys, "train", KAT, "--data", tmp_path, "--checkpoint", "a", "--initial-checkpoint", "b")
    assert e.value.code == 2
    assert "argument --initial-checkpoint: not allowed with argument --checkpoint" in capsys.readouterr().err
