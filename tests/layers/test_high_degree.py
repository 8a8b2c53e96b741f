"""High polynomial degrees stay tame at initialisation (issue 22): a random-init model's outputs do not grow
with the degree. Gram's recurrence coefficients c_i grow like 8i³; its init caps c_i·β_{i-1} (GramBasis)."""
import pytest
import torch

import kanzoo
from kanzoo.layers.bases import kernels
from kanzoo.layers.bases.gram import INIT_MAX_COEF_STD, GramBasis, gram_coefficients

POLYNOMIAL_TAGS = ["kagn", "kaln", "kacn", "kajn", "kabn"]


@pytest.fixture(autouse=True)
def _eager_bases():
    """The initial scale is the question here, not the kernels: no compiles (one per degree) in this file."""
    kernels.set_basis_kernel("eager")
    yield
    kernels.set_basis_kernel(None)


def _max_logit(tag: str, degree: int) -> float:
    torch.manual_seed(0)
    model = kanzoo.create_model(f"simple_conv_{tag}", width_scale=0.25, num_classes=10,
                                basis_kwargs=dict(degree=degree)).eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
    assert torch.isfinite(out).all(), f"{tag} degree {degree}: non-finite logits"
    return out.abs().max().item()


@pytest.mark.parametrize("tag", POLYNOMIAL_TAGS)
def test_output_scale_does_not_grow_with_degree(tag):
    low = _max_logit(tag, 3)
    for degree in (20, 50):
        high = _max_logit(tag, degree)
        assert high < 20 * max(low, 0.1), \
            f"simple_conv_{tag}: max |logit| {high:.3g} at degree {degree} vs {low:.3g} at degree 3"


def test_gram_init_caps_the_recurrence_coefficient_and_keeps_the_reference_draw_below_it():
    degree, fan_in = 30, 27
    basis = GramBasis(degree)
    torch.manual_seed(0)
    basis.reset_parameters(fan_in)
    sigma = 1.0 / (fan_in * (degree + 1))
    torch.manual_seed(0)
    draw = torch.empty(degree + 1).normal_(0.0, sigma)  # the reference's draw, same generator state
    coef = torch.tensor(gram_coefficients(degree + 1), dtype=torch.float64)[1:]
    cap = torch.clamp(INIT_MAX_COEF_STD / (coef * sigma), max=1.0)
    cap[coef == 0] = 1.0
    torch.testing.assert_close(basis.beta_weights.detach().double(), draw.double() * cap, rtol=1e-6, atol=0)
    assert (cap < 1).any() and (cap == 1).any()
    # a low degree over a wide layer is the reference's draw exactly
    small = GramBasis(3)
    torch.manual_seed(5)
    small.reset_parameters(576)
    torch.manual_seed(5)
    assert torch.equal(small.beta_weights.detach(), torch.empty(4).normal_(0.0, 1.0 / (576 * 4)))
