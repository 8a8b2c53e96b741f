"""Mixture-of-experts KAN convolutions (kanzoo.layers.moe)."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from kanzoo.layers import KANConvNd, MoEBottleneckKANConv2d, MoEKANConv1d, MoEKANConv2d, MoEKANConv3d, MoEKANConvNd

D64 = torch.float64


def _moe(**kw):
    args = dict(num_experts=4, top_k=2, padding=1, degree=3, dtype=D64)
    args.update(kw)
    return MoEKANConv2d(4, 6, 3, **args)


def _cv2(v):
    return v.var(unbiased=True) / (v.mean() ** 2 + 1e-10)


def _dense_reference(moe, x, noise=None):
    """Every expert on every sample, masked by the top-k gates; also Shazeer's aux loss. Written from the math."""
    m = x.mean(dim=tuple(range(2, x.dim())))
    clean = m @ moe.w_gate
    logits = clean
    if noise is not None:
        std = F.softplus(m @ moe.w_noise) + 0.01
        logits = clean + noise * std
    k, E = moe.top_k, moe.num_experts
    p = torch.softmax(logits, dim=1)
    kept, idx = p.topk(k, dim=1)
    gates = torch.zeros_like(p).scatter(1, idx, kept / kept.sum(1, keepdim=True))
    outs = torch.stack([e(x) for e in moe.experts], dim=1)            # (N, E, C_out, *S)
    y = (gates.view(gates.shape + (1,) * (outs.dim() - 2)) * outs).sum(1)
    if noise is None:
        load = (gates > 0).sum(0).to(x.dtype)
    else:
        prob = torch.empty_like(logits)
        for b in range(logits.shape[0]):
            for e in range(E):
                others = torch.cat([logits[b, :e], logits[b, e + 1:]]).sort(descending=True).values
                thr = others[k - 1]                                   # k-th largest among the other experts
                prob[b, e] = 0.5 * (1 + torch.erf((clean[b, e] - thr) / (std[b, e] * 2 ** 0.5)))
        load = prob.sum(0)
    aux = moe.aux_loss_coef * (_cv2(gates.sum(0)) + _cv2(load))
    return y, aux, gates


def test_float64_in_float64_out():
    torch.manual_seed(0)
    for train in (False, True):
        moe = _moe().train(train)
        y, aux = moe(torch.randn(6, 4, 5, 5, dtype=D64))
        assert y.dtype == D64 and aux.dtype == D64
        assert y.shape == (6, 6, 5, 5) and aux.dim() == 0


@pytest.mark.parametrize("cls, shape", [(MoEKANConv1d, (7, 4, 9)), (MoEKANConv2d, (7, 4, 5, 6)),
                                        (MoEKANConv3d, (7, 4, 3, 4, 5))])
def test_sparse_dispatch_equals_dense_eval(cls, shape):
    torch.manual_seed(1)
    moe = cls(4, 6, 3, num_experts=5, top_k=2, padding=1, degree=3, dtype=D64).eval()
    x = torch.randn(shape, dtype=D64)
    y, aux = moe(x)
    y_ref, aux_ref, gates = _dense_reference(moe, x)
    assert (gates > 0).sum(1).eq(2).all()
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(aux, aux_ref, rtol=1e-12, atol=1e-14)


def test_sparse_dispatch_equals_dense_train_with_noise():
    torch.manual_seed(2)
    moe = _moe(num_experts=6, top_k=2).train()
    torch.nn.init.normal_(moe.w_noise, std=0.3)
    x = torch.randn(9, 4, 5, 5, dtype=D64)
    torch.manual_seed(123)
    y, aux = moe(x)
    torch.manual_seed(123)
    noise = torch.randn(9, 6, dtype=D64)          # the layer's only random draw in this configuration
    y_ref, aux_ref, _ = _dense_reference(moe, x, noise)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(aux, aux_ref, rtol=1e-10, atol=1e-14)


def test_eval_is_deterministic_and_noisy_train_is_not():
    torch.manual_seed(3)
    moe = _moe(num_experts=8, top_k=2)
    x = torch.randn(16, 4, 5, 5, dtype=D64)
    moe.eval()
    torch.testing.assert_close(moe(x)[0], moe(x)[0], rtol=0, atol=0)
    moe.train()
    assert not torch.equal(moe(x)[1], moe(x)[1])   # the smooth load estimate sees fresh noise


def test_aux_loss_finite_and_gradient_reaches_gate():
    torch.manual_seed(4)
    moe = _moe(num_experts=4, top_k=2).train()
    y, aux = moe(torch.randn(8, 4, 5, 5, dtype=D64))
    assert torch.isfinite(aux) and aux > 0
    aux.backward()
    for p in (moe.w_gate, moe.w_noise):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_routed_experts_get_gradients_idle_experts_none():
    torch.manual_seed(5)
    moe = _moe(num_experts=4, top_k=2, noisy_gating=False).train()
    with torch.no_grad():   # sample b prefers expert b % 3; expert 3 is never chosen
        moe.w_gate.copy_(torch.tensor([[5., 0, 0, -1e3], [0, 5, 0, -1e3], [0, 0, 5, -1e3], [0, 0, 0, -1e3]]))
    x = 0.1 * torch.randn(9, 4, 5, 5, dtype=D64) + 0.5
    x[torch.arange(9), torch.arange(9) % 3] += 3.0
    y, aux = moe(x)
    (y.sum() + aux).backward()
    for e in range(3):
        grads = [p.grad for p in moe.experts[e].parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), e
    assert all(p.grad is None for p in moe.experts[3].parameters())


def test_all_experts_and_gate_independent_at_init():
    torch.manual_seed(6)
    moe = _moe(num_experts=4)
    assert moe.w_gate.abs().min() > 0
    assert len({tuple(c.tolist()) for c in moe.w_gate.t()}) == 4       # distinct columns
    for name, _ in moe.experts[0].named_parameters():
        ps = [dict(e.named_parameters())[name] for e in moe.experts]
        for i in range(4):
            for j in range(i + 1, 4):
                assert not torch.equal(ps[i], ps[j]), name
    # random w_gate: the eval routing already differs between samples at init
    _, _, gates = _dense_reference(moe.eval(), torch.randn(32, 4, 5, 5, dtype=D64))
    assert (gates > 0).sum(0).gt(0).sum() >= 3


def test_custom_expert_layer_and_device_dtype():
    built = []

    def make(cin, cout, k, **kw):
        built.append(kw)
        return KANConvNd(cin, cout, k, padding=1, basis="chebyshev", **kw)

    moe = MoEKANConvNd(3, 5, 3, num_experts=3, top_k=1, expert_layer=make, device="cpu", dtype=D64)
    assert len(built) == 3 and all(kw == {"device": "cpu", "dtype": D64} for kw in built)
    assert moe.w_gate.dtype == D64 and moe.w_gate.shape == (3, 3)
    y, _ = moe.eval()(torch.randn(2, 3, 6, 6, dtype=D64))
    assert y.shape == (2, 5, 6, 6)


def test_top_k_equals_num_experts_and_single_expert():
    torch.manual_seed(7)
    x = torch.randn(5, 4, 5, 5, dtype=D64)
    moe = _moe(num_experts=3, top_k=3).train()
    y, aux = moe(x)
    assert torch.isfinite(y).all() and torch.isfinite(aux)
    one = _moe(num_experts=1, top_k=1).train()
    y1, aux1 = one(x)
    torch.testing.assert_close(y1, one.experts[0](x))
    assert aux1 == 0


def test_bottleneck_moe_matches_dense_composition():
    torch.manual_seed(8)
    layer = MoEBottleneckKANConv2d(8, 12, 3, padding=1, groups=2, degree=3, num_experts=4, top_k=2,
                                   dtype=D64).eval()
    assert layer.inner_channels == 4 and layer.moe.w_gate.shape == (8, 4)
    assert not any(n.endswith("basis_weight") for n, _ in layer.named_parameters() if not n.startswith("moe."))
    x = torch.randn(5, 8, 6, 6, dtype=D64)
    y, aux = layer(x)
    base = F.conv2d(F.silu(x), layer.weight, padding=1, groups=2)
    z = F.conv2d(x, layer.inner_weight, groups=2)
    inner, aux_ref, _ = _dense_reference(layer.moe, z)
    ref = F.silu(F.instance_norm(F.conv2d(inner, layer.outer_weight, groups=2) + base))
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(aux, aux_ref, rtol=1e-12, atol=1e-14)
    assert y.dtype == D64
    layer.train()
    y, aux = layer(x)
    (y.sum() + aux).backward()
    assert layer.moe.w_gate.grad is not None and layer.inner_weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kw, match", [
    (dict(num_experts=0, top_k=1), "num_experts"),
    (dict(num_experts=2, top_k=3), "top_k=3 must not exceed num_experts=2"),
    (dict(num_experts=2, top_k=0), "top_k"),
    (dict(num_experts=2.5, top_k=1), "num_experts"),
    (dict(aux_loss_coef=-1.0), "aux_loss_coef"),
])
def test_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        MoEKANConv2d(4, 6, 3, **kw)


def test_error_wrong_input_and_expert_layer():
    moe = _moe()
    with pytest.raises(ValueError, match="expects input"):
        moe(torch.randn(2, 5, 5, 5, dtype=D64))
    with pytest.raises(TypeError, match="expert_layer"):
        MoEKANConvNd(4, 6, 3, expert_layer=3)
    with pytest.raises(ValueError, match="top_k"):
        MoEBottleneckKANConv2d(8, 12, 3, num_experts=2, top_k=4)


def test_golden_aux_loss_tight():
    """The golden MoE aux losses (down to 2e-5) checked at a scale-appropriate tolerance."""
    from kanzoo.compat.tck import from_reference
    from tests.support.golden import load_case, manifest
    cases = [c for c in manifest("tck")["cases"] if c["family"].startswith("MoE-")]
    assert len(cases) == 10
    for case in cases:
        t, state = load_case("tck", case)
        model = from_reference(case, state).eval()
        with torch.no_grad():
            _, aux = model(t["input"].float())
        torch.testing.assert_close(aux.reshape(t["aux_loss"].shape), t["aux_loss"], rtol=1e-4, atol=1e-8,
                                   msg=case["name"])


def test_moe_scripts_and_matches_eager():
    import warnings

    from kanzoo.layers import MoEKANConv2d
    torch.manual_seed(0)
    m = MoEKANConv2d(4, 6, 3, padding=1, num_experts=4, top_k=2).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = torch.jit.script(m)
    x = torch.randn(3, 4, 5, 5)
    for a, b in zip(s(x), m(x)):
        torch.testing.assert_close(a, b)
    assert s(torch.randn(0, 4, 5, 5))[0].shape == (0, 6, 5, 5)


# ------------------------------------------------------------------------------------------ fixed capacity
def _reference_keep(top_idx, num_experts, capacity):
    """GShard's priority, written as a loop: every token's first choice in token order, then every second
    choice, ...; a route is kept while its expert has fewer than ``capacity`` routes."""
    n, k = top_idx.shape
    used = [0] * num_experts
    keep = torch.zeros(n, k, dtype=torch.bool)
    slot = torch.full((n, k), num_experts * capacity, dtype=torch.long)
    for j in range(k):
        for t in range(n):
            e = int(top_idx[t, j])
            if used[e] < capacity:
                keep[t, j], slot[t, j] = True, e * capacity + used[e]
            used[e] += 1
    return slot, keep


def test_expert_capacity_and_errors():
    from kanzoo.layers.moe import check_capacity_factor, expert_capacity
    assert expert_capacity(10, 2, 4, None) == 10
    assert expert_capacity(10, 2, 4, 1.0) == 5           # ceil(1.0 · 10 · 2 / 4)
    assert expert_capacity(10, 2, 4, 1.25) == 7          # ceil(6.25)
    assert expert_capacity(10, 2, 4, 100.0) == 10        # never more than the tokens
    assert expert_capacity(3, 1, 8, 0.01) == 1
    for bad in (0, -1.0, True, "1", float("inf"), float("nan")):
        with pytest.raises(ValueError, match="capacity_factor must be None or a finite number > 0"):
            check_capacity_factor(bad)
    with pytest.raises(ValueError, match="capacity_factor"):
        _moe(capacity_factor=0)


@pytest.mark.parametrize("seed", range(4))
def test_capacity_slots_follow_priority_order(seed):
    from kanzoo.layers.moe import capacity_slots
    g = torch.Generator().manual_seed(seed)
    n, k, num_experts = 23, 2, 5
    top_idx = torch.stack([torch.randperm(num_experts, generator=g)[:k] for _ in range(n)])
    top_idx[:9, 0] = 1                                   # crowd one expert so that routes are dropped
    for capacity in (1, 3, 6, n):
        slot, keep = capacity_slots(top_idx, num_experts, capacity)
        ref_slot, ref_keep = _reference_keep(top_idx, num_experts, capacity)
        assert torch.equal(keep, ref_keep) and torch.equal(slot, ref_slot), capacity
    assert capacity_slots(top_idx, num_experts, n)[1].all()
    assert not capacity_slots(top_idx, num_experts, 3)[1].all()


def test_conv_capacity_drops_exactly_the_routes_over_capacity():
    torch.manual_seed(3)
    moe = _moe(num_experts=3, top_k=2).eval()
    with torch.no_grad():
        moe.w_gate[:, 0] += 1.0                                         # expert 0 is most samples' first choice
    x = torch.randn(11, 4, 5, 5, dtype=D64) * torch.linspace(0.1, 3, 11, dtype=D64).view(-1, 1, 1, 1) + 0.5
    top_idx, top_gates, _, _ = moe.gate(x.flatten(2).mean(-1))
    outs = torch.stack([e(x) for e in moe.experts], dim=1)              # (N, E, C_out, H, W)
    for cf in (0.5, 1.0, 1.25):
        moe.capacity_factor = cf
        _, keep = _reference_keep(top_idx, 3, math.ceil(cf * 11 * 2 / 3))   # ceil(cf · N · k / E)
        y, _ = moe(x)
        ref = torch.stack([sum(top_gates[t, j] * keep[t, j] * outs[t, top_idx[t, j]] for j in range(2))
                           for t in range(11)])
        torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
        assert moe.dropped_fraction.item() == pytest.approx(1 - keep.double().mean().item())
    assert moe.dropped_fraction.item() > 0, "the batch should overflow expert 0 at capacity_factor 1.25"


@pytest.mark.parametrize("train", [False, True])
def test_conv_capacity_without_drops_equals_dynamic_dispatch(train):
    torch.manual_seed(4)
    dynamic = _moe(num_experts=4, top_k=2).train(train)
    static = copy.deepcopy(dynamic)
    static.capacity_factor = 2.0                                         # E / k: C = N, nothing dropped
    x = torch.randn(9, 4, 5, 5, dtype=D64)
    torch.manual_seed(5)
    y_d, aux_d = dynamic(x)
    torch.manual_seed(5)
    y_s, aux_s = static(x)
    # equal up to the rounding of the experts' kernels on differently composed batches (~1e-16 in float64)
    torch.testing.assert_close(y_s, y_d, rtol=1e-13, atol=1e-14)
    assert torch.equal(aux_s, aux_d)
    assert static.dropped_fraction.item() == 0 and dynamic.dropped_fraction is None
    (y_d.square().sum() + aux_d).backward()
    (y_s.square().sum() + aux_s).backward()
    for (name, a), b in zip(static.named_parameters(), dynamic.parameters()):
        if b.grad is None:                                               # an idle expert: zero when run padded
            assert a.grad is None or not a.grad.any(), name
        else:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14, msg=name)


def test_token_moe_capacity_semantics_and_no_drop_equality():
    from kanzoo.layers import MoEKANMlp
    torch.manual_seed(6)
    moe = MoEKANMlp(12, expert_hidden=8, num_experts=4, top_k=2).double().eval()
    x = torch.randn(2, 15, 12, dtype=D64)
    with torch.no_grad():
        sparse = moe(x)
        assert moe.dropped_fraction is None
        moe.capacity_factor = 2.0                                        # E / k
        torch.testing.assert_close(moe(x), sparse, rtol=1e-13, atol=1e-14)
        assert moe.dropped_fraction.item() == 0
        moe.capacity_factor = 1.0
        y = moe(x)
        flat = x.reshape(-1, 12)
        _, top_idx, top_w = moe.route(flat)
        _, keep = _reference_keep(top_idx, 4, 15)                        # ceil(1.0 · 30 · 2 / 4) = 15
        outs = torch.stack([e(flat) for e in moe.experts], dim=1)        # (N, E, C)
        ref = torch.stack([sum(top_w[t, j] * keep[t, j] * outs[t, top_idx[t, j]] for j in range(2))
                           for t in range(30)])
    torch.testing.assert_close(y.reshape(-1, 12), ref, rtol=1e-12, atol=1e-12)
    assert moe.dropped_fraction.item() == pytest.approx(1 - keep.double().mean().item())


@pytest.mark.parametrize("which", ["conv", "token"])
def test_capacity_path_compiles_to_one_graph(which):
    """The fixed-capacity dispatch: no graph break (``torch._dynamo.explain``), and ``fullgraph=True``
    output, gradients and dropped fraction equal eager, in training."""
    from kanzoo.layers import MoEKANMlp
    torch.manual_seed(7)
    if which == "conv":
        layer = MoEKANConv2d(4, 6, 3, padding=1, num_experts=4, top_k=2, degree=2, capacity_factor=1.0)
        x = torch.randn(6, 4, 5, 5, dtype=D64)
    else:
        layer = MoEKANMlp(12, expert_hidden=8, num_experts=4, top_k=2, capacity_factor=1.0)
        x = torch.randn(3, 7, 12, dtype=D64)
    layer.double().train()
    torch._dynamo.reset()
    try:
        explained = torch._dynamo.explain(layer)(x)
        assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
        compiled = copy.deepcopy(layer)
        compiled.compile(backend="aot_eager", fullgraph=True)
        outs = []
        for m in (layer, compiled):
            torch.manual_seed(8)
            out = m(x)
            y = out[0] if isinstance(out, tuple) else out
            y.square().sum().backward()
            outs.append((y, m.dropped_fraction, [p.grad for p in m.parameters()]))
    finally:
        torch._dynamo.reset()
    (y_e, d_e, g_e), (y_c, d_c, g_c) = outs
    torch.testing.assert_close(y_c, y_e, rtol=1e-12, atol=1e-12)
    assert torch.equal(d_c, d_e)
    for a, b in zip(g_c, g_e):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_conv_moe_compiles_without_capacity_and_equals_eager():
    """capacity_factor=None under torch.compile: the fixed-shape path at C = N, the exact dispatch's output."""
    torch.manual_seed(9)
    moe = MoEKANConv2d(4, 6, 3, padding=1, num_experts=4, top_k=2, degree=2).eval()
    x = torch.randn(7, 4, 5, 5) * torch.linspace(0.2, 3, 7).view(-1, 1, 1, 1)
    torch._dynamo.reset()
    try:
        with torch.no_grad():
            ref, aux = moe(x)
            assert moe.dropped_fraction is None
            y, aux_c = torch.compile(moe, backend="aot_eager", fullgraph=True)(x)
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(y, ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(aux_c, aux)
    assert moe.dropped_fraction.item() == 0


def test_set_capacity_factor_and_mean_dropped_fraction():
    from kanzoo.layers import MoEKANMlp
    from kanzoo.layers.moe import mean_dropped_fraction, set_capacity_factor
    torch.manual_seed(10)
    model = torch.nn.Sequential(MoEKANMlp(12, expert_hidden=8, num_experts=4), _moe().float(),
                                MoEBottleneckKANConv2d(8, 8, 3, padding=1, num_experts=4, min_internal=4))
    assert set_capacity_factor(model, 1.25) == 3
    assert [m.capacity_factor for m in (model[0], model[1], model[2].moe)] == [1.25] * 3
    assert "capacity_factor=1.25" in repr(model)
    assert mean_dropped_fraction(model) is None                         # nothing ran yet
    model[0](torch.randn(40, 12))
    model[1](torch.randn(40, 4, 3, 3))
    expected = (model[0].dropped_fraction + model[1].dropped_fraction) / 2
    assert torch.equal(mean_dropped_fraction(model), expected)
    with pytest.raises(ValueError, match="capacity_factor must be None or a finite number > 0, got -1"):
        set_capacity_factor(model, -1)
    assert set_capacity_factor(model, None) == 3 and model[0].capacity_factor is None


def test_capacity_path_scripts():
    import warnings

    from kanzoo.layers import MoEKANMlp
    torch.manual_seed(11)
    for m, x in ((MoEKANConv2d(4, 6, 3, padding=1, num_experts=4, top_k=2, capacity_factor=1.0).eval(),
                  torch.randn(9, 4, 5, 5)),
                 (MoEKANMlp(12, expert_hidden=8, num_experts=4, capacity_factor=1.0).eval(), torch.randn(30, 12))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = torch.jit.script(m)
        a, b = s(x), m(x)
        a, b = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert torch.equal(s.dropped_fraction, m.dropped_fraction)


def test_conv_moe_runs_on_the_meta_device():
    """Shape-only runs (timm's meta-device cfg test, FLOP counting) route through the fixed-shape dispatch:
    autocast and the data-dependent split have no meta implementation."""
    with torch.device("meta"):
        layer = MoEKANConvNd(4, 6, 3, padding=1, num_experts=3, top_k=2).eval()
        y, aux = layer(torch.randn(2, 4, 5, 5))
    assert y.is_meta and y.shape == (2, 6, 5, 5) and aux.is_meta
