"""GPU checks. CI has no GPU, so these skip there; on a machine with CUDA run ``python -m pytest tests/test_cuda.py``.

They compare the GPU against the CPU (float64 where the CUDA kernels allow it, so the tolerances stay tight), run
the compiled kernels through inductor's Triton backend, and drive the workflows with ``--device cuda --amp``.
"""
import re

import pytest
import torch

import kanzoo
from kanzoo.cli import main
from kanzoo.layers import GroupRational, KANConvNd, KANLinear, group_rational
from tests.support.kan_layer_cases import BASES, perturb_, small_kwargs
from tests.support.workflow_data import FAST, make_dataset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def _grads(module, x):
    module.zero_grad(set_to_none=True)  # Module.to() carries .grad along
    x = x.clone().requires_grad_(True)
    y = module(x)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=y.dtype).to(y.device)
    y.backward(g)
    return [y.detach().cpu(), x.grad.cpu()] + [p.grad.cpu() for p in module.parameters() if p.grad is not None]


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_conv_on_gpu_equals_cpu(basis, ndim):
    torch.manual_seed(0)
    layer = KANConvNd(4, 6, 3, padding=1, groups=2, ndim=ndim, basis=basis, **small_kwargs(basis))
    layer = perturb_(layer, torch.Generator().manual_seed(0)).double().train()
    x = torch.randn(2, 4, *([6] * ndim), dtype=torch.float64)
    gpu = _grads(layer.to(CUDA), x.to(CUDA))
    cpu = _grads(layer.cpu(), x)
    assert len(gpu) == len(cpu) > 2
    for a, b in zip(gpu, cpu):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("basis", BASES)
def test_linear_on_gpu_equals_cpu(basis):
    torch.manual_seed(0)
    layer = perturb_(KANLinear(5, 7, basis=basis, **small_kwargs(basis)), torch.Generator().manual_seed(0))
    layer = layer.double().train()
    x = torch.randn(8, 5, dtype=torch.float64)
    for a, b in zip(_grads(layer.to(CUDA), x.to(CUDA)), _grads(layer.cpu(), x)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kernel", ["compiled", "eager"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_group_rational_kernels_on_gpu(kernel, dtype):
    """The fused kernels (Triton through inductor when compiled) against the float64 formula on the CPU."""
    torch.manual_seed(0)
    m = GroupRational(8, "gelu", kernel=kernel)
    with torch.no_grad():
        m.weight_denominator.mul_(torch.empty_like(m.weight_denominator).uniform_(0.5, 1.5))
    x = 3 * torch.randn(4, 197, 64, dtype=torch.float64)
    x[0, 0, :8] = 0.0  # sign(0) = +1 in the coefficient gradients
    gy = torch.randn_like(x)

    def run(module, xx, fn):
        xx = xx.clone().requires_grad_(True)
        module.zero_grad()
        fn(xx).backward(gy.to(xx.device, xx.dtype))
        return [t.detach().double().cpu() for t in (fn(xx), xx.grad, module.weight_numerator.grad,
                                                     module.weight_denominator.grad)]

    ref_m = GroupRational(8, "gelu", kernel="formula").double()
    ref_m.load_state_dict(m.state_dict())
    ref = run(ref_m, x, lambda t: group_rational(t, ref_m.weight_numerator, ref_m.weight_denominator, 8))
    mg = m.to(CUDA, dtype)
    got = run(mg, x.to(CUDA, dtype), mg)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for name, a, b in zip(("output", "grad_input", "grad_numerator", "grad_denominator"), got, ref):
        scale = b.abs().max().clamp_min(1.0)
        torch.testing.assert_close(a / scale, b / scale, **tol, msg=lambda m, n=name: f"{n}: {m}")


def test_group_rational_under_autocast_is_float32():
    m = GroupRational(8, "swish").to(CUDA)
    x = torch.randn(2, 16, 64, device=CUDA)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = m(x.bfloat16())
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, m(x.bfloat16().float()), rtol=1e-6, atol=1e-6)


MODELS = {
    "vgg_kagn_bn11_v4": dict(width_scale=0.25),
    "kat_tiny_patch16_224": dict(img_size=64, depth=2),
    "mlp_kan_tiny_patch16_224": dict(img_size=64, depth=2),
    "vision_kan_tiny_patch16_224": dict(img_size=64, depth=2),
    "ukan_small": dict(num_classes=2),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_model_on_gpu_equals_cpu_and_runs_under_autocast(name):
    torch.manual_seed(0)
    model = kanzoo.create_model(name, **MODELS[name]).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        cpu = model(x)
        model.to(CUDA)
        gpu = model(x.to(CUDA)).cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            amp = model(x.to(CUDA)).float().cpu()
    scale = cpu.abs().max()
    assert (gpu - cpu).abs().max() <= 1e-3 * scale, name
    assert torch.isfinite(amp).all()
    assert (amp - cpu).abs().max() <= 0.1 * scale, (name, (amp - cpu).abs().max().item(), scale.item())


def test_compiled_model_on_gpu():
    torch.manual_seed(0)
    model = kanzoo.create_model("vgg_kagn_bn11_v4", width_scale=0.25).to(CUDA).eval()
    x = torch.randn(2, 3, 64, 64, device=CUDA)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model)(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-3 * eager.abs().max().item())


def test_train_and_validate_with_amp_on_gpu(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    run_dir = tmp_path / "run"
    assert main(["train", "simple_conv_kagn", "--data", str(data), "-o", str(run_dir), "--epochs", "2", "-b", "8",
                 "--device", "cuda", "--amp", *FAST]) == 0
    capsys.readouterr()
    assert main(["validate", "simple_conv_kagn", str(data / "val"), "--checkpoint", str(run_dir), "-j", "0",
                 "--amp", "--device", "cuda", "--img-size", "16"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"top-1 [\d.]+%", out), out
