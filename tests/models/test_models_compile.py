"""Whole-model ``torch.compile`` over every registered family (issue 19, item 2), on CPU.

A family is a (python module, model class) pair of ``kanzoo.list_models()``; ``FAMILIES`` holds one model of
each (and VGG's bottleneck variant) at its smallest config (``test_families_cover_every_registered_model``
fails when a new family is missing). Each is compiled in place with ``fullgraph=True`` and
``backend='aot_eager'`` (no inductor codegen):

* eval: one graph (``fullgraph=True`` raises on any graph break, i.e. ``torch._dynamo.explain`` would report
  more than 0 breaks), output equal to eager;
* train: one more graph for train mode, gradients finite and equal to eager's (same weights, same RNG), an SGD
  step changes the weights, and the next forward compiles nothing new.

``create_model(compile=...)`` and its errors, and this file's one inductor compile, are at the end.
"""
import copy
from typing import Any, Dict, Tuple

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import kanzoo
from tests.models.test_models_contract import MODELS, _module, first_output, probe, skip_if_declared

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*is deprecated.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:No CUDA runtime is found:UserWarning"),
]

#: model -> (build kwargs, input side): the fewest modules each family allows (compile time grows with them)
FAMILIES: Dict[str, Tuple[Dict[str, Any], int]] = {
    "densenet_kagn121": (dict(width_scale=0.125, block_config=(1, 1, 1, 1)), 32),
    "kat_base_gelu_patch16_224": (dict(width_scale=0.125, depth=1, img_size=32), 32),
    "mlp_kan_base_patch16_224": (dict(width_scale=0.125, depth=1, img_size=32), 32),
    "resnet_kagn18": (dict(width_scale=0.125, layers=(1, 1, 1, 1)), 32),
    "resnet_kagn_moe18": (dict(width_scale=0.125, layers=(1, 1, 1, 1), moe_kwargs=dict(num_experts=3, top_k=2)), 32),
    "s_convkan_base": (dict(width_scale=0.125, widths=(16, 32), strides=(1, 2)), 16),
    "simple_conv_kagn": (dict(width_scale=0.125, widths=(16, 32), strides=(1, 2)), 16),
    "u2kanet_kagn": (dict(width_scale=0.125, encoder_cfg=((3, 16, 32, False), (2, 16, 32, True)),
                          decoder_cfg=((3, 16, 32, False),)), 16),
    "ukan_base": (dict(width_scale=0.125), 32),
    "ukanet_kagn18": (dict(width_scale=0.125, depths=(1, 1), widths=(32, 64)), 16),
    "vgg_kagn11": (dict(width_scale=0.125, cfg=[16, "M", 32]), 16),
    "vgg_kagn_bn11_v4": (dict(width_scale=0.125, cfg=[16, "M", 32]), 16),   # bottleneck KAN convs
    "vision_kan_tiny_patch16_224": (dict(width_scale=0.125, depth=1, img_size=32), 32),
}


def _family(name: str) -> Tuple[str, str]:
    return _module(name), probe(name)["cls"].__name__


def _build(name: str) -> Tuple[torch.nn.Module, torch.Tensor]:
    kwargs, side = FAMILIES[name]
    torch.manual_seed(0)
    model = kanzoo.create_model(name, **kwargs).eval()
    return model, torch.randn(4, 3, side, side, generator=torch.Generator().manual_seed(1))


def _loss(model: torch.nn.Module, out) -> torch.Tensor:
    """A scalar over every output, plus the model's MoE balancing loss where it keeps one (MLP-KAN)."""
    loss = first_output(out).float().square().mean()
    aux = model.aux_loss() if callable(getattr(model, "aux_loss", None)) else None
    return loss if aux is None else loss + aux


def test_families_cover_every_registered_model():
    missing = sorted({_family(n) for n in MODELS} - {_family(n) for n in FAMILIES})
    assert not missing, f"add a small config of each of these (module, class) families to FAMILIES: {missing}"


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_compile_family(name):
    skip_if_declared(name, "compile")
    torch._dynamo.reset()
    model, x = _build(name)
    compiled = copy.deepcopy(model)
    counter = CompileCounterWithBackend("aot_eager")
    compiled.compile(backend=counter, fullgraph=True)
    assert type(compiled) is type(model) and compiled.state_dict().keys() == model.state_dict().keys()
    try:
        with torch.no_grad():
            ref, out = first_output(model(x)), first_output(compiled(x))
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5,
                                   msg=lambda m: f"{name}: compiled eval output differs from eager\n{m}")
        assert counter.frame_count == 1, f"{name}: eval forward compiled to {counter.frame_count} graphs"

        model.train()
        compiled.train()
        torch.manual_seed(2)
        _loss(model, model(x)).backward()
        torch.manual_seed(2)
        _loss(compiled, compiled(x)).backward()
        assert counter.frame_count == 2, f"{name}: train mode took {counter.frame_count - 1} graphs, not 1"
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        assert grads, f"{name}: no parameter got a gradient"
        scale = max(g.abs().max().item() for g in grads.values())
        for n, p in compiled.named_parameters():
            if n not in grads:
                continue
            assert p.grad is not None, f"{name}: {n} has a gradient in eager but not compiled"
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite compiled gradient of {n}"
            # small-batch BatchNorm magnifies float rounding (e.g. MoE experts on different sub-batches): scaled atol
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-3, atol=1e-4 * scale,
                                       msg=lambda m: f"{name}: compiled gradient of {n} differs from eager\n{m}")

        before = [p.detach().clone() for p in compiled.parameters()]
        torch.optim.SGD(compiled.parameters(), lr=0.1).step()
        changed = any(not torch.equal(a, p) for a, p in zip(before, compiled.parameters()))
        assert changed, f"{name}: an SGD step changed no weight"
        assert all(torch.isfinite(p).all() for p in compiled.parameters()), f"{name}: non-finite weights after a step"
        _loss(compiled, compiled(x)).backward()
        assert counter.frame_count == 2, f"{name}: the forward after an optimizer step recompiled"
    finally:
        torch._dynamo.reset()


# ------------------------------------------------------------------------------------------------ create_model
def test_create_model_compile_in_place():
    torch.manual_seed(0)
    eager = kanzoo.create_model("simple_conv_kagn", width_scale=0.125, widths=(16, 32), strides=(1, 2)).eval()
    torch.manual_seed(0)
    counter = CompileCounterWithBackend("aot_eager")
    model = kanzoo.create_model("simple_conv_kagn", width_scale=0.125, widths=(16, 32), strides=(1, 2),
                                compile=dict(backend=counter, fullgraph=True)).eval()
    assert type(model) is type(eager) and list(model.state_dict()) == list(eager.state_dict())
    x = torch.randn(2, 3, 16, 16)
    try:
        with torch.no_grad():
            torch.testing.assert_close(model(x), eager(x), rtol=1e-5, atol=1e-6)
        assert counter.frame_count == 1
        assert kanzoo.compile_model(eager, False) is eager and kanzoo.compile_model(eager, None) is eager
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("bad, err, match", [
    ("yes", TypeError, "compile must be True, False or a dict of torch.compile arguments, got str 'yes'"),
    (1, TypeError, "got int 1"),
    (dict(mdoe="max-autotune"), ValueError, r"unknown torch.compile arguments \['mdoe'\]"),
])
def test_create_model_compile_errors(bad, err, match):
    with pytest.raises(err, match=match):
        kanzoo.create_model("simple_conv_kagn", compile=bad)
    with pytest.raises(TypeError, match="compile_model needs an nn.Module, got str"):
        kanzoo.compile_model("simple_conv_kagn")


@pytest.mark.slow
def test_create_model_compile_inductor():
    """This file's one inductor compile (C++ codegen on CPU): ``compile=True`` is torch's default backend."""
    torch._dynamo.reset()
    kw = dict(width_scale=0.125, widths=(8, 16), strides=(1, 2), num_classes=5)
    torch.manual_seed(0)
    eager = kanzoo.create_model("simple_conv_kagn", **kw).eval()
    torch.manual_seed(0)
    model = kanzoo.create_model("simple_conv_kagn", compile=True, **kw).eval()
    x = torch.randn(2, 3, 16, 16)
    try:
        with torch.no_grad():
            torch.testing.assert_close(model(x), eager(x), rtol=1e-4, atol=1e-5)
    finally:
        torch._dynamo.reset()
