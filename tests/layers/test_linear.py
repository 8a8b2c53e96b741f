"""KAN linear layers: shapes, dtypes, gradients, errors, TorchScript, and the linear torch-conv-kan conversion."""
import warnings

import pytest
import torch
from torch import nn

from kanzoo.compat.tck import from_reference
from kanzoo.layers import BottleneckKANLinear, KANLinear, WaveletKANLinear
from kanzoo.layers.bases.base import cat_basis
from kanzoo.layers.bases.wavelet import wavelet

BASES = {
    "gram": {"degree": 3}, "legendre": {"degree": 2}, "chebyshev": {"degree": 4}, "jacobi": {"degree": 3},
    "bernstein": {"degree": 3}, "bspline": {"grid_size": 4}, "rbf": {}, "relu": {"g": 3, "k": 2},
    "wavelet": {"num_wavelets": 3},
}


def _seeded(module):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module


@pytest.mark.parametrize("basis", sorted(BASES))
def test_leading_dims_match_flattened_batch(basis):
    layer = KANLinear(6, 5, basis=basis, **BASES[basis]).eval()
    x = torch.randn(2, 3, 4, 6)
    y = layer(x)
    assert y.shape == (2, 3, 4, 5)
    torch.testing.assert_close(y, layer(x.reshape(-1, 6)).reshape(2, 3, 4, 5))


@pytest.mark.parametrize("make", [lambda: BottleneckKANLinear(40, 24, degree=2),
                                  lambda: WaveletKANLinear(6, 5, wavelet_type="morlet")])
def test_other_layers_leading_dims(make):
    layer = make().eval()
    x = torch.randn(3, 2, layer.in_features)
    y = layer(x)
    assert y.shape == (3, 2, layer.out_features)
    torch.testing.assert_close(y, layer(x.reshape(6, -1)).reshape(y.shape))


def test_fused_matmul_equals_two_branches():
    layer = _seeded(KANLinear(5, 4, basis="gram", degree=3, bias=True)).double().eval()
    x = torch.randn(7, 5, dtype=torch.float64)
    basis = layer.basis(x)  # (N, in, F)
    pre = (nn.functional.silu(x) @ layer.weight.T + torch.einsum("nif,oif->no", basis, layer.basis_weight)
           + layer.bias)
    torch.testing.assert_close(layer(x), nn.functional.silu(layer.norm(pre)))


def test_defaults_per_basis():
    assert isinstance(KANLinear(4, 3, basis="gram").norm, nn.LayerNorm)
    assert isinstance(KANLinear(4, 3, basis="rbf").norm, nn.Identity)
    assert isinstance(KANLinear(4, 3, basis="wavelet").norm, nn.BatchNorm1d)
    assert KANLinear(4, 3, basis="chebyshev").weight is None
    prelu = KANLinear(4, 3, basis="bspline").act
    assert isinstance(prelu, nn.PReLU) and prelu.weight.shape == (3,)
    assert isinstance(WaveletKANLinear(4, 3).norm, nn.BatchNorm1d)
    assert KANLinear(4, 3, bias=True).bias.shape == (3,)


@pytest.mark.parametrize("in_f,out_f,red,mini,inner", [(6, 5, 8, 16, 5), (40, 24, 2, 8, 20), (256, 512, 8, 16, 64)])
def test_bottleneck_width(in_f, out_f, red, mini, inner):
    layer = BottleneckKANLinear(in_f, out_f, dim_reduction=red, min_internal=mini)
    assert layer.inner_features == inner
    assert layer.basis_weight.shape == (inner, inner, 4)


@pytest.mark.parametrize("make", [lambda **kw: KANLinear(6, 5, basis="bspline", **kw),
                                  lambda **kw: BottleneckKANLinear(6, 5, **kw),
                                  lambda **kw: WaveletKANLinear(6, 5, wavelet_type="shannon", **kw)])
def test_float32_and_float64(make):
    torch.manual_seed(1)
    l32 = make(dtype=torch.float32).eval()
    l64 = make(dtype=torch.float64).eval()
    l64.load_state_dict(l32.state_dict())
    assert all(p.dtype == torch.float64 for p in l64.parameters())
    assert all(b.dtype == torch.float64 for b in l64.buffers() if b.is_floating_point())
    x = torch.randn(4, 6, dtype=torch.float64)
    y32, y64 = l32(x.float()), l64(x)
    assert y32.dtype == torch.float32 and y64.dtype == torch.float64
    torch.testing.assert_close(y32.double(), y64, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("make", [lambda: KANLinear(3, 2, basis="gram", degree=3, bias=True),
                                  lambda: KANLinear(3, 2, basis="bspline", grid_size=3),
                                  lambda: KANLinear(3, 2, basis="chebyshev", degree=3),
                                  lambda: BottleneckKANLinear(3, 2, degree=2),
                                  lambda: WaveletKANLinear(3, 2, wavelet_type="mexican_hat", norm_layer="layer")])
def test_gradcheck_float64(make):
    layer = _seeded(make()).double()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-6)
    params = tuple(p for p in layer.parameters() if p.requires_grad)

    def f(*ps):
        return torch.func.functional_call(layer, dict(zip([n for n, p in layer.named_parameters() if p.requires_grad],
                                                          ps)), (x.detach(),))
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6)


def test_input_errors_name_expected_and_got():
    layer = KANLinear(6, 5)
    with pytest.raises(ValueError, match=r"expects 6 input features in the last dim, got 7"):
        layer(torch.randn(2, 7))
    with pytest.raises(ValueError, match=r"at least 2 dims, got shape \[6\]"):
        layer(torch.randn(6))
    with pytest.raises(ValueError, match=r"BottleneckKANLinear expects 40 input features.*got 6"):
        BottleneckKANLinear(40, 8)(torch.randn(2, 6))
    with pytest.raises(ValueError, match=r"WaveletKANLinear expects 6 input features.*got 5"):
        WaveletKANLinear(6, 3)(torch.randn(2, 5))


def test_argument_errors():
    with pytest.raises(ValueError, match="in_features must be a positive int, got 0"):
        KANLinear(0, 4)
    with pytest.raises(ValueError, match="out_features must be a positive int"):
        KANLinear(4, 2.5)
    with pytest.raises(ValueError, match="needs spatial dims"):
        KANLinear(4, 3, norm_layer="instance")
    with pytest.raises(ValueError, match="dropout must be a probability"):
        KANLinear(4, 3, dropout=1.5)
    with pytest.raises(ValueError, match="dim_reduction must be a number > 0"):
        BottleneckKANLinear(4, 3, dim_reduction=0)
    with pytest.raises(ValueError, match="unknown wavelet_type 'haar'"):
        WaveletKANLinear(4, 3, wavelet_type="haar")
    with pytest.raises(ValueError, match="unknown basis"):
        KANLinear(4, 3, basis="fourier")


@pytest.mark.parametrize("basis", ["gram", "bspline"])
def test_torchscript(basis):
    layer = _seeded(KANLinear(6, 5, basis=basis, **BASES[basis])).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(layer)
    x = torch.randn(2, 3, 6)
    torch.testing.assert_close(scripted(x), layer(x))
    with pytest.raises(Exception, match="expects 6 input features"):
        scripted(torch.randn(2, 4))


def test_wavelet_linear_shannon_window_and_pairwise_math():
    layer = _seeded(WaveletKANLinear(5, 3, wavelet_type="shannon", norm_layer="none")).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    u = (x[:, None, :] - layer.translation) / layer.scale
    c = torch.arange(5, dtype=torch.float64)
    window = 0.54 - 0.46 * torch.cos(2 * torch.pi * c / 4)
    expected = (torch.sin(u) / u * window * layer.wavelet_weight).sum(-1) + nn.functional.silu(x) @ layer.weight.T
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(wavelet(torch.zeros(1), "shannon"), torch.ones(1))


# --- torch-conv-kan linear conversion beyond the golden cases ---

def _golden(name):
    from tests.support.golden import load_case, manifest
    case = {c["name"]: c for c in manifest("tck")["cases"]}[name]
    t, state = load_case("tck", case)
    return case, t, state


def test_single_reference_layer_converts():
    case, t, state = _golden("lin_kagn_d5_gelu")
    layer_state = {k[len("layers.0."):]: v for k, v in state.items()}
    desc = {"ref_class": "GRAMLayer", "ctor_args": [6, 4], "ctor_kwargs": dict(case["ctor_kwargs"])}
    layer = from_reference(desc, layer_state).double().eval()
    assert isinstance(layer, KANLinear) and isinstance(layer.basis.act, nn.GELU)
    with torch.no_grad():
        torch.testing.assert_close(layer(t["input"]), t["output"], atol=1e-9, rtol=1e-7)


def test_network_with_dropout_indices_converts():
    case, t, state = _golden("lin_kagn_d3")
    # with dropout > 0 the reference's Dropout modules take indices: layers.0 -> 1, layers.1 -> 3
    shifted = {k.replace("layers.0.", "layers.1.", 1) if k.startswith("layers.0.") else
               k.replace("layers.1.", "layers.3.", 1): v for k, v in state.items()}
    desc = {"ref_class": "KAGN", "ctor_args": case["ctor_args"], "ctor_kwargs": {**case["ctor_kwargs"], "dropout": 0.1}}
    model = from_reference(desc, shifted).double().eval()
    assert sum(isinstance(m, nn.Dropout) for m in model) == 2
    with torch.no_grad():
        torch.testing.assert_close(model(t["input"]), t["output"], atol=1e-9, rtol=1e-7)


class _OnesBasis(nn.Module):
    """The reference KABN's degenerate 'Bernstein' basis: every function is the constant 1."""

    def __init__(self, num_basis):
        super().__init__()
        self.num_basis = num_basis

    def forward(self, x, prefix=None):
        return cat_basis(torch.ones(x.shape[0], x.shape[1], self.num_basis, dtype=x.dtype), prefix)


def test_kabn_linear_conversion_is_exact_up_to_the_basis():
    case, t, state = _golden("lin_kabn_d3")
    model = from_reference(case, state).double().eval()  # strict load
    x = t["input"]
    with torch.no_grad():
        assert not torch.allclose(model(x), t["output"], atol=1e-6)  # the real Bernstein basis differs
        for layer in model:
            layer.basis = _OnesBasis(layer.num_basis)
        torch.testing.assert_close(model(x), t["output"], atol=1e-9, rtol=1e-7)


def test_unverified_reference_arguments_are_refused():
    with pytest.raises(ValueError, match="base_activation='gelu' is not supported"):
        from_reference({"ref_class": "KALN", "ctor_args": [[4, 3]],
                        "ctor_kwargs": {"base_activation": "torch.nn.GELU"}})
    with pytest.raises(ValueError, match="does not understand: \\['spline_scale'\\]"):
        from_reference({"ref_class": "KAN", "ctor_args": [[4, 3]], "ctor_kwargs": {"spline_scale": 1.0}})
