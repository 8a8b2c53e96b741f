"""Hypothesis property tests of the KAN conv layers over every basis: output shapes, dtypes, groups, batch
independence, degree 0, and the bottleneck variant."""
import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kanzoo.layers import (
    BottleneckKANConvNd,
    KANConv1d,
    KANConv2d,
    KANConv3d,
    KANConvNd,
    create_basis,
)
from tests.support.kan_layer_cases import BASES, POLY_BASES, perturb_, single_thread, small_kwargs

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)

FAST = settings(max_examples=15, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = [torch.float32, torch.float64, torch.bfloat16]


def out_size(size, k, s, p, d):
    """The convolution output-size formula, written out independently of the layer."""
    return math.floor((size + 2 * p - d * (k - 1) - 1) / s + 1)


@st.composite
def conv_configs(draw, max_spatial=7):
    """A valid conv configuration: channels divisible by groups (depthwise included), per-dim or scalar
    kernel/stride/padding/dilation, and spatial sizes large enough for the dilated kernel."""
    ndim = draw(st.sampled_from([1, 2, 3]))
    if ndim == 3:
        max_spatial = min(max_spatial, 5)
    groups = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    cin = groups * draw(st.integers(1, 2))
    if depthwise:
        groups = cin
    cout = groups * draw(st.integers(1, 2))

    def per_dim(lo, hi):
        if draw(st.booleans()):
            return draw(st.integers(lo, hi))
        return tuple(draw(st.lists(st.integers(lo, hi), min_size=ndim, max_size=ndim)))

    k, s, p, d = per_dim(1, 3), per_dim(1, 2), per_dim(0, 2), per_dim(1, 2)
    def tup(v):
        return (v,) * ndim if isinstance(v, int) else v
    spatial = []
    for kk, pp, dd in zip(tup(k), tup(p), tup(d)):
        need = max(1, dd * (kk - 1) + 1 - 2 * pp)  # smallest input giving an output of size >= 1
        spatial.append(draw(st.integers(max(3, need), max(max_spatial, need))))
    batch = draw(st.integers(1, 3))
    out = [out_size(n, kk, ss, pp, dd) for n, kk, ss, pp, dd in zip(spatial, tup(k), tup(s), tup(p), tup(d))]
    # torch's InstanceNorm (the default norm of most bases) rejects a single output position
    assume(math.prod(out) >= 2)
    return dict(ndim=ndim, cin=cin, cout=cout, groups=groups, kernel_size=k, stride=s, padding=p,
                dilation=d, spatial=tuple(spatial), batch=batch, tup=tup)


def build(cls, cfg, basis, **kw):
    return cls(cfg["cin"], cfg["cout"], cfg["kernel_size"], stride=cfg["stride"], padding=cfg["padding"],
               dilation=cfg["dilation"], groups=cfg["groups"], ndim=cfg["ndim"], basis=basis,
               **small_kwargs(basis), **kw)


def expected_shape(cfg):
    t = cfg["tup"]
    sizes = [out_size(n, k, s, p, d) for n, k, s, p, d in
             zip(cfg["spatial"], t(cfg["kernel_size"]), t(cfg["stride"]), t(cfg["padding"]), t(cfg["dilation"]))]
    return (cfg["batch"], cfg["cout"], *sizes)


@pytest.mark.parametrize("basis", BASES)
@FAST
@given(cfg=conv_configs(), dtype=st.sampled_from(DTYPES), build_dtype=st.booleans(), seed=st.integers(0, 2**16))
def test_shape_dtype_finite(basis, cfg, dtype, build_dtype, seed):
    torch.manual_seed(seed)
    if build_dtype:
        layer = build(KANConvNd, cfg, basis, dtype=dtype)
    else:
        layer = build(KANConvNd, cfg, basis).to(dtype)
    assert all(p.dtype == dtype for p in layer.parameters())
    x = torch.randn(cfg["batch"], cfg["cin"], *cfg["spatial"], dtype=dtype)
    for mode in (layer.train, layer.eval):
        mode()
        y = layer(x)
        assert tuple(y.shape) == expected_shape(cfg)
        assert y.dtype == dtype
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("basis", BASES)
@FAST
@given(cfg=conv_configs(), seed=st.integers(0, 2**16))
def test_batch_independence_eval(basis, cfg, seed):
    """In eval mode sample i of a batch gives the same output as sample i alone."""
    torch.manual_seed(seed)
    cfg["batch"] = 3
    layer = perturb_(build(KANConvNd, cfg, basis, dtype=torch.float64)).eval()
    x = torch.randn(3, cfg["cin"], *cfg["spatial"], dtype=torch.float64)
    x[1] *= 4.0  # very different scales per sample: a batch-wide statistic would show
    with torch.no_grad():
        y = layer(x)
        singles = torch.cat([layer(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(y, singles, rtol=1e-9, atol=1e-10)


def _split_state(layer, sub, g):
    """Group g's slice of a grouped layer's state, for an ungrouped layer over that group's channels."""
    cig, cog = sub.in_channels, sub.out_channels
    sub_state = sub.state_dict()
    out = {}
    for name, t in layer.state_dict().items():
        want = sub_state[name].shape
        if t.shape == want:
            out[name] = t.clone()  # shared: Gram betas, knots/centres, counters
        elif name.startswith("basis."):
            assert t.shape[0] == layer.in_channels, name  # per-input-channel basis parameters
            out[name] = t[g * cig:(g + 1) * cig].clone()
        else:
            assert t.shape[0] == layer.out_channels, name  # kernels, norm and PReLU parameters
            out[name] = t[g * cog:(g + 1) * cog].clone()
        assert out[name].shape == want, name
    return out


@pytest.mark.parametrize("basis", BASES)
@FAST
@given(cfg=conv_configs(), seed=st.integers(0, 2**16))
def test_groups_equal_independent_layers(basis, cfg, seed):
    """A grouped layer equals `groups` independent layers built from its weights split by hand."""
    torch.manual_seed(seed)
    groups = cfg["groups"]
    if groups == 1:
        cfg["groups"], cfg["cin"], cfg["cout"] = 2, 2 * cfg["cin"], 2 * cfg["cout"]
        groups = 2
    layer = perturb_(build(KANConvNd, cfg, basis, dtype=torch.float64)).eval()
    x = torch.randn(2, cfg["cin"], *cfg["spatial"], dtype=torch.float64)
    cig, cog = cfg["cin"] // groups, cfg["cout"] // groups
    sub_cfg = dict(cfg, cin=cig, cout=cog, groups=1)
    with torch.no_grad():
        y = layer(x)
        for g in range(groups):
            sub = build(KANConvNd, sub_cfg, basis, dtype=torch.float64).eval()
            sub.load_state_dict(_split_state(layer, sub, g))
            y_g = sub(x[:, g * cig:(g + 1) * cig])
            torch.testing.assert_close(y[:, g * cog:(g + 1) * cog], y_g, rtol=1e-9, atol=1e-10)
        # and a change confined to group 0's inputs leaves every other group's outputs untouched
        x2 = x.clone()
        x2[:, :cig] += torch.randn_like(x2[:, :cig])
        y2 = layer(x2)
    torch.testing.assert_close(y2[:, cog:], y[:, cog:], rtol=0, atol=0)
    if math.prod(y.shape[2:]) >= 3:  # (an instance norm over 2 positions only ever outputs ±1)
        assert not torch.allclose(y2[:, :cog], y[:, :cog])


@pytest.mark.parametrize("basis", BASES)
@settings(max_examples=8, deadline=None, database=None)
@given(cfg=conv_configs(max_spatial=6), dim_reduction=st.sampled_from([1.0, 2.0, 4.0]),
       min_internal=st.integers(1, 4), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_bottleneck_shapes(basis, cfg, dim_reduction, min_internal, dtype, seed):
    torch.manual_seed(seed)
    layer = build(BottleneckKANConvNd, cfg, basis, dim_reduction=dim_reduction, min_internal=min_internal,
                  dtype=dtype).eval()
    cig, cog = cfg["cin"] // cfg["groups"], cfg["cout"] // cfg["groups"]
    inner = int(max(cig, cog) / dim_reduction)
    if inner < min_internal:
        inner = min(min_internal, cig, cog)
    assert layer.inner_channels == inner
    x = torch.randn(cfg["batch"], cfg["cin"], *cfg["spatial"], dtype=dtype)
    y = layer(x)
    assert tuple(y.shape) == expected_shape(cfg)
    assert y.dtype == dtype
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("cls,ndim", [(KANConv1d, 1), (KANConv2d, 2), (KANConv3d, 3)])
@pytest.mark.parametrize("basis", ["gram", "bspline", "relu"])
def test_fixed_ndim_wrappers_match_nd(cls, ndim, basis):
    torch.manual_seed(0)
    a = cls(2, 4, 3, padding=1, basis=basis, **small_kwargs(basis))
    torch.manual_seed(0)
    b = KANConvNd(2, 4, 3, padding=1, ndim=ndim, basis=basis, **small_kwargs(basis))
    assert a.ndim == ndim
    x = torch.randn(2, 2, *([4] * ndim))
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


@pytest.mark.parametrize("basis", POLY_BASES)
@pytest.mark.parametrize("ndim", [1, 2])
def test_degree_zero_forward_backward(basis, ndim):
    torch.manual_seed(0)
    layer = KANConvNd(3, 4, 3, padding=1, ndim=ndim, basis=basis, degree=0, use_base=True, norm_layer="none")
    assert layer.num_basis == 1 and layer.basis_weight.shape[2] == 1
    x = torch.randn(2, 3, *([5] * ndim), requires_grad=True)
    # the one basis function is a constant: σ(1) for Gram (its activation is applied), 1 otherwise
    const = torch.nn.functional.silu(torch.tensor(1.0)) if basis == "gram" else torch.tensor(1.0)
    b = layer.basis(x.detach())
    assert b.shape == (2, 3, 1) + (5,) * ndim
    torch.testing.assert_close(b, const.expand_as(b))
    y = layer(x)
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    for name, p in layer.named_parameters():
        if name == "basis.beta_weights":
            # Gram's β_1..β_{D-1} enter the recurrence; at degree 0 none does (the entry is kept for checkpoints)
            assert p.grad is None or (p.grad == 0).all()
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert layer.basis_weight.grad.abs().sum() > 0 and layer.weight.grad.abs().sum() > 0
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("basis", POLY_BASES)
def test_degree_zero_default_layer(basis):
    """Degree 0 with the basis's own defaults (Chebyshev: no base branch) runs forward and backward."""
    layer = KANConvNd(2, 2, 3, ndim=1, basis=basis, degree=0)
    x = torch.randn(2, 2, 6, requires_grad=True)
    y = layer(x)
    assert y.shape == (2, 2, 4) and torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(layer.basis_weight.grad).all()
    assert x.grad is None or torch.isfinite(x.grad).all()


@pytest.mark.parametrize("basis", BASES)
def test_basis_channel_major_layout_and_prefix(basis):
    """Basis.forward maps (N, C, *S) -> (N, C, F, *S); a prefix is slot 0; values are per element."""
    basis_mod = perturb_(create_basis(basis, 3, dtype=torch.float64, **small_kwargs(basis)))
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    out = basis_mod(x)
    assert out.shape == (2, 3, basis_mod.num_basis, 4, 5)
    pre = torch.randn_like(x)
    with_prefix = basis_mod(x, pre)
    assert with_prefix.shape == (2, 3, basis_mod.num_basis + 1, 4, 5)
    torch.testing.assert_close(with_prefix[:, :, 0], pre, rtol=0, atol=0)
    torch.testing.assert_close(with_prefix[:, :, 1:], out, rtol=0, atol=0)
    if basis != "legendre":  # Legendre rescales by per-sample min/max, so it is not elementwise
        # elementwise: a spatially shuffled input gives the same shuffle of the output
        perm = torch.randperm(20)
        xs = x.flatten(2)[:, :, perm].view_as(x)
        torch.testing.assert_close(basis_mod(xs).flatten(3), out.flatten(3)[..., perm], rtol=1e-12, atol=1e-14)
