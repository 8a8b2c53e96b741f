"""kanzoo.profile: counts against FlopCounterMode, hand-derived formula values and a brute-force width scan.

Every expected number below is worked out by hand from the formulas in docs/profile.md (the arithmetic is
written out in the comments), not by calling the function under test.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kanzoo import profile as P
from kanzoo.layers import KANConv2d, KANLinear, SelectableKANLinear


def flop_counter_total(model, x):
    with torch.no_grad(), FlopCounterMode(display=False) as c:
        model.eval()(x)
    return c.get_total_flops()


class FunctionalHead(nn.Module):
    """A model with work outside any submodule: a parameter on the root and a functional matmul."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.GELU())
        self.w = nn.Parameter(torch.randn(5, 8))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)
        return F.linear(x, self.w)


# ------------------------------------------------------------------------------------------ dense models
@pytest.mark.parametrize("make, size", [
    (lambda: nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3)), (10,)),
    (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.LazyLinear(7)), (3, 9, 9)),
    (FunctionalHead, (3, 8, 8)),
])
def test_dense_models_equal_flop_counter(make, size):
    torch.manual_seed(0)
    model = make()
    model(torch.randn(1, *size))  # materialise lazy layers
    prof = P.count(model, size)
    assert prof.flops == flop_counter_total(model, torch.randn(1, *size))
    assert prof.params == prof.tensor_params == sum(p.numel() for p in model.parameters())
    assert prof.basis_flops == 0 and prof.elementwise_flops == 0


def test_rows_and_other_row():
    model = FunctionalHead()
    prof = P.count(model, (3, 8, 8), batch_size=2)
    rows = {r.name: r for r in prof.layers}
    # conv 3->8, 3x3, 8x8 out: 2·8·3·9·64 = 27,648 per sample, ×2 samples
    assert rows["body.0"].flops == 2 * 27648
    # conv 8->8 stride 2: 4x4 out: 2·8·8·9·16 = 18,432 per sample
    assert rows["body.3"].flops == 2 * 18432
    # F.linear(8 -> 5) on the root: 2·8·5 = 80 per sample, and w's 40 parameters
    assert rows["<other>"].flops == 2 * 80 and rows["<other>"].params == 40
    assert prof.batch_size == 2 and prof.input_size == (3, 8, 8)


def test_elementwise_counts_activations_and_norms():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.GELU(), nn.Linear(6, 2), nn.SiLU())
    prof = P.count(model, (4,), elementwise=True)
    # matmuls 2·4·6 + 2·6·2 = 72; BatchNorm 4·6 = 24; GELU 14·6 = 84; SiLU 5·2 = 10
    assert prof.dense_flops == 72 and prof.elementwise_flops == 24 + 84 + 10
    assert prof.flops == 72 + 118


def test_inputs_and_errors():
    model = nn.Linear(3, 2)
    assert P.count(model, inputs=torch.randn(4, 3)).flops == 4 * 12
    with pytest.raises(ValueError, match="give input_size"):
        P.count(model)
    with pytest.raises(ValueError, match="convention must be 'kanzoo' or 'kanbefair', got 'pykan'"):
        P.count(model, (3,), convention="pykan")


def test_kanbefair_layer_formulas_by_hand():
    # G=5, K=3: 9·3·(5+4.5) + 2·5 - 2.5·3 + 1 = 256.5 + 10 - 7.5 + 1 = 260 per edge
    # d_in=4, d_out=3: 12·260 = 3120, + silu shortcut 5·4 + 2·4·3 = 44  -> 3164
    assert P.kanbefair_flops(4, 3, 5, 3, "silu") == 3164
    assert P.kanbefair_flops(4, 3, 5, 3, "zero") == 3120
    # G=3, K=2: 18·(3+3) + 6 - 5 + 1 = 110 per edge; 2·2 edges = 440; gelu 14·2 + 2·2·2 = 36
    assert P.kanbefair_flops(2, 2, 3, 2, "gelu") == 476
    # params: d_in·d_out·(G+K+2) + d_out (+ d_in·d_out with a shortcut): 12·10 + 3 + 12 = 135
    assert P.kanbefair_params(4, 3, 5, 3, "silu") == 135
    assert P.kanbefair_params(4, 3, 5, 3, "zero") == 123
    # B-spline activation per scalar: 256.5 + 10 - 7.5 - 1 = 258
    assert P.kanbefair_bspline_act_flops(5, 3) == 258
    # K=1, G=4: 9·(4+1.5) + 8 - 2.5 - 1 = 54
    assert P.kanbefair_bspline_act_flops(4, 1) == 54
    with pytest.raises(ValueError, match="unknown shortcut 'swish'"):
        P.kanbefair_flops(2, 2, shortcut="swish")


def test_kanbefair_totals_and_the_final_layer_overcount():
    # MLP 8-16-4, relu: 2·8·16 + 16 = 272 and 2·16·4 = 128 (no activation on the output)
    assert P.kanbefair_total("mlp", [8, 16, 4]) == (8 * 16 + 16 + 16 * 4 + 4, 272 + 128)
    # as released: the output layer is charged relu (4 FLOPs) too
    assert P.kanbefair_total("mlp", [8, 16, 4], as_released=True)[1] == 400 + 4
    # with BatchNorm, released code also adds 2·4 params and 4·4 FLOPs for a norm the output layer lacks
    p, f = P.kanbefair_total("mlp", [8, 16, 4], batchnorm=True)
    pr, fr = P.kanbefair_total("mlp", [8, 16, 4], batchnorm=True, as_released=True)
    assert (pr - p, fr - f) == (2 * 4, 4 * 4 + 4)
    # BSpline_MLP 8-16-4, G=5 K=3: the released code adds 4 splines (4·258 FLOPs, 4·8 params) on the output
    p, f = P.kanbefair_total("bspline_mlp", [8, 16, 4])
    pr, fr = P.kanbefair_total("bspline_mlp", [8, 16, 4], as_released=True)
    assert (pr - p, fr - f) == (4 * 8, 4 * 258)
    assert p == (8 + 1) * 16 + 16 * 8 + (16 + 1) * 4
    # a KAN has no such bug: the sum of its layers
    assert P.kanbefair_total("kan", [4, 3, 2]) == (135 + P.kanbefair_params(3, 2), 3164 + P.kanbefair_flops(3, 2))


def test_count_reproduces_kanbefair_on_bspline_layers():
    torch.manual_seed(0)
    model = nn.Sequential(
        KANLinear(4, 3, basis="bspline", base_act="silu", norm_layer="none", act_layer="identity"),
        KANLinear(3, 2, basis="bspline", grid_size=3, spline_order=2, base_act="gelu", norm_layer="none",
                  act_layer="identity"),
        KANLinear(2, 2, basis="bspline", use_base=False, norm_layer="none", act_layer="identity"))
    prof = P.count(model, (4,), convention="kanbefair", batch_size=3)
    # layer 0: 3164 (above); layer 1, G=3 K=2 gelu, 3x2: 6·110 + 14·3 + 2·6 = 714; layer 2: 4·260 = 1040
    assert [r.flops for r in prof.layers] == [3 * 3164, 3 * 714, 3 * 1040]
    # params: 135; 6·(3+2+3) + 2 = 50; 4·(5+3+2) + 2 = 42
    assert [r.params for r in prof.layers] == [135, 50, 42]
    assert all(r.formula == "kanbefair" for r in prof.layers)
    # the tensors hold less: (G+K+1)·d_in·d_out without bias = 108, 36, 32
    assert [r.tensor_params for r in prof.layers] == [108, 36, 32]


def test_kanbefair_conv_extrapolation():
    conv = KANConv2d(2, 4, 3, padding=1, basis="bspline", base_act="silu", norm_layer="none", act_layer="identity")
    prof = P.count(conv, (2, 5, 5), convention="kanbefair")
    # per output position: d_in = 2·9 = 18, d_out = 4: 72·260 + 5·18 + 2·72 = 18954; 25 positions
    assert prof.flops == 25 * 18954
    assert prof.params == 72 * 11 + 4


def test_count_macs_of_a_plain_conv():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    macs, per_op = P.count_macs(model.to("meta"), (3, 5, 5))
    assert macs == 4 * 3 * 9 * 25 and per_op == {"convolution": 2 * macs}


# ------------------------------------------------------------------------------------- kanzoo formulas
def test_kanzoo_basis_formulas_by_hand():
    # B-spline G=5 K=3: order 0 3·(5+6) = 33; levels 7·(10+9+8) = 189
    assert P.bspline_flops(5, 3) == 222
    assert P.bspline_flops(3, 1) == 3 * 5 + 7 * 4
    assert P.chebyshev_flops(3) == 6 + 3 * 2
    assert P.gram_flops(3) == 6 + 3 * 2 + 5 * 3
    assert P.legendre_flops(3) == 4 + 4 * 2
    assert P.jacobi_flops(3) == 6 + 1 + 4 * 2        # P_1 = 2t; a = b: no B_i term
    assert P.jacobi_flops(3, a=2.0, b=0.5) == 6 + 2 + 5 * 2
    assert P.bernstein_flops(3) == 9 + 4 * 2
    assert P.rbf_flops(8) == 40
    assert P.relu_flops(5, 3) == 56
    assert P.wavelet_flops(4, "mexican_hat") == 4 * 8
    assert P.rswaf_flops(8) == 8 * 10               # subtract, scale, tanh 6, square, 1 - ·
    assert P.rational_flops((5, 4)) == 5 * 2 + 1 + 4 * 2 + 1   # Horner P, |x|, Horner Q with 1 +, divide
    assert P.basis_flops("gram", degree=5) == 6 + 12 + 25
    with pytest.raises(ValueError, match="no FLOP formula for basis 'splinez'"):
        P.basis_flops("splinez")


@pytest.mark.parametrize("basis, kw, per_scalar", [
    ("bspline", {}, 222), ("gram", {"degree": 3}, 27), ("chebyshev", {"degree": 4}, 15), ("rbf", {}, 40),
    ("wavelet", {}, 32),
])
def test_kan_layers_are_dense_plus_basis(basis, kw, per_scalar):
    layer = KANConv2d(3, 5, 3, padding=1, basis=basis, **kw)
    prof = P.count(layer, (3, 6, 6))
    f = layer.num_basis + (layer.weight is not None)
    # the conv over (F+base)·C_in stacked channels, 6x6 output, plus the basis at every input scalar
    assert prof.dense_flops == 2 * 5 * 3 * f * 9 * 36
    assert prof.basis_flops == per_scalar * 3 * 36
    lin = KANLinear(6, 4, basis=basis, **kw)
    prof = P.count(lin, (2, 6))
    assert prof.flops == 2 * P.kan_linear_flops(6, 4, basis, use_base=lin.weight is not None, **kw)
    assert prof.params == sum(p.numel() for p in lin.parameters())


def test_selectable_layer_counts_members_and_mixing():
    layer = SelectableKANLinear(4, 3, pool=("gram", "bspline"))
    prof = P.count(layer, (4,))
    # gram: 2·4·5·3 = 120 + 27·4; bspline: 2·4·9·3 = 216 + 222·4; mixing (2·2-1)·3
    assert prof.flops == 120 + 108 + 216 + 888 + 9
    assert len(prof.layers) == 1 and prof.layers[0].formula == "measured+basis+mixing"


def test_zoo_model_on_meta():
    import kanzoo
    model = kanzoo.create_model("simple_conv_kagn", device="meta", width_scale=0.25)
    prof = P.count(model, (3, 32, 32))
    assert prof.dense_flops == 2 * P.count_macs(model, (3, 32, 32))[0]
    assert prof.basis_flops > 0 and "total" in prof.table()


# ---------------------------------------------------------------------------------------------- match
def mlp(width, d_in=16, d_out=4):
    return nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, d_out))


@pytest.mark.parametrize("by", ["params", "flops"])
def test_match_hits_the_budget_within_one_width_step(by):
    kan = nn.Sequential(KANLinear(16, 8, basis="bspline"), KANLinear(8, 4, basis="bspline"))
    target = getattr(P.count(kan, (16,)), by)
    res = P.match(kan, mlp, by=by, input_size=(16,))
    assert res.target == target
    # brute force: the budget of every width, then the closest one
    budgets = {w: getattr(P.count(mlp(w), (16,)), by) for w in range(1, 400)}
    best = min(budgets, key=lambda w: (abs(budgets[w] - target), w))
    assert res.width == best and res.budget == budgets[best]
    lo, hi = res.lower, res.upper
    assert lo[1] <= target <= hi[1] and hi[0] - lo[0] <= 1
    # by hand for params: MLP 16-w-4 has 21w + 4 parameters
    if by == "params":
        assert budgets[res.width] == 21 * res.width + 4


def test_match_cnn_channels_with_step():
    def cnn(w):
        return nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(w, 10))
    res = P.match(None, cnn, by="flops", input_size=(3, 8, 8), target=200_000, min_width=4, step=4)
    assert res.width % 4 == 0
    assert res.lower[1] <= 200_000 <= res.upper[1] and res.upper[0] - res.lower[0] <= 4
    # conv 2·w·27·64 + head 2·w·10 = 3476·w: 200000/3476 = 57.5 -> 56 (194,656) vs 60 (208,560)
    assert res.width == 56 and res.budget == 3476 * 56


def test_match_errors():
    with pytest.raises(ValueError, match=r"narrowest model \(width 50\) already has params="):
        P.match(None, mlp, target=100, min_width=50, input_size=(16,))
    with pytest.raises(ValueError, match="raise max_width"):
        P.match(None, mlp, target=10**7, max_width=64, input_size=(16,))
    with pytest.raises(ValueError, match="by must be 'params' or 'flops'"):
        P.match(None, mlp, by="macs", target=10)


def test_group_rational_is_counted_as_basis_evaluation():
    """A KAT's rational activations are its KAN functions: 20 FLOPs per element they see at order (5, 4)."""
    import kanzoo
    model = kanzoo.create_model("kat_tiny_patch16_224", img_size=32, patch_size=8, depth=2)
    prof = P.count(model, (3, 32, 32))
    tokens, dim, hidden = 17, 192, 768  # 16 patches + cls; act1 sees dim, act2 sees the hidden width
    assert prof.basis_flops == 2 * 20 * tokens * (dim + hidden)
