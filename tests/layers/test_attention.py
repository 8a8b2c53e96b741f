"""KANSelfAttention, MixedRoPE and KANFocalModulation: kanzoo's own defaults and options."""
import math

import pytest
import torch
import torch.nn.functional as F

from kanzoo.compat.tck import from_reference
from kanzoo.layers import KANFocalModulation, KANSelfAttention, MixedRoPE
from tests.support import golden

D64 = torch.float64


def _manual_attention(m, x):
    """softmax(s·QᵀK) from the module's own q/k projections, written out."""
    a = m.in_proj(x)
    q = m.q_proj(a).flatten(2)  # (B, C', N)
    k = m.k_proj(a).flatten(2)
    return torch.softmax(torch.einsum("bcn,bcm->bnm", q, k) / math.sqrt(q.shape[1]), dim=-1)


def test_default_scale_is_inverse_sqrt_width():
    torch.manual_seed(0)
    m = KANSelfAttention(8, inner_projection=4, degree=2, dtype=D64).eval()
    assert m.scale == pytest.approx(1.0 / math.sqrt(4))
    x = torch.randn(2, 8, 3, 4, dtype=D64)
    torch.testing.assert_close(m.attention(x), _manual_attention(m, x), atol=1e-13, rtol=0)

    explicit = KANSelfAttention(8, inner_projection=4, degree=2, scale=0.5, dtype=D64).eval()
    explicit.load_state_dict(m.state_dict())
    torch.testing.assert_close(m(x), explicit(x), atol=0, rtol=0)
    unscaled = KANSelfAttention(8, inner_projection=4, degree=2, scale=1.0, dtype=D64).eval()
    unscaled.load_state_dict(m.state_dict())
    with torch.no_grad():
        m.gamma.fill_(0.7)
        unscaled.gamma.fill_(0.7)
    assert not torch.allclose(m(x), unscaled(x))


def test_gamma_starts_at_zero_so_block_is_norm_of_attention():
    torch.manual_seed(9)
    m = KANSelfAttention(6, ndim=1, degree=2, norm_layer="instance", dtype=D64)
    assert m.gamma.item() == 0.0
    x = torch.randn(2, 6, 10, dtype=D64)
    with torch.no_grad():
        v = m.v_proj(x).flatten(2)
        expect = F.instance_norm(torch.bmm(v, m.attention(x).transpose(1, 2)))
        torch.testing.assert_close(m(x), expect, atol=1e-12, rtol=0)
        m.gamma.fill_(1.0)  # the residual enters once gamma moves
        torch.testing.assert_close(m(x), F.instance_norm(x + torch.bmm(v, m.attention(x).transpose(1, 2))),
                                   atol=1e-12, rtol=0)


@pytest.mark.parametrize("make", [
    lambda: KANSelfAttention(4, degree=2, rope=True),
    lambda: KANFocalModulation(4, degree=2),
])
def test_stateless_across_forwards(make):
    torch.manual_seed(1)
    m = make().eval()
    x1, x2 = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    attrs = set(vars(m))
    buffers = {k: v.clone() for k, v in m.state_dict().items()}
    y1 = m(x1)
    m(x2)
    torch.testing.assert_close(m(x1), y1, atol=0, rtol=0)
    assert set(vars(m)) == attrs  # nothing like the reference's self.gates is left behind
    for k, v in m.state_dict().items():
        assert torch.equal(v, buffers[k]), k


def test_rope_grid_positions_follow_the_real_map():
    rope = MixedRoPE(4, num_axes=2, dtype=D64)
    pos, skip = rope.positions((3, 5), dtype=D64)
    assert skip == 0 and pos.shape == (15, 2)
    # token n = h·W + w sits at (x, y) = (w, h)
    for n in range(15):
        assert pos[n].tolist() == [n % 5, n // 5]


def test_rope_scores_depend_only_on_relative_offset():
    torch.manual_seed(2)
    rope = MixedRoPE(8, num_axes=2, dtype=D64)
    H, W = 3, 5
    q, k = torch.randn(8, dtype=D64), torch.randn(8, dtype=D64)
    # same content at every position: any change of score comes from the positions alone
    qr = rope(q.expand(1, H * W, 8), (H, W))[0]
    kr = rope(k.expand(1, H * W, 8), (H, W))[0]
    scores = qr @ kr.T
    pos, _ = rope.positions((H, W), dtype=D64)
    by_offset = {}
    for n in range(H * W):
        for m in range(H * W):
            off = tuple((pos[n] - pos[m]).tolist())
            by_offset.setdefault(off, []).append(scores[n, m])
    assert max(len(v) for v in by_offset.values()) > 1
    for off, vals in by_offset.items():
        torch.testing.assert_close(torch.stack(vals), vals[0].expand(len(vals)), atol=1e-12, rtol=0)
    # and the positions do matter
    assert scores.std() > 1e-3


def test_rope_float64_matches_complex_rotation():
    torch.manual_seed(3)
    rope = MixedRoPE(6, num_axes=2, dtype=D64)
    x = torch.randn(2, 12, 6, dtype=D64)
    y = rope(x, (3, 4))
    assert y.dtype == D64
    pos, _ = rope.positions((3, 4), dtype=D64)
    theta = pos @ rope.freqs.detach()
    z = torch.view_as_complex(x.reshape(2, 12, 3, 2).contiguous()) * torch.polar(torch.ones_like(theta), theta)
    # float32 rounding inside would leave errors of ~1e-7
    torch.testing.assert_close(y, torch.view_as_real(z).reshape(2, 12, 6), atol=1e-14, rtol=0)


def test_rope_reference_layout():
    torch.manual_seed(4)
    rope = MixedRoPE(4, layout="reference", dtype=D64)
    x = torch.randn(1, 10, 4, dtype=D64)
    y = rope(x, (2, 5))  # N - 1 = 9: class token + 3×3 grid
    torch.testing.assert_close(y[:, 0], x[:, 0], atol=0, rtol=0)
    pos, skip = rope.positions((2, 5))
    assert skip == 1 and pos.tolist()[:4] == [[0, 0], [1, 0], [2, 0], [0, 1]]
    with pytest.raises(ValueError, match="perfect square"):
        rope(torch.randn(1, 15, 4, dtype=D64), (3, 5))


def test_rope_attention_on_non_square_map():
    torch.manual_seed(5)
    m = KANSelfAttention(4, degree=2, rope=True, dtype=D64).eval()
    with torch.no_grad():
        m.gamma.fill_(0.5)
    x = torch.randn(2, 4, 3, 5, dtype=D64)
    y = m(x)
    assert y.shape == x.shape and y.dtype == D64 and torch.isfinite(y).all()
    plain = KANSelfAttention(4, degree=2, dtype=D64).eval()
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("rope.")})
    assert not torch.allclose(m.attention(x), plain.attention(x))


@pytest.mark.parametrize("ndim,shape", [(1, (2, 4, 5)), (3, (1, 4, 2, 3, 2))])
def test_rope_other_dims(ndim, shape):
    m = KANSelfAttention(4, ndim=ndim, degree=2, rope=True, conv_layer="bottleneck")
    assert m.rope.freqs.shape == (ndim, 2)
    assert m(torch.randn(shape)).shape == shape


def _golden_focal_case():
    case = next(c for c in golden.manifest("tck")["cases"] if c["name"] == "focal_kagn2d_default")
    return golden.load_case("tck", case) + (case,)


def test_focal_default_differs_from_reference_only_in_documented_options():
    t, state, case = _golden_focal_case()
    state_dict = from_reference(case, state).state_dict()
    x = t["input"].to(D64)
    ref_opts = dict(global_context="all", context_act="identity", focal_layout="degree_global")
    as_ref = KANFocalModulation(8, **ref_opts).to(D64).eval()
    as_ref.load_state_dict(state_dict)
    with torch.no_grad():
        torch.testing.assert_close(as_ref(x), t["output"], atol=1e-9, rtol=1e-7)
        outputs = {}
        for name in ref_opts:
            opts = {k: v for k, v in ref_opts.items() if k != name}  # switch one option back to kanzoo's
            m = KANFocalModulation(8, **opts).to(D64).eval()
            m.load_state_dict(state_dict)
            outputs[name] = m(x)
            assert (outputs[name] - t["output"]).abs().max() > 1e-6, name
        default = KANFocalModulation(8).to(D64).eval()
        default.load_state_dict(state_dict)
        assert (default(x) - t["output"]).abs().max() > 1e-6


def test_focal_default_is_focalnet():
    """The default forward equals FocalNet's equations written out with the module's own layers."""
    torch.manual_seed(6)
    m = KANFocalModulation(6, focal_level=3, degree=2, dtype=D64).eval()
    x = torch.randn(2, 6, 7, 5, dtype=D64)
    with torch.no_grad():
        q, ctx, gates = torch.split(m.f(x), [6, 6, 4], dim=1)
        ctx_all = torch.zeros_like(ctx)
        for level in range(3):
            ctx = m.focal_layers[level](ctx)
            ctx_all += ctx * gates[:, level:level + 1]
        ctx_all += F.gelu(ctx.mean((2, 3), keepdim=True)) * gates[:, 3:]
        expect = m.proj(m.norm(q * m.h(ctx_all / 4)))
        torch.testing.assert_close(m(x), expect, atol=1e-13, rtol=0)
    assert [layer.kernel_size for layer in m.focal_layers] == [(3, 3), (5, 5), (7, 7)]
    assert all(layer.groups == 6 and layer.basis_layout == "channel" for layer in m.focal_layers)


def test_gradcheck_float64():
    torch.manual_seed(7)
    att = KANSelfAttention(4, degree=2, rope=True, inner_projection=2, dtype=D64).eval()
    with torch.no_grad():
        att.gamma.fill_(0.5)
    x = torch.randn(2, 4, 3, 3, dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(att, (x,), eps=1e-6, atol=1e-6)
    foc = KANFocalModulation(3, ndim=1, degree=2, bottleneck=True, dtype=D64).eval()
    x1 = torch.randn(2, 3, 6, dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(foc, (x1,), eps=1e-6, atol=1e-6)


def test_float64_throughout():
    torch.manual_seed(8)
    for m, shape in ((KANSelfAttention(4, degree=2, rope=True, conv_layer="bottleneck", dtype=D64), (2, 4, 3, 5)),
                     (KANFocalModulation(4, degree=2, dtype=D64), (2, 4, 6, 6))):
        assert all(p.dtype == D64 for p in m.parameters())
        x = torch.randn(shape, dtype=D64)
        m32 = type(m)(4, degree=2, **({"rope": True, "conv_layer": "bottleneck"} if isinstance(m, KANSelfAttention)
                                      else {})).eval()
        m32.load_state_dict(m.state_dict())
        m.eval()
        y = m(x)
        assert y.dtype == D64
        torch.testing.assert_close(m32(x.float()).double(), y, atol=1e-4, rtol=1e-4)


def test_errors_name_expected_and_got():
    m = KANSelfAttention(8, degree=2)
    with pytest.raises(ValueError, match="expects 8 input channels, got 6"):
        m(torch.randn(1, 6, 4, 4))
    with pytest.raises(ValueError, match="4-d input"):
        m(torch.randn(1, 8, 4))
    with pytest.raises(ValueError, match="expects 8 input channels, got 4"):
        KANFocalModulation(8)(torch.randn(1, 4, 4, 4))
    with pytest.raises(ValueError, match="odd"):
        KANSelfAttention(8, kernel_size=2)
    with pytest.raises(ValueError, match="padding"):
        KANSelfAttention(8, padding=1)
    with pytest.raises(ValueError, match="even"):
        KANSelfAttention(8, inner_projection=3, rope=True)
    with pytest.raises(ValueError, match="odd"):
        KANFocalModulation(8, focal_window=4)
    with pytest.raises(ValueError, match="channels"):
        KANSelfAttention(0)
    with pytest.raises(ValueError, match="global_context"):
        KANFocalModulation(8, global_context="first")
