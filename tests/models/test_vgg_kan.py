"""kanzoo.models.vgg_kan: registered names, layout, timm model API and checkpoint_filter_fn on small models."""
import pytest
import timm
import torch
from timm.layers import ClassifierHead
from torch import nn

import kanzoo
from kanzoo.compat.tck import from_reference
from kanzoo.layers import BottleneckKANConvNd, KANConv2d, KANSelfAttention
from kanzoo.models._base import AdaptiveAvgPool2dMatmul, FlattenClassifierHead
from kanzoo.models.vgg_kan import CFGS, VGGKAN, checkpoint_filter_fn

EXPECTED = sorted(
    [f"vgg_kagn{d}" for d in (11, 13, 16, 19)]
    + [f"vgg_kagn{d}_v{v}" for d in (11, 13, 16, 19) for v in (2, 3, 4)]
    + [f"vgg_kagn_bn{d}_v4" for d in (11, 13, 16, 19)] + ["vgg_kagn_bn11_v2", "vgg_kagn_bn11sa_v4",
                                                          "vgg_kagn_bn11_v4_opt"]
    + [f"vgg_{t}11_v4" for t in ("kaln", "kacn", "kajn", "kabn", "kan", "fastkan", "wavkan", "relukan")])


def test_registered_names():
    names = kanzoo.list_models("vgg_*")
    assert names == EXPECTED
    assert kanzoo.list_pretrained("vgg_*") == [
        "vgg_kagn11_v2.tck_in1k", "vgg_kagn11_v4.tck_in1k", "vgg_kagn_bn11_v4.tck_in1k",
        "vgg_kagn_bn11sa_v4.tck_in1k"]
    # timm's own VGGs are untouched
    for n in ("vgg11", "vgg11_bn", "vgg19"):
        assert timm.models.get_pretrained_cfg(n) is not None
        assert timm.models._registry._model_to_module[n] == "vgg"
    assert all(timm.models._registry._model_to_module[n] == "vgg_kan" for n in names)


def test_reference_tables():
    assert CFGS["VGG11v2"] == [16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128, "M", 128, 128]
    assert CFGS["VGG19v3"][-3:] == ["M", 128, 256] and CFGS["VGG16v4"][-3:] == ["M", 256, 256]
    assert CFGS["VGG11v4sa"] == [16, "M", 32, "M", 64, 64, "M", 128, 128, "SAM", 128, 128, "SAM", 256, 256]
    assert CFGS["VGG13sa"] == [16, 16, "M", 32, 32, "M", 64, 64, "SAM", 128, 128, "SAM", 128, 128]


@pytest.mark.parametrize("name", EXPECTED)
def test_meta_build_and_pool_size(name):
    model = kanzoo.create_model(name, device="meta")
    tensors = list(model.parameters()) + list(model.buffers())
    assert tensors and all(t.device.type == "meta" for t in tensors)
    cfg = model.pretrained_cfg
    assert cfg["first_conv"] == "features.0" and cfg["classifier"] == "head.fc"
    assert "features.0.weight" in model.state_dict() and "head.fc.weight" in model.state_dict()
    with torch.no_grad():
        f = model.forward_features(torch.empty(1, 3, *cfg["input_size"][1:], device="meta"))
    assert tuple(f.shape[1:]) == (model.num_features, *cfg["pool_size"])
    assert model.feature_info[-1]["reduction"] == cfg["input_size"][1] // cfg["pool_size"][0]
    with torch.no_grad():  # the smallest input leaves a 2×2 map for the last instance norm
        f = model.forward_features(torch.empty(1, 3, *cfg["min_input_size"][1:], device="meta"))
    assert tuple(f.shape[2:]) == (2, 2)


def _tiny(**kw):
    return kanzoo.create_model("vgg_kagn11", width_scale=0.25, num_classes=7, **kw)


def test_small_model_api():
    torch.manual_seed(0)
    model = _tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y = model(x)
        final, inter = model.forward_intermediates(x)
        model.set_grad_checkpointing(True)
        y_ckpt = model(x)
    assert y.shape == (2, 7)
    torch.testing.assert_close(y_ckpt, y)
    torch.testing.assert_close(final, model.forward_features(x))
    assert [t.shape[1] for t in inter] == [f["num_chs"] for f in model.feature_info]
    assert [32 // t.shape[-1] for t in inter] == [f["reduction"] for f in model.feature_info] == [1, 2, 4, 8, 16]
    assert len(model.group_matcher()) > 1

    feats = kanzoo.create_model("vgg_kagn11", width_scale=0.25, features_only=True).eval()
    # FeatureListNet flattens `features.{i}` into `features_{i}`
    feats.load_state_dict({k.replace("features.", "features_", 1): v for k, v in model.state_dict().items()
                           if k.startswith("features.")})
    with torch.no_grad():
        for a, b in zip(feats(x), inter):
            torch.testing.assert_close(a, b)

    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)
    model.reset_classifier(0, "")
    assert model(x).shape == (2, model.num_features, 2, 2)
    with pytest.raises(TypeError):
        _tiny(not_an_arg=1)


def test_backward_every_param():
    model = kanzoo.create_model("vgg_kagn_bn11_v4", width_scale=0.25, num_classes=42).train()
    model(torch.randn(2, 3, 32, 32)).mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_prune_intermediate_layers():
    model = _tiny().eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        full = model.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
    assert model.prune_intermediate_layers([1, 2]) == [1, 2]
    assert len(model.features) == 6 and model.num_classes == 0
    with torch.no_grad():
        pruned = model.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
    for a, b in zip(full, pruned):
        torch.testing.assert_close(a, b)


def test_self_attention_layout():
    model = VGGKAN("VGG11sa", width_scale=0.25, attn_inner_reduction=2, num_classes=3)
    kinds = [type(m).__name__ for m in model.features]
    assert kinds[6] == "KANSelfAttention" and kinds[7] == "MaxPool2d" and kinds[10] == "KANSelfAttention"
    assert [f["module"] for f in model.feature_info] == ["features.0", "features.2", "features.6", "features.10",
                                                          "features.13"]
    assert model.features[6].inner_channels == 8
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    ref = from_reference({"ref_class": "VGGKAGN_BN", "ctor_args": [3, 10],
                          "ctor_kwargs": {"vgg_type": "VGG11v4sa", "sa_inner_projection": 4, "last_attention": True,
                                          "expected_feature_shape": [1, 1], "degree": 2}})
    att = ref.features[9]
    assert isinstance(att, KANSelfAttention) and att.scale == 1.0 and att.inner_channels == 128 // 4
    assert isinstance(att.q_proj, BottleneckKANConvNd) and isinstance(ref.features[-1], KANSelfAttention)


def _reference_state(model: VGGKAN, degree: int):
    """torch-conv-kan keys for a plain KAGN VGG (groups 1, affine norms), written from the golden README
    (4.1/4.2: degree-major poly_weights; 4.4: key names of KAGN convs and self-attention blocks)."""
    g = torch.Generator().manual_seed(0)
    sd = {}

    def kagn(prefix, o, c):
        sd[prefix + "poly_weights"] = torch.randn(1, o, c * (degree + 1), 3, 3, generator=g)
        sd[prefix + "beta_weights"] = torch.randn(degree + 1, generator=g)
        sd[prefix + "base_conv.0.weight"] = torch.randn(o, c, 3, 3, generator=g)
        sd[prefix + "layer_norm.0.weight"] = torch.randn(o, generator=g)
        sd[prefix + "layer_norm.0.bias"] = torch.randn(o, generator=g)

    for i, layer in enumerate(model.features):
        if isinstance(layer, KANConv2d):
            kagn(f"features.{i}.", layer.out_channels, layer.in_channels)
        elif isinstance(layer, KANSelfAttention):
            c, inner = layer.channels, layer.inner_channels
            sd[f"features.{i}.gamma"] = torch.randn(1, generator=g)
            sd[f"features.{i}.norm_layer.weight"] = torch.randn(c, generator=g)
            sd[f"features.{i}.norm_layer.bias"] = torch.randn(c, generator=g)
            for name, shape in (("inner_proj", (inner, c)), ("outer_proj", (c, inner))):
                sd[f"features.{i}.{name}.weight"] = torch.randn(*shape, 1, 1, generator=g)
                sd[f"features.{i}.{name}.bias"] = torch.randn(shape[0], generator=g)
            for n in "kqv":
                kagn(f"features.{i}.proj_{n}.", inner, inner)
    sd["classifier.1.weight"] = torch.randn(model.num_classes, model.num_features, generator=g)
    sd["classifier.1.bias"] = torch.randn(model.num_classes, generator=g)
    return sd


def test_filter_converts_reference_keys():
    model = VGGKAN("VGG11", width_scale=0.25, basis_kwargs={"degree": 2}, num_classes=5)
    ref = _reference_state(model, 2)
    sd = checkpoint_filter_fn(ref, model)
    model.load_state_dict(sd)
    c = model.features[2].in_channels
    poly = ref["features.2.poly_weights"][0]
    for f in range(3):  # reference channel f*C + c is kanzoo's [:, c, f]
        torch.testing.assert_close(model.features[2].basis_weight[:, :, f], poly[:, f * c:(f + 1) * c])
    torch.testing.assert_close(model.head.fc.weight, ref["classifier.1.weight"])
    # wrapped, DataParallel-prefixed and native state dicts give the same tensors
    for wrapped in ({"state_dict": ref}, {"model": {f"module.{k}": v for k, v in ref.items()}},
                    {"state_dict_ema": model.state_dict()}):
        out = checkpoint_filter_fn(wrapped, model)
        assert out.keys() == sd.keys() and all(torch.equal(out[k], sd[k]) for k in sd)
    with pytest.raises(KeyError, match="not consumed"):
        checkpoint_filter_fn(dict(ref, **{"features.0.extra": torch.zeros(1)}), model)
    with pytest.raises(KeyError, match="no key"):
        checkpoint_filter_fn({k: v for k, v in ref.items() if k != "features.4.beta_weights"}, model)
    # a native state of a headless attention model is not mistaken for a reference one
    sa = VGGKAN("VGG11sa", width_scale=0.25, num_classes=0)
    assert checkpoint_filter_fn(sa.state_dict(), sa).keys() == sa.state_dict().keys()


def test_from_reference_self_attention_keys():
    case = {"ref_class": "VGGKAGN", "ctor_args": [3, 10],
            "ctor_kwargs": {"vgg_type": "VGG11sa", "sa_inner_projection": 2, "degree": 2, "affine": True,
                            "expected_feature_shape": [1, 1]}}
    ref = _reference_state(from_reference(case), 2)
    assert "features.6.proj_q.poly_weights" in ref and "features.10.inner_proj.weight" in ref
    model = from_reference(case, ref)  # strict: every reference key used, every kanzoo tensor filled
    torch.testing.assert_close(model.features[6].in_proj.weight, ref["features.6.inner_proj.weight"])
    torch.testing.assert_close(model.features[10].q_proj.weight, ref["features.10.proj_q.base_conv.0.weight"])
    torch.testing.assert_close(model.features[10].norm.bias, ref["features.10.norm_layer.bias"])


def test_filter_adapts_stem():
    torch.manual_seed(0)
    rgb = VGGKAN("VGG11", width_scale=0.25, num_classes=5).eval()
    gray = VGGKAN("VGG11", width_scale=0.25, num_classes=5, in_chans=1).eval()
    gray.load_state_dict(checkpoint_filter_fn(rgb.state_dict(), gray))
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-5, rtol=1e-4)
    bn = VGGKAN("VGG11", bottleneck=True, width_scale=0.25)
    with pytest.raises(ValueError, match="bottleneck stem"):
        checkpoint_filter_fn(bn.state_dict(), VGGKAN("VGG11", bottleneck=True, width_scale=0.25, in_chans=1))


def test_bad_config_errors():
    with pytest.raises(ValueError, match="unknown VGG config"):
        VGGKAN("VGG12")
    # the reference's default expected_feature_shape (7, 7) is a 7×7 flatten head; a malformed one is an error
    assert from_reference({"ref_class": "VGGKAGN", "ctor_args": [3, 10], "ctor_kwargs": {},
                           "width_scale": 0.25}).head_pool_size == (7, 7)
    for bad in ([3], [0, 3], "3x3", [2.5, 2]):
        with pytest.raises(ValueError, match=r"expected_feature_shape must be a pair \[h, w\]"):
            from_reference({"ref_class": "VGGKAGN", "ctor_args": [3, 10],
                            "ctor_kwargs": {"expected_feature_shape": bad}})
    with pytest.raises(ValueError, match="head_type"):
        from_reference({"ref_class": "VGGKAGN", "ctor_args": [3, 10],
                        "ctor_kwargs": {"head_type": "KAN", "expected_feature_shape": [1, 1]}})
    assert isinstance(VGGKAN([8, "M", 8], width_scale=1).features[1], nn.MaxPool2d)


def _flat(**kw):
    return VGGKAN("VGG11", width_scale=0.25, head_pool_size=(3, 2), **dict(dict(num_classes=5), **kw))


def test_flatten_head_math():
    """head_pool_size (h, w): adaptive average pool to h×w (overlapping bins on a smaller map), channel-major
    flatten (feature c·h·w + i·w + j), then the linear layer; num_features stays C, head_hidden_size is C·h·w."""
    torch.manual_seed(0)
    model = _flat().eval()
    c = model.num_features
    assert (model.head_pool_size, model.head_hidden_size) == ((3, 2), c * 6)
    assert isinstance(model.head, FlattenClassifierHead) and model.get_classifier().in_features == c * 6
    feats = torch.randn(2, c, 2, 2)
    # bins of a 2-long axis pooled to 3: rows [0, 1), [0, 2), [1, 2); to 2: the identity
    pooled = torch.stack([feats[:, :, 0], feats[:, :, :2].mean(2), feats[:, :, 1]], dim=2)
    expected = pooled.reshape(2, c * 6)
    assert expected[0, 1 * 6 + 2 * 2 + 1] == pooled[0, 1, 2, 1]
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(feats, pre_logits=True), expected)
        torch.testing.assert_close(model.forward_head(feats), model.get_classifier()(expected))
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)
    # an int n is (n, n); 1 and (1, 1) are timm's global-pool head, whose keys and sizes stay as before
    assert VGGKAN("VGG11", width_scale=0.25, head_pool_size=2).head_pool_size == (2, 2)
    for one in (1, (1, 1)):
        plain = VGGKAN("VGG11", width_scale=0.25, head_pool_size=one)
        assert isinstance(plain.head, ClassifierHead) and plain.head_hidden_size == plain.num_features
    assert list(model.state_dict())[-2:] == ["head.fc.weight", "head.fc.bias"]


def test_matmul_pool_is_adaptive_avg_pool():
    """The flatten head's pool (matrix products, for ONNX) equals nn.AdaptiveAvgPool2d: smaller, equal,
    larger and non-dividing input sizes."""
    for (hh, ww), out in [((2, 2), (3, 3)), ((7, 7), (3, 3)), ((3, 3), (3, 3)), ((5, 6), (2, 4)), ((1, 1), (3, 2))]:
        x = torch.randn(2, 3, hh, ww, dtype=torch.float64)
        torch.testing.assert_close(AdaptiveAvgPool2dMatmul(out)(x), nn.AdaptiveAvgPool2d(out)(x), rtol=0, atol=1e-15)


def test_flatten_head_reset_classifier_and_prune():
    """global_pool for a flatten head: None keeps the pooling (a classifier after '' returns to 'avg'), 'avg' is
    the h×w pool + flatten, '' no pooling (num_classes=0 only); timm's other pool names are a ValueError that
    leaves the model as it was."""
    model = _flat().train()
    x = torch.randn(1, 3, 32, 32)
    model.reset_classifier(0)
    assert model.num_classes == 0 and model(x).shape == (1, model.head_hidden_size)
    model.reset_classifier(0, "")
    assert model(x).shape == (1, model.num_features, 2, 2)
    with pytest.raises(ValueError, match=r"global_pool='' with num_classes=4.*use num_classes=0"):
        model.reset_classifier(4, "")
    assert model.num_classes == 0 and model(x).ndim == 4
    model.reset_classifier(4)  # a classifier after the unpooled map: back to the h×w pool (timm's test does this)
    assert model.head.pool_type == "avg" and model(x).shape == (1, 4) and model.get_classifier().training
    model.reset_classifier(0, "")
    model.reset_classifier(4, "avg")
    assert model(x).shape == (1, 4) and model.get_classifier().training
    for pool in ("max", "avgmax", "catavgmax"):
        with pytest.raises(ValueError, match=rf"global_pool='{pool}' does not work with head_pool_size=\(3, 2\)"):
            model.reset_classifier(3, pool)
    assert model.num_classes == 4 and model(x).shape == (1, 4)
    with pytest.raises(ValueError, match="global_pool='max' does not work"):
        _flat(global_pool="max")
    assert _flat(global_pool="", num_classes=0)(x).shape == (1, model.num_features, 2, 2)
    for bad in (0, (3, 0), (3, 2, 1), 2.5, True, "3"):
        with pytest.raises(ValueError, match=r"head_pool_size must be an int >= 1 or a pair"):
            VGGKAN("VGG11", width_scale=0.25, head_pool_size=bad)
    with pytest.raises(ValueError, match=r"vgg_kagn11: head_pool_size must be an int >= 1 or a pair"):
        kanzoo.create_model("vgg_kagn11", head_pool_size=(0, 3))
    # pruning keeps the head's pool size: no classifier and no pooling, and back to h×w on a reset
    model.prune_intermediate_layers([1])
    assert model.head_pool_size == (3, 2) and model(x).ndim == 4
    model.reset_classifier(0, "avg")
    assert model(x).shape == (1, model.feature_info[1]["num_chs"] * 6)


def test_opt_architecture():
    """vgg_kagn_bn11_v4_opt: VGG11v4 of bottleneck Gram convs (degree 5), BatchNorm, width 3, a 3×3 flatten
    head; the golden case's 22,052,563 parameters (tests/hub/test_golden_tck_hub.py checks its logits)."""
    model = kanzoo.create_model("vgg_kagn_bn11_v4_opt", device="meta")
    assert sum(p.numel() for p in model.parameters()) == 22_052_563
    assert model.head_pool_size == (3, 3) and model.num_features == 768 and model.head_hidden_size == 768 * 9
    assert model.get_classifier().weight.shape == (1000, 6912)
    base = kanzoo.create_model("vgg_kagn_bn11_v4", device="meta")
    assert list(model.state_dict()) == list(base.state_dict())
