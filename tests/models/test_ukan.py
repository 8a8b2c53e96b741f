"""U-KAN (kanzoo.models.ukan) and its layers: the paper's parameter count, the MLP twin, in_chans (12-band
input), depths, any input size (padding), ONNX at a spatial size other than the export size, the local
B-spline basis against the full recursion, the KAN-parameter split, and clear errors."""
import pytest
import torch
import torch.nn.functional as F

import kanzoo
from kanzoo.layers import SplineKANLinear, TokenKANBlock
from kanzoo.layers.bases.bspline import BSplineBasis
from kanzoo.models.ukan import UKAN

pytestmark = pytest.mark.filterwarnings("ignore:.*is deprecated.*:FutureWarning")

SMALL = dict(width_scale=0.125)  # embed dims (16, 20, 32), conv dims (2, 4)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _params(model):
    return sum(p.numel() for p in model.parameters())


def test_paper_parameter_count():
    model = kanzoo.create_model("ukan_small", device="meta")
    assert _params(model) == 6_356_689  # embed dims [128, 160, 256], num_classes 1 (the released checkpoints)
    blocks = sum(_params(m) for m in model.modules() if isinstance(m, TokenKANBlock))
    assert blocks == sum(30 * c * c + 38 * c for c in (160, 256, 160, 128)) == 4_020_352
    assert [_params(kanzoo.create_model(n, device="meta")) for n in ("ukan_base", "ukan_large")] == \
        [_params(UKAN((256, 320, 512), device="meta")), _params(UKAN((256, 512, 1024), (64, 128), device="meta"))]


def test_mlp_twin():
    """kan=False builds the plain-linear model that the reference's no_kan flag was meant to build."""
    twin = kanzoo.create_model("ukan_small", kan=False, device="meta")
    assert not any(isinstance(m, SplineKANLinear) for m in twin.modules())
    # each block trades 3 KAN linears (10·C² each) for 3 linears (C² + C each)
    assert _params(twin) == 6_356_689 - sum(27 * c * c - 3 * c for c in (160, 256, 160, 128)) == 2_764_561
    model = kanzoo.create_model("ukan_small", kan=False, **SMALL).train()
    x = torch.randn(2, 3, 64, 64)
    model(x).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_twelve_band_input_and_large_layout():
    """The crop-field model: 12 Sentinel-2 bands, 2 classes, encoder widths E0/4 and E0/2."""
    model = kanzoo.create_model("ukan_large", in_chans=12, num_classes=2, width_scale=1 / 16).eval()
    assert model.encoder1.conv[0].weight.shape[1] == 12
    assert model.conv_dims == (4, 8) and model.embed_dims == (16, 32, 64)
    with torch.no_grad():
        y = model(torch.randn(2, 12, 64, 96))
    assert y.shape == (2, 2, 64, 96) and torch.isfinite(y).all()
    with pytest.raises(ValueError, match=r"expects images \(B, 12, H, W\), got shape \[2, 3, 64, 96\]"):
        model(torch.randn(2, 3, 64, 96))


@pytest.mark.parametrize("hw", [(48, 48), (37, 53), (1, 1), (33, 64)])
def test_any_input_size(hw):
    """Inputs are zero-padded (bottom/right) to a multiple of 32 and the logits cropped back: the reference
    crashes at 48×48."""
    model = kanzoo.create_model("ukan_small", **SMALL).eval()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        y = model(x)
        padded = F.pad(x, [0, (-hw[1]) % 32, 0, (-hw[0]) % 32])
        ref = model(padded)[:, :, :hw[0], :hw[1]]
    assert y.shape == (2, 1, *hw)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)


def test_multiple_of_32_is_not_padded():
    model = kanzoo.create_model("ukan_small", **SMALL).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        padded = model._pad(x)
        assert torch.equal(padded, x)
        feats = model._encode(padded)
        torch.testing.assert_close(model(x), model.final(model._decode(feats)), rtol=0, atol=0)
    assert [f.shape[-2:] for f in feats] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]


def test_depths_and_features():
    model = kanzoo.create_model("ukan_small", depths=(2, 1, 1, 3), **SMALL)
    assert [len(model.block1), len(model.block2), len(model.dblock1), len(model.dblock2)] == [2, 1, 1, 3]
    with pytest.raises(ValueError, match=r"depths must be 4 positive ints"):
        kanzoo.create_model("ukan_small", depths=(1, 1, 1), device="meta")
    feats = kanzoo.create_model("ukan_small", features_only=True, **SMALL).eval()
    assert feats.feature_info.channels() == [2, 4, 16, 20, 32]
    assert feats.feature_info.reduction() == [2, 4, 8, 16, 32]
    with torch.no_grad():
        outs = feats(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [(2, 32, 32), (4, 16, 16), (16, 8, 8), (20, 4, 4), (32, 2, 2)]
    assert not hasattr(feats.model, "final") or isinstance(feats.model.final, torch.nn.Identity)


def test_drop_path_and_checkpointing():
    model = kanzoo.create_model("ukan_small", drop_path_rate=0.5, **SMALL).train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    b = model(x)
    assert not torch.equal(a, b)
    model = kanzoo.create_model("ukan_small", **SMALL).eval()
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    y = model(x)
    g, = torch.autograd.grad(y.sum(), x)
    model.set_grad_checkpointing(True)
    assert all(m.grad_checkpointing for m in model.modules() if isinstance(m, TokenKANBlock))
    y2 = model(x)
    g2, = torch.autograd.grad(y2.sum(), x)
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(g2, g)


def test_kan_parameters_for_the_paper_lr_split():
    model = kanzoo.create_model("ukan_small", device="meta")
    names = [n for n, _ in model.kan_parameters()]
    assert len(names) == 4 * 3 * 3  # 4 blocks x fc1..fc3 x (base, spline, scaler)
    assert all(n.rsplit(".", 1)[-1] in ("base_weight", "spline_weight", "spline_scaler") for n in names)
    assert sum(p.numel() for _, p in model.kan_parameters()) == sum(30 * c * c for c in (160, 256, 160, 128))


def test_onnx_dynamic_spatial_axes(tmp_path):
    """Exported at 64×64 with dynamic batch, height and width; onnxruntime then runs 96×160 and 50×70 (not a
    multiple of 32: the padding is in the graph)."""
    pytest.importorskip("onnxruntime")
    from kanzoo.export import onnx_session, to_onnx

    model = kanzoo.create_model("ukan_small", **SMALL).eval()
    report = to_onnx(model, tmp_path / "ukan.onnx", input_size=(3, 64, 64), dynamic_spatial=True, verbose=False)
    assert report.dynamic_dims == ["batch", "height", "width"]
    sess = onnx_session(tmp_path / "ukan.onnx")
    name = sess.get_inputs()[0].name
    for shape in [(3, 3, 96, 160), (1, 3, 50, 70)]:
        x = torch.randn(*shape)
        y = torch.from_numpy(sess.run(None, {name: x.numpy()})[0])
        with torch.no_grad():
            ref = model(x)
        assert y.shape == ref.shape == (shape[0], 1, *shape[2:])
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------- layers
@pytest.mark.parametrize("order,f32", [(3, False), (3, True), (2, False), (1, True), (0, False)])
def test_local_basis_equals_full_recursion(order, f32):
    """Local (K+1 window) and full Cox-de Boor agree to roundoff, on and around the knots, in float64 and float32;
    so do their input gradients (local: a fused backward that keeps only x)."""
    kw = dict(grid_size=5, spline_order=order, knot_rule="arange", float32_differences=f32)
    full, local = BSplineBasis(local=False, **kw).double(), BSplineBasis(local=True, **kw).double()
    g = torch.Generator().manual_seed(0)
    x = 1.6 * torch.randn(64, 9, generator=g, dtype=torch.float64)
    n = min(9, full.grid.numel())
    x[0, :n] = full.grid.double()[:n]
    x[1, :3] = torch.tensor([-5.0, 5.0, float(full.grid[-1])])
    torch.testing.assert_close(local.values(x), full.values(x), rtol=0, atol=1e-15)
    torch.testing.assert_close(local.float().values(x.float()), full.float().values(x.float()), rtol=0, atol=1e-6)
    w = torch.randn(64, 9, full.num_basis + 1, generator=g, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (full(xa, torch.sin(xa)) * w).sum().backward()
    (local(xb, torch.sin(xb)) * w).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-12, atol=1e-12)
    assert torch.equal(local.values(x)[1, :2], torch.zeros(2, full.num_basis, dtype=torch.float64))


def test_local_basis_nd_and_scripting():
    full, local = BSplineBasis(4, 2, local=False), BSplineBasis(4, 2, local=True)
    x = torch.randn(2, 3, 5, 6)
    torch.testing.assert_close(local(x), full(x), rtol=0, atol=1e-6)
    scripted = torch.jit.script(local)
    torch.testing.assert_close(scripted(x), full(x), rtol=0, atol=1e-6)


def test_spline_linear_init_and_errors():
    layer = SplineKANLinear(8, 4)
    assert layer.spline_weight.shape == (4, 8, 8) and layer.base_weight.shape == layer.spline_scaler.shape == (4, 8)
    # efficient-kan's init: the spline part is a small least-squares fit of noise of amplitude scale_noise/G
    assert 0 < layer.spline_weight.abs().max() < 0.1
    assert layer(torch.randn(3, 5, 8)).shape == (3, 5, 4)
    with pytest.raises(ValueError, match="expects 8 input features in the last dim, got 7"):
        layer(torch.randn(3, 7))
    block = TokenKANBlock(8)
    with pytest.raises(ValueError, match=r"tokens \(B, H·W, 8\) with H·W = 3·4 = 12, got shape \[2, 10, 8\]"):
        block(torch.randn(2, 10, 8), 3, 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="embed_dims must be 3 positive ints"):
        UKAN(embed_dims=(16, 32), device="meta")
    with pytest.raises(ValueError, match="in_chans must be a positive int, got 0"):
        UKAN(in_chans=0, device="meta")
    with pytest.raises(ValueError, match="kan_kwargs .* given with kan=False"):
        UKAN(kan=False, kan_kwargs=dict(grid_size=3), device="meta")
