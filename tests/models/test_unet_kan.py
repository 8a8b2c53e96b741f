"""UKANet and U2KANet: per-pixel logits at any input size, encoder features, the head API, U²-Net structure."""
import warnings

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models import group_parameters

import kanzoo
from kanzoo.models.u2kanet import RSU, U2NET_DECODER, U2NET_ENCODER, U2KANet
from kanzoo.models.ukanet import UKANet

UKANETS = ["ukanet_kagn18", "ukanet_kagn34", "ukanet_kacn18", "ukanet_kan18"]
U2KANETS = ["u2kanet_kagn_small", "u2kanet_kagn"]


def tiny(name, **kwargs):
    """Widths 4..32 (UKANet) or 4/8 channels (U²-Net small): real code paths, little compute."""
    scale = 0.125 if name.startswith("ukanet") else 0.0625
    return kanzoo.create_model(name, **dict(dict(width_scale=scale), **kwargs))


def test_registered_names_and_cfgs_on_meta():
    assert set(kanzoo.list_models(["ukanet_*", "u2kanet_*"])) == set(UKANETS + U2KANETS)
    for name in UKANETS + U2KANETS:
        cfg = timm.models.get_pretrained_cfg(name).to_dict()
        assert "task=segmentation" in cfg["notes"] and cfg["pool_size"] is None
        m = kanzoo.create_model(name, device="meta", dtype=torch.bfloat16)
        assert m.task == "segmentation"
        sd = m.state_dict()
        assert {t.device.type for t in sd.values()} == {"meta"}
        assert {t.dtype for t in m.parameters()} == {torch.bfloat16}
        classifiers = (cfg["classifier"],) if isinstance(cfg["classifier"], str) else cfg["classifier"]
        assert cfg["first_conv"] + ".weight" in sd and all(c + ".weight" in sd for c in classifiers)
        assert m.get_classifier() is m.get_submodule(classifiers[0])
        h, w = cfg["input_size"][1:]
        assert m(torch.empty(1, 3, h, w, device="meta", dtype=torch.bfloat16)).shape == (1, 1, h, w)


@pytest.mark.parametrize("name", ["ukanet_kagn18", "u2kanet_kagn_small"])
@pytest.mark.parametrize("size", [(45, 61), (32, 32), (7, 9)])
def test_logits_come_back_at_the_input_size(name, size):
    m = tiny(name, num_classes=3).eval()
    with torch.no_grad():
        out = m(torch.randn(2, 3, *size))
    assert out.shape == (2, 3, *size) and torch.isfinite(out).all()


def test_ukanet_pads_to_a_multiple_of_8_and_crops():
    m = tiny("ukanet_kagn18", num_classes=2).eval()
    assert m.pad_multiple == 8
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        out = m(x)
        padded = m(F.pad(x, [0, 3, 0, 3]))  # 48×64: no further padding
    torch.testing.assert_close(out, padded[:, :, :45, :61])


def test_in_chans_and_num_classes():
    for name, first in (("ukanet_kagn18", "stem"), ("u2kanet_kagn_small", "stages.0.conv_in")):
        m = tiny(name, in_chans=12, num_classes=5)
        assert m.get_submodule(first).in_channels == 12
        assert m(torch.randn(2, 12, 33, 40)).shape == (2, 5, 33, 40)


@pytest.mark.parametrize("name,reductions", [("ukanet_kagn18", [1, 2, 4, 8]),
                                             ("u2kanet_kagn_small", [1, 2, 4, 8, 16, 32])])
def test_features_only_gives_the_encoder_stages(name, reductions):
    f = tiny(name, features_only=True, in_chans=12)
    assert f.feature_info.reduction() == reductions
    outs = f(torch.randn(1, 12, 64, 64))
    assert [o.shape[1] for o in outs] == f.feature_info.channels()
    assert [o.shape[-1] for o in outs] == [64 // r for r in reductions]
    m = tiny(name).eval()
    with torch.no_grad():
        final, inter = m.forward_intermediates(torch.randn(1, 3, 64, 64))
    assert final.shape == (1, m.num_features, 64 // reductions[-1], 64 // reductions[-1])
    assert [t.shape[1] for t in inter] == [fi["num_chs"] for fi in m.feature_info]


def test_ukanet_structure():
    m = kanzoo.create_model("ukanet_kagn34", device="meta")
    assert [len(s) for s in m.stages] == [3, 4, 6, 3]
    assert [fi["num_chs"] for fi in m.feature_info] == [32, 64, 128, 256]
    assert [s[0].conv1.stride for s in m.stages] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    # decoder from the deepest stage up: upsampled + skip channels in, skip's width out
    assert [(d.conv1.in_channels, d.conv1.out_channels) for d in m.decoder] == [(384, 128), (192, 64), (96, 32)]
    assert m.head.in_channels == m.head_hidden_size == 32 and m.head.kernel_size == (1, 1)
    basis = {n: type(kanzoo.create_model(n, device="meta").stem.basis).__name__ for n in UKANETS}
    assert basis == {"ukanet_kagn18": "GramBasis", "ukanet_kagn34": "GramBasis",
                     "ukanet_kacn18": "ChebyshevBasis", "ukanet_kan18": "BSplineBasis"}


def test_u2kanet_follows_the_paper_tables():
    m = U2KANet(U2NET_ENCODER, U2NET_DECODER, device="meta")
    assert [s.conv_in.out_channels for s in m.stages] == [64, 128, 256, 512, 512, 512]
    assert [s.conv_in.in_channels for s in m.decoder] == [1024, 1024, 512, 256, 128]
    assert [s.conv_in.out_channels for s in m.decoder] == [512, 256, 128, 64, 64]
    rsu7, rsu4f = m.stages[0], m.stages[4]
    assert len(rsu7.encoder) == len(rsu7.decoder) == 6 and rsu7.bottom.dilation == (2, 2)
    assert isinstance(rsu7.pool, torch.nn.Identity) and isinstance(m.stages[1].pool, torch.nn.MaxPool2d)
    assert [c.dilation[0] for c in rsu4f.encoder] == [1, 2, 4] and rsu4f.bottom.dilation == (8, 8)
    assert [c.dilation[0] for c in rsu4f.decoder] == [4, 2, 1]
    assert len(m.head.sides) == 6 and m.head.fuse.in_channels == 6 and m.head.fuse.kernel_size == (1, 1)
    # registered models: half the paper's widths
    small = kanzoo.create_model("u2kanet_kagn_small", device="meta")
    assert {s.conv_in.out_channels for s in small.stages} == {32}
    assert {s.encoder[0].out_channels for s in small.stages} == {8}


def test_rsu_is_residual_and_keeps_size():
    rsu = RSU(5, 4, 3, 6, dict(basis="gram", degree=2, norm_layer="batch"), downsample=True).eval()
    x = torch.randn(1, 4, 19, 23)
    with torch.no_grad():
        y = rsu(x)
        assert y.shape == (1, 6, 10, 12)  # ceil-mode pooling of the input
        x_in = rsu.conv_in(rsu.pool(x))
        for conv in rsu.decoder:
            conv.basis_weight.zero_()
            conv.weight.zero_()
        # decoder zeroed: the last conv outputs its norm's bias (0) through SiLU, so y == x_in
        torch.testing.assert_close(rsu(x), x_in)


def test_u2kanet_side_outputs_are_fused():
    m = tiny("u2kanet_kagn_small", num_classes=2).eval()
    x = torch.randn(1, 3, 37, 50)
    with torch.no_grad():
        outs = m.forward_side_outputs(x)
        assert len(outs) == 7 and all(o.shape == (1, 2, 37, 50) for o in outs)
        torch.testing.assert_close(outs[0], m(x))
        torch.testing.assert_close(outs[0], m.head.fuse(torch.cat(outs[1:], 1)))


@pytest.mark.parametrize("name", ["ukanet_kagn18", "u2kanet_kagn_small"])
def test_every_parameter_gets_a_gradient(name):
    m = tiny(name, num_classes=4)
    out = m(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 4, 32, 32)
    out.mean().backward()
    assert not [n for n, p in m.named_parameters() if p.grad is None]


@pytest.mark.parametrize("name", ["ukanet_kagn18", "u2kanet_kagn_small"])
def test_reset_classifier(name):
    m = tiny(name, num_classes=4).double().eval()
    x = torch.randn(1, 3, 24, 40, dtype=torch.float64)
    m.reset_classifier(6)
    head = m.get_classifier()
    assert head.out_channels == 6 and head.weight.dtype == torch.float64 and not head.training
    assert m(x).shape == (1, 6, 24, 40)
    m.reset_classifier(0)
    assert m.num_classes == 0 and m(x).shape == (1, m.head_hidden_size, 24, 40)
    assert not [n for n in m.state_dict() if n.startswith("head.")]


@pytest.mark.parametrize("name", ["ukanet_kagn18", "u2kanet_kagn_small"])
def test_grad_checkpointing_same_output_and_gradients(name):
    torch.manual_seed(0)
    m = tiny(name, num_classes=2)
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for enable in (False, True):
        m.set_grad_checkpointing(enable)
        m.zero_grad()
        m(x).square().mean().backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    m.eval()
    with torch.no_grad():
        y = m(x)
        m.set_grad_checkpointing(False)
        torch.testing.assert_close(m(x), y)


@pytest.mark.parametrize("name", ["ukanet_kagn18", "u2kanet_kagn_small"])
def test_torchscript_matches_eager(name):
    m = tiny(name, num_classes=3).eval()
    x = torch.randn(1, 3, 29, 35)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = torch.jit.script(m)
    with torch.no_grad():
        torch.testing.assert_close(s(x), m(x))


@pytest.mark.parametrize("name", ["ukanet_kagn18", "u2kanet_kagn_small"])
def test_bfloat16_forward(name):
    m = tiny(name, num_classes=2).eval().to(torch.bfloat16)
    with torch.no_grad():
        out = m(torch.randn(1, 3, 30, 34, dtype=torch.bfloat16))
    assert out.shape == (1, 2, 30, 34) and out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_group_matcher_and_unknown_kwargs():
    for name in ("ukanet_kagn18", "u2kanet_kagn_small"):
        m = tiny(name)
        groups = group_parameters(m, m.group_matcher())
        assert len(groups) > 2
        assert sum(len(v) for v in groups.values()) == len(list(m.named_parameters()))
        with pytest.raises(TypeError):
            tiny(name, global_pool="avg")


def test_loading_a_checkpoint_with_other_classes_and_channels():
    src = tiny("u2kanet_kagn_small", num_classes=1)
    sd = src.state_dict()
    m = tiny("u2kanet_kagn_small", num_classes=3, in_chans=1, pretrained=True,
             pretrained_cfg_overlay=dict(state_dict=sd))
    w = "stages.0.conv_in.basis_weight"
    torch.testing.assert_close(m.state_dict()[w], sd[w].sum(1, keepdim=True))
    torch.testing.assert_close(m.stages[3].bottom.weight, src.stages[3].bottom.weight)
    assert m.head.sides[0].out_channels == 3 and m.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 3, 32, 32)
    assert isinstance(m, U2KANet) and isinstance(tiny("ukanet_kan18"), UKANet)
