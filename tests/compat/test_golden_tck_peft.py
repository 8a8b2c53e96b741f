"""torch-conv-kan PEFT golden cases at the layer level.

The adapters themselves (wrap, train, merge) come with kanzoo.peft. Here the cases check what the layer
math must guarantee: the original layer reproduces ``output_original``, and a plain kanzoo Gram layer of
degree D+E carrying the corrected merge (section 6.3 of the golden README) reproduces the adapted
(``output_wrapped``) output exactly — which the reference's own merge (``output_merged``) does not.
"""
import pytest
import torch

from kanzoo.compat.tck import from_reference
from tests.support.golden import load_case, manifest

MAN = manifest("tck")
LAYER_CASES = [c for c in MAN["cases"] if c["family"] == "PEFT-KAGN"]


def _base_case(case, degree):
    kwargs = dict(case["ctor_kwargs"], degree=degree)
    return {"ref_class": case["base_class"], "ctor_args": case["ctor_args"], "ctor_kwargs": kwargs}


@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: c["name"])
def test_original_layer(case):
    t, state = load_case("tck", case)
    tol = case["tolerance"]["float64"]
    layer = from_reference(_base_case(case, case["ctor_kwargs"]["degree"]), state, dtype=torch.float64).eval()
    with torch.no_grad():
        y = layer(t["input"])
    torch.testing.assert_close(y, t["output_original"], atol=tol["atol"], rtol=tol["rtol"])


@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: c["name"])
def test_corrected_merge_reproduces_adapted_output(case):
    t, _ = load_case("tck", case)
    tol = case["tolerance"]["float64"]
    degree = case["ctor_kwargs"]["degree"] + case["peft_kwargs"]["extra_degrees"]
    merged = {k[len("merged_state."):]: v for k, v in t.items() if k.startswith("merged_state.")}
    merged["beta_weights"] = t["fixed_merged_beta_weights"]
    layer = from_reference(_base_case(case, degree), merged, dtype=torch.float64).eval()
    with torch.no_grad():
        y = layer(t["input"])
    torch.testing.assert_close(y, t["output_merged_fixed"], atol=tol["atol"], rtol=tol["rtol"])
    torch.testing.assert_close(y, t["output_wrapped"], atol=tol["atol"], rtol=tol["rtol"])
    if case["observed"]["merged_vs_wrapped_max_abs"] > 1e-6:
        # the reference merge really is wrong on this case; kanzoo's layer is not fooled into matching it
        assert not torch.allclose(y, t["output_merged"], atol=tol["atol"], rtol=tol["rtol"])


# -- the adapters themselves (kanzoo.peft), against the reference's adapted outputs ---------------------------

from kanzoo.compat.tck._state import degree_major_to_channel  # noqa: E402
from kanzoo.compat.tck.peft import convert_peft_adapter_state, reference_peft_config  # noqa: E402
from kanzoo.peft import BasisAdapterLayer, get_peft_model  # noqa: E402

VGG_CASE = next(c for c in MAN["cases"] if c["name"] == "peft_vgg_small_t23_e1")


def _adapter_state(t):
    return {k[len("adapter_state."):]: v for k, v in t.items() if k.startswith("adapter_state.")}


@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: c["name"])
def test_kanzoo_adapter_follows_reference_semantics(case):
    """A kanzoo adapter on the converted layer, loaded with the mapped reference adapter tensors, gives the
    reference's adapted output; its merge (degree D+E) gives it too, and its coefficients and β are the
    reference's correct poly-weight merge and the corrected β of section 6.3."""
    t, state = load_case("tck", case)
    tol = case["tolerance"]["float64"]
    peft_kwargs = case["peft_kwargs"]
    layer = from_reference(_base_case(case, case["ctor_kwargs"]["degree"]), state, dtype=torch.float64).eval()
    with torch.no_grad():
        original = layer(t["input"])
        model = get_peft_model(layer, reference_peft_config(peft_kwargs)).eval()
        assert torch.equal(model(t["input"]), original)          # zero adapters: bit-for-bit the base layer
        torch.testing.assert_close(original, t["output_wrapped_init"], atol=tol["atol"], rtol=tol["rtol"])
        model.load_adapter_state_dict(convert_peft_adapter_state(_adapter_state(t), model,
                                                                 peft_kwargs["trainable_degrees"]))
        adapted = model(t["input"])
        torch.testing.assert_close(adapted, t["output_wrapped"], atol=tol["atol"], rtol=tol["rtol"])
        merged = model.merge_and_unload()
        y = merged(t["input"])
    assert not isinstance(merged, BasisAdapterLayer) and merged is layer
    torch.testing.assert_close(y, t["output_wrapped"], atol=tol["atol"], rtol=tol["rtol"])
    degree = case["ctor_kwargs"]["degree"] + peft_kwargs["extra_degrees"]
    assert merged.basis.degree == degree and merged.num_basis == degree + 1
    ref_poly = t["merged_state.poly_weights"]
    ref_poly = degree_major_to_channel(ref_poly.reshape((-1,) + tuple(ref_poly.shape[2:])),
                                       merged.basis_weight.shape[1], degree + 1)
    torch.testing.assert_close(merged.basis_weight, ref_poly, atol=1e-12, rtol=0)
    # β_1..β_{D'-1} are live; entries 0 and D' are dead (kanzoo keeps the base's β_0)
    fixed = t["fixed_merged_beta_weights"]
    torch.testing.assert_close(merged.basis.beta_weights[1:degree], fixed[1:degree], atol=1e-12, rtol=0)


def _tiny_vgg():
    """The reference's tiny VGG of ``base_structure`` as a kanzoo VGGKAN: groups 1, 2, 1 (VGGKAN's ``groups``
    applies to every conv but the first, so the middle conv is built by hand)."""
    from kanzoo.layers import KANConv2d
    from kanzoo.models.vgg_kan import VGGKAN
    common = dict(basis="gram", degree=3, norm_layer="instance", norm_kwargs={"affine": True}, use_base=True)
    model = VGGKAN(cfg=[8, "M", 12, "M", 12], basis="gram", basis_kwargs={"degree": 3}, width_scale=1,
                   norm_layer="instance", norm_kwargs={"affine": True}, num_classes=5, in_chans=3, drop_rate=0.25)
    model.features[2] = KANConv2d(8, 12, 3, padding=1, groups=2, **common)
    return model


def test_vgg_adapter_and_corrected_merge():
    from kanzoo.compat.tck.vgg import convert_vgg_state
    from kanzoo.models.vgg_kan import VGGKAN
    case = VGG_CASE
    t, state = load_case("tck", case)
    tol = case["tolerance"]["float64"]
    peft_kwargs = case["peft_kwargs"]
    model = _tiny_vgg()
    model.load_state_dict(convert_vgg_state(state, model))
    model = model.double().eval()
    x = t["input"]
    with torch.no_grad():
        original = model(x)
        torch.testing.assert_close(original, t["output_original"], atol=tol["atol"], rtol=tol["rtol"])
        peft_model = get_peft_model(model, reference_peft_config(peft_kwargs)).eval()
        assert list(peft_model.adapter_layers()) == ["features.0", "features.2", "features.4"]
        assert torch.equal(peft_model(x), original)
        torch.testing.assert_close(original, t["output_wrapped_init"], atol=tol["atol"], rtol=tol["rtol"])
        peft_model.load_adapter_state_dict(
            convert_peft_adapter_state(_adapter_state(t), peft_model, peft_kwargs["trainable_degrees"]))
        adapted = peft_model(x)
        torch.testing.assert_close(adapted, t["output_wrapped"], atol=tol["atol"], rtol=tol["rtol"])
        merged = peft_model.merge_and_unload()
        y = merged(x)
    assert type(merged) is VGGKAN
    assert not any(isinstance(m, BasisAdapterLayer) for m in merged.modules())
    assert [merged.features[i].num_basis for i in (0, 2, 4)] == [5, 5, 5]
    torch.testing.assert_close(y, t["output_wrapped"], atol=tol["atol"], rtol=tol["rtol"])
    # the reference's own merge is off by ~0.018 here; kanzoo's is not
    assert (y - t["output_merged"]).abs().max() > 1e-3
