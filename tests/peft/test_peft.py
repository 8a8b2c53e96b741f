"""kanzoo.peft: basis-coefficient adapters, their save/load round trip and their exact merge.

Expected values are built independently of kanzoo.peft: the adapted layer is compared with a fresh kanzoo
layer of degree D+E whose coefficients and Gram β are written by the formulas of the adapter's docstring
(and, for Bernstein, by a least-squares re-expansion of the basis evaluated from math.comb); parameter
counts come from layer shapes.
"""
import json
import math
import os

import pytest
import torch
from safetensors.torch import load_file
from timm.models._input import get_model_args
from torch import nn

import kanzoo
from kanzoo.layers import BottleneckKANConvNd, BottleneckKANLinear, KANConvNd, KANLinear
from kanzoo.peft import (
    BasisAdapterConfig,
    BasisAdapterLayer,
    PeftModel,
    bernstein_elevate,
    get_peft_model,
    load_adapter,
)

POLY = ["gram", "legendre", "chebyshev", "jacobi", "bernstein"]
GRID = ["bspline", "rbf"]
TAGS = {"gram": "kagn", "legendre": "kaln", "chebyshev": "kacn", "jacobi": "kajn", "bernstein": "kabn",
        "bspline": "kan", "rbf": "fastkan"}
F64 = torch.float64


def basis_kwargs(basis, degree):
    if basis in POLY:
        kw = {"degree": degree}
        if basis == "jacobi":
            kw.update(a=2.0, b=0.5)   # non-default settings must survive the raise
        return kw
    return {"grid_size": 4} if basis == "bspline" else {"grid_size": 5}


def make_layer(kind, basis, degree=3, ndim=2, groups=2, dtype=F64, seed=0):
    torch.manual_seed(seed)
    bkw = basis_kwargs(basis, degree)
    if kind == "conv":
        layer = KANConvNd(4, 6, 3, padding=1, groups=groups, ndim=ndim, basis=basis, **bkw)
    elif kind == "bottleneck_conv":
        layer = BottleneckKANConvNd(8, 8, 3, padding=1, groups=groups, ndim=ndim, basis=basis, dim_reduction=2,
                                    min_internal=2, **bkw)
    elif kind == "linear":
        layer = KANLinear(4, 6, basis=basis, bias=True, **bkw)
    else:
        layer = BottleneckKANLinear(8, 6, basis=basis, dim_reduction=2, min_internal=2, **bkw)
    return layer.to(dtype).eval()


def make_input(kind, ndim=2, dtype=F64, seed=1):
    g = torch.Generator().manual_seed(seed)
    channels = 8 if kind.startswith("bottleneck") else 4
    if kind.endswith("linear"):
        return torch.randn(3, channels, generator=g, dtype=dtype)
    return torch.randn((2, channels) + (6, 5, 4)[:ndim], generator=g, dtype=dtype)


def perturb(model, scale=0.3, beta_scale=0.05, seed=2):
    """Random values for every trainable tensor (adapters start at zero, which would test nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                s = beta_scale if "beta" in name else scale
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype) * s)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# -- an independent statement of the adapted layer ----------------------------------------------------------

def bernstein_values(s, n):
    """B_{k,n}(s) = C(n,k) s^k (1-s)^{n-k}, k = 0..n, from the definition (float64)."""
    return torch.stack([math.comb(n, k) * s ** k * (1 - s) ** (n - k) for k in range(n + 1)], dim=-1)


def elevate_by_fit(coef, degree, extra):
    """Coefficients on axis 2 re-expanded in the degree D+E Bernstein basis by least squares."""
    s = torch.linspace(0.01, 0.99, 64, dtype=F64)
    old, new = bernstein_values(s, degree), bernstein_values(s, degree + extra)
    c = coef.double().movedim(2, -1)
    target = c @ old.T                                    # (..., 64): the function values
    sol = torch.linalg.lstsq(new, target.reshape(-1, 64).T).solution   # (D'+1, n)
    return sol.T.reshape(c.shape[:-1] + (degree + extra + 1,)).movedim(-1, 2).to(coef.dtype)


def coefficients(wrapper, name, n):
    w = wrapper.base_layer.basis_weight
    shape = (w.shape[0], w.shape[1], n) + tuple(w.shape[3:])
    if wrapper.rank is None:
        return getattr(wrapper, name).detach()
    return (getattr(wrapper, name + "_B") @ getattr(wrapper, name + "_A")).detach().reshape(shape)


def expected_layer(wrapper, kind, basis, degree, ndim=2, groups=2):
    """A fresh layer of degree D+E carrying the adapted function, with weights written by the formulas."""
    base = wrapper.base_layer
    E, T = wrapper.extra_degrees, wrapper.trainable_degrees
    w = base.basis_weight.detach().clone()
    if T:
        delta = coefficients(wrapper, "basis_delta", len(T))
        for i, d in enumerate(T):
            w[:, :, d] += delta[:, :, i]
    if E:
        extra = coefficients(wrapper, "basis_extra", E)
        if basis == "bernstein":
            w = elevate_by_fit(w, degree, E)
            w[:, :, degree + 1:] += extra
        else:
            w = torch.cat([w, extra], dim=2)
    layer = make_layer(kind, basis, degree + E, ndim, groups, dtype=w.dtype, seed=99)
    state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    state["basis_weight"] = w
    if basis == "gram":
        beta = torch.zeros(degree + E + 1, dtype=w.dtype)
        beta[: degree + 1] = base.basis.beta_weights.detach()
        for i, d in enumerate(wrapper.beta_degrees):        # β_{d-1} builds P_d
            beta[d - 1] += wrapper.beta_delta.detach()[i]
        for j in range(E):                                  # β_{D+j} builds P_{D+1+j}
            beta[degree + j] = wrapper.beta_extra.detach()[j]
        state["basis.beta_weights"] = beta
    layer.load_state_dict(state)
    return layer.eval()


LAYER_CASES = ([("conv", b) for b in POLY + GRID] + [("linear", b) for b in POLY + GRID]
               + [("bottleneck_conv", "gram"), ("bottleneck_conv", "bernstein"), ("bottleneck_linear", "legendre")])


def config_for(basis, rank=None):
    if basis in POLY:
        return BasisAdapterConfig(trainable_degrees=[0, 2, 3], extra_degrees=2, rank=rank)
    return BasisAdapterConfig(trainable_degrees="all", rank=rank)


@pytest.mark.parametrize("kind,basis", LAYER_CASES)
def test_layer_starts_identical_then_merges_exactly(kind, basis):
    layer = make_layer(kind, basis)
    x = make_input(kind)
    with torch.no_grad():
        y0 = layer(x)
    model = get_peft_model(layer, config_for(basis))
    # zero adapters: bit-for-bit the base layer, in eval and in train mode (fused backward path)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), y0)
    assert torch.equal(model.train()(x), layer.train()(x))   # the base layer alone, bypassing the adapter
    model.eval()
    perturb(model)
    with torch.no_grad():
        adapted = model(x)
        wrapper = model.adapter_layers()[""]
        expected = expected_layer(wrapper, kind, basis, 3)(x)
        assert rel_err(adapted, y0) > 1e-3                  # the adapter does change the function
        assert rel_err(adapted, expected) < 1e-10
        merged = model.merge_and_unload()
        y = merged(x)
    assert type(merged) is type(layer) and merged is layer
    assert not any(isinstance(m, BasisAdapterLayer) for m in merged.modules())
    if basis in POLY:
        assert merged.num_basis == merged.basis.num_basis == 3 + 2 + 1
    assert rel_err(y, adapted) <= 1e-10
    assert all(p.requires_grad for p in merged.parameters())


@pytest.mark.parametrize("basis", POLY + GRID)
def test_float32_merge_tolerance(basis):
    layer = make_layer("conv", basis, dtype=torch.float32)
    x = make_input("conv", dtype=torch.float32)
    model = get_peft_model(layer, config_for(basis)).eval()
    with torch.no_grad():
        y0 = layer(x)
        assert torch.equal(model(x), y0)
        perturb(model)
        adapted = model(x)
        y = model.merge_and_unload()(x)
    assert y.dtype == torch.float32
    assert rel_err(y, adapted) <= 1e-5


@pytest.mark.parametrize("ndim,basis", [(1, "gram"), (2, "legendre"), (3, "gram"), (3, "bernstein"), (1, "rbf")])
def test_conv_1d_2d_3d(ndim, basis):
    layer = make_layer("conv", basis, ndim=ndim)
    x = make_input("conv", ndim=ndim)
    model = get_peft_model(layer, config_for(basis)).eval()
    with torch.no_grad():
        assert torch.equal(model(x), layer(x))
        perturb(model)
        adapted = model(x)
        assert rel_err(adapted, expected_layer(model.adapter_layers()[""], "conv", basis, 3, ndim)(x)) < 1e-10
        assert rel_err(model.merge_and_unload()(x), adapted) <= 1e-10


@pytest.mark.parametrize("basis", ["gram", "bernstein", "bspline"])
def test_rank(basis):
    """rank r: the coefficient change is B·A, a matrix of rank <= r; count and merge as computed by hand."""
    layer = make_layer("conv", basis, groups=1)
    x = make_input("conv")
    before = layer.basis_weight.detach().clone()
    model = get_peft_model(layer, config_for(basis, rank=2)).eval()
    wrapper = model.adapter_layers()[""]
    O, I = before.shape[:2]
    T = 3 if basis in POLY else 7                             # degrees [0, 2, 3]; 'all' of 4 + 3 B-splines
    E = 2 if basis in POLY else 0
    betas = {"gram": 2 + 2}.get(basis, 0)                     # β deltas of degrees 2, 3; one β per extra degree
    want = 2 * (I * T * 9) + O * 2 + (2 * (I * E * 9) + O * 2 if E else 0) + betas
    assert model.get_nb_trainable_parameters()[0] == want
    with torch.no_grad():
        assert torch.equal(model(x), layer(x))
        perturb(model)
        change = wrapper.effective_basis_weight() - before
        assert torch.linalg.matrix_rank(change.reshape(O, -1)).item() <= 2
        adapted = model(x)
        assert rel_err(adapted, expected_layer(wrapper, "conv", basis, 3, groups=1)(x)) < 1e-10
        assert rel_err(model.merge_and_unload()(x), adapted) <= 1e-10


def test_bernstein_elevation_against_the_definition():
    coef = torch.randn(3, 2, 4, dtype=F64)
    up = bernstein_elevate(coef, 3, 2)
    s = torch.rand(100, dtype=F64)
    torch.testing.assert_close(coef @ bernstein_values(s, 3).T, up @ bernstein_values(s, 5).T, atol=1e-13, rtol=0)
    torch.testing.assert_close(up, elevate_by_fit(coef, 3, 2), atol=1e-10, rtol=0)


def test_gram_shape_weights_get_gradients():
    layer = make_layer("conv", "gram")
    model = get_peft_model(layer, BasisAdapterConfig(trainable_degrees=[2, 3], extra_degrees=1)).train()
    perturb(model)
    model(make_input("conv")).square().sum().backward()
    wrapper = model.adapter_layers()[""]
    for name in ("basis_delta", "basis_extra", "beta_delta", "beta_extra"):
        g = getattr(wrapper, name).grad
        assert g is not None and g.abs().sum() > 0, name
    assert all(p.grad is None for p in layer.parameters())


# -- whole zoo models ---------------------------------------------------------------------------------------

def tiny(basis="gram", **kwargs):
    torch.manual_seed(0)
    return kanzoo.create_model(f"simple_conv_{TAGS[basis]}", width_scale=0.125, **kwargs)


def digits_like(n=4, seed=3, dtype=torch.float32):
    return torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def param_count(model):
    return sum(p.numel() for p in model.parameters())


def test_trainable_parameter_count_matches_shapes():
    model = tiny()
    widths = [4, 8, 16, 32]
    chans = [3] + widths
    cfg = BasisAdapterConfig(trainable_degrees=[1, 2, 3], extra_degrees=1, num_classes=5)
    peft_model = get_peft_model(model, cfg)
    # per layer: delta on 3 degrees + 1 extra degree (O·I·9 each), β deltas of degrees 2 and 3, one β extra
    adapter = sum(o * i * 9 * (3 + 1) + 2 + 1 for i, o in zip(chans[:-1], widths))
    head = 32 * 5 + 5
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert trainable == adapter + head
    assert total == param_count(tiny(num_classes=5)) + adapter
    assert sum(p.numel() for p in peft_model.parameters() if p.requires_grad) == trainable


def test_print_trainable_parameters(capsys):
    peft_model = get_peft_model(tiny(), BasisAdapterConfig(trainable_degrees=[3]))
    peft_model.print_trainable_parameters()
    t, a = peft_model.get_nb_trainable_parameters()
    assert capsys.readouterr().out.strip() == (f"trainable params: {t:,d} || all params: {a:,d} || "
                                               f"trainable%: {100 * t / a:.4f}")


def test_training_changes_only_the_adapter_and_merge_stays_exact():
    model = tiny()
    frozen = {k: v.detach().clone() for k, v in model.state_dict().items()}
    peft_model = get_peft_model(model, BasisAdapterConfig(trainable_degrees=[2, 3], extra_degrees=1))
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.5)
    x, target = digits_like(), torch.tensor([0, 1, 2, 3])
    peft_model.train()
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(peft_model(x), target).backward()
        opt.step()
    now = {k.replace(".base_layer", ""): v for k, v in peft_model.base_model.state_dict().items()}
    for key, value in frozen.items():       # base weights and BatchNorm statistics untouched
        assert torch.equal(now[key], value), key
    peft_model.eval()
    with torch.no_grad():
        adapted = peft_model(x)
        assert rel_err(adapted, model_output(frozen, x)) > 1e-4
        merged = peft_model.merge_and_unload()
        assert rel_err(merged(x), adapted) <= 1e-5


def model_output(state, x):
    m = tiny()
    m.load_state_dict(state)
    with torch.no_grad():
        return m.eval()(x)


def test_save_reload_round_trip_is_bit_exact(tmp_path):
    model = tiny()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = get_peft_model(model, BasisAdapterConfig(trainable_degrees=[0, 3], extra_degrees=1, rank=2))
    perturb(peft_model)
    x = digits_like()
    with torch.no_grad():
        adapted = peft_model.eval()(x)
    peft_model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["adapter_config.json", "adapter_model.safetensors"]
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    names = ["basis_delta_A", "basis_delta_B", "basis_extra_A", "basis_extra_B", "beta_delta", "beta_extra"]
    assert sorted(tensors) == sorted(f"base_model.model.stages.{i}.{n}" for i in range(4) for n in names)
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "simple_conv_kagn"
    assert cfg["kanzoo_version"] == kanzoo.__version__ and cfg["peft_type"] == "KANZOO_BASIS"
    assert cfg["trainable_degrees"] == [0, 3] and cfg["extra_degrees"] == 1 and cfg["rank"] == 2

    fresh = tiny()
    fresh.load_state_dict(base_state)
    reloaded = PeftModel.from_pretrained(fresh, tmp_path)
    assert reloaded.get_nb_trainable_parameters()[0] == 0          # is_trainable=False freezes the adapter
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(x), adapted)
    fresh = tiny()
    fresh.load_state_dict(base_state)
    merged = load_adapter(fresh, tmp_path, merge=True)
    assert type(merged) is type(fresh) and not any(isinstance(m, BasisAdapterLayer) for m in merged.modules())
    with torch.no_grad():
        assert rel_err(merged.eval()(x), adapted) <= 1e-5
    fresh = tiny()
    fresh.load_state_dict(base_state)
    trainable = PeftModel.from_pretrained(fresh, tmp_path, is_trainable=True)
    assert trainable.get_nb_trainable_parameters()[0] > 0


def test_merged_zoo_model_rebuilds_by_name():
    model = tiny()
    peft_model = get_peft_model(model, BasisAdapterConfig(trainable_degrees=[3], extra_degrees=2))
    perturb(peft_model)
    x = digits_like()
    merged = peft_model.merge_and_unload().eval()
    assert type(merged).__name__ == "SimpleConvKAN"
    args = get_model_args(merged)
    assert args["basis_kwargs"] == {"degree": 5}
    rebuilt = kanzoo.create_model("simple_conv_kagn", **args)
    shapes = {k: tuple(v.shape) for k, v in merged.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(merged.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), merged(x))
        assert torch.allclose(torch.jit.script(merged)(x), merged(x), rtol=1e-5, atol=1e-6)  # a plain model


def test_bottleneck_vgg_from_the_zoo():
    torch.manual_seed(0)
    model = kanzoo.create_model("vgg_kagn_bn11_v4", width_scale=0.125, num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y0 = model(x)
    peft_model = get_peft_model(model, BasisAdapterConfig(trainable_degrees=[5], extra_degrees=1, rank=1)).eval()
    assert all(l.kind is BottleneckKANConvNd for l in peft_model.adapter_layers().values())
    with torch.no_grad():
        assert torch.equal(peft_model(x), y0)
        perturb(peft_model, scale=0.2)
        adapted = peft_model(x)
        merged = peft_model.merge_and_unload()
        assert rel_err(merged(x), adapted) <= 1e-5
    rebuilt = kanzoo.create_model("vgg_kagn_bn11_v4", **get_model_args(merged))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in merged.state_dict().items()}


def test_new_num_classes_via_modules_to_save(tmp_path):
    model = tiny()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = get_peft_model(model, BasisAdapterConfig(trainable_degrees=[3], num_classes=7))
    assert model.num_classes == 7 and model.get_classifier().weight.requires_grad
    perturb(peft_model)
    x = digits_like()
    with torch.no_grad():
        adapted = peft_model.eval()(x)
    assert adapted.shape == (4, 7)
    peft_model.save_pretrained(tmp_path)
    keys = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert {"base_model.model.head.fc.weight", "base_model.model.head.fc.bias"} <= set(keys)
    assert not any(".norm." in k or k.endswith("stages.0.weight") for k in keys)    # adapter weights only
    fresh = tiny()
    fresh.load_state_dict(base_state)
    assert fresh.num_classes == 10
    reloaded = PeftModel.from_pretrained(fresh, tmp_path)
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(x), adapted)
    merged = reloaded.merge_and_unload()
    assert get_model_args(merged)["num_classes"] == 7


def test_modules_to_save_by_name_and_train_base(tmp_path):
    model = tiny()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = get_peft_model(model, BasisAdapterConfig(trainable_degrees=[], extra_degrees=1, train_base=True,
                                                          modules_to_save=["head.fc"]))
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    want = ({f"base_model.stages.{i}.{n}" for i in range(4) for n in ("basis_extra", "beta_extra")}
            | {f"base_model.stages.{i}.base_layer.weight" for i in range(4)}
            | {"base_model.head.fc.weight", "base_model.head.fc.bias"})
    assert trainable == want
    perturb(peft_model)
    x = digits_like()
    with torch.no_grad():
        adapted = peft_model.eval()(x)
    peft_model.save_pretrained(tmp_path)
    keys = set(load_file(str(tmp_path / "adapter_model.safetensors")))
    assert {f"base_model.model.stages.{i}.weight" for i in range(4)} <= keys
    fresh = tiny()
    fresh.load_state_dict(base_state)
    with torch.no_grad():
        assert torch.equal(PeftModel.from_pretrained(fresh, tmp_path).eval()(x), adapted)


# -- BatchNorm policy ---------------------------------------------------------------------------------------

def bn_stats(model):
    return {n.replace(".base_layer", ""): (m.running_mean.clone(), m.running_var.clone())
            for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}


def test_frozen_norms_keep_their_running_stats(tmp_path):
    model = tiny()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    before = bn_stats(model)
    assert before                                   # simple_conv uses BatchNorm
    peft_model = get_peft_model(model, BasisAdapterConfig(trainable_degrees=[3])).train()
    assert peft_model.training and not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    perturb(peft_model)
    for seed in range(3):
        peft_model(digits_like(seed=seed))
    after = bn_stats(model)
    assert all(torch.equal(before[k][0], after[k][0]) and torch.equal(before[k][1], after[k][1]) for k in before)
    assert not any(p.requires_grad for m in model.modules() if isinstance(m, nn.BatchNorm2d)
                   for p in m.parameters())
    x = digits_like(seed=9)
    with torch.no_grad():
        adapted = peft_model.eval()(x)
    peft_model.save_pretrained(tmp_path)
    fresh = tiny()
    fresh.load_state_dict(base_state)
    with torch.no_grad():
        assert torch.equal(PeftModel.from_pretrained(fresh, tmp_path).eval()(x), adapted)


def test_train_norm_saves_running_stats(tmp_path):
    model = tiny()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    before = bn_stats(model)
    peft_model = get_peft_model(model, BasisAdapterConfig(trainable_degrees=[3], train_norm=True)).train()
    assert all(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    for seed in range(3):
        peft_model(digits_like(seed=seed))
    after = bn_stats(model)
    assert all(not torch.equal(before[k][0], after[k][0]) for k in before)
    x = digits_like(seed=9)
    with torch.no_grad():
        adapted = peft_model.eval()(x)
    peft_model.save_pretrained(tmp_path)
    keys = set(load_file(str(tmp_path / "adapter_model.safetensors")))
    for i in range(4):
        assert {f"base_model.model.stages.{i}.norm.{n}" for n in
                ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")} <= keys
    fresh = tiny()
    fresh.load_state_dict(base_state)
    with torch.no_grad():    # the pitfall: without the saved statistics this would differ
        assert torch.equal(PeftModel.from_pretrained(fresh, tmp_path).eval()(x), adapted)


def test_unload_restores_the_base_model():
    model = tiny()
    x = digits_like()
    with torch.no_grad():
        y0 = model.eval()(x)
    peft_model = get_peft_model(model, BasisAdapterConfig(extra_degrees=1))
    perturb(peft_model)
    restored = peft_model.unload().eval()
    assert restored is model and not any(isinstance(m, BasisAdapterLayer) for m in model.modules())
    with torch.no_grad():
        assert torch.equal(restored(x), y0)
    with pytest.raises(RuntimeError, match="merged or unloaded"):
        peft_model.save_pretrained("unused")


# -- bad configurations: clear errors before training starts ------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(trainable_degrees=[-1]), "ints >= 0"),
    (dict(trainable_degrees=[1, 1]), "repeated"),
    (dict(trainable_degrees="some"), "'all'"),
    (dict(extra_degrees=-1), "extra_degrees must be an int >= 0"),
    (dict(extra_degrees=1.5), "extra_degrees must be an int >= 0"),
    (dict(rank=0), "rank must be None"),
    (dict(num_classes=0), "num_classes"),
    (dict(trainable_degrees=None, extra_degrees=0), "trains nothing"),
    (dict(target_modules=[]), "empty list"),
    (dict(peft_type="LORA"), "peft library"),
])
def test_bad_config_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BasisAdapterConfig(**kwargs)


def test_config_normalises_and_round_trips():
    cfg = BasisAdapterConfig(trainable_degrees=3, target_modules=[KANConvNd, "stages.1"], modules_to_save="head")
    assert cfg.trainable_degrees == [3] and cfg.modules_to_save == ["head"]
    assert cfg.target_modules == ["type:KANConvNd", "stages.1"]
    assert BasisAdapterConfig(trainable_degrees=[3, 1]).trainable_degrees == [1, 3]
    assert BasisAdapterConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="keys kanzoo does not know"):
        BasisAdapterConfig.from_dict({"r": 8})


def assert_untouched(model, head):
    assert not any(isinstance(m, BasisAdapterLayer) for m in model.modules())
    assert model.get_classifier() is head


@pytest.mark.parametrize("basis,kwargs,match", [
    ("gram", dict(trainable_degrees=[4]), r"contains \[4\], out of range .* degrees 0..3"),
    ("gram", dict(trainable_degrees=[4], num_classes=3), r"out of range"),
    ("gram", dict(rank=5, num_classes=3), r"rank=5"),
    ("bspline", dict(trainable_degrees=[8]), r"grid function indices 0..7"),
    ("gram", dict(target_modules=["nope"]), "matches no KAN layer"),
    ("gram", dict(target_modules=r"stages\.9"), "matches no KAN layer"),
    ("gram", dict(target_modules=["head.fc"]), "not a KAN layer"),
    ("gram", dict(rank=5), r"rank=5 is larger .* rank <= 4"),
    ("bspline", dict(extra_degrees=1), "fixed grid"),
    ("rbf", dict(extra_degrees=1), "fixed grid"),
    ("gram", dict(extra_degrees=1, target_modules=["stages.0"]), "could not be rebuilt by name"),
    ("gram", dict(modules_to_save=["nope"], num_classes=3), "matches no module"),
    ("gram", dict(target_modules=["stages.0"], modules_to_save=["stages.0"]), "both a target"),
])
def test_bad_config_for_the_model(basis, kwargs, match):
    model = tiny(basis)
    head = model.get_classifier()
    with pytest.raises(ValueError, match=match):
        get_peft_model(model, BasisAdapterConfig(**kwargs))
    assert_untouched(model, head)


def test_target_and_exclude_patterns():
    def names(**kw):
        return list(get_peft_model(tiny(), BasisAdapterConfig(trainable_degrees=[3], **kw)).adapter_layers())

    everything = [f"stages.{i}" for i in range(4)]
    assert names() == everything
    assert names(target_modules=r"stages\.[12]") == ["stages.1", "stages.2"]
    assert names(target_modules=["1", "stages.3"]) == ["stages.1", "stages.3"]
    assert names(target_modules=[KANConvNd]) == everything
    assert names(exclude_modules=["stages.0"]) == everything[1:]
    with pytest.raises(ValueError, match="matches no KAN layer"):
        names(exclude_modules=["stages"])          # excluding a container excludes what is inside


def test_unsupported_basis_targeted_explicitly():
    model = nn.Sequential(KANConvNd(2, 2, 3, basis="wavelet"), KANConvNd(2, 2, 3, basis="gram"))
    with pytest.raises(ValueError, match="no adapter rules"):
        get_peft_model(model, BasisAdapterConfig(target_modules=["0"]))
    assert list(get_peft_model(model, BasisAdapterConfig()).adapter_layers()) == ["1"]   # default skips it


def test_adapter_for_another_architecture(tmp_path):
    get_peft_model(tiny(), BasisAdapterConfig(trainable_degrees=[3])).save_pretrained(tmp_path)
    other = tiny("legendre")
    with pytest.raises(ValueError, match="saved for 'simple_conv_kagn', but the model is 'simple_conv_kaln'"):
        PeftModel.from_pretrained(other, tmp_path)
    assert not any(isinstance(m, BasisAdapterLayer) for m in other.modules())
    wider = kanzoo.create_model("simple_conv_kagn", width_scale=0.25)
    with pytest.raises(ValueError, match="different architecture: layer 'stages.0'"):
        PeftModel.from_pretrained(wider, tmp_path)
    assert not any(isinstance(m, BasisAdapterLayer) for m in wider.modules())
    unnamed = nn.Sequential(KANConvNd(3, 4, 3, degree=3))
    with pytest.raises(ValueError, match="different architecture"):
        PeftModel.from_pretrained(unnamed, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PeftModel.from_pretrained(tiny(), tmp_path / "missing")


def test_writes_are_atomic(tmp_path, monkeypatch):
    import safetensors.torch as st
    peft_model = get_peft_model(tiny(), BasisAdapterConfig(trainable_degrees=[3]))

    def broken(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(st, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        peft_model.save_pretrained(tmp_path)
    assert os.listdir(tmp_path) == []            # neither a half-written file nor a temporary one
    with pytest.raises(NotADirectoryError):
        (tmp_path / "file").write_text("x")
        peft_model.save_pretrained(tmp_path / "file")
