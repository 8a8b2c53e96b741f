"""ResNet-KAN (kanzoo/models/resnet_kan.py): registry, architecture, residual maths, MoE and the timm API."""
import sys
import warnings

import pytest
import timm
import torch
from timm.layers import DropPath, set_layer_config
from timm.models import group_parameters
from torch import nn

import kanzoo
from kanzoo.layers import KANConv2d, MoEKANConv2d
from kanzoo.models._base import BASIS_TAGS
from kanzoo.models.resnet_kan import BasicBlockKAN, BottleneckKAN, ResNetKAN, ResNetKANMoE, checkpoint_filter_fn

TINY = dict(width_scale=0.125)  # stem 8, planes 8/16/32/64


def _x(n=2, c=3, size=32, seed=0):
    return torch.randn(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def _model(name="resnet_kagn18", **kwargs):
    torch.manual_seed(0)
    return timm.create_model(name, **dict(TINY, **kwargs))


def test_registered_names():
    expected = {f"resnet_kagn{d}" for d in (18, 34, 50, 101, 152)} | {"resnet_kagn_moe18"}
    expected |= {f"resnet_{tag}18" for tag in BASIS_TAGS}
    assert set(timm.list_models(module="resnet_kan")) == expected
    assert len(expected) == 14
    assert set(kanzoo.list_models("resnet_*")) >= expected
    # no name shadows one of timm's own entrypoints (timm's modules list theirs in __all__)
    timm_names = {n for mod_name, mod in list(sys.modules.items()) if mod_name.startswith("timm.models.")
                  for n in getattr(mod, "__all__", ())}
    assert not expected & timm_names
    for name in expected:
        cfg = timm.models.get_pretrained_cfg(name)
        assert cfg is not None and not cfg.has_weights and cfg.hf_hub_id is None
        assert cfg.first_conv == "conv1" and cfg.classifier == "head.fc" and cfg.pool_size == (7, 7)


@pytest.mark.parametrize("name,block,counts,chans", [
    ("resnet_kagn18", BasicBlockKAN, (2, 2, 2, 2), [64, 64, 128, 256, 512]),
    ("resnet_kagn34", BasicBlockKAN, (3, 4, 6, 3), [64, 64, 128, 256, 512]),
    ("resnet_kagn50", BottleneckKAN, (3, 4, 6, 3), [64, 256, 512, 1024, 2048]),
    ("resnet_kagn101", BottleneckKAN, (3, 4, 23, 3), [64, 256, 512, 1024, 2048]),
    ("resnet_kagn152", BottleneckKAN, (3, 8, 36, 3), [64, 256, 512, 1024, 2048]),
])
def test_architecture_on_meta(name, block, counts, chans):
    m = timm.create_model(name, device="meta")
    assert all(t.device.type == "meta" for t in m.state_dict().values())
    assert tuple(len(getattr(m, f"layer{i}")) for i in range(1, 5)) == counts
    assert all(isinstance(b, block) for i in range(1, 5) for b in getattr(m, f"layer{i}"))
    assert [f["num_chs"] for f in m.feature_info] == chans
    assert [f["reduction"] for f in m.feature_info] == [2, 4, 8, 16, 32]
    assert [f["module"] for f in m.feature_info] == ["conv1", "layer1", "layer2", "layer3", "layer4"]
    assert m.num_features == m.head_hidden_size == chans[-1]
    assert isinstance(m.conv1, KANConv2d) and m.conv1.kernel_size == (7, 7) and m.conv1.stride == (2, 2)
    assert m.conv1.basis.degree == 3  # default Gram degree
    # stride 2 on the 3×3 conv of the first block of layer2..4 (ResNet v1.5), projection on every first block
    for i in range(2, 5):
        first = getattr(m, f"layer{i}")[0]
        strided = first.conv1 if block is BasicBlockKAN else first.conv2
        assert strided.stride == (2, 2) and strided.kernel_size == (3, 3)
        assert isinstance(first.downsample, nn.Sequential) and first.downsample[0].stride == (2, 2)
        assert isinstance(getattr(m, f"layer{i}")[1].downsample, nn.Identity)


def test_shapes_and_pool_size():
    m = _model(num_classes=7).eval()
    x = _x(size=64)
    assert m(x).shape == (2, 7)
    assert m.forward_features(x).shape == (2, 64, 2, 2)
    assert m.forward_head(m.forward_features(x), pre_logits=True).shape == (2, 64)
    with torch.no_grad():
        feats = _model(width_scale=0.0625).eval().forward_features(_x(1, size=224))
    assert feats.shape == (1, 32, 7, 7)  # cfg pool_size at 224


def test_basic_block_residual():
    m = _model().eval()
    x = m.maxpool(m.conv1(_x(size=64)))
    with torch.no_grad():
        b = m.layer1[0]  # identity shortcut
        assert isinstance(b.downsample, nn.Identity)
        assert b.conv2.act.__class__ is nn.Identity and isinstance(b.act, nn.SiLU)  # act after the add
        torch.testing.assert_close(b(x), b.act(b.conv2(b.conv1(x)) + x))
        x = m.layer1(x)
        b = m.layer2[0]  # projection shortcut: 1×1/2 conv + norm
        conv, norm = b.downsample
        assert conv.kernel_size == (1, 1) and conv.bias is None and isinstance(norm, nn.BatchNorm2d)
        y = b(x)
        torch.testing.assert_close(y, b.act(b.conv2(b.conv1(x)) + norm(conv(x))))
        assert y.shape == (2, 16, 8, 8)
        # the shortcut matters: without it the output differs
        assert not torch.allclose(y, b.act(b.conv2(b.conv1(x))))


def test_bottleneck_block_residual_and_kan_downsample():
    m = _model("resnet_kagn50", downsample_type="kan").eval()
    x = m.maxpool(m.conv1(_x(size=64)))
    b = m.layer1[0]
    assert (b.conv1.kernel_size, b.conv2.kernel_size, b.conv3.kernel_size) == ((1, 1), (3, 3), (1, 1))
    assert (b.conv1.out_channels, b.conv3.out_channels) == (8, 32)  # expansion 4
    assert isinstance(b.downsample, KANConv2d) and b.downsample.act.__class__ is nn.Identity
    with torch.no_grad():
        torch.testing.assert_close(b(x), b.act(b.conv3(b.conv2(b.conv1(x))) + b.downsample(x)))
        x = m.layer1(x)
        b = m.layer1[1]  # identity shortcut inside a stage
        torch.testing.assert_close(b(x), b.act(b.conv3(b.conv2(b.conv1(x))) + x))


def test_drop_path_schedule():
    m = _model(drop_path_rate=0.3, device="meta")
    blocks = [b for i in range(1, 5) for b in getattr(m, f"layer{i}")]
    assert isinstance(blocks[0].drop_path, nn.Identity)
    rates = [b.drop_path.drop_prob for b in blocks[1:]]
    assert all(isinstance(b.drop_path, DropPath) for b in blocks[1:])
    assert rates == pytest.approx([0.3 * i / 7 for i in range(1, 8)])


def test_dropout_skips_stem_and_moe_builds_on_meta():
    m = _model(dropout=0.1, device="meta")
    assert isinstance(m.conv1.dropout, nn.Identity)
    assert isinstance(m.layer1[0].conv1.dropout, nn.Dropout2d) and m.layer1[0].conv1.dropout.p == 0.1
    m = _model("resnet_kagn_moe18", device="meta", dtype=torch.bfloat16)
    assert all(t.device.type == "meta" for t in m.state_dict().values())
    assert all(p.dtype == torch.bfloat16 for p in m.parameters())


@pytest.mark.parametrize("name", ["resnet_kagn18", "resnet_kagn50"])
def test_features_only(name):
    f = _model(name, features_only=True).eval()
    outs = f(_x(size=64))
    assert f.feature_info.channels() == [o.shape[1] for o in outs]
    assert f.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert [o.shape[-1] for o in outs] == [32, 16, 8, 4, 2]
    f = _model(name, features_only=True, out_indices=(1, 3))
    assert len(f(_x(size=64))) == 2


def test_forward_intermediates_and_prune():
    m = _model().eval()
    x = _x(size=64)
    final, inter = m.forward_intermediates(x)
    torch.testing.assert_close(final, m.forward_features(x))
    assert [t.shape[1] for t in inter] == [f["num_chs"] for f in m.feature_info]
    assert [64 // t.shape[-1] for t in inter] == [2, 4, 8, 16, 32]
    kept = m.prune_intermediate_layers(indices=(1, 2))
    assert kept == [1, 2] and len(m.layer3) == 0 and len(m.layer4) == 0 and len(m.layer2) == 2
    assert m.num_features == 16 and m.num_classes == 0
    assert len(m.forward_intermediates(x, indices=(1, 2), intermediates_only=True)) == 2


def test_moe_aux_loss():
    m = _model("resnet_kagn_moe18", moe_kwargs=dict(num_experts=3, top_k=2))
    moes = [mod for mod in m.modules() if isinstance(mod, MoEKANConv2d)]
    assert len(moes) == 16  # both 3×3 convs of 8 basic blocks
    assert type(m) is ResNetKANMoE and type(_model(device="meta")) is ResNetKAN
    assert isinstance(m.conv1, KANConv2d)  # the stem stays a plain KAN conv
    assert all(mod.experts[0].norm.__class__ is nn.Identity for mod in moes)  # shared norm after the mixture
    seen = []
    hooks = [mod.register_forward_hook(lambda _m, _i, out: seen.append(out[1])) for mod in moes]
    m.train()
    logits, aux = m.forward_with_aux(_x())
    for h in hooks:
        h.remove()
    assert logits.shape == (2, 1000) and aux.dim() == 0 and aux.requires_grad
    assert len(seen) == 16
    torch.testing.assert_close(aux, torch.stack(seen).sum())
    assert aux.item() > 0
    m.eval()
    x = _x()
    torch.testing.assert_close(m(x), m.forward_with_aux(x)[0])
    plain = _model().eval()
    assert plain.forward_with_aux(x)[1].item() == 0.0


def test_moe_gradients():
    # dense routing (top_k == num_experts): every parameter is reached
    m = _model("resnet_kagn_moe18", num_classes=42, moe_kwargs=dict(num_experts=2, top_k=2)).train()
    logits, aux = m.forward_with_aux(_x())
    (logits.mean() + aux).backward()
    assert all(p.grad is not None for p in m.parameters())
    # sparse routing: only idle experts lack gradients (why MoE is excluded from the all-params check)
    m = _model("resnet_kagn_moe18", num_classes=42).train()
    m(_x()).mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert missing and all(".conv.experts." in n for n in missing)


def test_moe_kwargs_need_moe():
    with pytest.raises(ValueError, match="moe=True"):
        _model(moe_kwargs=dict(num_experts=2), device="meta")


def test_in_chans_one_and_stem_adaptation():
    m1 = _model(in_chans=1).eval()
    assert m1.conv1.weight.shape[1] == 1 and m1.conv1.basis_weight.shape[1] == 1
    assert m1(_x(c=1)).shape == (2, 1000)
    sd = _model().state_dict()
    adapted = checkpoint_filter_fn({"state_dict": sd}, m1)
    m1.load_state_dict(adapted)  # strict: every key and shape fits
    torch.testing.assert_close(m1.conv1.weight, sd["conv1.weight"].sum(1, keepdim=True))


@pytest.mark.parametrize("scale,chans", [(0.25, [16, 16, 32, 64, 128]), (0.01, [1, 1, 1, 3, 5])])
def test_width_scale(scale, chans):
    m = timm.create_model("resnet_kagn18", width_scale=scale, device="meta")
    assert [f["num_chs"] for f in m.feature_info] == chans
    assert m.head.fc.in_features == chans[-1]


def test_head_api():
    m = _model(num_classes=5).eval()
    x = _x()
    assert m.get_classifier() is m.head.fc
    m.reset_classifier(0)
    assert m.num_classes == 0 and m(x).shape == (2, 64)
    m.reset_classifier(0, "")
    assert m(x).shape == (2, 64, 1, 1)
    m = _model(num_classes=0, global_pool="").to(torch.float64)
    assert m(_x().double()).dim() == 4
    m.reset_classifier(3, "avg")
    assert m.head.fc.weight.dtype == torch.float64 and m(_x().double()).shape == (2, 3)
    sd = m.state_dict()
    assert "conv1.weight" in sd and "head.fc.weight" in sd
    groups = m.group_matcher()
    assert len(groups) > 1
    assert len(group_parameters(m, groups)) > 1


def test_unknown_kwarg_and_bad_args():
    with pytest.raises(TypeError):
        timm.create_model("resnet_kagn18", not_an_arg=1)
    for bad in (dict(block_type="wide"), dict(layers=(2, 2, 2)), dict(downsample_type="avg"),
                dict(width_scale=0)):
        with pytest.raises(ValueError):
            ResNetKAN(**bad, device="meta")


def test_grad_checkpointing_same_output():
    m = _model().eval()
    x = _x()
    ref = m(x)
    m.set_grad_checkpointing(True)
    torch.testing.assert_close(m(x), ref)
    torch.testing.assert_close(m.forward_with_aux(x)[0], ref)


def test_torchscript_and_bf16():
    with set_layer_config(scriptable=True):
        m = _model().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = torch.jit.script(m)
    x = _x()
    torch.testing.assert_close(s(x), m(x))
    y = m.to(torch.bfloat16)(x.bfloat16())
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()


@pytest.mark.parametrize("tag", sorted(t for t in BASIS_TAGS if t != "kagn"))
def test_every_basis_trains(tag):
    m = _model(f"resnet_{tag}18", width_scale=0.0625, num_classes=42).train()
    out = m(_x())
    assert out.shape == (2, 42) and torch.isfinite(out).all()
    out.mean().backward()
    assert all(p.grad is not None for p in m.parameters())
