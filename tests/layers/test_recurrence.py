"""The fused adjoint backward of the three-term recurrence bases equals autograd through the plain path."""
import pytest
import torch

from kanzoo.layers.bases import create_basis

CASES = [("gram", act) for act in ("silu", "gelu", "identity", "relu")] + \
        [("legendre", None), ("chebyshev", None), ("jacobi", None)]


def _zeros_if_none(g, ref):
    return torch.zeros_like(ref) if g is None else g


@pytest.mark.parametrize("name,act", CASES)
@pytest.mark.parametrize("degree", [0, 1, 2, 5])
@pytest.mark.parametrize("with_prefix", [True, False])
def test_fused_backward_matches_autograd(name, act, degree, with_prefix):
    torch.manual_seed(degree)
    kw = dict(degree=degree, **({"act_layer": act} if act else {}))
    basis = create_basis(name, 3, dtype=torch.float64, **kw)
    params = list(basis.parameters())
    with torch.no_grad():
        for p in params:
            p.normal_()
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    prefix = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True) if with_prefix else None
    fused = basis(x, prefix)
    plain = basis.forward_eager(x, prefix)
    torch.testing.assert_close(fused, plain, rtol=1e-13, atol=1e-13)
    if not plain.requires_grad:
        return
    inputs = [x] + ([prefix] if with_prefix else []) + params
    g = torch.randn_like(fused)
    got = torch.autograd.grad(fused, inputs, g, allow_unused=True)
    want = torch.autograd.grad(plain, inputs, g, allow_unused=True)
    for a, b, ref in zip(got, want, inputs):
        torch.testing.assert_close(_zeros_if_none(a, ref), _zeros_if_none(b, ref), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("name", ["gram", "legendre", "chebyshev", "jacobi"])
def test_fused_path_gradcheck(name):
    torch.manual_seed(0)
    basis = create_basis(name, 2, dtype=torch.float64, degree=4)
    x = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    pre = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: basis(a, b), (x, pre))


def test_fused_path_keeps_no_intermediates():
    """Only the squashed input (and the small c vector) is saved for backward."""
    basis = create_basis("gram", 4, degree=5)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        basis(x, None)
    # tanh saves its output (x-sized); the recurrence saves t again (shared storage) and c (D+1 values)
    assert sum(n for n in saved if n > 100) <= 2 * x.numel()


@pytest.mark.parametrize("name,kw", [("rbf", {}), ("rbf", {"grid_size": 3, "grid_range": (-1.0, 2.0)})])
def test_closed_form_backward_matches_autograd(name, kw):
    """RBF: the fused backward equals autograd through ``values``."""
    torch.manual_seed(1)
    basis = create_basis(name, 3, dtype=torch.float64, **kw)
    x = (torch.rand(2, 3, 4, 5, dtype=torch.float64) * 2.4 - 1.2).requires_grad_()
    pre = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    fused = basis(x, pre)
    plain = torch.cat([pre.unsqueeze(2), basis.values(x)], dim=2)
    torch.testing.assert_close(fused, plain)
    g = torch.randn_like(fused)
    got = torch.autograd.grad(fused, (x, pre), g)
    if not plain.requires_grad:
        return
    want = torch.autograd.grad(plain, (x, pre), g, allow_unused=True)
    for a, b, ref in zip(got, want, (x, pre)):
        torch.testing.assert_close(a, _zeros_if_none(b, ref), rtol=1e-11, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bspline", "rbf"])
def test_compiled_bases_match_eager(name):
    """``compile_bases`` (torch.compile of the basis function) gives the eager outputs and gradients."""
    from kanzoo.layers import KANConvNd, compile_bases
    torch.manual_seed(0)
    layer = KANConvNd(3, 4, 3, padding=1, basis=name).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    want = layer(x)
    g_want, = torch.autograd.grad(want.sum(), x)
    assert compile_bases(layer) == 1 and layer.basis.compile_values
    got = layer(x)
    g_got, = torch.autograd.grad(got.sum(), x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=1e-12)
    assert compile_bases(layer, enabled=False) == 1 and not layer.basis.compile_values
