"""torch.fx over every registered kanzoo model, as timm 1.0.31's ``test_model_forward_fx`` and
``test_model_backward_fx`` trace it (timm's leaf modules and autowrapped functions, see
:mod:`tests.support.fx_trace`), on the contract test's small builds.

* ``test_fx``, every model: the traced eval graph gives eager's output exactly (``num_classes=42``); the traced
  train graph too, and its backward gives a gradient to the same parameters as eager's, equal to it.
* ``test_fx_timm_path``: timm's own path (torchvision's ``create_feature_extractor``) on one model per family:
  the eval extractor equals eager, and it scripts (``test_model_forward_fx_torchscript``). Families
  whose smallest model has more than ``MAX_TIMM_PATH_MODULES`` modules (DenseNet, U²-Net) are left to
  ``test_fx``: torchvision's node naming costs seconds per trace there.
* ``test_features_fx``: ``features_only=True, feature_cls='fx'`` equals the default feature extractor.
"""
import pytest
import torch

from tests.models.test_models_contract import (
    MODELS,
    REPRESENTATIVES,
    build,
    check_output,
    first_output,
    probe,
    randn,
)
from tests.support.fx_trace import fx_trace, timm_fx_model

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*is deprecated.*:FutureWarning"),
]

MAX_TIMM_PATH_MODULES = 400
TIMM_PATH = [n for n in REPRESENTATIVES if probe(n)["num_modules"] <= MAX_TIMM_PATH_MODULES]
FEATURES_FX = ["resnet_kagn18", "vgg_kagn11"]


def _assert_equal(out, ref, what):
    assert out.shape == ref.shape, f"{what}: FX output {tuple(out.shape)}, eager {tuple(ref.shape)}"
    torch.testing.assert_close(out, ref, rtol=0, atol=0, msg=lambda m: f"{what}: FX output differs from eager\n{m}")


def _grads(out: torch.Tensor, model: torch.nn.Module):
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
    grads = torch.autograd.grad(out.mean(), params, allow_unused=True)
    return {n: g for n, g in zip(names, grads) if g is not None}


def _check_train(name, model, fx_model, x):
    """Same seed, same train-mode output and the same gradients, eager and FX."""
    torch.manual_seed(1)
    ref = first_output(model(x))
    torch.manual_seed(1)
    out = first_output(fx_model(x))
    _assert_equal(out, ref, f"{name} (train)")
    eager, fx = _grads(ref, model), _grads(out, model)
    assert eager, f"{name}: no parameter gets a gradient in eager mode"
    assert sorted(fx) == sorted(eager), \
        f"{name}: FX gives gradients to {sorted(set(fx) - set(eager))[:5]} and none to " \
        f"{sorted(set(eager) - set(fx))[:5]}, unlike eager"
    for n, g in eager.items():
        torch.testing.assert_close(fx[n], g, rtol=0, atol=0, msg=lambda m: f"{name}: FX gradient of {n}\n{m}")
    return out


@pytest.mark.parametrize("name", MODELS)
def test_fx(name):
    model = build(name, num_classes=42).eval()
    x = randn(name, batch=2)
    fx_eval = fx_trace(model)
    with torch.no_grad():
        ref = first_output(model(x))
        out = first_output(fx_eval(x))
    _assert_equal(out, ref, name)
    check_output(name, out, x, 42)

    model.train()
    out = _check_train(name, model, fx_trace(model), x)
    check_output(name, out, x, 42)


def _values(out):
    return first_output(tuple(out.values()))


@pytest.mark.parametrize("name", TIMM_PATH)
def test_fx_timm_path(name):
    model = build(name, num_classes=42).eval()
    x = randn(name, batch=1)
    with torch.no_grad():
        ref = first_output(model(x))
        extractor = timm_fx_model(model)
        _assert_equal(_values(extractor(x)), ref, name)
        scripted = torch.jit.script(extractor)
        with torch.jit.optimized_execution(False):
            torch.testing.assert_close(_values(scripted(x)), ref, rtol=1e-4, atol=1e-5,
                                       msg=lambda m: f"{name}: scripted FX extractor differs from eager\n{m}")



@pytest.mark.parametrize("name", FEATURES_FX)
def test_features_fx(name):
    x = randn(name)
    with torch.no_grad():
        ref = build(name, features_only=True).eval()(x)
        model = build(name, features_only=True, feature_cls="fx").eval()
        outs = model(x)
    assert type(model).__name__ == "FeatureGraphNet"
    assert len(outs) == len(ref) == len(model.feature_info)
    for i, (o, r) in enumerate(zip(outs, ref)):
        _assert_equal(o, r, f"{name} level {i}")
