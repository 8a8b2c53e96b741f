"""Vision-KAN at the model level: the FasterKAN block MLP with timm's Mlp signature, the ViT around it (what the
reference ignores works here), the registered variants and their sizes, and the checkpoint filter. Reference
parity is in tests/compat/test_golden_visionkan.py."""
import pytest
import torch
from torch import nn

import kanzoo
from kanzoo.layers import FasterKAN
from kanzoo.models._naming import parse_model_name
from kanzoo.models.vision_kan import FasterKANMlp, VisionKAN, checkpoint_filter_fn

SMALL = dict(img_size=32, depth=2)


def test_registered_variants_and_sizes():
    assert kanzoo.list_models("vision_kan_*") == [
        "vision_kan_tiny_h384_patch16_224", "vision_kan_tiny_h768_patch16_224", "vision_kan_tiny_patch16_224"]
    # the golden README's parameter counts, less the reference's dead MLPs and frozen rbf.grid parameters
    # (16 per block; kanzoo keeps the grids as buffers)
    for name, classes, reference, dead in (("vision_kan_tiny_patch16_224", 1000, 12_797_800, 3_550_464),
                                           ("vision_kan_tiny_h384_patch16_224", 100, 19_706_596, 3_550_464),
                                           ("vision_kan_tiny_h768_patch16_224", 100, 33_871_588, 3_550_464)):
        model = kanzoo.create_model(name, num_classes=classes, device="meta")
        assert sum(p.numel() for p in model.parameters()) == reference - dead - 16 * 12
    assert kanzoo.create_model("vision_kan_tiny_h384_patch16_224", device="meta").num_classes == 1000
    assert kanzoo.create_model("vision_kan_tiny_h384_patch16_224.cifar100", device="meta").num_classes == 100


def test_names_follow_the_scheme():
    parts = parse_model_name("vision_kan_tiny_h768_patch16_224.cifar100")
    assert parts["family"] == "vision_kan" and parts["basis"] == "rswaf" and parts["hidden"] == "768"
    assert "hidden" not in parse_model_name("vision_kan_tiny_patch16_224")
    assert parse_model_name("vision_kan_tiny_h_patch16_224") is None


def test_block_layout_is_the_reference_function():
    model = kanzoo.create_model("vision_kan_tiny_h384_patch16_224", device="meta")
    block = model.blocks[0]
    assert isinstance(block.mlp, FasterKANMlp) and isinstance(block.mlp, FasterKAN)
    assert block.attn.qkv.bias is None and block.norm1.eps == block.norm2.eps == 1e-5 and model.norm.eps == 1e-6
    assert [tuple(layer.basis_weight.shape) for layer in block.mlp.layers] == [(384, 192, 8), (192, 384, 8)]
    assert sorted(k for k in block.state_dict() if k.startswith("mlp.")) == sorted(
        f"mlp.layers.{i}.{n}" for i in (0, 1) for n in ("basis_weight", "basis.grid", "basis_norm.weight",
                                                         "basis_norm.bias"))
    assert model.pretrained_cfg["first_conv"] == "patch_embed.proj" and model.pretrained_cfg["classifier"] == "head"


def test_fasterkan_mlp_is_fasterkan_with_timm_signature():
    torch.manual_seed(0)
    mlp = FasterKANMlp(16, 24, act_layer=nn.GELU, bias=True, drop=0.0)
    ref = FasterKAN([16, 24, 16])
    ref.load_state_dict(mlp.state_dict())
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(mlp(x), ref(x))
    assert FasterKANMlp(16)(x).shape == (2, 5, 16) and FasterKANMlp(16, 8, 12)(x).shape == (2, 5, 12)


def test_fasterkan_mlp_dropout_in_train_mode_only():
    mlp = FasterKANMlp(16, 24, drop=0.5)
    x = torch.randn(4, 7, 16)
    torch.testing.assert_close(mlp.eval()(x), mlp.eval()(x))
    mlp.train()
    assert not torch.equal(mlp(x), mlp(x))


@pytest.mark.parametrize("kwargs,match", [
    (dict(norm_layer=nn.LayerNorm), "no hidden norm layer.*scale_mlp_norm=False"),
    (dict(use_conv=True), "use_conv=True is not supported"),
])
def test_fasterkan_mlp_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FasterKANMlp(16, 24, **kwargs)


def test_hidden_width_exact_under_width_scale():
    """timm's Block computes int(dim * mlp_ratio); the KAN hidden width is exact whatever the rounding."""
    assert int(15 * (123 / 15)) == 122  # where the ratio alone would lose one
    model = VisionKAN(embed_dim=15, num_heads=3, kan_hidden=123, depth=1, img_size=32, num_classes=3)
    assert model.blocks[0].mlp.layers[0].basis_weight.shape[0] == 123 == model.kan_hidden
    model = kanzoo.create_model("vision_kan_tiny_h768_patch16_224", width_scale=0.125, device="meta")
    assert model.embed_dim == 24 and model.blocks[0].mlp.layers[0].basis_weight.shape[0] == 96


def test_what_the_reference_ignores_works():
    """drop_path_rate and qkv_bias reach the blocks (the reference drops both); kan_kwargs reach the basis."""
    model = kanzoo.create_model("vision_kan_tiny_patch16_224", drop_path_rate=0.2, qkv_bias=True,
                                kan_kwargs=dict(grid_size=5, grid_range=(-1.0, 1.0), denominator=0.5),
                                **SMALL, device="meta")
    assert model.blocks[1].drop_path1.drop_prob == pytest.approx(0.2) and model.blocks[0].attn.qkv.bias is not None
    basis = model.blocks[0].mlp.layers[1].basis
    assert (basis.grid_size, basis.grid_range, basis.denominator) == (5, (-1.0, 1.0), 0.5)
    model = kanzoo.create_model("vision_kan_tiny_patch16_224", drop_path_rate=0.5, **SMALL, width_scale=0.25)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), model(x))  # stochastic depth in training
        torch.testing.assert_close(model.eval()(x), model(x))


@pytest.mark.parametrize("kwargs,match", [
    (dict(kan_hidden=0), "kan_hidden must be a positive int, got 0"),
    (dict(kan_kwargs=dict(num_grids=8)), r"unknown kan_kwargs \['num_grids'\].*grid_size"),
    (dict(width_scale=0), "width_scale must be a number > 0, got 0"),
    (dict(embed_dim=100), "embed_dim=100 must be a multiple of num_heads=3"),
])
def test_bad_arguments_are_one_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kanzoo.create_model("vision_kan_tiny_patch16_224", device="meta", **kwargs)


def test_checkpoint_filter_keeps_kanzoo_keys_and_unwraps():
    model = kanzoo.create_model("vision_kan_tiny_patch16_224", **SMALL, width_scale=0.25, num_classes=5)
    state = model.state_dict()
    out = checkpoint_filter_fn({"model": {f"module.{k}": v for k, v in state.items()}}, model)
    assert out.keys() == state.keys() and all(out[k] is state[k] for k in state)


def test_train_step_updates_every_parameter():
    model = kanzoo.create_model("vision_kan_tiny_patch16_224", **SMALL, width_scale=0.25, num_classes=4).train()
    loss = nn.functional.cross_entropy(model(torch.randn(3, 3, 32, 32)), torch.tensor([0, 1, 2]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
