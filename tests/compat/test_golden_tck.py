"""Every torch-conv-kan golden case, through kanzoo.compat.tck.from_reference.

Cases where kanzoo deliberately differs from the reference (docs/compat.md) are listed in DEVIATIONS and
tested for the corrected behaviour in tests/test_deviations.py instead.
"""
import pytest
import torch

from kanzoo.compat.tck import from_reference
from tests.support.golden import load_case, manifest

MAN = manifest("tck")
CASES = {c["name"]: c for c in MAN["cases"]}

# case name prefix -> why kanzoo's output differs by design (see docs/compat.md)
DEVIATIONS = {
    "kabn_": "KABN: the reference's Bernstein basis is identically 1; kanzoo computes the real basis",
    "lin_kabn_": "KABN: the reference's Bernstein basis is identically 1; kanzoo computes the real basis",
}

SEPARATE = ("PEFT-KAGN", "PEFT-VGGKAGN", "VGG-KAGN-hub")


def _deviation(name):
    for prefix, why in DEVIATIONS.items():
        if name.startswith(prefix):
            return why
    return None


def _layer_cases():
    return [n for n, c in CASES.items() if c["family"] not in SEPARATE]


def _first(y):
    return y[0] if isinstance(y, tuple) else y


@pytest.mark.parametrize("name", _layer_cases())
def test_golden_case(name):
    case = CASES[name]
    why = _deviation(name)
    if why:
        pytest.skip(f"documented deviation, tested in test_deviations.py: {why}")
    t, state = load_case("tck", case)
    dt = torch.float64 if case["dtype"] == "float64" else torch.float32
    tol = case["tolerance"][case["dtype"]]
    model = from_reference(case, state).to(dt).eval()
    with torch.no_grad():
        y = model(t["input"].to(dt))
    torch.testing.assert_close(_first(y), t["output"].to(dt), atol=tol["atol"], rtol=tol["rtol"])
    if "aux_loss" in t:
        # the load-balancing loss is small (1e-5..1e-2): compare it on its own scale, not the output's
        torch.testing.assert_close(y[1].to(dt).reshape(t["aux_loss"].shape), t["aux_loss"].to(dt),
                                   atol=1e-8, rtol=tol["rtol"])
    if "output_train" in t or "grad_input" in t:
        model = from_reference(case, state).to(dt).train()
        x = t["input"].to(dt).clone().requires_grad_(True)
        out = _first(model(x))
        if "output_train" in t:
            torch.testing.assert_close(out.detach(), t["output_train"].to(dt), atol=tol["atol"], rtol=tol["rtol"])
        if "grad_input" in t:
            out.sum().backward()
            torch.testing.assert_close(x.grad, t["grad_input"].to(dt), atol=tol["atol"], rtol=tol["rtol"])


@pytest.mark.parametrize("name", _layer_cases())
def test_golden_case_float32(name):
    """A float32 kanzoo layer meets the float32 tolerance against the (float64) reference outputs."""
    case = CASES[name]
    if _deviation(name):
        pytest.skip("documented deviation")
    t, state = load_case("tck", case)
    tol = case["tolerance"]["float32"]
    model = from_reference(case, state).float().eval()
    with torch.no_grad():
        y = _first(model(t["input"].float()))
    torch.testing.assert_close(y, t["output"].float(), atol=tol["atol"], rtol=tol["rtol"])

