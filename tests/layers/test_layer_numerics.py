"""Gradients (torch.autograd.gradcheck in float64) through every basis and layer, and each basis's values
checked against closed forms computed independently here (numpy / scipy / direct recursions)."""
import math

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev as npcheb
from numpy.polynomial import legendre as npleg
from torch.func import functional_call

from kanzoo.layers import (
    BernsteinBasis,
    BottleneckKANConvNd,
    BSplineBasis,
    ChebyshevBasis,
    GramBasis,
    JacobiBasis,
    KANConvNd,
    LegendreBasis,
    RBFBasis,
    ReLUBasis,
    WaveletBasis,
    create_basis,
)
from tests.support.kan_layer_cases import BASES, perturb_, single_thread, small_kwargs

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)

try:
    from scipy.special import eval_jacobi
except ImportError:  # pragma: no cover - scipy is optional
    eval_jacobi = None

F64 = torch.float64


def kink_points(layer):
    """Input values where a layer's basis is not smooth (B-spline knots, ReLU-KAN phases)."""
    basis = layer.basis
    if isinstance(basis, BSplineBasis):
        return basis.grid.double().flatten()
    if isinstance(basis, ReLUBasis):
        return torch.cat([basis.phase_low.detach().flatten(), basis.phase_high.detach().flatten()]).double()
    return torch.empty(0, dtype=F64)


def smooth_input(layer, shape, gen, margin=0.02):
    """Random inputs at least ``margin`` away from every kink of the basis (gradcheck steps are 1e-6)."""
    kinks = kink_points(layer)
    x = torch.empty(shape, dtype=F64).uniform_(-1.6, 1.6, generator=gen)
    for _ in range(100):
        if kinks.numel() == 0:
            break
        bad = (x.unsqueeze(-1) - kinks).abs().min(-1).values < margin
        if not bad.any():
            break
        x[bad] = torch.empty(int(bad.sum()), dtype=F64).uniform_(-1.6, 1.6, generator=gen)
    if kinks.numel():
        assert ((x.unsqueeze(-1) - kinks).abs().min(-1).values >= margin).all()
    return x


def check_away_from_output_kinks(layer, x):
    """The output activation (PReLU/ReLU for some bases) must not sit on its kink at 0 either."""
    seen = {}
    handle = layer.act.register_forward_hook(lambda m, inp, out: seen.setdefault("pre", inp[0].detach()))
    with torch.no_grad():
        layer(x)
    handle.remove()
    if isinstance(layer.act, (torch.nn.PReLU, torch.nn.ReLU)):
        assert seen["pre"].abs().min() > 1e-4


def layer_gradcheck(layer, x):
    """gradcheck of the layer w.r.t. its input and every trainable parameter together."""
    names = [n for n, p in layer.named_parameters() if p.requires_grad]
    params = [p.detach().clone().requires_grad_(True) for n, p in layer.named_parameters() if p.requires_grad]
    buffers = dict(layer.named_buffers())

    def f(inp, *ps):
        return functional_call(layer, {**dict(zip(names, ps)), **buffers}, (inp,))

    x = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-5, rtol=1e-4)
    # not a vacuous check: the output really depends on the input and on the basis kernels
    out = f(x, *params)
    grads = torch.autograd.grad((out * torch.randn_like(out)).sum(), [x, *params], allow_unused=True)
    assert grads[0] is not None and grads[0].abs().max() > 1e-8
    return names


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("norm", ["none", "default"])
def test_gradcheck_layer(basis, norm):
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    kw = {} if norm == "default" else {"norm_layer": "none"}
    layer = KANConvNd(2, 2, 3, padding=1, ndim=1, basis=basis, dtype=F64, **kw, **small_kwargs(basis))
    perturb_(layer, gen).eval()
    x = smooth_input(layer, (2, 2, 4), gen)
    check_away_from_output_kinks(layer, x)
    names = layer_gradcheck(layer, x)
    assert "basis_weight" in names
    # the basis's own learnable parameters are among those checked
    expect = {"gram": ["basis.beta_weights"], "relu": ["basis.phase_low", "basis.phase_high"],
              "wavelet": ["basis.translation", "basis.scale"]}.get(basis, [])
    assert set(expect) <= set(names)


@pytest.mark.parametrize("basis", ["gram", "bspline", "relu", "legendre"])
def test_gradcheck_layer_2d_grouped_strided(basis):
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    layer = KANConvNd(4, 2, 2, stride=2, padding=1, dilation=1, groups=2, ndim=2, basis=basis, dtype=F64,
                      norm_layer="none", **small_kwargs(basis))
    perturb_(layer, gen).eval()
    x = smooth_input(layer, (1, 4, 3, 3), gen)
    check_away_from_output_kinks(layer, x)
    layer_gradcheck(layer, x)


@pytest.mark.parametrize("spline_order", [1, 3])
def test_gradcheck_bspline_orders(spline_order):
    """Order 1 (hat functions) is only piecewise linear: the inputs avoid the knots, and the check still
    sees the slope of every hat that the inputs fall in."""
    gen = torch.Generator().manual_seed(3)
    layer = KANConvNd(2, 2, 1, ndim=1, basis="bspline", grid_size=4, spline_order=spline_order, dtype=F64,
                      norm_layer="none", act_layer="identity")
    perturb_(layer, gen).eval()
    x = smooth_input(layer, (1, 2, 6), gen)
    layer_gradcheck(layer, x)


@pytest.mark.parametrize("basis", ["gram", "relu", "wavelet"])
def test_gradcheck_bottleneck(basis):
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    layer = BottleneckKANConvNd(4, 4, 3, padding=1, ndim=1, basis=basis, dim_reduction=2.0, min_internal=2,
                                dtype=F64, norm_layer="none", **small_kwargs(basis))
    perturb_(layer, gen).eval()
    x = torch.randn(1, 4, 4, dtype=F64, generator=gen)
    # the basis sees the squeezed input z = W_in * x: it must stay away from ReLU-KAN's kinks too
    seen = {}
    handle = layer.basis.register_forward_pre_hook(lambda m, args: seen.setdefault("z", args[0].detach()))
    with torch.no_grad():
        layer(x)
    handle.remove()
    kinks = kink_points(layer)
    if kinks.numel():
        assert (seen["z"].unsqueeze(-1) - kinks).abs().min() > 1e-3
    layer_gradcheck(layer, x)


@pytest.mark.parametrize("basis", BASES)
def test_gradcheck_basis_direct(basis):
    """The basis module alone, w.r.t. input and its own parameters (prefix path included)."""
    gen = torch.Generator().manual_seed(5)
    mod = perturb_(create_basis(basis, 2, dtype=F64, **small_kwargs(basis)), gen)

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.basis = mod
            self.act = torch.nn.Identity()

        def forward(self, v):
            return self.basis(v, v * v)

    holder = Holder()
    x = smooth_input(holder, (2, 2, 3), gen)
    layer_gradcheck(holder, x)


# --------------------------------------------------------------------------------------------------------
# values against closed forms


def _grid(n=41, lo=-2.5, hi=2.5):
    return torch.linspace(lo, hi, n, dtype=F64).view(1, 1, n)


@pytest.mark.parametrize("degree", [0, 1, 2, 5])
def test_chebyshev_closed_form(degree):
    x = _grid()
    out = ChebyshevBasis(degree)(x)[0, 0].numpy()
    t = np.tanh(x.numpy().ravel())
    for k in range(degree + 1):
        np.testing.assert_allclose(out[k], npcheb.chebval(t, np.eye(degree + 1)[k]), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out[k], np.cos(k * np.arccos(t)), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("degree", [0, 1, 2, 6])
def test_legendre_closed_form(degree):
    x = torch.randn(2, 4, 3, 5, dtype=F64)
    basis = LegendreBasis(degree, groups=2)
    out = basis(x).numpy()
    xn = x.numpy()
    for n in range(2):
        for g in range(2):
            chunk = xn[n, 2 * g:2 * g + 2]
            xhat = 2.0 * (chunk - chunk.min()) / (chunk.max() - chunk.min()) - 1.0
            for k in range(degree + 1):
                ref = npleg.legval(xhat, np.eye(degree + 1)[k])
                np.testing.assert_allclose(out[n, 2 * g:2 * g + 2, k], ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("a,b", [(1.0, 1.0), (0.5, 1.5), (-0.5, 2.0), (0.0, 0.0)])
def test_jacobi_closed_form(a, b):
    degree = 5
    x = _grid()
    out = JacobiBasis(degree, a=a, b=b)(x)[0, 0].numpy()
    t = np.tanh(x.numpy().ravel())
    for k in range(degree + 1):
        if eval_jacobi is not None:
            ref = eval_jacobi(k, a, b, t)
        else:  # explicit sum: P_n^(a,b)(t) = Σ_s C(n+a, n-s) C(n+b, s) ((t-1)/2)^s ((t+1)/2)^(n-s)
            def gbin(u, v):
                return math.gamma(u + 1) / (math.gamma(v + 1) * math.gamma(u - v + 1))
            ref = sum(gbin(k + a, k - s) * gbin(k + b, s) * ((t - 1) / 2) ** s * ((t + 1) / 2) ** (k - s)
                      for s in range(k + 1))
        np.testing.assert_allclose(out[k], ref, rtol=1e-10, atol=1e-10)


def test_jacobi_a_b_zero_is_legendre():
    x = _grid()
    out = JacobiBasis(4, a=0.0, b=0.0)(x)[0, 0].numpy()
    t = np.tanh(x.numpy().ravel())
    for k in range(5):
        np.testing.assert_allclose(out[k], npleg.legval(t, np.eye(5)[k]), rtol=1e-10, atol=1e-12)


def test_gram_coefficients_formula():
    from fractions import Fraction

    from kanzoo.layers.bases.gram import gram_coefficients
    coef = gram_coefficients(8)
    assert coef[:2] == [0.0, 0.0]
    for i in range(2, 9):
        exact = Fraction((2 * i - 1) * (i - 1) ** 2 * (4 * (i - 1) ** 2 - 1), i * i)
        assert coef[i] == pytest.approx(float(exact), rel=1e-14)


def test_gram_with_legendre_betas_gives_monic_legendre():
    """With c_i·β_{i-1} = (i-1)²/(4(i-1)²-1) the Gram recurrence is the monic Legendre recurrence, so
    P_n(t) = 2^n (n!)² / (2n)! · Legendre_n(t)."""
    from kanzoo.layers.bases.gram import gram_coefficients
    degree = 6
    basis = GramBasis(degree, act_layer="identity", dtype=F64)
    coef = gram_coefficients(degree)
    with torch.no_grad():
        for i in range(2, degree + 1):
            basis.beta_weights[i - 1] = (i - 1) ** 2 / (4.0 * (i - 1) ** 2 - 1.0) / coef[i]
    x = _grid()
    out = basis(x)[0, 0].detach().numpy()
    t = np.tanh(x.numpy().ravel())
    for n in range(degree + 1):
        monic = 2.0 ** n * math.factorial(n) ** 2 / math.factorial(2 * n)
        np.testing.assert_allclose(out[n], monic * npleg.legval(t, np.eye(degree + 1)[n]), rtol=1e-9, atol=1e-12)


def test_gram_recurrence_and_activation_with_random_betas():
    """Gram polynomials built as numpy polynomials (exact c_i from the paper's formula) through SiLU."""
    degree = 5
    torch.manual_seed(0)
    basis = GramBasis(degree, dtype=F64)
    with torch.no_grad():
        basis.beta_weights.normal_(0.0, 0.05)
    beta = basis.beta_weights.detach().numpy()
    x = _grid()
    out = basis(x)[0, 0].detach().numpy()
    t = np.tanh(x.numpy().ravel())
    polys = [np.polynomial.Polynomial([1.0]), np.polynomial.Polynomial([0.0, 1.0])]
    for i in range(2, degree + 1):
        c = (2 * i - 1) * (i - 1) ** 2 * (4 * (i - 1) ** 2 - 1) / i ** 2
        polys.append(np.polynomial.Polynomial([0.0, 1.0]) * polys[-1] - c * beta[i - 1] * polys[-2])
    def silu(v):
        return v / (1.0 + np.exp(-v))
    for i in range(degree + 1):
        np.testing.assert_allclose(out[i], silu(polys[i](t)), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("degree", [0, 1, 3, 7])
def test_bernstein_closed_form_and_partition_of_unity(degree):
    x = _grid(61, -8.0, 8.0)
    out = BernsteinBasis(degree)(x)[0, 0].numpy()
    xn = x.numpy().ravel()
    s = 1.0 / (1.0 + np.exp(-xn))
    for k in range(degree + 1):
        ref = math.comb(degree, k) * s ** k * (1.0 - s) ** (degree - k)
        np.testing.assert_allclose(out[k], ref, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(out.sum(0), np.ones_like(xn), rtol=0, atol=1e-12)
    assert (out >= 0).all()


def cox_de_boor(x, knots, j, k):
    """B_{j,k}(x), scalar recursion straight from the definition."""
    if k == 0:
        return 1.0 if knots[j] <= x < knots[j + 1] else 0.0
    left = (x - knots[j]) / (knots[j + k] - knots[j]) * cox_de_boor(x, knots, j, k - 1)
    right = (knots[j + k + 1] - x) / (knots[j + k + 1] - knots[j + 1]) * cox_de_boor(x, knots, j + 1, k - 1)
    return left + right


@pytest.mark.parametrize("grid_size,order,grid_range", [(5, 3, (-1.0, 1.0)), (3, 1, (0.0, 2.0)),
                                                        (4, 2, (-2.0, 1.0)), (2, 0, (-1.0, 1.0))])
def test_bspline_cox_de_boor_and_partition_of_unity(grid_size, order, grid_range):
    lo, hi = grid_range
    h = (hi - lo) / grid_size
    knots = [lo + (i - order) * h for i in range(grid_size + 2 * order + 1)]
    basis = BSplineBasis(grid_size, order, grid_range, dtype=F64)
    assert basis.num_basis == grid_size + order
    np.testing.assert_allclose(basis.grid.numpy(), knots, rtol=0, atol=1e-6)  # float32-rounded knots
    xs = np.linspace(lo - (order + 1.5) * h, hi + (order + 1.5) * h, 97)
    out = basis(torch.tensor(xs, dtype=F64).view(1, 1, -1))[0, 0].numpy()
    ref = np.array([[cox_de_boor(v, knots, j, order) for v in xs] for j in range(grid_size + order)])
    near_knot = np.min(np.abs(xs[:, None] - np.array(knots)[None]), axis=1) < 1e-5
    np.testing.assert_allclose(out[:, ~near_knot], ref[:, ~near_knot], rtol=1e-5, atol=1e-6)
    inside = (xs >= lo) & (xs < hi) & ~near_knot
    assert inside.sum() > 10
    np.testing.assert_allclose(out[:, inside].sum(0), np.ones(inside.sum()), rtol=0, atol=1e-6)
    assert (out > -1e-12).all()
    stored = basis.grid.numpy()  # zero outside [t_0, t_last) of the knots the module actually holds
    outside = (xs < stored[0]) | (xs >= stored[-1])
    assert outside.any() and np.abs(out[:, outside]).max() == 0.0


@pytest.mark.parametrize("grid_size,grid_range", [(8, (-2.0, 2.0)), (3, (0.0, 1.0)), (5, (-1.0, 3.0))])
def test_rbf_closed_form(grid_size, grid_range):
    lo, hi = grid_range
    mu = np.linspace(lo, hi, grid_size)
    h = (hi - lo) / (grid_size - 1)
    x = _grid(31, lo - 1.0, hi + 1.0)
    out = RBFBasis(grid_size, grid_range, dtype=F64)(x)[0, 0].numpy()
    xn = x.numpy().ravel()
    for j in range(grid_size):
        np.testing.assert_allclose(out[j], np.exp(-((xn - mu[j]) / h) ** 2), rtol=1e-6, atol=1e-12)


def test_relu_kan_closed_form_per_channel():
    g, k = 3, 2
    basis = ReLUBasis(2, g=g, k=k, dtype=F64)
    with torch.no_grad():
        basis.phase_low[1] += 0.1  # channel 1 gets its own phases
    x = torch.linspace(-1.5, 1.5, 25, dtype=F64).view(1, 1, -1).expand(1, 2, -1).contiguous()
    out = basis(x)[0].detach().numpy()
    r = 4.0 * g * g / (k + 1) ** 2
    xn = x[0, 0].numpy()
    for c in range(2):
        for j in range(g + k):
            lo_ = (j - k) / g + (0.1 if c == 1 else 0.0)
            hi_ = (j - k) / g + (k + 1) / g
            ref = (r * np.maximum(xn - lo_, 0) * np.maximum(hi_ - xn, 0)) ** 2
            np.testing.assert_allclose(out[c, j], ref, rtol=1e-9, atol=1e-12)
    # each initial bump peaks at exactly 1 at its centre
    centre = torch.tensor([((j - k) / g + (j - k) / g + (k + 1) / g) / 2 for j in range(g + k)], dtype=F64)
    peak = ReLUBasis(1, g=g, k=k, dtype=F64)(centre.view(1, 1, -1))[0, 0].detach()
    torch.testing.assert_close(torch.diagonal(peak), torch.ones(g + k, dtype=F64))


@pytest.mark.parametrize("wavelet_type", ["mexican_hat", "morlet", "dog", "meyer", "shannon"])
def test_wavelet_closed_forms(wavelet_type):
    basis = WaveletBasis(1, num_wavelets=3, wavelet_type=wavelet_type, grid_range=(-1.0, 1.0), dtype=F64)
    x = _grid(41, -3.0, 3.0)
    out = basis(x)[0, 0].detach().numpy()
    xn = x.numpy().ravel()
    for j, tau in enumerate([-1.0, 0.0, 1.0]):
        u = (xn - tau) / 1.0  # scale initialised to the grid spacing, 1.0 here
        if wavelet_type == "mexican_hat":
            ref = 2.0 / (np.sqrt(3.0) * np.pi ** 0.25) * (u ** 2 - 1.0) * np.exp(-u ** 2 / 2)
        elif wavelet_type == "morlet":
            ref = np.exp(-u ** 2 / 2) * np.cos(5.0 * u)
        elif wavelet_type == "dog":
            ref = -u * np.exp(-u ** 2 / 2)
        elif wavelet_type == "shannon":
            ref = np.sinc(u / np.pi)
        else:
            v = np.abs(u)
            def nu(t):
                return t ** 4 * (35 - 84 * t + 70 * t ** 2 - 20 * t ** 3)
            aux = np.where(v <= 0.5, 1.0, np.where(v >= 1.0, 0.0, np.cos(np.pi / 2 * nu(2 * v - 1))))
            ref = np.sin(np.pi * v) * aux
        np.testing.assert_allclose(out[j], ref, rtol=1e-9, atol=1e-12)


def test_bspline_conv_default_is_local_and_equals_the_full_recursion():
    """B-spline layers evaluate locally by default; values and gradients are the full Cox-de Boor recursion's."""
    torch.manual_seed(0)
    layer = KANConvNd(3, 4, 3, padding=1, basis="bspline", dtype=F64)
    assert layer.basis.local and BSplineBasis().local
    full = KANConvNd(3, 4, 3, padding=1, basis="bspline", local=False, dtype=F64)
    full.load_state_dict(layer.state_dict())
    x = torch.randn(2, 3, 6, 6, dtype=F64) * 1.5  # some inputs outside the knots
    x.view(-1)[:3] = layer.basis.grid[[0, 4, -1]].to(F64)  # on knots
    outs = []
    for m in (layer, full):
        xa = x.clone().requires_grad_(True)
        y = m(xa)
        outs.append([y] + list(torch.autograd.grad(y.square().sum(), [xa] + list(m.parameters()))))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
