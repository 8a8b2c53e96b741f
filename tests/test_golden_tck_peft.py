"""torch-conv-kan PEFT golden cases at the layer level.

The adapters themselves (wrap, train, merge) come with kanzoo.peft. Here the cases check what the layer
math must guarantee: the original layer reproduces ``output_original``, and a plain kanzoo Gram layer of
degree D+E carrying the corrected merge (section 6.3 of the golden README) reproduces the adapted
(``output_wrapped``) output exactly — which the reference's own merge (``output_merged``) does not.
"""
import pytest
import torch

from kanzoo.compat.tck import from_reference
from golden import load_case, manifest

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
