"""DenseNetKAN: registry, paper channel counts, dense connectivity and the timm model contract."""
import warnings

import pytest
import timm
import torch
from timm.models import group_parameters

import kanzoo
from kanzoo.models._base import BASIS_TAGS
from kanzoo.models.densenet_kan import DenseLayerKAN, DenseNetKAN, TransitionKAN

# torchvision/timm DenseNet final widths and per-block widths (Huang et al. table 1, compression 0.5)
PAPER = {
    "121": (32, (6, 12, 24, 16), 64, 1024),
    "161": (48, (6, 12, 36, 24), 96, 2208),
    "169": (32, (6, 12, 32, 32), 64, 1664),
    "201": (32, (6, 12, 48, 32), 64, 1920),
}


def tiny(name="densenet_kagn121", **kwargs):
    """Growth 4, stem 8, blocks (1, 2, 2, 1): the real code paths at a fraction of the cost."""
    kwargs = dict(dict(width_scale=0.125, block_config=(1, 2, 2, 1)), **kwargs)
    return kanzoo.create_model(name, **kwargs)


def test_registered_names_and_cfgs():
    expected = {f"densenet_kagn{a}" for a in PAPER} | {f"densenet_{t}121" for t in BASIS_TAGS}
    assert set(kanzoo.list_models("densenet_*")) == expected
    assert len(expected) == 12
    for name in expected:
        cfg = timm.models.get_pretrained_cfg(name).to_dict()
        assert cfg["pool_size"] == (7, 7) and cfg["input_size"] == (3, 224, 224)
        assert cfg["first_conv"] == "features.conv0" and cfg["classifier"] == "head.fc"
        assert not timm.models.get_pretrained_cfg(name).has_weights


@pytest.mark.parametrize("arch", list(PAPER))
def test_paper_channel_counts_on_meta(arch):
    k, blocks, init, final = PAPER[arch]
    m = kanzoo.create_model(f"densenet_kagn{arch}", device="meta")
    assert {t.device.type for t in m.state_dict().values()} == {"meta"}
    assert m.num_features == m.head_hidden_size == final
    chs, widths = init, []
    for b, n in enumerate(blocks):
        block = getattr(m.features, f"denseblock{b + 1}")
        layers = list(block.values())
        assert len(layers) == n
        for i, layer in enumerate(layers):
            # layer i reads the block input and all i earlier outputs
            assert layer.conv1.in_channels == chs + i * k
            assert layer.conv1.out_channels == 4 * k and layer.conv1.kernel_size == (1, 1)
            assert layer.conv2.out_channels == k and layer.conv2.kernel_size == (3, 3)
        chs += n * k
        widths.append(chs)
        if b < len(blocks) - 1:
            trans = getattr(m.features, f"transition{b + 1}")
            assert (trans.conv.in_channels, trans.conv.out_channels) == (chs, chs // 2)
            chs //= 2
    assert [f["num_chs"] for f in m.feature_info] == widths
    assert [f["reduction"] for f in m.feature_info] == [4, 8, 16, 32]
    # pool_size (7, 7) at 224: shape inference on meta, no compute
    assert m.forward_features(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, final, 7, 7)


def test_dense_block_concatenates_its_input_and_every_layer():
    m = tiny(growth_rate=32, width_scale=0.25).eval()  # k = 8, stem 16
    block = m.features.denseblock2
    seen = {}
    block.register_forward_hook(lambda mod, inp, out: seen.update(block=(inp[0], out)))
    for name, layer in block.items():  # copy the input list: the block appends to it afterwards
        layer.register_forward_hook(lambda mod, inp, out, name=name: seen.update({name: (list(inp[0]), out)}))
    with torch.no_grad():
        m(torch.randn(2, 3, 32, 32))
    x, out = seen["block"]
    (in1, new1), (in2, new2) = seen["denselayer1"], seen["denselayer2"]
    assert x.shape[1] == (16 + 8) // 2 and new1.shape[1] == new2.shape[1] == 8
    assert len(in1) == 1 and len(in2) == 2 and in2[1] is new1
    torch.testing.assert_close(out, torch.cat([x, new1, new2], 1))


def test_forward_backward_every_parameter_gets_a_gradient():
    m = tiny(num_classes=42)
    out = m(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 42)
    out.mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("tag", [t for t in BASIS_TAGS if t != "kagn"])
def test_every_basis_trains(tag):
    m = tiny(f"densenet_{tag}121", block_config=(1, 1), num_classes=3)
    conv = m.features.denseblock1.denselayer1.conv2
    assert type(conv.basis).__name__.lower().startswith(BASIS_TAGS[tag][:4])
    m(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_unknown_kwarg_is_a_type_error():
    with pytest.raises(TypeError):
        kanzoo.create_model("densenet_kagn121", width_scale=0.125, not_an_arg=1)


def test_head_api_and_reset_keeps_dtype():
    m = tiny(num_classes=5).double().eval()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    feats = m.forward_features(x)
    assert feats.shape == (1, m.num_features, 2, 2)
    assert m.forward_head(feats, pre_logits=True).shape == (1, m.head_hidden_size)
    m.reset_classifier(7)
    assert m.get_classifier().weight.dtype == torch.float64 and m(x).shape == (1, 7)
    m.reset_classifier(0)
    assert m.num_classes == 0 and m(x).shape == (1, m.num_features)
    m.reset_classifier(0, "")
    assert m(x).shape == feats.shape


def test_grad_checkpointing_same_output_and_gradients():
    torch.manual_seed(0)
    m = tiny(num_classes=3)
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for enable in (False, True):
        m.set_grad_checkpointing(enable)
        m.zero_grad()
        m(x).square().sum().backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    assert all(isinstance(layer, DenseLayerKAN) and layer.grad_checkpointing
               for layer in m.features.denseblock1.values())
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    m.eval()
    with torch.no_grad():
        y1 = m(x)
        m.set_grad_checkpointing(False)
        torch.testing.assert_close(m(x), y1)


def test_features_only_and_in_chans():
    f = tiny(features_only=True, in_chans=12)
    assert f.feature_info.reduction() == [4, 8, 16, 32]
    outs = f(torch.randn(1, 12, 64, 64))
    # growth 4, stem 8: 8+4=12 -> 6, 6+8=14 -> 7, 7+8=15 -> 7, 7+4=11
    assert [o.shape[1] for o in outs] == f.feature_info.channels() == [12, 14, 15, 11]
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]
    f = tiny(features_only=True, out_indices=(1, 3))
    assert [o.shape[-1] for o in f(torch.randn(1, 3, 64, 64))] == [8, 2]


def test_forward_intermediates_and_prune():
    m = tiny().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, inter = m.forward_intermediates(x)
        torch.testing.assert_close(final, m.forward_features(x))
        assert [t.shape[1] for t in inter] == [f["num_chs"] for f in m.feature_info]
        kept = m.prune_intermediate_layers(indices=(0, 1))
        assert kept == [0, 1]
        assert m(x).shape == (1, m.feature_info[1]["num_chs"], 8, 8)
        torch.testing.assert_close(m.forward_features(x), inter[1])


def test_group_matcher_groups_every_parameter():
    m = tiny()
    for coarse in (False, True):
        groups = group_parameters(m, m.group_matcher(coarse=coarse))
        assert len(groups) > 2
        assert sum(len(v) for v in groups.values()) == len(list(m.named_parameters()))
    assert any(n.startswith("features.conv0") for n in group_parameters(m, m.group_matcher())[0])


def test_torchscript_matches_eager():
    m = tiny(num_classes=4).eval()
    x = torch.randn(1, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = torch.jit.script(m)
    with torch.no_grad():
        torch.testing.assert_close(s(x), m(x))


def test_bfloat16_forward():
    m = tiny(num_classes=4).eval().to(torch.bfloat16)
    with torch.no_grad():
        out = m(torch.randn(1, 3, 32, 32, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_first_conv_and_classifier_weights_and_stem_adaptation():
    m = tiny(in_chans=3)
    sd = m.state_dict()
    assert "features.conv0.weight" in sd and "head.fc.weight" in sd
    m1 = tiny(in_chans=1, pretrained=True, pretrained_cfg_overlay=dict(state_dict=sd))
    torch.testing.assert_close(m1.features.conv0.weight, sd["features.conv0.weight"].sum(1, keepdim=True))
    assert isinstance(m1, DenseNetKAN) and isinstance(m1.features.transition1, TransitionKAN)
