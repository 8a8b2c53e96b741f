"""kanzoo.models.kat: names and keys, the reference's training checkpoints, initialisation, position-embedding
resampling, features and mixed precision (small widths; the full-size golden checks are in test_golden_kat.py)."""
import math

import pytest
import torch

import kanzoo
from kanzoo.layers import GroupRational
from kanzoo.models.kat import KAT, rational_gain
from tests.support.golden import manifest

MAN = manifest("kat")
HUB = {c["timm_model"]: c for c in MAN["cases"] if c["family"] == "KAT-hub"}
SMALL = dict(width_scale=0.125, depth=2)


def test_names_and_act_init():
    names = kanzoo.list_models("kat_*")
    sizes, acts = ("tiny", "small", "base"), ("", "_gelu", "_swish")
    assert names == sorted(f"kat_{s}{v}_patch16_224" for s in sizes for v in acts)
    for name in names:
        model = kanzoo.create_model(name, device="meta")
        act2 = model.blocks[0].mlp.act2
        assert model.act_init == act2.mode == ("gelu" if "_gelu" in name else "swish")
        assert model.blocks[0].mlp.act1.mode == "identity" and act2.num_groups == 8


@pytest.mark.parametrize("arch", sorted(HUB))
def test_keys_shapes_and_order_equal_the_reference(arch):
    case = HUB[arch]
    model = kanzoo.create_model(arch, device="meta")
    assert [[k, list(v.shape), "float32"] for k, v in model.state_dict().items()] == case["state_keys"]
    assert sum(p.numel() for p in model.parameters()) == case["num_params"]


def _small_state(seed=0, **kwargs):
    torch.manual_seed(seed)
    return kanzoo.create_model("kat_tiny_patch16_224", **SMALL, **kwargs).state_dict()


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "ema", "ddp"])
def test_reference_training_checkpoints_load(wrap, tmp_path):
    """Checkpoints of the reference's timm training script load strictly: EMA weights are preferred."""
    weights, ema = _small_state(0), _small_state(1)
    ckpt = {"plain": weights, "state_dict": {"epoch": 3, "arch": "kat_tiny_swish_patch16_224", "state_dict": weights,
                                             "optimizer": {"state": {}}},
            "model": {"model": weights}, "ema": {"state_dict": weights, "state_dict_ema": ema},
            "ddp": {"state_dict": {f"module.{k}": v for k, v in weights.items()}}}[wrap]
    path = tmp_path / "checkpoint-3.pth.tar"
    torch.save(ckpt, path)
    model = kanzoo.create_model("kat_tiny_patch16_224", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                                **SMALL)
    expected = ema if wrap == "ema" else weights
    for k, v in model.state_dict().items():
        assert torch.equal(v, expected[k]), k


def test_strict_load_names_missing_keys(tmp_path):
    state = _small_state()
    del state["blocks.1.mlp.act2.weight_denominator"]
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(RuntimeError, match="blocks.1.mlp.act2.weight_denominator"):
        kanzoo.create_model("kat_tiny_patch16_224", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                            **SMALL)


def test_img_size_resamples_pos_embed(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(_small_state(), path)
    model = kanzoo.create_model("kat_tiny_patch16_224", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                                img_size=96, **SMALL).eval()
    assert model.pos_embed.shape == (1, 1 + 6 * 6, 24)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 96)).shape == (1, 1000)


def test_kan_init_is_variance_preserving():
    """fc1 std 1/√fan_in, fc2 std gain/√fan_in with gain = 1/√E[φ2(z)²]; unit-variance input keeps its scale."""
    torch.manual_seed(0)
    model = kanzoo.create_model("kat_small_patch16_224", depth=2)
    mlp = model.blocks[0].mlp
    assert mlp.fc1.weight.std().item() == pytest.approx(1 / math.sqrt(384), rel=0.02)
    z = torch.randn(100000, 8, dtype=torch.float64)
    act = mlp.act2
    second_moment = GroupRational(8, "swish", kernel="eager").double()(z).square().mean().item()  # Monte Carlo
    assert rational_gain(act) == pytest.approx(1 / math.sqrt(second_moment), rel=0.01)
    assert mlp.fc2.weight.std().item() == pytest.approx(rational_gain(act) / math.sqrt(1536), rel=0.02)
    with torch.no_grad():
        h = torch.randn(4096, 384)
        assert mlp(h).std().item() == pytest.approx(1.0, rel=0.15)
    timm_init = kanzoo.create_model("kat_small_patch16_224", depth=2, weight_init="")
    assert timm_init.blocks[0].mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_mimetic_init_is_seeded_by_torch():
    def build():
        torch.manual_seed(3)
        return kanzoo.create_model("kat_tiny_patch16_224", depth=1, width_scale=0.5, weight_init="kan_mimetic")
    a, b = build(), build()
    assert torch.equal(a.blocks[0].attn.qkv.weight, b.blocks[0].attn.qkv.weight)
    attn = a.blocks[0].attn
    w = attn.qkv.weight.double()
    dim, hd = w.shape[1], w.shape[1] // attn.num_heads
    vo = attn.proj.weight.double() @ w[2 * dim:]  # W_proj·W_v ≈ 0.4·Z − 0.4·I
    assert vo.diagonal().mean().item() == pytest.approx(-0.4, abs=0.05)
    qk = w[:hd].T @ w[dim:dim + hd]  # head 0: W_qᵀW_k, the best rank-hd part of 0.7·Z + 0.7·I
    assert qk.diagonal().mean().item() > 0


def test_features_only_and_intermediates():
    model = kanzoo.create_model("kat_tiny_patch16_224", features_only=True, **SMALL).eval()
    assert model.feature_info.reduction() == [16, 16] and model.feature_info.channels() == [24, 24]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 224, 224))
    assert [tuple(f.shape) for f in feats] == [(1, 24, 14, 14)] * 2


def test_bf16_autocast_forward_and_backward():
    torch.manual_seed(0)
    model = kanzoo.create_model("kat_tiny_patch16_224", num_classes=10, **SMALL)
    seen = []
    model.blocks[0].mlp.act2.register_forward_hook(lambda m, i, o: seen.append((i[0].dtype, o.dtype)))
    x = torch.randn(2, 3, 224, 224)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().sum().backward()
    assert seen == [(torch.bfloat16, torch.float32)]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_construction_errors():
    with pytest.raises(ValueError, match=r"embed_dim \(100\).* divisible by rational_groups=8"):
        KAT(embed_dim=100, num_heads=4, depth=1)
    with pytest.raises(TypeError, match="KAT builds its own mlp_layer"):
        KAT(depth=1, mlp_layer=torch.nn.Identity)
    with pytest.raises(ValueError, match="width_scale must be a number > 0, got 0"):
        kanzoo.create_model("kat_tiny_patch16_224", width_scale=0)
    with pytest.raises(ValueError, match="unknown rational init mode 'relu6'"):
        kanzoo.create_model("kat_tiny_patch16_224", act_init="relu6", depth=1)
