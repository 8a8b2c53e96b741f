"""kanzoo.peft on the Kolmogorov-Arnold Transformer: adapters on the group-rational activations.

The adapted function is checked against an independent statement of the rational, written here in plain torch:
F_g(x) = (Σ_i a_i x^i) / (1 + Σ_j |b_gj|·|x|^(j+1)) with a' = a + Δa, b' = b + Δb placed by hand at the powers
the docs assign to each trainable degree. Parameter counts come from layer shapes.
"""
import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import kanzoo
from kanzoo.layers import GroupRational
from kanzoo.models.kat import KAT
from kanzoo.peft import (
    BasisAdapterConfig,
    BasisAdapterLayer,
    PeftModel,
    RationalAdapterLayer,
    get_peft_model,
    load_adapter,
)

F64 = torch.float64
ACTS = [f"blocks.{i}.mlp.act{j}" for i in range(2) for j in (1, 2)]
PER_RATIONAL = 6 + 8 * 4            # Δa (1, 6) + Δb (8 groups, 4) for order (5, 4)
HEAD10 = 192 * 10 + 10


def tiny_kat(dtype=torch.float32, **kwargs):
    torch.manual_seed(0)
    kwargs = {"num_classes": 5, "img_size": 32, "patch_size": 8, "depth": 2, **kwargs}
    return kanzoo.create_model("kat_tiny_patch16_224", **kwargs).to(dtype)


def images(n=2, seed=3, dtype=torch.float32):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def rational_by_hand(x, a, b):
    """F_g(x) for channels-last x: numerator a (1, m+1), denominators b (G, n), from the definition."""
    G = b.shape[0]
    a = a.reshape(-1)
    xs = x.reshape(*x.shape[:-1], G, x.shape[-1] // G)
    p = sum(a[i] * xs ** i for i in range(a.numel()))
    q = 1 + sum(b[:, j].abs().unsqueeze(-1) * xs.abs() ** (j + 1) for j in range(b.shape[1]))
    return (p / q).reshape(x.shape)


def by_hand_coefficients(wrapper):
    """(a', b') of a RationalAdapterLayer from its deltas: degree d -> a_d and b_(d-1)."""
    base = wrapper.base_layer
    m, n = base.weight_numerator.shape[1] - 1, base.weight_denominator.shape[1]
    a = base.weight_numerator.detach().clone()
    b = base.weight_denominator.detach().clone()
    num = [d for d in wrapper.trainable_degrees if d <= m]
    den = [d for d in wrapper.trainable_degrees if 1 <= d <= n]
    for k, d in enumerate(num):
        a[0, d] += wrapper.numerator_delta.detach()[0, k]
    for k, d in enumerate(den):
        b[:, d - 1] += wrapper.denominator_delta.detach()[:, k]
    return a, b


def train_steps(peft_model, x, target, steps=3, lr=0.05):
    opt = torch.optim.Adam([p for p in peft_model.parameters() if p.requires_grad], lr=lr)
    peft_model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(peft_model(x), target).backward()
        opt.step()
    return peft_model.eval()


# -- the plain layer ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,tol,kernel", [(F64, 1e-10, None), (torch.float32, 1e-5, None),
                                              (F64, 1e-10, "formula")])
def test_group_rational_layer_adapts_and_merges_exactly(dtype, tol, kernel):
    torch.manual_seed(0)
    layer = GroupRational(num_groups=4, mode="swish", kernel=kernel).to(dtype)
    x = torch.randn(3, 5, 16, dtype=dtype)
    with torch.no_grad():
        y0 = layer(x)
    model = get_peft_model(layer, BasisAdapterConfig(trainable_degrees=[0, 2, 5]))
    wrapper = model.adapter_layers()[""]
    assert isinstance(wrapper, RationalAdapterLayer) and isinstance(wrapper, BasisAdapterLayer)
    # degree 0 -> a_0; 2 -> a_2 and b_1; 5 -> a_5 (the denominator has powers 1..4 only)
    assert wrapper.numerator_delta.shape == (1, 3) and wrapper.denominator_delta.shape == (4, 1)
    with torch.no_grad():
        assert torch.equal(model(x), y0)                         # zero deltas: bit-for-bit the base layer
        wrapper.numerator_delta.copy_(torch.tensor([[0.1, -0.2, 0.03]], dtype=dtype))
        wrapper.denominator_delta.copy_(torch.tensor([[0.5], [-0.4], [0.2], [-0.1]], dtype=dtype))
        adapted = model(x)
        a, b = by_hand_coefficients(wrapper)
        assert rel_err(adapted, y0) > 1e-3
        assert rel_err(adapted, rational_by_hand(x, a, b)) <= tol
        params = (layer.weight_numerator, layer.weight_denominator)
        merged = model.merge_and_unload()
        y = merged(x)
    assert merged is layer and type(merged) is GroupRational
    assert merged.weight_numerator is params[0] and merged.weight_denominator is params[1]   # same parameters
    assert merged.weight_numerator.shape == (1, 6) and merged.weight_denominator.shape == (4, 4)
    assert torch.equal(merged.weight_numerator.detach(), a) and torch.equal(merged.weight_denominator.detach(), b)
    assert rel_err(y, adapted) <= tol
    assert all(p.requires_grad for p in merged.parameters())


def test_denominator_delta_applies_before_the_absolute_value():
    layer = GroupRational(num_groups=1, mode="identity", order=(2, 1)).double()
    with torch.no_grad():
        layer.weight_denominator.fill_(-0.3)
    model = get_peft_model(layer, BasisAdapterConfig(trainable_degrees=[1]))
    wrapper = model.adapter_layers()[""]
    with torch.no_grad():
        wrapper.denominator_delta.fill_(0.5)
        x = torch.linspace(-2, 2, 9, dtype=F64).unsqueeze(-1)
        y = model(x)
        torch.testing.assert_close(y, x / (1 + 0.2 * x.abs()), rtol=1e-14, atol=0)     # |b + Δb| = 0.2
        assert not torch.allclose(y, x / (1 + 0.8 * x.abs()))                          # not |b| + Δb
        torch.testing.assert_close(model.merge_and_unload().weight_denominator, torch.full((1, 1), 0.2, dtype=F64))


def test_gradients_of_the_deltas_are_the_formulas():
    """The fused kernel's coefficient gradients reach the deltas: gradcheck against finite differences."""
    torch.manual_seed(0)
    layer = GroupRational(num_groups=2, mode="gelu", kernel="eager").double()
    model = get_peft_model(layer, BasisAdapterConfig(trainable_degrees=[1, 3, 5]))
    wrapper = model.adapter_layers()[""]
    with torch.no_grad():
        wrapper.numerator_delta.normal_(0, 0.1)
        wrapper.denominator_delta.normal_(0, 0.1)
    x = torch.randn(4, 6, dtype=F64)

    def f(dn, dd):
        return torch.func.functional_call(wrapper, {"numerator_delta": dn, "denominator_delta": dd}, (x,))

    assert torch.autograd.gradcheck(f, (wrapper.numerator_delta.detach().clone().requires_grad_(),
                                        wrapper.denominator_delta.detach().clone().requires_grad_()))


# -- a KAT ---------------------------------------------------------------------------------------------------

def test_default_config_targets_the_rationals_and_starts_identical():
    model = tiny_kat().eval()
    x = images()
    with torch.no_grad():
        y0 = model(x)
    peft_model = get_peft_model(model, BasisAdapterConfig())
    assert list(peft_model.adapter_layers()) == ACTS
    assert all(type(l) is RationalAdapterLayer for l in peft_model.adapter_layers().values())
    assert all(isinstance(peft_model.base_model.blocks[i].mlp.fc1, nn.Linear) for i in range(2))
    with torch.no_grad():
        assert torch.equal(peft_model.eval()(x), y0)
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert trainable == 4 * PER_RATIONAL
    assert total == sum(p.numel() for p in tiny_kat().parameters()) + 4 * PER_RATIONAL


@pytest.mark.parametrize("train_norm", [False, True])
def test_gradients_reach_only_the_adapter_and_the_head(train_norm):
    model = tiny_kat()
    peft_model = get_peft_model(model, BasisAdapterConfig(num_classes=10, train_norm=train_norm)).train()
    peft_model(images()).logsumexp(-1).sum().backward()
    with_grad = {n for n, p in peft_model.named_parameters() if p.grad is not None}
    want = {f"base_model.{a}.{d}" for a in ACTS for d in ("numerator_delta", "denominator_delta")}
    want |= {"base_model.head.weight", "base_model.head.bias"}
    if train_norm:
        norms = [f"blocks.{i}.norm{j}" for i in range(2) for j in (1, 2)] + ["norm"]
        want |= {f"base_model.{n}.{w}" for n in norms for w in ("weight", "bias")}
    assert with_grad == want
    assert {n for n, p in peft_model.named_parameters() if p.requires_grad} == want
    for n, p in peft_model.named_parameters():
        if n in want:
            assert p.grad.abs().sum() > 0, n
    frozen = [n for n, _ in peft_model.named_parameters() if n not in want]
    for part in ("patch_embed", "pos_embed", "cls_token", "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2",
                 "act1.base_layer.weight_numerator", "act2.base_layer.weight_denominator"):
        assert any(part in n for n in frozen), part


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (F64, 1e-10)])
def test_training_then_merge_is_exact(dtype, tol):
    model = tiny_kat(dtype)
    frozen = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
    peft_model = get_peft_model(model, BasisAdapterConfig(num_classes=10))
    x, target = images(4, dtype=dtype), torch.tensor([0, 1, 2, 3])
    train_steps(peft_model, x, target)
    layers = peft_model.adapter_layers()
    for layer in layers.values():      # the deltas moved
        assert layer.numerator_delta.abs().max() > 1e-3 and layer.denominator_delta.abs().max() > 1e-3
    now = {k.replace(".base_layer", ""): v for k, v in peft_model.base_model.state_dict().items()}
    for key, value in frozen.items():  # every base weight untouched, the rationals included
        assert torch.equal(now[key], value), key
    expected = {name: by_hand_coefficients(layer) for name, layer in layers.items()}
    with torch.no_grad():
        adapted = peft_model(x)
        merged = peft_model.merge_and_unload().eval()
        y = merged(x)
    err = rel_err(y, adapted)
    print(f"KAT merge error ({dtype}): {err:.3e}")
    assert err <= tol
    # a plain KAT with the reference key layout, whose rationals hold a + Δa, b + Δb
    assert type(merged) is KAT and not any(isinstance(m, BasisAdapterLayer) for m in merged.modules())
    fresh = tiny_kat(dtype, num_classes=10)
    assert {k: v.shape for k, v in merged.state_dict().items()} == {k: v.shape for k, v in fresh.state_dict().items()}
    for name, (a, b) in expected.items():
        act = merged.get_submodule(name)
        assert type(act) is GroupRational
        assert torch.equal(act.weight_numerator.detach(), a) and torch.equal(act.weight_denominator.detach(), b)
    fresh.load_state_dict(merged.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), y)
    assert all(p.requires_grad for p in merged.parameters())


@pytest.mark.parametrize("degrees,num,den", [([0, 5], 2, 0), ([1], 1, 1), ([2, 3, 4], 3, 3)])
def test_trainable_degrees_select_powers_of_x(degrees, num, den):
    model = tiny_kat()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = get_peft_model(model, BasisAdapterConfig(trainable_degrees=degrees))
    layer = peft_model.adapter_layers()["blocks.0.mlp.act2"]
    assert layer.numerator_degrees == [d for d in degrees if d <= 5]
    assert layer.denominator_degrees == [d for d in degrees if 1 <= d <= 4]
    names = set(layer.adapter_parameters())
    assert ("numerator_delta" in names) == (num > 0) and ("denominator_delta" in names) == (den > 0)
    assert peft_model.get_nb_trainable_parameters()[0] == 4 * (num + 8 * den)
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.fill_(0.25)
    merged = peft_model.merge_and_unload()
    a0, b0 = base["blocks.0.mlp.act2.weight_numerator"], base["blocks.0.mlp.act2.weight_denominator"]
    a1, b1 = merged.blocks[0].mlp.act2.weight_numerator.detach(), merged.blocks[0].mlp.act2.weight_denominator.detach()
    assert torch.nonzero(a1 != a0)[:, 1].unique().tolist() == [d for d in degrees if d <= 5]
    assert torch.nonzero(b1 != b0)[:, 1].unique().tolist() == [d - 1 for d in degrees if 1 <= d <= 4]


def test_save_reload_round_trip(tmp_path):
    model = tiny_kat()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = get_peft_model(model, BasisAdapterConfig(num_classes=10))
    x = images(4)
    train_steps(peft_model, x, torch.tensor([0, 1, 2, 3]), steps=2)
    with torch.no_grad():
        adapted = peft_model(x)
    peft_model.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    want = {f"base_model.model.{a}.{d}" for a in ACTS for d in ("numerator_delta", "denominator_delta")}
    assert set(tensors) == want | {"base_model.model.head.weight", "base_model.model.head.bias"}
    assert sum(t.numel() for t in tensors.values()) == 4 * PER_RATIONAL + HEAD10
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"].startswith("kat_tiny_patch16_224")
    assert cfg["target_layers"]["blocks.1.mlp.act2"] == {
        "layer": "GroupRational", "basis": "rational", "order": [5, 4], "num_groups": 8,
        "trainable_degrees": [0, 1, 2, 3, 4, 5], "numerator_degrees": [0, 1, 2, 3, 4, 5],
        "denominator_degrees": [1, 2, 3, 4], "extra_degrees": 0, "rank": None}

    fresh = tiny_kat()
    fresh.load_state_dict(base_state)
    reloaded = PeftModel.from_pretrained(fresh, tmp_path)
    assert reloaded.get_nb_trainable_parameters()[0] == 0
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(x), adapted)
    fresh = tiny_kat()
    fresh.load_state_dict(base_state)
    merged = load_adapter(fresh, tmp_path, merge=True).eval()
    assert type(merged) is KAT and merged.num_classes == 10
    with torch.no_grad():
        assert rel_err(merged(x), adapted) <= 1e-5


def test_kat_adapter_refused_on_another_architecture(tmp_path):
    get_peft_model(tiny_kat(), BasisAdapterConfig(num_classes=10)).save_pretrained(tmp_path)

    def refused(model, match):
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        with pytest.raises(ValueError, match=match):
            PeftModel.from_pretrained(model, tmp_path)
        assert not any(isinstance(m, BasisAdapterLayer) for m in model.modules())
        if head is not None:
            assert model.get_classifier() is head          # untouched: no classifier reset either

    torch.manual_seed(0)
    refused(kanzoo.create_model("simple_conv_kagn", width_scale=0.125),
            r"saved for 'kat_tiny_patch16_224.*', but the model is 'simple_conv_kagn'")
    refused(tiny_kat(depth=3), r"different architecture: .*blocks\.2\.mlp\.act1")
    refused(tiny_kat(rational_groups=4), r"different architecture: layer 'blocks\.0\.mlp\.act1'")
    refused(nn.Sequential(GroupRational()), "Sequential has no get_classifier")   # the saved config's num_classes
    plain = tmp_path / "plain"
    get_peft_model(tiny_kat(), BasisAdapterConfig()).save_pretrained(plain)
    unnamed = nn.Sequential(GroupRational(), GroupRational())
    with pytest.raises(ValueError, match=r"different architecture: it adapts layers \['blocks\.0\.mlp\.act1'"):
        PeftModel.from_pretrained(unnamed, plain)
    assert not any(isinstance(m, BasisAdapterLayer) for m in unnamed.modules())
    # and the other way round: a KAN adapter onto a KAT
    other = tmp_path / "kan"
    get_peft_model(kanzoo.create_model("simple_conv_kagn", width_scale=0.125),
                   BasisAdapterConfig(trainable_degrees=[3])).save_pretrained(other)
    kat = tiny_kat()
    with pytest.raises(ValueError, match="saved for 'simple_conv_kagn', but the model is 'kat_tiny_patch16_224"):
        PeftModel.from_pretrained(kat, other)


@pytest.mark.parametrize("kwargs,match", [
    (dict(extra_degrees=1), r"extra_degrees=1 is not supported for layer 'blocks\.0\.mlp\.act1' \(GroupRational"),
    (dict(rank=2), "rank=2 would have no effect"),
    (dict(rank=2, target_modules=["type:GroupRational"]), "rank=2 does not apply to layer 'blocks.0.mlp.act1'"),
    (dict(trainable_degrees=[6]), r"contains \[6\], out of range .* powers of x 0\.\.5"),
    (dict(train_base=True, num_classes=3), "train_base=True would have no effect"),
    (dict(target_modules=["fc1"]), "not a KAN layer or GroupRational"),
])
def test_bad_configs_on_a_kat(kwargs, match):
    model = tiny_kat()
    head = model.get_classifier()
    with pytest.raises(ValueError, match=match):
        get_peft_model(model, BasisAdapterConfig(**kwargs))
    assert not any(isinstance(m, BasisAdapterLayer) for m in model.modules()) and model.get_classifier() is head


def test_targets_and_modules_to_save_on_a_kat():
    peft_model = get_peft_model(tiny_kat(), BasisAdapterConfig(target_modules=["act2"], exclude_modules=["blocks.1"],
                                                               modules_to_save=["blocks.1.mlp.fc2"]))
    assert list(peft_model.adapter_layers()) == ["blocks.0.mlp.act2"]
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable == {"base_model.blocks.0.mlp.act2.numerator_delta",
                         "base_model.blocks.0.mlp.act2.denominator_delta",
                         "base_model.blocks.1.mlp.fc2.weight", "base_model.blocks.1.mlp.fc2.bias"}


def test_print_trainable_parameters_full_kat_tiny(capsys):
    model = kanzoo.create_model("kat_tiny_patch16_224", device="meta")
    total_base = sum(p.numel() for p in model.parameters())
    assert total_base == 5_718_328
    peft_model = get_peft_model(model, BasisAdapterConfig(num_classes=10))
    peft_model.print_trainable_parameters()
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert len(peft_model.adapter_layers()) == 24                     # 12 blocks x (act1, act2)
    assert trainable == 24 * PER_RATIONAL + HEAD10 == 2_842
    assert total == total_base - (192 * 1000 + 1000) + HEAD10 + 24 * PER_RATIONAL
    assert capsys.readouterr().out.strip() == (f"trainable params: {trainable:,d} || all params: {total:,d} || "
                                               f"trainable%: {100 * trainable / total:.4f}")
