"""MLP-KAN (kanzoo.models.mlp_kan) and its token MoE: the sparse path equals the dense one, the load-balancing
loss reaches the router, the reference's bugs are fixed (no dead MLP, drop-path, qkv bias, expert width),
parameter counts (total and active), routing precision, and TorchScript/tracing."""
import copy
import warnings

import pytest
import torch

import kanzoo
from kanzoo.layers import FasterKAN, MoEKANMlp, RSWAFBasis
from kanzoo.models.mlp_kan import MLPKAN

pytestmark = pytest.mark.filterwarnings("ignore:.*is deprecated.*:FutureWarning")

NAMES = ["mlp_kan_base_patch16_224", "mlp_kan_base_patch16_384", "mlp_kan_small_patch16_224",
         "mlp_kan_tiny_patch16_224"]
TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, expert_hidden=32, num_classes=10)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _routed_moe(**kw):
    """A MoE whose router is spread out enough that every expert gets tokens."""
    moe = MoEKANMlp(24, expert_hidden=32, **kw).double()
    with torch.no_grad():
        moe.gate.weight.normal_(0, 1)
    return moe


def test_registered_names():
    assert kanzoo.list_models("mlp_kan_*") == NAMES
    model = kanzoo.create_model("mlp_kan_tiny_patch16_224", device="meta")
    assert isinstance(model, MLPKAN) and model.pretrained_cfg["fixed_input_size"]


def test_sparse_equals_dense():
    moe = _routed_moe()
    x = torch.randn(4, 50, 24, dtype=torch.float64)
    _, idx, _ = moe.route(x.reshape(-1, 24))
    assert set(idx.flatten().tolist()) == set(range(8))
    ys = moe(x)
    moe.dense = True
    yd = moe(x)
    torch.testing.assert_close(ys, yd, rtol=1e-12, atol=1e-12)
    # and the gradients, in training
    for dense in (False, True):
        moe.dense = dense
        moe.zero_grad()
        xi = x.clone().requires_grad_(True)
        (moe.train()(xi) ** 2).sum().backward()
        grads = [xi.grad] + [p.grad if p.grad is not None else torch.zeros_like(p) for p in moe.parameters()]
        if not dense:
            sparse_grads = grads
    for a, b in zip(sparse_grads, grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_model_sparse_equals_dense_and_trace():
    """Tracing takes the dense path (no data-dependent shapes); it gives the eager (sparse) output."""
    model = MLPKAN(**TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        sparse = model(x)
        for m in model.moe_layers():
            m.dense = True
        dense = model(x)
        for m in model.moe_layers():
            m.dense = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, x, check_trace=False)
        torch.testing.assert_close(traced(torch.flip(x, [0])), model(torch.flip(x, [0])), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-6)


def test_load_balancing_loss():
    model = MLPKAN(**TINY).train()
    x = torch.randn(2, 3, 32, 32)
    seen = []
    hook = model.moe_layers()[0].register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    logits, aux = model.forward_with_aux_loss(x)
    hook.remove()
    assert logits.shape == (2, 10) and aux.dim() == 0 and torch.isfinite(aux) and aux > 0
    per_block = [m.aux_loss for m in model.moe_layers()]
    assert len(per_block) == 2 and all(a is not None for a in per_block)
    torch.testing.assert_close(aux, sum(per_block).float())
    gates = [m.gate.weight for m in model.moe_layers()]
    grads = torch.autograd.grad(aux, gates)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    # Switch-Transformer form: c·E·Σ_e f_e·P_e over the tokens the block saw
    probs, idx, _ = model.moe_layers()[0].route(seen[0].reshape(-1, 48))
    f = torch.bincount(idx.flatten(), minlength=8).double() / idx.numel()
    torch.testing.assert_close(per_block[0], 0.01 * 8 * (f * probs.mean(0)).sum())
    assert copy.deepcopy(model).aux_loss() is None  # the kept loss (with its graph) is not module state
    model.eval()
    _, aux = model.forward_with_aux_loss(x)
    assert aux.item() == 0.0 and model.aux_loss() is None
    off = MLPKAN(**dict(TINY, aux_loss_coef=0.0)).train()
    off(x)
    assert off.aux_loss() is None


def test_reference_bugs_fixed():
    model = kanzoo.create_model("mlp_kan_tiny_patch16_224", drop_path_rate=0.1, device="meta")
    # no dead FFN: every parameter under blocks.{i}.mlp belongs to the MoE
    assert all(isinstance(b.mlp, MoEKANMlp) for b in model.blocks)
    assert not any(k.endswith(("mlp.fc1.weight", "mlp.fc2.weight")) for k in model.state_dict())
    # stochastic depth reaches the blocks, rising to 0.1
    assert type(model.blocks[0].drop_path2).__name__ == "Identity"
    assert model.blocks[-1].drop_path2.drop_prob == pytest.approx(0.1)
    # qkv_bias honoured (DeiT: True), and off on request
    assert model.blocks[0].attn.qkv.bias is not None
    no_bias = kanzoo.create_model("mlp_kan_tiny_patch16_224", qkv_bias=False, device="meta")
    assert no_bias.blocks[0].attn.qkv.bias is None
    # the expert hidden width is an argument
    wide = kanzoo.create_model("mlp_kan_tiny_patch16_224", expert_hidden=256, device="meta")
    assert wide.blocks[0].mlp.experts[0].fc1.weight.shape == (256, 192)
    assert wide.blocks[0].mlp.experts[4].layers[0].basis_weight.shape == (128, 192, 8)


def test_drop_path_in_training():
    model = MLPKAN(**dict(TINY, drop_path_rate=0.5)).train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    b = model(x)
    assert not torch.equal(a, b)


def test_parameter_counts():
    model = kanzoo.create_model("mlp_kan_tiny_patch16_224", device="meta")
    d, h = 192, 192
    mlp = 2 * d * h + h + d
    kan = 2 * d + 8 * d * (h // 2) + 2 * (h // 2) + 8 * (h // 2) * d
    counts = model.parameter_counts()
    no_bias = kanzoo.create_model("mlp_kan_tiny_patch16_224", qkv_bias=False, device="meta")
    assert sum(p.numel() for p in no_bias.parameters()) == 19_919_272  # the reference's live parameters
    assert counts["total"] == 19_919_272 + 12 * 3 * d
    shared = counts["total"] - 12 * 4 * (mlp + kan)
    assert counts["active"] == shared + 12 * 2 * (mlp + kan) // 2
    assert (counts["active_min"], counts["active_max"]) == (shared + 12 * 2 * mlp, shared + 12 * 2 * kan)


def test_router_precision():
    moe = _routed_moe(router_dtype=torch.float32).float()
    x = torch.randn(200, 24)
    p32, i32, w32 = moe.route(x)
    assert p32.dtype == torch.float32 and w32.dtype == torch.float32
    moe.router_dtype = torch.float64
    p64, i64, w64 = moe.route(x)
    assert p64.dtype == torch.float64 and w64.dtype == torch.float32
    assert torch.equal(i32, i64)  # no near-ties here
    torch.testing.assert_close(w64.sum(-1), torch.ones(200))
    with pytest.raises(ValueError, match="router_dtype must be one of"):
        MLPKAN(**dict(TINY, router_dtype="bfloat16"))
    with pytest.raises(ValueError, match="router_dtype must be torch.float32 or torch.float64"):
        MoEKANMlp(24, expert_hidden=32, router_dtype=torch.float16)


def test_torchscript_sparse_path():
    model = MLPKAN(**TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-6)


def test_fasterkan_and_basis():
    net = FasterKAN([16, 12, 16])
    assert [type(m.basis) for m in net.layers] == [RSWAFBasis, RSWAFBasis]
    assert sum(p.numel() for p in net.parameters()) == 3128  # the reference's trainable count
    basis = RSWAFBasis()
    x = torch.tensor([[-2.0, 0.1]], dtype=torch.float64)
    expected = 1 - torch.tanh((x[..., None] - torch.linspace(-2, 2, 8).double()) / 0.33) ** 2
    torch.testing.assert_close(basis.double().values(x), expected)
    with pytest.raises(ValueError, match="denominator must be a number > 0"):
        RSWAFBasis(denominator=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="embed_dim=50 must be a multiple of num_heads=3"):
        MLPKAN(**dict(TINY, embed_dim=50))
    with pytest.raises(ValueError, match="top_k=9 must not exceed num_experts=8"):
        MoEKANMlp(24, expert_hidden=32, top_k=9)
    with pytest.raises(ValueError, match="MoEKANMlp maps C -> C"):
        MoEKANMlp(24, expert_hidden=32, out_features=12)
    moe = MoEKANMlp(24, expert_hidden=32)
    with pytest.raises(ValueError, match="expects 24 features in the last dim"):
        moe(torch.randn(3, 25))
