"""The documented deviations from torch-conv-kan (docs/compat.md): kanzoo's corrected behaviour, and proof
that only the documented piece differs."""
import math

import pytest
import torch

from kanzoo.compat.tck import from_reference
from kanzoo.layers import KANConvNd, KANLinear
from kanzoo.layers.bases.base import Basis, stack_basis
from tests.support.golden import load_case, manifest

MAN = manifest("tck")
CASES = {c["name"]: c for c in MAN["cases"]}


class ConstantOnes(Basis):
    """The reference KABN 'basis': D+1 copies of the constant 1."""

    def __init__(self, num_basis):
        super().__init__()
        self.num_basis = num_basis

    def forward(self, x, prefix=None):
        return stack_basis([torch.ones_like(x) for _ in range(self.num_basis)], prefix)


@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("kabn_")])
def test_kabn_differs_only_in_the_basis(name):
    case = CASES[name]
    t, state = load_case("tck", case)
    tol = case["tolerance"]["float64"]
    layer = from_reference(case, state, dtype=torch.float64).eval()
    with torch.no_grad():
        real = layer(t["input"])
        # kanzoo's real Bernstein basis gives a different function from the reference's constant
        assert (real - t["output"]).abs().max() > 1e-3
        layer.basis = ConstantOnes(layer.num_basis)
        torch.testing.assert_close(layer(t["input"]), t["output"], atol=tol["atol"], rtol=tol["rtol"])


def test_bernstein_basis_is_the_real_one():
    layer = KANConvNd(3, 2, 1, basis="bernstein", degree=4).double()
    x = torch.linspace(-6, 6, 50, dtype=torch.float64).view(1, 1, 50).expand(1, 3, 50).reshape(1, 3, 50, 1)
    b = layer.basis(x)  # (1, 3, 5, 50, 1)
    torch.testing.assert_close(b.sum(dim=2), torch.ones_like(x))
    s = torch.sigmoid(x)
    for k in range(5):
        torch.testing.assert_close(b[:, :, k], math.comb(4, k) * s ** k * (1 - s) ** (4 - k))
    # it trains through its input, which the reference's in-place recursion cannot
    xi = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    layer(xi).sum().backward()
    assert torch.isfinite(xi.grad).all() and xi.grad.abs().sum() > 0


@pytest.mark.parametrize("layer", [
    lambda: KANConvNd(4, 6, 3, padding=1, basis="legendre", groups=2),
    lambda: KANLinear(4, 6, basis="legendre"),
], ids=["conv", "linear"])
def test_legendre_default_is_batch_independent(layer):
    torch.manual_seed(0)
    m = layer().double().eval()
    shape = (3, 4, 5, 5) if isinstance(m, KANConvNd) else (3, 4)
    x = torch.randn(shape, dtype=torch.float64)
    x[2] *= 10.0  # one sample with a much wider range
    with torch.no_grad():
        together = m(x)
        alone = torch.cat([m(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone)
    m.basis.minmax = "batch"  # the reference's choice: the wide sample changes the others
    with torch.no_grad():
        assert (m(x)[:2] - alone[:2]).abs().max() > 1e-3


def test_chebyshev_gradient_finite_where_tanh_saturates():
    m = KANLinear(2, 3, basis="chebyshev", degree=4).double()
    x = torch.tensor([[20.0, -20.0], [9.0, 0.5]], dtype=torch.float64, requires_grad=True)
    m(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    # and it is the Chebyshev polynomial: T_d(tanh x) = cos(d·arccos(tanh x)) where arccos is well-defined
    t = torch.tanh(torch.tensor([0.3, -1.2], dtype=torch.float64)).view(1, 2)
    b = m.basis(torch.atanh(t))
    for d in range(5):
        torch.testing.assert_close(b[:, :, d], torch.cos(d * torch.arccos(t)))
