"""kanzoo.layers.selectable: S-KAN's selectable layers, their exact pruning, export refusal and schedule.

Expected values are computed independently of the mixing code: α by an explicit softmax of the logits, the
mixture from stand-alone KAN layers that carry copies of the members' weights, and pruned outputs against the
unpruned layer at a one-hot α.
"""
import io
import warnings

import pytest
import torch
from torch import nn

from kanzoo.layers import (
    KANConv2d,
    KANConvNd,
    KANLinear,
    NotPrunedError,
    PrunedKANConvNd,
    PrunedKANLinear,
    SelectableKANConv2d,
    SelectableKANLinear,
    check_exportable,
    prune_model,
    select_model,
    selectable_layers,
    selection_summary,
)
from kanzoo.layers.selectable import DEFAULT_POOL, parse_pool
from kanzoo.workflows.selection import SelectionSchedule

F64 = torch.float64
POOL3 = ("gram", "bspline", "chebyshev")


def conv_layer(pool=DEFAULT_POOL, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("norm_layer", "batch")
    layer = SelectableKANConv2d(3, 6, 3, padding=1, pool=pool, **kw).to(F64)
    randomise_norm(layer)
    return layer.eval()


def linear_layer(pool=POOL3, seed=0, **kw):
    torch.manual_seed(seed)
    layer = SelectableKANLinear(5, 7, pool=pool, **kw).to(F64)
    randomise_norm(layer)
    return layer.eval()


def randomise_norm(layer):
    """Non-trivial eval-mode norm statistics and affine parameters (so a wrong channel order shows)."""
    with torch.no_grad():
        for m in layer.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)


def conv_input(seed=1, n=2):
    return torch.randn(n, 3, 7, 6, generator=torch.Generator().manual_seed(seed), dtype=F64)


def linear_input(seed=1):
    return torch.randn(4, 2, 5, generator=torch.Generator().manual_seed(seed), dtype=F64)


def set_logits(layer, logits):
    with torch.no_grad():
        layer.alpha.copy_(torch.as_tensor(logits, dtype=layer.alpha.dtype))


def random_logits(layer, seed=3, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    set_logits(layer, torch.randn(layer.alpha.shape, generator=g, dtype=F64) * scale)


# --------------------------------------------------------------------------------------------- the mixture
def test_mixture_is_alpha_weighted_sum_of_stand_alone_members():
    layer = conv_layer(pool=POOL3, norm_layer="none", act_layer="identity", temperature=0.7)
    random_logits(layer)
    x = conv_input()
    logits = layer.alpha.detach() / 0.7
    alpha = logits.exp() / logits.exp().sum(dim=1, keepdim=True)
    expected = 0
    for i, basis in enumerate(POOL3):
        ref = KANConv2d(3, 6, 3, padding=1, basis=basis, norm_layer="none", act_layer="identity").to(F64).eval()
        ref.load_state_dict(layer.members[i].state_dict())
        expected = expected + alpha[:, i].view(1, -1, 1, 1) * ref(x)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    assert layer.alpha.shape == (6, 3) and layer.labels == list(POOL3)


def test_default_pool_and_uniform_start():
    layer = SelectableKANConv2d(2, 4, 3)
    assert layer.labels == list(DEFAULT_POOL) == ["bspline", "chebyshev", "gram", "rbf", "wavelet"]
    assert [type(m) for m in layer.members] == [KANConvNd] * 5
    torch.testing.assert_close(layer.mixing_weights(), torch.full((4, 5), 0.2))
    assert not layer.is_selected


def test_raw_mode_uses_alpha_itself():
    layer = linear_layer(alpha_mode="raw", norm_layer="none")
    torch.testing.assert_close(layer.mixing_weights(), torch.full((7, 3), 1 / 3, dtype=F64))
    random_logits(layer)
    torch.testing.assert_close(layer.mixing_weights(), layer.alpha.detach())
    # selection by |alpha| in raw mode
    set_logits(layer, [[-5.0, 1.0, 0.5]] * 7)
    layer.select(1)
    assert layer.selection_counts() == {"gram": 7, "bspline": 0, "chebyshev": 0}


def test_gradients_reach_alpha_and_every_member():
    layer = conv_layer(pool=POOL3).train()
    random_logits(layer)
    layer(conv_input()).square().mean().backward()
    assert layer.alpha.grad is not None and layer.alpha.grad.abs().sum() > 0
    for name, p in layer.named_parameters():
        assert p.grad is not None, name


def test_unselected_members_get_exactly_zero_gradient():
    layer = conv_layer(pool=POOL3).train()
    set_logits(layer, [[3.0, 2.0, 1.0]] * 3 + [[1.0, 2.0, 3.0]] * 3)
    layer.select(1)  # channels 0-2 keep gram (0), 3-5 chebyshev (2)
    layer(conv_input()).square().mean().backward()
    g_bspline = layer.members[1].basis_weight.grad
    assert torch.count_nonzero(g_bspline) == 0
    gram = layer.members[0].basis_weight.grad
    assert gram[:3].abs().sum() > 0 and torch.count_nonzero(gram[3:]) == 0


# ------------------------------------------------------------------------------------------------ select
def test_select_top_k_and_alpha_renormalised():
    layer = linear_layer()
    set_logits(layer, torch.tensor([[0.0, 1.0, 2.0]] * 7, dtype=F64))
    layer.select(2)
    assert layer.is_selected
    assert layer.selected.tolist() == [[False, True, True]] * 7
    e = torch.tensor([1.0, 2.0], dtype=F64).exp()
    torch.testing.assert_close(layer.mixing_weights()[0], torch.cat([torch.zeros(1, dtype=F64), e / e.sum()]))
    assert layer.selection()[0] == ["chebyshev", "bspline"]
    layer.select(1)
    assert layer.mixing_weights()[:, 2].tolist() == [1.0] * 7
    with pytest.raises(ValueError, match=r"top_k=2 but some channel has only 1 selected"):
        layer.select(2)


@pytest.mark.parametrize("top_k, match", [(0, "top_k must be an int >= 1, got 0"), (4, "top_k=4 but some channel"),
                                          (True, "top_k must be an int")])
def test_select_errors(top_k, match):
    with pytest.raises(ValueError, match=match):
        linear_layer().select(top_k)


def test_select_mask_errors():
    layer = linear_layer()
    with pytest.raises(ValueError, match=r"bool tensor of shape \(7, 3\)"):
        layer.select(mask=torch.ones(7, 2, dtype=torch.bool))
    bad = torch.ones(7, 3, dtype=torch.bool)
    bad[4] = False
    with pytest.raises(ValueError, match="every row needs a True"):
        layer.select(mask=bad)


def test_pool_parsing():
    assert parse_pool(["gram", ("gram", {"degree": 5}), ("bspline", {"grid_size": 8})]) == [
        ("gram", "gram", {}), ("gram_2", "gram", {"degree": 5}), ("bspline", "bspline", {"grid_size": 8})]
    assert parse_pool({"rbf": {"grid_size": 4}}) == [("rbf", "rbf", {"grid_size": 4})]
    with pytest.raises(ValueError, match="unknown basis 'splines'"):
        parse_pool(["splines"])
    with pytest.raises(ValueError, match=r"got the string 'gram'; write pool=\['gram'\]"):
        parse_pool("gram")
    with pytest.raises(ValueError, match="pool is empty"):
        parse_pool([])
    layer = SelectableKANLinear(3, 2, pool=[("gram", {"degree": 2}), ("gram", {"degree": 4})])
    assert [m.basis.degree for m in layer.members] == [2, 4]


@pytest.mark.parametrize("kwargs, match", [
    (dict(groups=3), "groups=1 only, got groups=3"),
    (dict(temperature=0.0), "temperature must be a finite number > 0, got 0.0"),
    (dict(alpha_mode="sparsemax"), r"alpha_mode must be one of \['softmax', 'raw'\], got 'sparsemax'"),
    (dict(dropout=1.5), r"dropout must be a probability in \[0, 1\)"),
])
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SelectableKANConv2d(3, 6, 3, **kwargs)


def test_input_errors_name_the_layer():
    with pytest.raises(ValueError, match="SelectableKANConvNd expects 3 input channels, got 4"):
        conv_layer()(torch.randn(1, 4, 5, 5, dtype=F64))
    with pytest.raises(ValueError, match="SelectableKANLinear expects 5 input features"):
        linear_layer()(torch.randn(2, 6, dtype=F64))


# ------------------------------------------------------------------------------------------------- prune
@pytest.mark.parametrize("pool", [POOL3, DEFAULT_POOL])
def test_conv_pruning_is_exact_at_one_hot_alpha(pool):
    layer = conv_layer(pool=pool)
    n_out, m = layer.alpha.shape
    logits = torch.full((n_out, m), -1.0, dtype=F64)
    choice = [i % m for i in range(n_out)]          # every member chosen by some channel, interleaved
    for o, c in enumerate(choice):
        logits[o, c] = 1.0
    set_logits(layer, logits)
    layer.select(1)
    x = conv_input()
    with torch.no_grad():
        before = layer(x)
        pruned = layer.prune()
        after = pruned.eval()(x)
    assert isinstance(pruned, PrunedKANConvNd)
    assert pruned.labels == [pool[i] for i in sorted(set(choice))]
    assert sum(pruned.counts().values()) == n_out
    torch.testing.assert_close(after, before, rtol=0, atol=1e-13)
    # compute drops: each branch holds only its channels
    for branch, label in zip(pruned.branches, pruned.labels):
        assert branch.out_channels == choice.count(pool.index(label))


def test_raw_one_hot_alpha_prunes_exactly_without_select():
    layer = linear_layer(alpha_mode="raw", bias=True, norm_layer="layer")
    one_hot = torch.zeros(7, 3, dtype=F64)
    one_hot[torch.arange(7), torch.tensor([0, 1, 2, 2, 1, 0, 0])] = 1.0
    set_logits(layer, one_hot)
    with torch.no_grad():
        layer.bias.uniform_(-1, 1)
        x = linear_input()
        before = layer(x)
        pruned = layer.prune()  # never selected: keeps each feature's top-1, which is its one-hot member
        torch.testing.assert_close(pruned(x), before, rtol=0, atol=1e-13)
    assert isinstance(pruned, PrunedKANLinear) and pruned.index.shape == (1, 7)


def test_top2_pruning_folds_alpha_exactly():
    layer = linear_layer(pool=DEFAULT_POOL, norm_layer="batch")
    random_logits(layer)
    layer.select(2)
    x = linear_input()
    with torch.no_grad():
        before = layer(x)
        pruned = layer.prune()
        torch.testing.assert_close(pruned.eval()(x), before, rtol=1e-12, atol=1e-12)
    assert pruned.index.shape == (2, 7)
    assert sum(pruned.counts().values()) == 2 * 7


def test_uneven_mask_pads_and_stays_exact():
    layer = conv_layer(pool=POOL3)
    random_logits(layer)
    mask = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1], [0, 0, 1], [0, 1, 1], [0, 1, 0]], dtype=torch.bool)
    layer.select(mask=mask)
    x = conv_input()
    with torch.no_grad():
        before = layer(x)
        pruned = layer.prune()
        torch.testing.assert_close(pruned(x), before, rtol=1e-12, atol=1e-12)
    assert pruned.pad and pruned.index.shape == (3, 6)


def test_single_basis_prunes_to_a_plain_layer():
    layer = linear_layer(bias=True, norm_layer="layer", act_layer="silu")
    set_logits(layer, [[0.0, 5.0, 0.0]] * 7)
    layer.select(1)
    with torch.no_grad():
        layer.bias.uniform_(-1, 1)
        x = linear_input()
        before = layer(x)
        plain = layer.prune()
        assert type(plain) is KANLinear and plain.bias is not None
        torch.testing.assert_close(plain(x), before, rtol=0, atol=1e-13)
    conv = conv_layer(pool=POOL3)
    set_logits(conv, [[0.0, 0.0, 5.0]] * 6)
    conv.select(1)
    with torch.no_grad():
        plain = conv.prune()
        assert type(plain) is KANConvNd and isinstance(plain.norm, nn.BatchNorm2d)
        torch.testing.assert_close(plain(conv_input()), conv(conv_input()), rtol=0, atol=1e-13)


def test_prune_of_soft_alpha_keeps_top1_and_leaves_layer_unchanged():
    layer = conv_layer(pool=POOL3)
    random_logits(layer)
    x = conv_input()
    with torch.no_grad():
        soft = layer(x)
        pruned = layer.prune()
        assert not layer.is_selected           # prune() did not touch the layer's selection
        assert not torch.allclose(pruned(x), soft)
        torch.testing.assert_close(pruned(x), layer.select(1)(x), rtol=0, atol=1e-13)


def test_prune_on_meta_is_a_clear_error():
    layer = SelectableKANLinear(3, 2, device="meta")
    with pytest.raises(ValueError, match="meta device"):
        layer.prune()


def test_model_level_select_prune_summary():
    torch.manual_seed(0)
    model = nn.Sequential(SelectableKANLinear(4, 6, pool=POOL3), nn.ReLU(), SelectableKANLinear(6, 3, pool=POOL3))
    assert [n for n, _ in selectable_layers(model)] == ["0", "2"]
    for _, layer in selectable_layers(model):
        random_logits(layer)
    summary = select_model(model, 1)
    assert set(summary) == {"0", "2"} and sum(summary["0"].values()) == 6
    x = torch.randn(5, 4)
    with torch.no_grad():
        before = model(x)
        prune_model(model)
        torch.testing.assert_close(model(x), before, rtol=0, atol=1e-6)
    assert not selectable_layers(model)
    after = selection_summary(model)
    assert {k: {b: c for b, c in v.items() if c} for k, v in summary.items()} == after
    with pytest.raises(ValueError, match="has no selectable KAN layers to prune"):
        prune_model(model)


# ------------------------------------------------------------------------------------------------ export
def test_unpruned_layers_refuse_to_export():
    layer = conv_layer(pool=POOL3)
    model = nn.Sequential(layer, nn.Flatten())
    with pytest.raises(NotPrunedError, match=r"1 unpruned selectable KAN layer\(s\) \('0'\).*prune_model"):
        check_exportable(model)
    with pytest.raises(NotPrunedError, match="is not pruned"):
        layer.check_exportable()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NotPrunedError):
            torch.onnx.export(model.float(), (conv_input().float(),), io.BytesIO(), dynamo=False)


def test_pruned_layers_script_and_export():
    layer = conv_layer(pool=POOL3)
    random_logits(layer)
    layer.select(1)
    pruned = layer.prune().float().eval()
    model = nn.Sequential(pruned)
    check_exportable(model)  # passes
    x = conv_input().float()
    with torch.no_grad():
        ref = model(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), ref)
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["x"])
    sess = onnxruntime.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"x": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-4, atol=1e-5)


def test_unpruned_layer_scripts_for_training_use():
    layer = linear_layer()
    random_logits(layer)
    x = linear_input()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(layer)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), layer(x))


# -------------------------------------------------------------------------------------------------- PEFT
def test_basis_adapters_apply_to_pruned_models():
    peft = pytest.importorskip("kanzoo.peft")
    torch.manual_seed(0)
    model = nn.Sequential(SelectableKANConv2d(3, 6, 3, padding=1, pool=("gram", "bspline")), nn.Flatten(1),
                          nn.LazyLinear(4))
    x = torch.randn(4, 3, 6, 6)
    model(x)
    set_logits(model[0], [[1.0, 0.0], [0.0, 1.0]] * 3)
    prune_model(model, top_k=1)
    model.eval()
    with torch.no_grad():
        base = model(x)
    peft_model = peft.get_peft_model(model, peft.BasisAdapterConfig(trainable_degrees="all"))
    adapted = [n for n, m in peft_model.named_modules() if isinstance(m, peft.BasisAdapterLayer)]
    assert len(adapted) == 2 and all(".branches." in n for n in adapted)
    with torch.no_grad():
        torch.testing.assert_close(peft_model(x), base, rtol=0, atol=0)  # zero deltas: identical
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.5)
    peft_model.train()
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(peft_model(x), torch.tensor([0, 1, 2, 3])).backward()
        opt.step()
    peft_model.eval()
    with torch.no_grad():
        tuned = peft_model(x)
        assert not torch.allclose(tuned, base)
        merged = peft_model.merge_and_unload()
        torch.testing.assert_close(merged(x), tuned, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- schedule
def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(SelectableKANLinear(4, 6, pool=POOL3), SelectableKANLinear(6, 2, pool=POOL3))


def test_schedule_runs_the_three_phases():
    model = tiny_model()
    for _, layer in selectable_layers(model):
        random_logits(layer)
    sched = SelectionSchedule(full_epochs=2, select_epochs=2, top_k=1)
    assert [sched.phase(e) for e in range(6)] == ["full", "full", "select", "select", "pruned", "pruned"]
    events = []
    for epoch in range(6):
        events.append(sched.on_epoch_start(epoch, model))
        if epoch == 3:
            x = torch.randn(3, 4)
            with torch.no_grad():
                before = model(x)
        sched.on_epoch_end(epoch, model, {"loss": 1.0})
    assert events == [None, None, "select", None, "prune", None]
    assert not selectable_layers(model)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=1e-6)
    assert [h["phase"] for h in sched.history] == ["full", "full", "select", "select", "pruned", "pruned"]
    assert sum(sched.history[0]["selection"]["0"].values()) == 6


def test_schedule_resume_rebuilds_the_pruned_structure():
    model = tiny_model()
    for _, layer in selectable_layers(model):
        random_logits(layer, seed=7)
    sched = SelectionSchedule(full_epochs=1, select_epochs=1)
    for epoch in range(3):
        sched.on_epoch_start(epoch, model)
    saved_sched, saved_model = sched.state_dict(), model.state_dict()

    fresh = tiny_model(seed=123)             # different random α: the saved masks must win
    resumed = SelectionSchedule(full_epochs=1, select_epochs=1)
    resumed.load_state_dict(saved_sched)
    assert resumed.on_epoch_start(3, fresh) == "prune"
    fresh.load_state_dict(saved_model)
    x = torch.randn(3, 4)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="differs from this one"):
        SelectionSchedule(full_epochs=2, select_epochs=1).load_state_dict(saved_sched)


def test_schedule_without_prune_and_errors():
    model = tiny_model()
    sched = SelectionSchedule(full_epochs=1, select_epochs=1, top_k=2, prune=False)
    assert sched.on_epoch_start(5, model) == "select"
    assert sched.phase(100) == "select" and selectable_layers(model)
    assert all(int(layer.selected.sum(1).max()) == 2 for _, layer in selectable_layers(model))
    with pytest.raises(ValueError, match="full_epochs must be an int >= 1, got 0"):
        SelectionSchedule(full_epochs=0, select_epochs=1)
    with pytest.raises(ValueError, match=r"unknown selection settings \['epochs'\]"):
        SelectionSchedule.from_cfg({"epochs": 3, "full_epochs": 1, "select_epochs": 1})
    with pytest.raises(ValueError, match="epoch must be an int >= 0"):
        sched.on_epoch_start(-1, model)
    assert SelectionSchedule.from_cfg({"full_epochs": 3, "select_epochs": 1}).to_dict() == dict(
        full_epochs=3, select_epochs=1, top_k=1, prune=True)
