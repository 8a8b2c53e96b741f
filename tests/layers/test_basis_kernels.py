"""The compiled basis kernels (kanzoo.layers.bases.kernels): RSWAF (MLP-KAN's FasterKAN experts), the local
B-spline (U-KAN), the recurrence bases, Bernstein, RBF, ReLU-KAN and wavelet. Same values and gradients as the
eager forms, the eager paths under scripting, tracing and dispatch modes, the switch and the auto fallback."""
import warnings

import pytest
import torch

from kanzoo.layers import (
    BernsteinBasis,
    ChebyshevBasis,
    FasterKAN,
    GramBasis,
    JacobiBasis,
    LegendreBasis,
    RBFBasis,
    ReLUBasis,
    RSWAFBasis,
    SplineKANLinear,
    WaveletBasis,
)
from kanzoo.layers.bases import bspline as BS
from kanzoo.layers.bases import kernels as K
from kanzoo.layers.bases import rswaf as R
from kanzoo.layers.bases.bspline import BSplineBasis
from kanzoo.layers.bases.wavelet import WAVELETS


@pytest.fixture(autouse=True)
def _reset_switch(monkeypatch):
    monkeypatch.delenv("KANZOO_BASIS_KERNEL", raising=False)
    monkeypatch.setitem(K._state, "default", None)
    monkeypatch.setitem(K._state, "compile_failed", None)
    yield


def _record_compiles(monkeypatch):
    calls = []
    real = K.compiled
    names = {R.KERNEL.values: "fwd", R.KERNEL.values_with_prefix: "fwd_prefix", R.KERNEL.grad_input: "bwd",
             BS.KERNEL.values: "bs_fwd", BS.KERNEL.values_with_prefix: "bs_fwd_prefix", BS.KERNEL.grad_input: "bs_bwd"}
    monkeypatch.setattr(K, "compiled", lambda fn: calls.append(names.get(fn, fn)) or real(fn))
    return calls


def _run(basis, kernel, x, prefix, g):
    K.set_basis_kernel(kernel)
    xa = x.clone().requires_grad_(True)
    pa = None if prefix is None else prefix.clone().requires_grad_(True)
    y = basis(xa, pa)
    (y * g).sum().backward()
    with torch.no_grad():
        y0 = basis(x, prefix)
    return y.detach(), y0, xa.grad, None if pa is None else pa.grad


def _compiled_vs_eager(basis, calls, x, prefix, kernel_prefix):
    """Runs ``basis`` eagerly, then compiled (two forwards, one backward), checks the two agree, and returns
    ``(compiled output, grad of x, output grad, tolerances)``."""
    dtype = x.dtype
    out_shape = list(x.shape)
    out_shape.insert(2, basis.num_basis + int(prefix is not None))
    g = torch.randn(out_shape, dtype=dtype)
    ye, ye0, gxe, gpe = _run(basis, "eager", x, prefix, g)
    assert calls == []
    yc, yc0, gxc, gpc = _run(basis, "compiled", x, prefix, g)
    fwd = kernel_prefix + ("fwd_prefix" if prefix is not None else "fwd")
    assert calls.count(fwd) == 2 and calls.count(kernel_prefix + "bwd") == 1 and len(calls) == 3
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
    assert yc.shape == torch.Size(out_shape)
    torch.testing.assert_close(yc, ye, **tol)
    torch.testing.assert_close(yc0, ye0, **tol)
    torch.testing.assert_close(gxc, gxe, **tol)
    if prefix is not None:
        torch.testing.assert_close(gpc, gpe, rtol=0, atol=0)
    return yc, gxc, g, tol


# each combination compiles afresh (seconds each on 2 cores): a covering set, not the full product
COMBOS = [(torch.float32, (300, 48), True), (torch.float64, (4, 24, 9, 11), False),
          (torch.float32, (4, 24, 9, 11), False)]


@pytest.mark.parametrize("dtype,shape,with_prefix", COMBOS)
def test_compiled_matches_eager(monkeypatch, dtype, shape, with_prefix):
    calls = _record_compiles(monkeypatch)
    torch.manual_seed(0)
    basis = RSWAFBasis(grid_size=8, grid_range=(-2.0, 2.0), denominator=0.33)
    x = (torch.randn(shape, dtype=dtype) * 2.5)
    x.view(-1)[:3] = torch.tensor([0.0, 40.0, -40.0], dtype=dtype)  # far outside the grid: clamped exponent
    prefix = torch.randn(shape, dtype=dtype) if with_prefix else None
    yc, _, _, tol = _compiled_vs_eager(basis, calls, x, prefix, "")
    # and the tanh formula (TorchScript, tracing): 1 - tanh²
    t = torch.tanh((x.unsqueeze(2) - basis.grid.to(dtype).view([1, 1, -1] + [1] * (x.dim() - 2))) / 0.33)
    torch.testing.assert_close(yc.narrow(2, int(with_prefix), 8), 1.0 - t * t, **tol)


@pytest.mark.parametrize("make", [RSWAFBasis, lambda: BSplineBasis(5, 3, local=True)], ids=["rswaf", "bspline"])
def test_backward_saves_only_the_input(make):
    K.set_basis_kernel("compiled")
    basis = make()
    x = torch.randn(64, 32, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        basis(x).sum()
    assert saved == [x.numel()], saved


def test_auto_runs_small_inputs_eagerly(monkeypatch):
    calls = _record_compiles(monkeypatch)
    basis = RSWAFBasis()
    basis(torch.randn(4, 16))  # auto: 512 values
    assert calls == []
    basis(torch.randn(K.MIN_COMPILED_NUMEL // 16, 2))
    assert calls == ["fwd"]


def test_switch(monkeypatch):
    calls = _record_compiles(monkeypatch)
    x = torch.randn(4, 16)
    monkeypatch.setenv("KANZOO_BASIS_KERNEL", "compiled")
    assert K.get_basis_kernel() == "compiled"
    RSWAFBasis()(x)
    assert calls == ["fwd"]
    K.set_basis_kernel("eager")
    assert K.get_basis_kernel() == "eager"
    RSWAFBasis()(torch.randn(K.MIN_COMPILED_NUMEL, 2))
    assert calls == ["fwd"]
    K.set_basis_kernel(None)
    monkeypatch.setenv("KANZOO_BASIS_KERNEL", "nope")
    with pytest.raises(ValueError, match="KANZOO_BASIS_KERNEL='nope'"):
        K.get_basis_kernel()
    with pytest.raises(ValueError, match="kernel must be one of"):
        K.set_basis_kernel("triton")


def test_auto_falls_back_when_the_compiler_fails(monkeypatch):
    def broken(fn):
        def run(*args):
            raise RuntimeError("no C++ compiler found")
        return run
    monkeypatch.setattr(K, "compiled", broken)
    basis = RSWAFBasis()
    x = torch.randn(K.MIN_COMPILED_NUMEL // 8, 2)
    K.set_basis_kernel("eager")
    ref = basis(x)
    K.set_basis_kernel(None)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*no C\\+\\+ compiler found.*eager basis"):
        y = basis(x)
    torch.testing.assert_close(y, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xr = x.clone().requires_grad_(True)
        basis(xr).sum().backward()  # warned once; eager from now on
    K.set_basis_kernel("compiled")
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        basis(x)


def _net():
    torch.manual_seed(0)
    return FasterKAN([16, 12, 16]).eval()


def test_script_and_trace_take_the_eager_formula(monkeypatch):
    calls = _record_compiles(monkeypatch)
    K.set_basis_kernel("compiled")
    net = _net()
    x = torch.randn(64, 16)
    with torch.no_grad():
        ref = net(x)
    assert calls == ["fwd", "fwd"]
    scripted = torch.jit.script(net)
    traced = torch.jit.trace(net, x, check_trace=False)
    assert calls == ["fwd", "fwd"]
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(traced(x), ref, rtol=1e-5, atol=1e-6)
    assert calls == ["fwd", "fwd"]  # neither scripting, tracing nor running them used the kernel


def test_dispatch_modes_and_meta_take_the_formula(monkeypatch):
    from torch.utils.flop_counter import FlopCounterMode
    calls = _record_compiles(monkeypatch)
    K.set_basis_kernel("compiled")
    net = _net()
    with FlopCounterMode(display=False):
        net(torch.randn(64, 16))
    net.to("meta")(torch.randn(64, 16, device="meta"))
    assert calls == []


def test_half_precision_uses_the_formula(monkeypatch):
    calls = _record_compiles(monkeypatch)
    K.set_basis_kernel("compiled")
    y = RSWAFBasis()(torch.randn(8, 4, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16 and calls == []


# ------------------------------------------------------------------------------------------------ B-spline
@pytest.mark.parametrize("dtype,shape,with_prefix,f32_differences",
                         [(torch.float64, (300, 48), True, True), (torch.float32, (4, 24, 9, 11), False, False),
                          (torch.float64, (4, 24, 9, 11), False, False)])
def test_bspline_compiled_matches_eager(monkeypatch, dtype, shape, with_prefix, f32_differences):
    calls = _record_compiles(monkeypatch)
    torch.manual_seed(0)
    basis = BSplineBasis(5, 3, (-1.0, 1.0), knot_rule="arange", float32_differences=f32_differences, local=True)
    full = BSplineBasis(5, 3, (-1.0, 1.0), knot_rule="arange", float32_differences=f32_differences)
    x = torch.randn(shape, dtype=dtype) * 1.5  # some inputs outside the knots
    x.view(-1)[:2] = basis.grid[[0, -1]].to(dtype)  # the first and the last knot
    prefix = torch.randn(shape, dtype=dtype) if with_prefix else None
    yc, gxc, g, tol = _compiled_vs_eager(basis, calls, x, prefix, "bs_")
    # the full recursion with plain autograd (the reference's formula)
    K.set_basis_kernel("eager")
    xf = x.clone().requires_grad_(True)
    (full(xf) * g.narrow(2, int(with_prefix), 8)).sum().backward()
    torch.testing.assert_close(yc.narrow(2, int(with_prefix), 8), full(x).detach(), **tol)
    torch.testing.assert_close(gxc, xf.grad, **tol)


def test_spline_linear_script_and_trace_take_the_eager_path(monkeypatch):
    calls = _record_compiles(monkeypatch)
    K.set_basis_kernel("compiled")
    torch.manual_seed(0)
    layer = SplineKANLinear(16, 12).eval()
    x = torch.randn(64, 16)
    with torch.no_grad():
        ref = layer(x)
    assert calls == ["bs_fwd"]
    scripted = torch.jit.script(layer)
    traced = torch.jit.trace(layer, x, check_trace=False)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(traced(x), ref, rtol=1e-5, atol=1e-6)
    assert calls == ["bs_fwd"]


# ------------------------------------------------------------------------------------------------ other bases
def _uncompiled_kernels(monkeypatch):
    """Runs the kernel functions without torch.compile (the same autograd functions and dispatch, no compile time)
    and records which ran."""
    ran = []
    monkeypatch.setattr(K, "compiled", lambda fn: ran.append(fn) or fn)
    return ran


def _spread(basis):
    """Moves the learnable parameters off their regular initial values (scales, translations, phases)."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in basis.named_parameters():
            noise = torch.rand(p.shape, generator=gen, dtype=p.dtype)
            p.mul_(0.6 + noise) if name == "scale" else p.add_(0.2 * (noise - 0.5))
    return basis


KERNEL_BASES = {
    "chebyshev": lambda: ChebyshevBasis(4),
    "gram": lambda: GramBasis(4),
    "legendre": lambda: LegendreBasis(3, groups=2),
    "jacobi": lambda: JacobiBasis(3),
    "bernstein": lambda: BernsteinBasis(4),
    "rbf": lambda: RBFBasis(6),
    "relu": lambda: ReLUBasis(24, g=4, k=2),
    **{f"wavelet_{w}": (lambda w=w: WaveletBasis(24, num_wavelets=3, wavelet_type=w)) for w in WAVELETS},
}


def _basis_run(basis, x, prefix, g):
    basis.zero_grad(set_to_none=True)
    xa = x.clone().requires_grad_(True)
    pa = None if prefix is None else prefix.clone().requires_grad_(True)
    y = basis(xa, pa)
    (y * g).sum().backward()
    with torch.no_grad():
        y0 = basis(x, prefix)
    grads = [xa.grad] + ([] if pa is None else [pa.grad]) + [p.grad for p in basis.parameters() if p.requires_grad]
    return [y.detach(), y0] + grads


@pytest.mark.parametrize("with_prefix", [True, False], ids=["prefix", "plain"])
@pytest.mark.parametrize("name", KERNEL_BASES)
def test_kernel_formulas_match_the_eager_basis(monkeypatch, name, with_prefix):
    """The kernels' values and hand-written derivatives (input and parameters) against the eager formula under
    autograd, float64."""
    ran = _uncompiled_kernels(monkeypatch)
    torch.manual_seed(0)
    basis = _spread(KERNEL_BASES[name]().double())
    x = torch.randn(3, 24, 5, 7, dtype=torch.float64) * 1.5
    prefix = torch.randn_like(x) if with_prefix else None
    g = torch.randn(3, 24, basis.num_basis + int(with_prefix), 5, 7, dtype=torch.float64)
    K.set_basis_kernel("eager")
    ref = _basis_run(basis, x, prefix, g)
    assert ran == []
    K.set_basis_kernel("compiled")
    out = _basis_run(basis, x, prefix, g)
    assert len(ran) == 3  # forward with grad, backward, forward without grad
    assert len(out) == len(ref) and all(t is not None for t in out)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_param_kernel_backward_keeps_only_x_and_the_parameters(monkeypatch):
    _uncompiled_kernels(monkeypatch)
    K.set_basis_kernel("compiled")
    basis = ReLUBasis(16, g=3, k=2)
    x = torch.randn(4, 16, 33, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        basis(x)
    assert saved == [x.shape, basis.phase_low.shape, basis.phase_high.shape]


@pytest.mark.parametrize("name", ["chebyshev", "gram", "bernstein", "rbf", "relu", "wavelet_meyer"])
def test_other_bases_script_and_trace_take_the_eager_formula(monkeypatch, name):
    ran = _uncompiled_kernels(monkeypatch)
    K.set_basis_kernel("compiled")
    basis = _spread(KERNEL_BASES[name]())
    x = torch.randn(2, 24, 6)
    scripted = torch.jit.script(basis)
    traced = torch.jit.trace(basis, x, check_trace=False)
    with torch.no_grad():
        ys, yt = scripted(x), traced(x)
    assert ran == []
    with torch.no_grad():
        y = basis(x)
    assert len(ran) == 1
    torch.testing.assert_close(ys, y, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(yt, y, rtol=1e-5, atol=1e-6)
