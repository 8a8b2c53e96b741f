"""Each basis declares its own facts; kanzoo's tables are derived from them, and a new basis needs only its class.

The new basis here is built through the public API alone: subclass ``kanzoo.layers.bases.Basis``, set
``name`` and the facts, and every KAN layer, the FLOP counter and the adapters take it.
"""
from typing import Optional

import pytest
import torch
from torch import nn

import kanzoo
from kanzoo import peft, profile
from kanzoo.layers import KANConvNd, KANLinear
from kanzoo.layers.bases import (
    Basis,
    basis_classes,
    basis_tags,
    create_basis,
    list_bases,
    polynomial_bases,
    stack_basis,
    unregister_basis,
)
from kanzoo.models import BASIS_TAGS, POLYNOMIAL_BASES


@pytest.fixture
def hermite():
    """A new basis, defined (and so registered) for one test and removed after it."""

    class HermiteBasis(Basis):
        r"""Probabilists' Hermite polynomials of :math:`t = \tanh(x)`: :math:`He_0 = 1`, :math:`He_1 = t`,
        :math:`He_{i} = t\,He_{i-1} - (i-1)\,He_{i-2}` (a test basis, not part of kanzoo)."""

        name = "test_hermite"
        polynomial = True
        adaptable = True
        default_base_act = "identity"

        def __init__(self, degree: int = 3, device=None, dtype=None):
            super().__init__()
            self.degree = degree
            self.num_basis = degree + 1

        def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
            t = torch.tanh(x)
            parts = [torch.ones_like(t), t]
            for i in range(2, self.degree + 1):
                parts.append(t * parts[-1] - (i - 1) * parts[-2])
            return stack_basis(parts[: self.degree + 1], prefix)

        @classmethod
        def flops(cls, degree: int = 3, **_) -> int:
            return 6 + 3 * max(degree - 1, 0)

        def flops_per_scalar(self) -> int:
            return self.flops(self.degree)

        def raised(self, extra: int) -> "HermiteBasis":
            return HermiteBasis(self.degree + extra)

    yield HermiteBasis
    unregister_basis("test_hermite")


def test_the_zoo_tables_are_derived_from_the_bases():
    classes = basis_classes()
    assert {cls.model_tag: name for name, cls in classes.items() if cls.model_tag} == BASIS_TAGS == basis_tags()
    assert set(POLYNOMIAL_BASES) == {n for n, c in classes.items() if c.polynomial} == set(polynomial_bases())
    assert BASIS_TAGS["kagn"] == "gram" and BASIS_TAGS["kan"] == "bspline" and "rswaf" not in BASIS_TAGS.values()
    for name, cls in classes.items():
        assert cls.name == name and profile.BASIS_FLOPS[name] == cls.flops
        assert (peft.get_basis_rule(create_basis(name, 4)) is not None) == cls.adaptable


@pytest.mark.parametrize("name", sorted(basis_classes()))
def test_each_built_basis_counts_its_own_flops(name):
    basis = create_basis(name, num_channels=4)
    assert profile.basis_module_flops(basis) == basis.flops_per_scalar() == type(basis).flops() > 0


def test_a_new_basis_is_one_class(hermite):
    assert "test_hermite" in list_bases()
    assert profile.basis_flops("test_hermite", degree=4) == 6 + 3 * 3
    x = torch.randn(2, 4, 5, 5)
    conv = KANConvNd(4, 6, 3, padding=1, ndim=2, basis="test_hermite", degree=2)
    assert isinstance(conv.basis, hermite) and conv(x).shape == (2, 6, 5, 5)
    linear = KANLinear(4, 3, basis="test_hermite", degree=3)
    assert linear(torch.randn(8, 4)).shape == (8, 3)
    # the FLOP counter reads the class's formula: 6 + 3·(3-1) = 12 per input scalar, 4 inputs per sample
    prof = profile.count(nn.Sequential(linear), input_size=(4,))
    assert prof.basis_flops == 12 * 4
    # the adapters read its facts: one extra degree, zero-initialised, so the output does not change
    model = nn.Sequential(KANLinear(4, 3, basis="test_hermite", degree=2))
    model.eval()
    adapted = peft.get_peft_model(model, peft.BasisAdapterConfig(extra_degrees=1))
    y = torch.randn(5, 4)
    torch.testing.assert_close(adapted(y), model(y))


def test_the_registry_is_back_to_kanzoos_own_bases():
    assert "test_hermite" not in list_bases()
    with pytest.raises(ValueError, match="unknown basis 'test_hermite'"):
        create_basis("test_hermite", 4)


def test_a_subclass_is_not_adaptable_unless_it_says_so():
    class Shifted(kanzoo.layers.bases.GramBasis):
        pass

    assert Shifted.polynomial and kanzoo.layers.bases.GramBasis.adaptable
    assert peft.get_basis_rule(Shifted(3)) is None
