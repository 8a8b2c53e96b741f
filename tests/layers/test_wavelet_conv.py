"""WaveletKANConvNd: the fast path (GEMMs and compiled ψ kernels) and the memory-lean autograd path against plain
autograd, shapes, options and errors."""
import warnings

import pytest
import torch
from torch.autograd import gradcheck

from kanzoo.layers import WaveletKANConv1d, WaveletKANConv2d, WaveletKANConv3d, WaveletKANConvNd
from kanzoo.layers.bases import kernels as K
from kanzoo.layers.bases.wavelet import WAVELETS
from kanzoo.layers.wavelet_conv import _LeanWaveletConv, wavelet_edge_conv

F64 = torch.float64


def _layer(ndim=2, wavelet_type="mexican_hat", groups=1, cin=4, cout=6, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("padding", 1)
    m = WaveletKANConvNd(cin, cout, 3, groups=groups, ndim=ndim, wavelet_type=wavelet_type, dtype=F64, **kw)
    with torch.no_grad():  # spread the wavelets so every part of ψ is exercised
        m.scale.uniform_(0.5, 1.5)
        m.translation.uniform_(-0.5, 0.5)
    return m


def _input(m, spatial=5, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, m.in_channels) + (spatial,) * m.ndim, generator=g, dtype=F64)


def _run(m, x, lean):
    """Output and gradients (input first, then every parameter) of a random projection of the output."""
    m.memory_efficient = lean
    x = x.clone().requires_grad_(True)
    y = m(x)
    r = torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=y.dtype)
    grads = torch.autograd.grad((y * r).sum(), [x] + list(m.parameters()))
    return y.detach(), grads


@pytest.mark.parametrize("wavelet_type", WAVELETS)
def test_lean_gradcheck(wavelet_type):
    g = torch.Generator().manual_seed(3)
    groups, cog, cig = 2, 3, 2
    x = torch.randn(1, groups * cig, 5, 5, generator=g, dtype=F64, requires_grad=True)
    s = (0.5 + torch.rand(groups * cog, cig, generator=g, dtype=F64)).requires_grad_(True)
    t = (torch.rand(groups * cog, cig, generator=g, dtype=F64) - 0.5).requires_grad_(True)
    w = torch.randn(groups * cog, cig, 2, 3, generator=g, dtype=F64, requires_grad=True)
    window = torch.hamming_window(cig, periodic=False, dtype=F64) if wavelet_type == "shannon" else None

    def fn(x, s, t, w):  # stride 2, padding 1, chunks of 2 + 1 output channels per group
        return _LeanWaveletConv.apply(x, s, t, w, window, wavelet_type, groups, [2, 1], [1, 0], [1, 2], 2, 2)

    assert gradcheck(fn, (x, s, t, w), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("wavelet_type", WAVELETS)
@pytest.mark.parametrize("ndim,groups,chunk", [(2, 1, None), (2, 2, 2), (1, 2, 1), (3, 1, 4)])
def test_lean_matches_eager(wavelet_type, ndim, groups, chunk):
    m = _layer(ndim, wavelet_type, groups, cin=4, cout=6, chunk_size=chunk).train()
    x = _input(m, spatial=4 if ndim == 3 else 5)
    y_lean, g_lean = _run(m, x, lean=True)
    y_eager, g_eager = _run(m, x, lean=False)
    torch.testing.assert_close(y_lean, y_eager, atol=1e-13, rtol=0)
    for a, b in zip(g_lean, g_eager):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_lean_with_frozen_input_and_partly_frozen_parameters():
    m = _layer(2, "morlet", groups=2, chunk_size=1)
    x = _input(m)
    m.scale.requires_grad_(False)
    outs = []
    for lean in (True, False):
        m.memory_efficient = lean
        y = m(x)  # x does not require grad (first layer)
        outs.append(torch.autograd.grad(y.square().sum(), [m.translation, m.wavelet_weight, m.weight]))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def _saved_numel(m, x):
    total = [0]

    def pack(t):
        total[0] += t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        m(x.clone().requires_grad_(True))
    return total[0]


def test_lean_saves_only_small_tensors():
    m = _layer(2, "mexican_hat", cin=8, cout=16, norm_layer="none")
    x = _input(m, spatial=6)
    m.memory_efficient = False
    eager = _saved_numel(m, x)
    m.memory_efficient = True
    lean = _saved_numel(m, x)
    # eager keeps several tensors of ψ's size (C_out × the input); lean keeps input-sized tensors only
    assert eager >= 3 * 16 * x.numel()
    assert lean <= 6 * x.numel() + 3 * sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("chunk", [1, 2, 5, None])
def test_chunk_size_does_not_change_results(chunk):
    ref = _layer(2, "dog", groups=1, cin=3, cout=5, chunk_size=None).eval()
    m = _layer(2, "dog", groups=1, cin=3, cout=5, chunk_size=chunk).eval()
    x = _input(m)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x), atol=1e-13, rtol=0)
    _, g_ref = _run(ref, x, lean=True)
    _, g = _run(m, x, lean=True)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_auto_chunk_bounds_the_wavelet_tensor():
    m = WaveletKANConvNd(4, 64, 3, padding=1)
    small, large = torch.zeros(2, 4, 8, 8), torch.zeros(64, 4, 64, 64)
    assert m._chunk_for(small) == 64  # a small layer runs in one chunk
    assert m._chunk_for(large) * large.numel() <= 1 << 22
    m.chunk_size = 3
    assert m._chunk_for(large) == 3


def test_no_grad_matches_grad_path():
    m = _layer(2, "meyer", groups=2).eval()
    x = _input(m)
    with torch.no_grad():
        y0 = m(x)
    y1 = m(x.clone().requires_grad_(True))
    torch.testing.assert_close(y1.detach(), y0, atol=1e-13, rtol=0)


@pytest.mark.parametrize("cls,ndim,shape", [(WaveletKANConv1d, 1, (2, 4, 11)), (WaveletKANConv2d, 2, (2, 4, 9, 7)),
                                            (WaveletKANConv3d, 3, (1, 4, 5, 6, 7))])
def test_shapes_and_dtype(cls, ndim, shape):
    m = cls(4, 6, 3, stride=2, padding=1, dilation=2, groups=2, dtype=F64)
    assert m.ndim == ndim
    assert all(p.dtype == F64 for p in m.parameters())
    assert m.scale.shape == (6, 2) and m.wavelet_weight.shape == (6, 2) + (3,) * ndim
    assert m.mix_weight.shape == (6, 3) + (1,) * ndim
    x = torch.randn(shape, dtype=F64, requires_grad=True)
    y = m(x)
    expect = tuple((s + 2 - 2 * 2 - 1) // 2 + 1 for s in shape[2:])
    assert y.shape == (shape[0], 6) + expect and y.dtype == F64
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_groups_do_not_mix_channels():
    m = _layer(2, "morlet", groups=2, cin=4, cout=6, norm_layer="none").eval()
    x = _input(m)
    x2 = x.clone()
    x2[:, 2:] += 1.0  # change group 1's inputs only
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    torch.testing.assert_close(y[:, :3], y2[:, :3], atol=0, rtol=0)
    assert (y[:, 3:] - y2[:, 3:]).abs().max() > 1e-3


def test_matches_edgewise_formula():
    """Direct evaluation of z_o = Σ_c W[o,c] ⋆ ψ((x_c - τ[o,c]) / s[o,c]) for one output channel."""
    m = _layer(2, "mexican_hat", groups=2, cin=4, cout=6)
    x = _input(m)
    window = None
    z = wavelet_edge_conv(x, m.scale, m.translation, m.wavelet_weight, window, "mexican_hat", 2, [1, 1], [1, 1],
                          [1, 1], 2, 1)
    o, g, cig = 4, 1, 2  # output 4 sits in group 1, which reads input channels 2, 3
    from kanzoo.layers.bases.wavelet import wavelet
    direct = sum(
        torch.nn.functional.conv2d(wavelet((x[:, g * cig + c: g * cig + c + 1] - m.translation[o, c]) / m.scale[o, c],
                                           "mexican_hat"), m.wavelet_weight[o, c][None, None], padding=1)
        for c in range(cig))
    torch.testing.assert_close(z[:, o:o + 1], direct, atol=1e-12, rtol=0)


def test_shannon_window_is_a_fixed_weight_factor():
    windowed = _layer(2, "shannon", cin=4, cout=6, shannon_window=True).eval()
    plain = _layer(2, "shannon", cin=4, cout=6, shannon_window=False).eval()
    x = _input(windowed)
    with torch.no_grad():
        assert (windowed(x) - plain(x)).abs().max() > 1e-3
        w = torch.hamming_window(4, periodic=False, dtype=F64)
        plain.wavelet_weight.mul_(w.view(1, 4, 1, 1))
        torch.testing.assert_close(windowed(x), plain(x), atol=1e-12, rtol=0)
    # the window has length C_in/groups; a single channel per group gets w = [1]
    a = _layer(2, "shannon", groups=4, cin=4, cout=4, shannon_window=True).eval()
    b = _layer(2, "shannon", groups=4, cin=4, cout=4, shannon_window=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), atol=0, rtol=0)


def test_dropout_acts_on_the_wavelet_branch_only():
    m = _layer(2, "dog", dropout=0.5, norm_layer="none").train()
    x = _input(m)
    with torch.no_grad():
        m.wavelet_weight.zero_()  # the wavelet branch is now 0 whatever its input
        y1, y2 = m(x), m(x)
    torch.testing.assert_close(y1, y2, atol=0, rtol=0)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(x), y1, atol=0, rtol=0)


def test_errors():
    with pytest.raises(ValueError, match=r"unknown wavelet_type 'haar'.*mexican_hat.*shannon"):
        WaveletKANConv2d(4, 6, 3, wavelet_type="haar")
    with pytest.raises(ValueError, match=r"groups=3 must divide in_channels=4"):
        WaveletKANConv2d(4, 6, 3, groups=3)
    with pytest.raises(ValueError, match=r"chunk_size"):
        WaveletKANConv2d(4, 6, 3, chunk_size=0)
    with pytest.raises(ValueError, match=r"ndim must be 1, 2 or 3"):
        WaveletKANConvNd(4, 6, 3, ndim=4)
    m = WaveletKANConv2d(4, 6, 3)
    with pytest.raises(ValueError, match=r"expects 4 input channels, got 5"):
        m(torch.randn(1, 5, 6, 6))
    with pytest.raises(ValueError, match=r"expects a 4-d input.*got shape \[1, 4, 6\]"):
        m(torch.randn(1, 4, 6))


def test_torchscript_and_trace():
    m = _layer(2, "shannon", groups=2, chunk_size=2).eval()
    x = _input(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in recent torch
        scripted = torch.jit.script(m)
        traced = torch.jit.trace(m, x)
    x2 = _input(m, seed=5)
    with torch.no_grad():
        ref = m(x2)
        torch.testing.assert_close(scripted(x2), ref, atol=1e-13, rtol=0)
        torch.testing.assert_close(traced(x2), ref, atol=1e-13, rtol=0)
    # the scripted module trains through the eager path; its gradient equals the lean path's
    xs = x2.clone().requires_grad_(True)
    scripted.train()(xs).square().sum().backward()
    xl = x2.clone().requires_grad_(True)
    m.train()(xl).square().sum().backward()
    torch.testing.assert_close(xs.grad, xl.grad, atol=1e-12, rtol=1e-12)


def _golden_case(name):
    from tests.support.golden import load_case, manifest
    case = next(c for c in manifest("tck")["cases"] if c["name"] == name)
    return case, load_case("tck", case)


def test_compat_three_wav_versions_load_the_same_function():
    from kanzoo.compat.tck import from_reference
    case, (t, state) = _golden_case("wavkan_conv2d_mexican_hat_fast")
    w = state["wavelet_conv.0.wavelet_weights.weight"]
    plus_one = dict(state)
    plus_one["wavelet_conv.0.wavelet_weights.weight"] = w[:, None]
    base = {k: v for k, v in state.items() if "wavelet_weights" not in k}
    base.update({f"wavelet_conv.0.wavelet_weights.{o}.weight": w[o:o + 1] for o in range(w.shape[0])})
    x = t["input"].to(F64)
    outs = []
    for version, st in (("fast", state), ("fast_plus_one", plus_one), ("base", base)):
        c = dict(case, ctor_kwargs=dict(case["ctor_kwargs"], wav_version=version))
        with torch.no_grad():
            outs.append(from_reference(c, st).to(F64).eval()(x))
    torch.testing.assert_close(outs[1], outs[0], atol=0, rtol=0)
    torch.testing.assert_close(outs[2], outs[0], atol=0, rtol=0)
    tol = case["tolerance"]["float64"]
    torch.testing.assert_close(outs[0], t["output"].to(F64), atol=tol["atol"], rtol=tol["rtol"])


def test_compat_rejects_a_mismatched_wav_version():
    from kanzoo.compat.tck import from_reference
    case, (_, state) = _golden_case("wavkan_conv2d_mexican_hat_base")
    wrong = dict(case, ctor_kwargs=dict(case["ctor_kwargs"], wav_version="fast"))
    with pytest.raises(ValueError, match=r"wav_version='fast', but the reference state has the 'base' key layout"):
        from_reference(wrong, state)


def test_lean_matches_eager_under_autocast():
    torch.manual_seed(0)
    m = WaveletKANConv2d(4, 6, 3, padding=1, chunk_size=2)
    x = torch.randn(2, 4, 5, 5)
    res = []
    for lean in (True, False):
        m.memory_efficient = lean
        xx = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(xx)
        res.append((y.float(), torch.autograd.grad(y.float().square().sum(), [xx] + list(m.parameters()))))
    assert res[0][0].dtype == torch.float32
    torch.testing.assert_close(res[0][0], res[1][0], atol=0, rtol=0)
    for a, b in zip(res[0][1], res[1][1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-3)


# ------------------------------------------------------------------------------------------------ fast path
@pytest.fixture
def uncompiled_fast_path(monkeypatch):
    """The fast path's kernels run without torch.compile (same dispatch, no compile time); records which ran."""
    ran = []
    monkeypatch.setattr(K, "compiled", lambda fn: ran.append(fn.__name__) or fn)
    monkeypatch.setitem(K._state, "default", "compiled")
    monkeypatch.setitem(K._state, "compile_failed", None)
    return ran


@pytest.mark.parametrize("wavelet_type,ndim,groups,kw", [
    ("mexican_hat", 2, 1, {}), ("morlet", 2, 2, dict(stride=2, dilation=2, chunk_size=2)),
    ("dog", 1, 2, dict(padding=2, chunk_size=1)), ("meyer", 3, 1, dict(stride=(1, 2, 1))),
    ("shannon", 2, 2, dict(padding=0, dilation=(2, 1)))])
def test_fast_path_matches_plain_autograd(uncompiled_fast_path, monkeypatch, wavelet_type, ndim, groups, kw):
    """The GEMM + shift form with the hand-written ψ' against the plain autograd of the edge-wise formula."""
    m = _layer(ndim, wavelet_type, groups, cin=4, cout=6, **kw).train()
    x = _input(m, spatial=5 if ndim == 3 else 7)
    monkeypatch.setitem(K._state, "default", "eager")
    y_ref, g_ref = _run(m, x, lean=False)
    assert uncompiled_fast_path == []
    monkeypatch.setitem(K._state, "default", "compiled")
    y, g = _run(m, x, lean=True)
    assert sorted(set(uncompiled_fast_path)) == ["_psi_backward_kernel", "_psi_kernel"]
    del uncompiled_fast_path[:]
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=1e-12)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-11)
    with torch.no_grad():
        torch.testing.assert_close(m(x), y_ref, atol=1e-12, rtol=1e-12)
    assert set(uncompiled_fast_path) == {"_psi_kernel"}


def test_fast_path_keeps_only_small_tensors(uncompiled_fast_path):
    m = _layer(2, "mexican_hat", cin=8, cout=16, norm_layer="none")
    x = _input(m, spatial=6)
    assert _saved_numel(m, x) <= 6 * x.numel() + 3 * sum(p.numel() for p in m.parameters())
    assert "_psi_kernel" in uncompiled_fast_path


def test_fast_path_not_under_script_trace_autocast_or_plain_autograd(uncompiled_fast_path):
    m = _layer(2, "shannon", groups=2).eval()
    x = _input(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in recent torch
        scripted = torch.jit.script(m)
        traced = torch.jit.trace(m, x, check_trace=False)
    with torch.no_grad():
        scripted(x), traced(x)
    m.memory_efficient = False
    m(x.clone().requires_grad_(True))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        m.float()(x.float())
    assert uncompiled_fast_path == []


def test_fast_path_falls_back_when_the_compiler_fails(monkeypatch):
    def broken(fn):
        def run(*args):
            raise RuntimeError("no C++ compiler found")
        return run
    monkeypatch.setattr(K, "compiled", broken)
    monkeypatch.setitem(K._state, "default", None)
    monkeypatch.setitem(K._state, "compile_failed", None)
    monkeypatch.delenv("KANZOO_BASIS_KERNEL", raising=False)
    m = _layer(2, "dog", cin=8, cout=8).eval()
    x = _input(m, spatial=24, batch=4)  # 8 ψ values per input: above MIN_COMPILED_NUMEL
    assert x.numel() * 8 >= K.MIN_COMPILED_NUMEL
    with torch.no_grad():
        ref = wavelet_edge_conv(x, m.scale, m.translation, m.wavelet_weight, None, "dog", 1, [1, 1], [1, 1], [1, 1],
                                2, 8)
        with pytest.warns(RuntimeWarning, match="torch.compile failed"):
            z = m.wavelet_branch(x)
    torch.testing.assert_close(z, ref, atol=1e-12, rtol=1e-12)
