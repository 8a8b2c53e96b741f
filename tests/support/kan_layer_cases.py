"""Shared small configurations for the KAN layer property/numerics/export tests (not a test module)."""
import torch

from kanzoo.layers import list_bases

BASES = list_bases()
POLY_BASES = ["gram", "legendre", "chebyshev", "jacobi", "bernstein"]

# small per-basis settings so that F (functions per channel) stays at 3-5 and the tests stay fast
SMALL = {
    "gram": dict(degree=2),
    "legendre": dict(degree=2),
    "chebyshev": dict(degree=3),
    "jacobi": dict(degree=3, a=0.5, b=1.5),
    "bernstein": dict(degree=2),
    "bspline": dict(grid_size=3, spline_order=2),
    "rbf": dict(grid_size=4),
    "relu": dict(g=2, k=2),
    "wavelet": dict(num_wavelets=3),
}


def small_kwargs(basis):
    """Basis kwargs for a small layer; unknown (newly registered) bases get their defaults."""
    return dict(SMALL.get(basis, {}))


@torch.no_grad()
def perturb_(module, generator=None):
    """Breaks the symmetries of a fresh layer (equal per-channel phases, zero running means, ...) so that
    channel-mixing mistakes show up. Knot/centre buffers (``grid``) are left alone."""
    for name, p in module.named_parameters():
        if p.is_floating_point():
            p.mul_(torch.empty_like(p).uniform_(0.5, 1.5, generator=generator))
            if "scale" not in name:
                p.add_(0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    for name, b in module.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(0.1 * torch.randn(b.shape, generator=generator, dtype=b.dtype))
        elif name.endswith("running_var"):
            b.copy_(torch.empty_like(b).uniform_(0.5, 1.5, generator=generator))
    return module


def single_thread():
    """Generator for a module-scoped autouse fixture: these tests use tiny tensors, where intra-op threads
    only add synchronisation cost (and on busy shared cores each parallel region can wait a time slice)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
