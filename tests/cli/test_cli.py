"""The ``kanzoo`` command: ``list``, ``info`` and ``layers``, through ``kanzoo.cli.main`` and ``python -m kanzoo``."""
import math
import os
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

import kanzoo
from kanzoo.cli import main
from kanzoo.layers import KANConvNd
from kanzoo.profile import count_macs
from tests import support
from tests.support.cli_run import run

REPO = str(support.REPO)

MODELS = kanzoo.list_models()



def python_m_kanzoo(*argv):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "kanzoo", *argv], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)


def info_rows(out):
    return {m.group(1).strip(): m.group(2) for m in re.finditer(r"^(\s*[\w ]+?)\s{2,}(.*)$", out, re.M)}


def test_list_all(capsys):
    rc, out, _ = run(capsys, "list")
    lines = out.splitlines()
    assert rc == 0 and lines[:-1] == MODELS and lines[-1] == f"{len(MODELS)} models"


def test_list_pattern_glob_and_substring(capsys):
    rc, out, _ = run(capsys, "list", "simple_conv_*")
    assert rc == 0 and out.splitlines()[:-1] == kanzoo.list_models("simple_conv_*")
    rc, out, _ = run(capsys, "list", "kagn", "-q")
    assert rc == 0 and out.splitlines() == kanzoo.list_models("*kagn*")
    assert "eight_simple_conv_kagn" in out.splitlines()


def test_list_pretrained(capsys):
    rc, out, _ = run(capsys, "list", "--pretrained")
    lines = out.splitlines()
    assert rc == 0 and lines[:-1] == kanzoo.list_pretrained()
    assert lines[-1] == f"{len(kanzoo.list_pretrained())} pretrained model tags"
    assert all("." in n for n in lines[:-1])


def test_list_no_match(capsys):
    rc, out, err = run(capsys, "list", "no_such_family_*")
    assert rc == 1 and out.splitlines() == ["0 models matching 'no_such_family_*'"] and "kanzoo list" in err


def _hand_count_macs(model, size):
    """MACs of a model made of KANConvNd layers and a linear head, from layer attributes and output shapes."""
    total = []

    def kan_hook(mod, inp, out):
        per_out = (mod.in_channels // mod.groups) * math.prod(mod.kernel_size) * (mod.num_basis + int(mod.use_base))
        total.append(out[0].numel() * per_out)

    def fc_hook(mod, inp, out):
        total.append(mod.in_features * mod.out_features)

    for m in model.modules():
        if isinstance(m, KANConvNd):
            m.register_forward_hook(kan_hook)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(fc_hook)
    with torch.no_grad():
        model.eval()(torch.randn(1, *size))
    return sum(total)


def test_info_classifier(capsys):
    name = "simple_conv_kagn"
    rc, out, _ = run(capsys, "info", name)
    assert rc == 0
    rows = info_rows(out)
    model = kanzoo.create_model(name)
    assert rows["architecture"] == name
    assert rows["family"] == f"simple_conv (kanzoo.models.simple_conv.{type(model).__qualname__})"
    assert rows["task"] == "classification"
    assert rows["parameters"].startswith(f"{sum(p.numel() for p in model.parameters()):,} ")
    cfg = model.pretrained_cfg
    macs = _hand_count_macs(model, cfg["input_size"])
    assert count_macs(kanzoo.create_model(name, device="meta"), cfg["input_size"])[0] == macs
    assert rows["GMACs"].startswith(f"{macs / 1e9:.3f} at 3x32x32 (convolution ")
    assert "not counted" in rows["counted"]
    assert rows["input_size"] == "(3, 32, 32)" and rows["interpolation"] == cfg["interpolation"]
    assert rows["mean"] == "(" + ", ".join(f"{v:.4g}" for v in cfg["mean"]) + ")"
    assert rows["crop_pct"] == str(cfg["crop_pct"])
    assert rows["paper ids"] == cfg["paper_ids"]
    assert rows["tags with weights"].startswith("none")


def test_info_input_size_scales_macs(capsys):
    name = "simple_conv_kagn"
    base = count_macs(kanzoo.create_model(name, device="meta"), (3, 32, 32))[0]
    rc, out, _ = run(capsys, "info", name, "--input-size", "3", "64", "64")
    gmacs = float(info_rows(out)["GMACs"].split()[0])
    assert rc == 0 and "at 3x64x64" in out
    assert gmacs == pytest.approx(4 * base / 1e9, rel=1e-2)  # convs scale with the area


def test_info_pretrained_tag(capsys):
    weighted = kanzoo.list_pretrained()
    if not weighted:
        pytest.skip("no kanzoo model has weights yet")
    from timm.models import get_pretrained_cfg
    entry = weighted[0]
    rc, out, _ = run(capsys, "info", entry, "--no-macs")
    rows = info_rows(out)
    assert rc == 0 and "GMACs" not in rows
    assert rows["pretrained cfg"] == entry
    assert rows["hf_hub_id"] == get_pretrained_cfg(entry).hf_hub_id
    assert entry in rows["tags with weights"].split(", ")


def test_info_segmentation(capsys):
    seg = [n for n in MODELS if getattr(type(kanzoo.create_model(n, device="meta")), "task", "") == "segmentation"]
    if not seg:
        pytest.skip("no segmentation model registered")
    rc, out, _ = run(capsys, "info", seg[0])
    rows = info_rows(out)
    assert rc == 0 and rows["task"] == "segmentation" and float(rows["GMACs"].split()[0]) > 0


def test_info_unknown_name(capsys):
    rc, out, err = run(capsys, "info", "simple_conv_kgn")
    assert rc == 2 and out == ""
    assert "unknown model 'simple_conv_kgn'" in err and "simple_conv_kagn" in err and "Traceback" not in err


def test_python_m_kanzoo_list_and_errors():
    res = python_m_kanzoo("list", "vgg_*", "--quiet")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == kanzoo.list_models("vgg_*")
    res = python_m_kanzoo("info", "nosuchmodel_kagn11")
    assert res.returncode == 2 and "closest registered names" in res.stderr and "Traceback" not in res.stderr


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["info"])
    assert e.value.code == 2 and "the following arguments are required: name" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["info", "simple_conv_kagn", "--input-size", "3", "32"])
    assert e.value.code == 2


def test_layers_command_still_works(capsys):
    rc, out, _ = run(capsys, "layers", "--batch", "1", "--channels", "2", "--size", "4", "--threads", "1")
    assert rc == 0 and "gram" in out and "bspline" in out


def test_info_shows_active_parameters_of_routed_resnets(capsys):
    """A MoE ResNet uses top_k of num_experts experts per routed conv for each image: the active count is the
    total minus the unused share of every expert bank, computed here from the modules directly."""
    from kanzoo.layers import MoEKANConvNd

    model = kanzoo.create_model("resnet_kagn_moe18", width_scale=0.125)
    banks = [m for m in model.modules() if isinstance(m, MoEKANConvNd)]
    assert banks
    total = sum(p.numel() for p in model.parameters())
    unused = sum((1 - m.top_k / m.num_experts) * sum(p.numel() for p in m.experts.parameters()) for m in banks)
    assert model.num_active_parameters() == round(total - unused)
    assert kanzoo.create_model("resnet_kagn18", width_scale=0.125).num_active_parameters() is None
    rc, out, _ = run(capsys, "info", "resnet_kagn_moe18", "--no-macs")
    assert rc == 0
    full = kanzoo.create_model("resnet_kagn_moe18", device="meta")
    assert f"{full.num_active_parameters():,} " in info_rows(out)["active parameters"]
    assert "per image" in out
    rc, out, _ = run(capsys, "info", "resnet_kagn18", "--no-macs")
    assert "active parameters" not in out
