"""The Triton kernels of GroupRational (``kernel="triton"``) against the eager formula path, on CPU under Triton's
interpreter: values and gradients (x, numerator, denominator) in float32 and float64, half-precision inputs,
autocast, sgn(0) = +1, backward without the x or the coefficient gradients, and bitwise-deterministic gradients.

``triton.jit`` picks the interpreter when it decorates, i.e. when kanzoo is imported, so the checks run in one
subprocess started with ``TRITON_INTERPRET=1`` (this file run as a script prints one JSON object: check -> "ok" or
the failure). Without triton the file skips, except under ``CI=true`` (triton comes with torch's Linux wheel),
where it fails.
"""
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

try:
    import triton  # noqa: F401
    HAVE_TRITON = True
except ImportError:  # pragma: no cover
    HAVE_TRITON = False

from kanzoo.layers import GroupRational
from kanzoo.layers import rational as R
from kanzoo.layers import triton_rational as TR

REPO = Path(__file__).resolve().parents[2]


def _require_triton():
    if HAVE_TRITON:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("triton is not installed (CI=true: the Triton kernel tests are required)", pytrace=False)
    pytest.skip("triton is not installed")


# ------------------------------------------------------------------------------------------------ checks (subprocess)
def _pair(groups, order=(5, 4), dim=-1, seed=0, dtype=torch.float32):
    """(formula layer, triton layer) with the same perturbed coefficients (some denominators negative)."""
    torch.manual_seed(seed)
    mode = "identity" if order != (5, 4) else "swish"
    ref = GroupRational(groups, mode, order=order, dim=dim, kernel="formula")
    with torch.no_grad():
        ref.weight_numerator.add_(0.2 * torch.randn_like(ref.weight_numerator))
        ref.weight_denominator.add_(0.5 * torch.randn_like(ref.weight_denominator))
    tri = GroupRational(groups, mode, order=order, dim=dim, kernel="triton")
    tri.load_state_dict(ref.state_dict())
    return ref.to(dtype), tri.to(dtype)


def _run(layer, x, gy, grad_x=True, grad_coef=True):
    layer.zero_grad(set_to_none=True)
    for p in layer.parameters():
        p.requires_grad_(grad_coef)
    x = x.detach().clone().requires_grad_(grad_x)
    y = layer(x)
    y.backward(gy.to(y.dtype))
    return y, x.grad, layer.weight_numerator.grad, layer.weight_denominator.grad


def _close(got, want, rtol, atol, what):
    for name, g, w in zip(("y", "dx", "d numerator", "d denominator"), got, want):
        if g is None and w is None:
            continue
        torch.testing.assert_close(g.to(w.dtype), w, rtol=rtol, atol=atol, msg=lambda m: f"{what}, {name}: {m}")


#: elements per program in these checks: the interpreter's time grows with the number of programs, so the checks use
#: few; SHAPE with 2 groups has 21 rows x 4 = 84 elements per group: two programs, the second partly masked
CHECK_BLOCK = 64
SHAPE = (3, 7, 8)


def check_float32():
    # channels-last with 2 groups; an NCHW map with 4 groups; order (3, 2)
    for shape, groups, dim, order in ((SHAPE, 2, -1, (5, 4)), ((2, 8, 3, 5), 4, 1, (5, 4)), ((5, 6), 2, -1, (3, 2))):
        ref, tri = _pair(groups, order, dim)
        x = 2 * torch.randn(shape)
        gy = torch.randn(shape)
        _close(_run(tri, x, gy), _run(ref, x, gy), 1e-5, 1e-5, f"float32 {shape}")


def check_float64():
    ref, tri = _pair(2, dtype=torch.float64)
    x, gy = 2 * torch.randn(SHAPE, dtype=torch.float64), torch.randn(SHAPE, dtype=torch.float64)
    _close(_run(tri, x, gy), _run(ref, x, gy), 1e-12, 1e-12, "float64")


def check_half_inputs():
    ref, tri = _pair(2)
    x, gy = 2 * torch.randn(SHAPE), torch.randn(SHAPE)
    for dtype in (torch.bfloat16, torch.float16):
        xh = x.to(dtype)
        got = _run(tri, xh, gy.to(dtype))
        assert got[0].dtype == dtype and got[1].dtype == dtype, (got[0].dtype, got[1].dtype)
        assert got[2].dtype == torch.float32 and got[3].dtype == torch.float32
        # reference: the same half-precision input and output gradient, in float32
        want = _run(ref, xh.float(), gy.to(dtype).float())
        tol = 1e-2 if dtype == torch.bfloat16 else 2e-3
        _close(got, want, tol, tol * 10, str(dtype))


def check_autocast():
    ref, tri = _pair(2)
    x = torch.randn(4, 6, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = tri(x)
    assert y.dtype == torch.float32, y.dtype
    torch.testing.assert_close(y, ref(x.float()).detach(), rtol=1e-5, atol=1e-5)


def check_sign_of_zero():
    ref, tri = _pair(2)
    with torch.no_grad():
        for m in (ref, tri):
            m.weight_denominator[0, 1] = 0.0
            m.weight_denominator[1, 3] = 0.0
    x = torch.randn(3, 8)
    x[0] = 0.0
    gy = torch.randn(3, 8)
    _close(_run(tri, x, gy), _run(ref, x, gy), 1e-5, 1e-5, "zeros")


def check_partial_gradients():
    ref, tri = _pair(2)
    x, gy = torch.randn(SHAPE), torch.randn(SHAPE)
    _close(_run(tri, x, gy, grad_coef=False), _run(ref, x, gy, grad_coef=False), 1e-5, 1e-5, "x only")
    _close(_run(tri, x, gy, grad_x=False), _run(ref, x, gy, grad_x=False), 1e-5, 1e-5, "coefficients only")


def check_deterministic():
    _, tri = _pair(2)
    x, gy = torch.randn(SHAPE), torch.randn(SHAPE)
    first, second = _run(tri, x, gy), _run(tri, x, gy)
    for name, a, b in zip(("y", "dx", "d numerator", "d denominator"), first, second):
        assert torch.equal(a, b), f"{name} differs between two runs"


CHECKS = {name[len("check_"):]: fn for name, fn in dict(globals()).items() if name.startswith("check_")}


def run_checks():
    TR.BLOCK = CHECK_BLOCK
    out = {}
    for name, fn in CHECKS.items():
        try:
            fn()
            out[name] = "ok"
        except Exception:  # noqa: BLE001  (reported per check to the parent test)
            out[name] = traceback.format_exc(limit=3)
    return out


# ------------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def interpreted():
    _require_triton()
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env, cwd=str(REPO),
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_under_the_interpreter(interpreted, check):
    assert interpreted[check] == "ok", interpreted[check]


def test_clear_error_where_it_cannot_run():
    _require_triton()
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("this process runs Triton's interpreter")
    with pytest.raises(RuntimeError, match=r"^GroupRational kernel='triton' runs CUDA tensors.*TRITON_INTERPRET=1"):
        GroupRational(8, kernel="triton")(torch.randn(2, 16))
    R.set_rational_kernel("triton")
    try:
        assert GroupRational(8).kernel == "" and R.get_rational_kernel() == "triton"
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            GroupRational(8)(torch.randn(2, 16))
    finally:
        R.set_rational_kernel(None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda():
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 1e-2)):
        ref, tri = _pair(8)
        x, gy = 2 * torch.randn(8, 197, 192), torch.randn(8, 197, 192)
        got = _run(tri.cuda(), x.to(dtype).cuda(), gy.to(dtype).cuda())
        want = _run(ref, x.to(dtype).float(), gy.to(dtype).float())
        _close([g.cpu() for g in got], want, tol, tol * 10, f"cuda {dtype}")
        again = _run(tri, x.to(dtype).cuda(), gy.to(dtype).cuda())
        assert all(torch.equal(a, b) for a, b in zip(got, again)), "cuda gradients are not deterministic"


if __name__ == "__main__":
    print(json.dumps(run_checks()))
