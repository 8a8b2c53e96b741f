"""Every basis and layer under torch.jit.script, torch.jit.trace and torch.compile gives eager's outputs."""
import warnings

import pytest
import torch

from kanzoo.layers import BottleneckKANConvNd, KANConvNd, WaveletBasis, create_basis
from tests.support.kan_layer_cases import BASES, perturb_, single_thread, small_kwargs

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)

# torch 2.9+ marks torch.jit.script/trace deprecated; kanzoo still supports them for older deployments
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning")

def make_layer(basis, cls=KANConvNd, ndim=2, **kw):
    torch.manual_seed(0)
    layer = cls(4, 6, 3, stride=1, padding=1, groups=2, ndim=ndim, basis=basis, **small_kwargs(basis), **kw)
    return perturb_(layer, torch.Generator().manual_seed(0)).eval()


def inputs(ndim=2, n=2):
    gen = torch.Generator().manual_seed(7)
    return [torch.randn(2, 4, *([5] * ndim), generator=gen) for _ in range(n)]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()  # every layer here runs the same forward code: avoid the recompile limit
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("basis", BASES)
def test_script_basis(basis):
    mod = perturb_(create_basis(basis, 3, **small_kwargs(basis)), torch.Generator().manual_seed(0))
    scripted = torch.jit.script(mod)
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(scripted(x), mod(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(scripted(x, x), mod(x, x), rtol=1e-6, atol=1e-6)
    # and the scripted module is not specialised to the first input's shape or rank
    x1 = torch.randn(1, 3, 7)
    torch.testing.assert_close(scripted(x1), mod(x1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("wavelet_type", ["mexican_hat", "morlet", "dog", "meyer", "shannon"])
def test_script_wavelet_types(wavelet_type):
    mod = WaveletBasis(3, num_wavelets=3, wavelet_type=wavelet_type)
    scripted = torch.jit.script(mod)
    x = 2 * torch.randn(2, 3, 9)
    torch.testing.assert_close(scripted(x), mod(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("basis", BASES)
def test_script_layer(basis):
    layer = make_layer(basis)
    scripted = torch.jit.script(layer)
    for x in inputs():
        torch.testing.assert_close(scripted(x), layer(x), rtol=1e-5, atol=1e-6)


def test_script_bottleneck():
    layer = make_layer("gram", cls=BottleneckKANConvNd, min_internal=2)
    scripted = torch.jit.script(layer)
    for x in inputs():
        torch.testing.assert_close(scripted(x), layer(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("basis", BASES)
def test_trace_layer(basis):
    layer = make_layer(basis, ndim=1)
    x0, x1 = inputs(ndim=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the input-shape checks are python ifs
        traced = torch.jit.trace(layer, x0)
    with torch.no_grad():
        torch.testing.assert_close(traced(x0), layer(x0), rtol=1e-5, atol=1e-6)
        # a second input: the trace recorded the computation, not the first output
        torch.testing.assert_close(traced(x1), layer(x1), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(traced(x0), traced(x1))


def test_trace_bottleneck():
    layer = make_layer("relu", cls=BottleneckKANConvNd, ndim=1, min_internal=2)
    x0, x1 = inputs(ndim=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(layer, x0)
    with torch.no_grad():
        torch.testing.assert_close(traced(x1), layer(x1), rtol=1e-5, atol=1e-6)


def _compare_compiled(layer, compiled, xs, rtol, atol):
    for x in xs:
        xe = x.clone().requires_grad_(True)
        xc = x.clone().requires_grad_(True)
        ye, yc = layer(xe), compiled(xc)
        torch.testing.assert_close(yc, ye, rtol=rtol, atol=atol)
        w = torch.randn_like(ye)
        ge = torch.autograd.grad((ye * w).sum(), [xe, layer.basis_weight])
        gc = torch.autograd.grad((yc * w).sum(), [xc, layer.basis_weight])
        for a, b in zip(gc, ge):
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("basis", BASES)
def test_compile_aot_eager(basis):
    layer = make_layer(basis, ndim=1)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    _compare_compiled(layer, compiled, inputs(ndim=1), rtol=1e-5, atol=1e-6)


def test_compile_bottleneck_aot_eager():
    layer = make_layer("bspline", cls=BottleneckKANConvNd, ndim=1, min_internal=2)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    _compare_compiled(layer, compiled, inputs(ndim=1), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compile_inductor_gram():
    """One real inductor compile (C++ codegen on CPU; ~25 s cold, a few seconds with a warm cache)."""
    layer = make_layer("gram", ndim=2)
    compiled = torch.compile(layer, fullgraph=True)
    _compare_compiled(layer, compiled, inputs(ndim=2), rtol=1e-4, atol=1e-5)
