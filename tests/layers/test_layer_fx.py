"""Every KAN layer and basis under torch.fx.

* With timm's tracer settings (:mod:`tests.support.fx_trace`: the layers whose forward routes or picks a kernel
  by data, grad mode or size are registered leaf modules), the traced layer computes exactly what the eager one
  does, in eval and train mode, and its backward gives the same gradients to the same parameters. The graphs
  that hold such a leaf also run under ``torch.jit.script``.
* Plain ``torch.fx.symbolic_trace`` (no leaves) traces every layer without such a leaf: the graph takes the
  eager formulas that TorchScript and ``torch.jit.trace`` take, equal to eager up to rounding.
"""
import pytest
import torch
from torch import nn

import kanzoo.layers as L
from tests.support.fx_trace import fx_trace
from tests.support.kan_layer_cases import BASES, perturb_, single_thread, small_kwargs

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The TorchScript type system doesn't support instance-level:UserWarning"),
]


class _Wrap(nn.Module):
    """The layer as a submodule (as models hold it, so that a registered leaf stays one call), called with
    fixed extra arguments (token layers take H, W)."""

    def __init__(self, layer: nn.Module, *extra):
        super().__init__()
        self.layer = layer
        self.extra = extra

    def forward(self, x):
        return self.layer(x, *self.extra)


def _x(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def _pruned(layer):
    """``layer.prune()`` after each output channel picked member ``channel % members`` (several branches)."""
    n_out, m = layer.alpha.shape
    with torch.no_grad():
        layer.alpha.fill_(-1.0)
        layer.alpha[torch.arange(n_out), torch.arange(n_out) % m] = 1.0
    return layer.prune()


# id -> (factory, input shape, extra forward args, plain symbolic_trace expected to work)
CASES = {}
for _b in BASES:
    CASES[f"KANConv2d-{_b}"] = (lambda b=_b: L.KANConv2d(4, 6, 3, padding=1, groups=2, basis=b, **small_kwargs(b)),
                                (2, 4, 5, 5), (), True)
    CASES[f"KANLinear-{_b}"] = (lambda b=_b: L.KANLinear(4, 6, basis=b, **small_kwargs(b)), (2, 3, 4), (), True)
    CASES[f"basis-{_b}"] = (lambda b=_b: L.create_basis(b, 4, **small_kwargs(b)), (2, 4, 5), (), True)
CASES.update({
    "KANConv1d": (lambda: L.KANConv1d(4, 6, 3), (2, 4, 7), (), True),
    "KANConv3d": (lambda: L.KANConv3d(4, 6, 3, padding=1), (2, 4, 3, 3, 3), (), True),
    "BottleneckKANConv2d": (lambda: L.BottleneckKANConv2d(4, 6, 3, padding=1, min_internal=2), (2, 4, 5, 5), (),
                            True),
    "BottleneckKANLinear": (lambda: L.BottleneckKANLinear(4, 6, min_internal=2), (2, 4), (), True),
    "WaveletKANLinear": (lambda: L.WaveletKANLinear(4, 6), (2, 4), (), True),
    "SplineKANLinear": (lambda: L.SplineKANLinear(4, 6), (2, 4), (), True),
    "WaveletKANConv2d": (lambda: L.WaveletKANConv2d(4, 6, 3, padding=1), (2, 4, 5, 5), (), False),
    "MoEKANConv2d": (lambda: L.MoEKANConv2d(4, 6, 3, padding=1, num_experts=4, top_k=2, degree=2), (3, 4, 5, 5),
                     (), False),
    "MoEBottleneckKANConv2d": (lambda: L.MoEBottleneckKANConv2d(4, 6, 3, padding=1, num_experts=4, top_k=2),
                               (3, 4, 5, 5), (), False),
    "KANSelfAttention2d": (lambda: L.KANSelfAttention2d(4), (2, 4, 4, 4), (), True),
    "KANSelfAttention2d-rope": (lambda: L.KANSelfAttention2d(4, rope=True), (2, 4, 4, 4), (), False),
    "KANFocalModulation2d": (lambda: L.KANFocalModulation2d(4), (2, 4, 4, 4), (), True),
    "GroupRational": (lambda: L.GroupRational(2), (2, 5, 4), (), False),
    "GRKANMlp": (lambda: L.GRKANMlp(8, 16), (2, 5, 8), (), False),
    "FasterKAN": (lambda: L.FasterKAN([8, 6, 8]), (2, 5, 8), (), True),
    "MoEKANMlp": (lambda: L.MoEKANMlp(8, expert_hidden=8), (2, 5, 8), (), False),
    "DWConvBNReLU": (lambda: L.DWConvBNReLU(8), (2, 16, 8), (4, 4), True),
    "TokenKANLayer": (lambda: L.TokenKANLayer(8), (2, 16, 8), (4, 4), True),
    "TokenKANBlock": (lambda: L.TokenKANBlock(8), (2, 16, 8), (4, 4), True),
    "SelectableKANConv2d": (lambda: L.SelectableKANConv2d(4, 6, 3, padding=1), (2, 4, 5, 5), (), True),
    "SelectableKANLinear": (lambda: L.SelectableKANLinear(4, 6), (2, 4), (), True),
    "PrunedKANConvNd": (lambda: _pruned(L.SelectableKANConv2d(4, 6, 3, padding=1)), (2, 4, 5, 5), (), True),
    "PrunedKANLinear": (lambda: _pruned(L.SelectableKANLinear(4, 6)), (2, 4), (), True),
})
PLAIN = [k for k, case in CASES.items() if case[3]]
NOT_SCRIPTABLE = {"KANSelfAttention2d-rope": "MixedRoPE does not script in eager mode either"}


def _build(case_id: str):
    make, shape, extra, _ = CASES[case_id]
    torch.manual_seed(0)
    return _Wrap(perturb_(make(), torch.Generator().manual_seed(0)), *extra), _x(*shape)


def _leaves(out):
    return torch.utils._pytree.tree_leaves(out)


def _run(model, x, seed=3):
    torch.manual_seed(seed)  # MoE gating noise in train mode
    return _leaves(model(x))


def _grads(outs, model, x):
    """Gradients of the outputs' mean to the input and every parameter that gets one."""
    names, params = zip(("input", x), *[(n, p) for n, p in model.named_parameters() if p.requires_grad])
    loss = sum(o.float().mean() for o in outs if o.requires_grad)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {n: g for n, g in zip(names, grads) if g is not None}


def test_cases_cover_every_layer_class():
    """Every public module class of kanzoo.layers (fixed-ndim aliases aside) is in some case here."""
    covered = {c.__name__ for case_id in CASES for m in _build(case_id)[0].modules() for c in type(m).__mro__}
    public = {n for n in L.__all__ if isinstance(getattr(L, n), type) and issubclass(getattr(L, n), nn.Module)}
    missing = sorted(n for n in public if n not in covered and n[-2:] not in ("1d", "2d", "3d"))
    assert not missing, f"no FX case for {missing}"


@pytest.mark.parametrize("case_id", list(CASES))
def test_timm_tracer(case_id):
    model, x = _build(case_id)
    for train in (False, True):
        model.train(train)
        x.requires_grad_(train)
        traced = fx_trace(model)
        ref, out = _run(model, x), _run(traced, x)
        assert len(out) == len(ref)
        for o, r in zip(out, ref):
            torch.testing.assert_close(o, r, rtol=0, atol=0, msg=lambda m: f"{case_id} (train={train})\n{m}")
        if train:
            eager, fx = _grads(ref, model, x), _grads(out, model, x)
            assert len(eager) > 1 or not list(model.parameters()), f"{case_id}: eager gives no parameter a grad"
            assert sorted(fx) == sorted(eager), f"{case_id}: FX grads {sorted(fx)}, eager {sorted(eager)}"
            for n, g in eager.items():
                torch.testing.assert_close(fx[n], g, rtol=0, atol=0, msg=lambda m: f"{case_id}: grad of {n}\n{m}")
    if not CASES[case_id][3] and case_id not in NOT_SCRIPTABLE:
        # a graph with a leaf module: it scripts (timm's test_model_forward_fx_torchscript)
        model.eval()
        scripted = torch.jit.script(fx_trace(model))
        with torch.no_grad():
            for o, r in zip(_run(scripted, x), _run(model, x)):
                torch.testing.assert_close(o, r, msg=lambda m: f"{case_id}: scripted FX graph\n{m}")


@pytest.mark.parametrize("case_id", PLAIN)
def test_plain_symbolic_trace(case_id):
    model, x = _build(case_id)
    for train in (False, True):
        model.train(train)
        x.requires_grad_(train)
        traced = torch.fx.symbolic_trace(model)
        ref, out = _run(model, x), _run(traced, x)
        for o, r in zip(out, ref):
            torch.testing.assert_close(o, r, msg=lambda m: f"{case_id} (train={train})\n{m}")
    eager, fx = _grads(ref, model, x), _grads(out, model, x)
    assert sorted(fx) == sorted(eager), f"{case_id}: FX grads {sorted(fx)}, eager {sorted(eager)}"
