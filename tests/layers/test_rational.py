"""kanzoo.layers.GroupRational: the math against an independent per-element evaluation, gradients (gradcheck in
float64, the kernels' sgn(0) = +1), shapes/groups/dims/dtypes (hypothesis), autocast, errors, the kernel switch,
what the backward saves, and TorchScript / tracing / ONNX / torch.compile."""
import io
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kanzoo.layers.rational as R
from kanzoo.layers import GRKANMlp, GroupRational, group_rational, rational_init_modes, set_rational_kernel


def reference(x, num, den, groups, dim=-1):
    """F_g(x) = P(x) / (1 + Σ_j |b_gj| |x|^(j+1)) evaluated channel by channel in float64 with explicit powers."""
    x64 = x.double().movedim(dim, -1)
    c = x64.shape[-1]
    out = torch.empty_like(x64)
    a = num.double().reshape(-1)
    for ch in range(c):
        g = ch // (c // groups)
        t = x64[..., ch]
        p = sum(a[i] * t ** i for i in range(a.numel()))
        q = 1 + sum(den[g, j].double().abs() * t.abs() ** (j + 1) for j in range(den.shape[1]))
        out[..., ch] = p / q
    return out.movedim(-1, dim)


def perturbed(layer, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return layer


@pytest.fixture(autouse=True)
def _default_kernel():
    set_rational_kernel(None)
    yield
    set_rational_kernel(None)


# ------------------------------------------------------------------------------------------------ basics
def test_parameters_and_init():
    layer = GroupRational(num_groups=4, mode="swish")
    assert layer.weight_numerator.shape == (1, 6) and layer.weight_denominator.shape == (4, 4)
    num, den = R.rational_init("swish")
    assert torch.equal(layer.weight_numerator[0], torch.tensor(num, dtype=torch.float32))
    assert torch.equal(layer.weight_denominator, torch.tensor([den] * 4, dtype=torch.float32))
    assert len(rational_init_modes()) == 12
    ident = GroupRational(mode="identity", order=(3, 2))
    x = torch.randn(2, 3, 16)
    torch.testing.assert_close(ident(x), x)
    assert list(dict(GRKANMlp(16, 64).named_parameters())) == [
        "fc1.weight", "fc1.bias", "act1.weight_numerator", "act1.weight_denominator", "act2.weight_numerator",
        "act2.weight_denominator", "fc2.weight", "fc2.bias"]


@pytest.mark.parametrize("kernel", ["eager", "compiled"])
def test_matches_independent_evaluation(kernel):
    layer = perturbed(GroupRational(num_groups=8, mode="gelu", kernel=kernel)).double()
    x = 4 * torch.randn(3, 7, 32, dtype=torch.float64)
    x[0, 0, :4] = 0.0
    torch.testing.assert_close(layer(x), reference(x, layer.weight_numerator, layer.weight_denominator, 8),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", ["formula", "eager", "compiled"])
def test_gradcheck_float64(kernel):
    layer = perturbed(GroupRational(num_groups=4, mode="swish"), seed=1).double()
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    a = layer.weight_numerator.detach().clone().requires_grad_(True)
    b = layer.weight_denominator.detach().clone().requires_grad_(True)
    if kernel == "formula":
        fn = lambda x, a, b: group_rational(x, a, b, 4)  # noqa: E731
    else:
        fn = lambda x, a, b: R.fused_group_rational(x, a, b, 4, kernel=kernel)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, a, b), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("kernel", ["formula", "eager", "compiled"])
def test_sign_of_zero_is_plus_one(kernel):
    """At b = 0 and at x = 0 the derivative of |·| is taken as +1, as in the CUDA and Triton kernels."""
    a = torch.tensor([[0.1, 1.0, 0.5, 0.2, 0.1, 0.05]], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(2, 4, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[0.0, 0.5, -1.5, 2.0]] * 2, dtype=torch.float64, requires_grad=True)
    y = group_rational(x, a, b, 2) if kernel == "formula" else R.fused_group_rational(x, a, b, 2, kernel=kernel)
    y.sum().backward()
    xd = x.detach()
    p = sum(a.detach()[0, i] * xd ** i for i in range(6))
    expected_b = torch.stack([-(p * xd.abs() ** (j + 1)).reshape(2, 2, 2).sum((0, 2)) for j in range(4)], 1)  # Q=1
    torch.testing.assert_close(b.grad, expected_b)
    # d/dx at x = 0: P'(0) − sgn(0)·|b_0|·P(0) = a_1 here (b = 0); with b_0 = 1 it is a_1 − a_0
    assert x.grad[0, 0].item() == pytest.approx(1.0)
    b2 = torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=torch.float64)
    x2 = torch.zeros(2, 4, dtype=torch.float64, requires_grad=True)
    y2 = group_rational(x2, a, b2, 2) if kernel == "formula" else R.fused_group_rational(x2, a, b2, 2, kernel=kernel)
    y2.sum().backward()
    torch.testing.assert_close(x2.grad, torch.full((2, 4), 1.0 - 0.1, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ properties
@st.composite
def layouts(draw):
    rank = draw(st.integers(1, 5))
    dim = draw(st.integers(-rank, rank - 1))
    groups = draw(st.sampled_from([1, 2, 3, 4, 8]))
    shape = [draw(st.integers(1, 4)) for _ in range(rank)]
    shape[dim] = groups * draw(st.integers(1, 3))
    return shape, dim, groups


@settings(max_examples=40, deadline=None)
@given(layout=layouts(), dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]),
       seed=st.integers(0, 2 ** 16))
def test_shapes_groups_dims_dtypes(layout, dtype, seed):
    shape, dim, groups = layout
    g = torch.Generator().manual_seed(seed)
    layer = perturbed(GroupRational(num_groups=groups, mode="swish", dim=dim, kernel="eager"), seed=seed)
    x = (3 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)
    y = layer(x)
    assert y.shape == x.shape and y.dtype == dtype
    expected = reference(x, layer.weight_numerator, layer.weight_denominator, groups, dim)
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    torch.testing.assert_close(y.double(), expected, rtol=tol, atol=tol)
    # the formula path (export, script) gives the same values and gradients as the fused kernel
    if dtype in (torch.float32, torch.float64):
        xa = x.clone().requires_grad_(True)
        xb = x.clone().requires_grad_(True)
        layer(xa).sum().backward()
        grads = [xa.grad] + [p.grad.clone() for p in layer.parameters()]
        layer.zero_grad()
        group_rational(xb, layer.weight_numerator, layer.weight_denominator, groups, dim).sum().backward()
        for u, v in zip(grads, [xb.grad] + [p.grad for p in layer.parameters()]):
            torch.testing.assert_close(u, v, rtol=10 * tol, atol=10 * tol)


def test_nchw_equals_channels_last():
    x = torch.randn(2, 16, 5, 3)
    a = perturbed(GroupRational(num_groups=4, mode="gelu", dim=1, kernel="eager"))
    b = GroupRational(num_groups=4, mode="gelu")
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x), b(x.movedim(1, -1)).movedim(-1, 1))


def test_compiled_kernel_nchw_and_sizes():
    """The compiled kernel on an NCHW map and on a second size (dynamic shapes), against the eager kernel."""
    a = perturbed(GroupRational(num_groups=8, mode="gelu", dim=1, kernel="compiled"))
    b = GroupRational(num_groups=8, mode="gelu", dim=1, kernel="eager")
    b.load_state_dict(a.state_dict())
    for shape in ((2, 32, 9, 9), (1, 64, 4, 7)):
        x = torch.randn(shape)
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = a(xa), b(xb)
        torch.testing.assert_close(ya, yb)
        ya.square().sum().backward()
        yb.square().sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad)
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4)
        a.zero_grad(), b.zero_grad()


def test_autocast_computes_in_float32():
    layer = perturbed(GroupRational(num_groups=4, mode="swish"))
    x = torch.randn(2, 3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = torch.nn.functional.linear(x, torch.eye(8))  # bf16 under autocast
        assert h.dtype == torch.bfloat16
        y = layer(h)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, layer(h.float()))


def test_backward_saves_only_the_input():
    layer = GroupRational(num_groups=8, mode="gelu", kernel="eager")
    x = torch.randn(4, 10, 64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        layer(x).sum()
    assert sum(saved) == x.numel() + 6 + 8 * 4, saved  # x and the coefficients; no intermediate


# ------------------------------------------------------------------------------------------------ errors
def test_errors():
    with pytest.raises(ValueError, match=r"12 channels .* not divisible by num_groups=8"):
        GroupRational(8)(torch.randn(2, 12))
    with pytest.raises(ValueError, match=r"not divisible by num_groups=8"):
        GroupRational(8, kernel="compiled")(torch.randn(2, 12))
    with pytest.raises(ValueError, match=r"dim=3 is out of range"):
        GroupRational(1, dim=3)(torch.randn(2, 8))
    with pytest.raises(TypeError, match="floating-point input"):
        GroupRational(1)(torch.ones(2, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="unknown rational init mode 'gleu'"):
        GroupRational(8, mode="gleu")
    with pytest.raises(ValueError, match=r"order \(5, 4\), not \(3, 3\)"):
        GroupRational(8, mode="gelu", order=(3, 3))
    with pytest.raises(ValueError, match="num_groups must be a positive int"):
        GroupRational(0)
    with pytest.raises(ValueError, match="kernel must be one of"):
        GroupRational(8, kernel="fast")
    with pytest.raises(ValueError, match="kernel must be one of"):
        set_rational_kernel("cuda")
    with pytest.raises(ValueError, match=r"hidden_features=36 is not divisible by num_groups=8"):
        GRKANMlp(16, 36)


# ------------------------------------------------------------------------------------------------ the kernel switch
def test_kernel_switch(monkeypatch):
    calls = []
    real = R._compiled
    monkeypatch.setattr(R, "_compiled", lambda name: calls.append(name) or real(name))
    x = torch.randn(2, 16)
    GroupRational(8, kernel="eager")(x)
    GroupRational(8)(x)  # auto: small inputs run eagerly
    assert calls == []
    GroupRational(8, kernel="compiled")(x)
    assert calls == ["fwd"]
    monkeypatch.setenv("KANZOO_RATIONAL_KERNEL", "compiled")
    assert R.get_rational_kernel() == "compiled"
    set_rational_kernel("eager")
    assert R.get_rational_kernel() == "eager"
    GroupRational(8)(x)
    assert calls == ["fwd"]
    monkeypatch.setenv("KANZOO_RATIONAL_KERNEL", "nope")
    set_rational_kernel(None)
    with pytest.raises(ValueError, match="KANZOO_RATIONAL_KERNEL='nope'"):
        R.get_rational_kernel()


def test_auto_falls_back_when_the_compiler_fails(monkeypatch):
    def broken(name):
        def fn(*args):
            raise RuntimeError("no C++ compiler found")
        return fn
    monkeypatch.setattr(R, "_compiled", broken)
    monkeypatch.setitem(R._state, "compile_failed", None)
    layer = perturbed(GroupRational(8, mode="gelu"))
    x = torch.randn(R.MIN_COMPILED_NUMEL // 8, 8)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*no C\\+\\+ compiler found.*eager kernel"):
        y = layer(x)
    torch.testing.assert_close(y, group_rational(x, layer.weight_numerator, layer.weight_denominator, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(x)  # warned once; eager from now on
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        GroupRational(8, kernel="compiled")(x)


# ------------------------------------------------------------------------------------------------ export paths
def _mlp():
    torch.manual_seed(0)
    m = GRKANMlp(16, 64, act_init="swish").eval()
    perturbed(m.act1, 1), perturbed(m.act2, 2)
    return m


def test_script_and_trace():
    m = _mlp()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        ref = m(x)
        torch.testing.assert_close(torch.jit.script(m)(x), ref)
        scripted = torch.jit.script(GroupRational(4, mode="gelu", dim=1))
        torch.testing.assert_close(scripted(x.transpose(1, 2)), GroupRational(4, mode="gelu", dim=1)(
            x.transpose(1, 2)))
        traced = torch.jit.trace(m, x)
        torch.testing.assert_close(traced(x), ref)
    with pytest.raises(torch.jit.Error, match="not divisible"):
        torch.jit.script(GroupRational(8))(torch.randn(2, 12))


def test_onnx_export_runs_in_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    m = _mlp()
    x = torch.randn(2, 5, 16)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), buf, input_names=["x"], output_names=["y"], dynamo=False,
                          dynamic_axes={"x": {0: "batch", 1: "tokens"}})
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for shape in ((2, 5, 16), (3, 11, 16)):
        xx = torch.randn(shape)
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(sess.run(None, {"x": xx.numpy()})[0]), m(xx),
                                       rtol=1e-5, atol=1e-5)


def test_outer_torch_compile_and_meta():
    m = _mlp().train()
    x = torch.randn(2, 5, 16)
    torch._dynamo.reset()
    try:
        y = torch.compile(m, backend="aot_eager")(x)
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(y, m(x))
    meta = GroupRational(8, device="meta")
    assert meta(torch.empty(3, 16, device="meta")).shape == (3, 16)


def test_flop_counter_sees_formula_path():
    from torch.utils.flop_counter import FlopCounterMode
    m = _mlp()
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, 4, 16))
    assert counter.get_total_flops() == 2 * 4 * (16 * 64 + 64 * 16)  # the two linears; rationals are elementwise


def test_formula_kernel_supports_double_backward():
    layer = perturbed(GroupRational(4, mode="swish", kernel="formula")).double()
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: layer(t), (x,))
    fused = GroupRational(4, mode="swish", kernel="eager").double()
    fused.load_state_dict(layer.state_dict())
    (g,) = torch.autograd.grad(fused(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):  # once-differentiable
        g.sum().backward()


def test_coefficient_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\(num_groups, n\) denominator .* \[1, 6\] and \[4, 4\] for num_groups=8"):
        group_rational(torch.randn(2, 16), torch.zeros(1, 6), torch.zeros(4, 4), 8)
