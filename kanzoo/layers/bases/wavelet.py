"""Wavelet functions and a learnable wavelet basis (Wav-KAN: Bozorgasl & Chen, "Wav-KAN: Wavelet
Kolmogorov-Arnold Networks", arXiv 2405.12832)."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from . import kernels as KK
from .base import Basis, KernelFirst, cat_basis, check_count

WAVELETS = ("mexican_hat", "morlet", "dog", "meyer", "shannon")
#: FLOPs of the mother wavelet ψ(u) at one point (see :func:`wavelet`)
WAVELET_FLOPS = {"mexican_hat": 6, "morlet": 6, "dog": 5, "meyer": 22, "shannon": 3}
_MEXICAN_HAT_C = 2.0 / (math.sqrt(3.0) * math.pi ** 0.25)


def check_wavelet(name: str) -> str:
    if name not in WAVELETS:
        raise ValueError(f"unknown wavelet_type {name!r}; choose one of {list(WAVELETS)}")
    return name


def _meyer_aux(t: torch.Tensor) -> torch.Tensor:
    return t ** 4 * (35.0 - 84.0 * t + 70.0 * t * t - 20.0 * t ** 3)


def wavelet(u: torch.Tensor, name: str) -> torch.Tensor:
    r"""The mother wavelet ψ(u), elementwise.

    - ``mexican_hat``: :math:`\frac{2}{\sqrt 3\,\pi^{1/4}}(u^2-1)e^{-u^2/2}`
    - ``morlet``: :math:`e^{-u^2/2}\cos 5u`
    - ``dog`` (derivative of Gaussian): :math:`-u\,e^{-u^2/2}`
    - ``meyer``: :math:`\sin(\pi|u|)\,A(|u|)` with A = 1 on [0, ½], 0 beyond 1 and
      :math:`\cos(\frac{\pi}{2}\nu(2v-1))`, :math:`\nu(t) = t^4(35-84t+70t^2-20t^3)` between
    - ``shannon``: :math:`\sin(u)/u` (1 at 0); a layer may multiply a window on top
    """
    if name == "mexican_hat":
        u2 = u * u
        # the constant is spelled out (not _MEXICAN_HAT_C): TorchScript cannot read module-level floats
        return 2.0 / (math.sqrt(3.0) * math.pi ** 0.25) * (u2 - 1.0) * torch.exp(-0.5 * u2)
    if name == "morlet":
        return torch.exp(-0.5 * u * u) * torch.cos(5.0 * u)
    if name == "dog":
        return -u * torch.exp(-0.5 * u * u)
    if name == "meyer":
        v = u.abs()
        mid = torch.cos((math.pi / 2.0) * _meyer_aux(2.0 * v - 1.0))
        a = torch.where(v <= 0.5, torch.ones_like(v), torch.where(v >= 1.0, torch.zeros_like(v), mid))
        return torch.sin(math.pi * v) * a
    if name == "shannon":
        return torch.sinc(u / math.pi)
    # no f-string: this function is compiled by torch.jit.script through WaveletBasis.forward
    raise ValueError("unknown wavelet_type '" + name + "'; choose one of "
                     "['mexican_hat', 'morlet', 'dog', 'meyer', 'shannon']")


def wavelet_derivative(u: torch.Tensor, name: str) -> torch.Tensor:
    r"""dψ/du of :func:`wavelet`, elementwise (0 where ψ has a kink or removable point: u = 0 for Meyer and
    Shannon, as autograd gives).

    - ``mexican_hat``: :math:`C\,u(3-u^2)e^{-u^2/2}`
    - ``morlet``: :math:`-e^{-u^2/2}(u\cos 5u + 5\sin 5u)`
    - ``dog``: :math:`(u^2-1)e^{-u^2/2}`
    - ``meyer``: :math:`\mathrm{sign}(u)\big(\pi\cos(\pi v)A(v) + \sin(\pi v)A'(v)\big)`, v = |u|, with
      :math:`A'(v) = -\pi\sin(\frac{\pi}{2}\nu(2v-1))\,\nu'(2v-1)` between ½ and 1 (0 elsewhere) and
      :math:`\nu'(t) = 140t^3(1-t)^3`
    - ``shannon``: :math:`(u\cos u - \sin u)/u^2`
    """
    if name == "mexican_hat":
        u2 = u * u
        return 2.0 / (math.sqrt(3.0) * math.pi ** 0.25) * u * (3.0 - u2) * torch.exp(-0.5 * u2)
    if name == "morlet":
        return -torch.exp(-0.5 * u * u) * (u * torch.cos(5.0 * u) + 5.0 * torch.sin(5.0 * u))
    if name == "dog":
        u2 = u * u
        return (u2 - 1.0) * torch.exp(-0.5 * u2)
    if name == "meyer":
        v = u.abs()
        t = 2.0 * v - 1.0
        inner = (math.pi / 2.0) * _meyer_aux(t)
        mid = (v > 0.5) & (v < 1.0)
        a = torch.where(v <= 0.5, torch.ones_like(v), torch.where(v >= 1.0, torch.zeros_like(v), torch.cos(inner)))
        da = torch.where(mid, -math.pi * torch.sin(inner) * 140.0 * t ** 3 * (1.0 - t) ** 3, torch.zeros_like(v))
        return torch.sign(u) * (math.pi * torch.cos(math.pi * v) * a + torch.sin(math.pi * v) * da)
    if name == "shannon":
        return torch.where(u == 0, torch.zeros_like(u), (u * torch.cos(u) - torch.sin(u)) / (u * u))
    raise ValueError("unknown wavelet_type '" + name + "'; choose one of "
                     "['mexican_hat', 'morlet', 'dog', 'meyer', 'shannon']")


# ------------------------------------------------------------------------------------------------ compiled kernel
# x: (N, C, S) (spatial dims flattened); translation, scale: (1, C, F, 1).
def _values_kernel(x: torch.Tensor, translation: torch.Tensor, scale: torch.Tensor, name: str) -> torch.Tensor:
    return wavelet((x.unsqueeze(2) - translation) / scale, name)


def _backward_kernel(x: torch.Tensor, grad: torch.Tensor, translation: torch.Tensor, scale: torch.Tensor, name: str):
    """With u = (x - τ)/s and w = grad·ψ'(u)/s: dL/dx = sum_j w, dL/dτ = -sum_{n,s} w, dL/ds = -sum_{n,s} w·u."""
    u = (x.unsqueeze(2) - translation) / scale
    w = grad * wavelet_derivative(u, name) / scale
    return w.sum(dim=2), -w.sum(dim=(0, 3), keepdim=True), -(w * u).sum(dim=(0, 3), keepdim=True)


KERNEL = KK.ParamBasisKernel(_values_kernel, _backward_kernel)


class WaveletBasis(KernelFirst, Basis):
    r"""F dilated and translated copies of a mother wavelet per input channel.

    .. math:: B_{c,j}(x) = \psi\big((x - \tau_{c,j}) / s_{c,j}\big)

    with learnable translations τ (initialised evenly over ``grid_range``) and scales s (initialised to
    the grid spacing). This is kanzoo's separable form, which fits any KAN layer; Wav-KAN's original
    layers give every (output, input) edge its own scale and translation instead
    (:class:`kanzoo.layers.WaveletKANConvNd`).

    Large float inputs run the basis as one compiled kernel and its gradients (input, translations and scales,
    from :func:`wavelet_derivative`) as another, keeping only x and the parameters for backward
    (``KANZOO_BASIS_KERNEL``, :mod:`kanzoo.layers.bases.kernels`); TorchScript, tracing and export take the
    eager formula.
    """

    name = "wavelet"
    model_tag = "wavkan"
    upstream_names = {"conv": "WavKAN", "linear": "WavKAN-linear"}
    needs_channels = True
    default_base_act = "silu"
    default_act = "identity"
    default_norm = "batch"

    def __init__(self, num_channels: int, num_wavelets: int = 4, wavelet_type: str = "mexican_hat",
                 grid_range=(-1.0, 1.0), device=None, dtype=None):
        super().__init__()
        self.wavelet_type = check_wavelet(wavelet_type)
        if isinstance(num_wavelets, bool) or not isinstance(num_wavelets, int) or num_wavelets < 1:
            raise ValueError(f"num_wavelets must be an int >= 1, got {num_wavelets!r}")
        self.num_basis = num_wavelets
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        self.translation = nn.Parameter(torch.empty(num_channels, num_wavelets, device=device, dtype=dtype))
        self.scale = nn.Parameter(torch.empty(num_channels, num_wavelets, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self, fan_in: int = 1) -> None:
        lo, hi = self.grid_range
        n = self.num_basis
        with torch.no_grad():
            centres = torch.linspace(lo, hi, n) if n > 1 else torch.tensor([(lo + hi) / 2])
            self.translation.copy_(centres.expand_as(self.translation))
            self.scale.fill_((hi - lo) / max(n - 1, 1))

    @torch.jit.unused
    def _forward_kernel(self, x: torch.Tensor, prefix: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The compiled kernel where the switch and the input allow it, else None."""
        kernel = KK.basis_kernel_for(x, prefix, self.num_basis)
        t, s = self.translation, self.scale
        if kernel is None or t.dtype != x.dtype or s.dtype != x.dtype or KK.eager_only(t):
            return None
        return KERNEL(x, prefix, (t, s), (self.wavelet_type,), self.num_basis, kernel)

    def forward_eager(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The basis by the eager formula (TorchScript, tracing, export, small inputs)."""
        shape = [1, self.scale.shape[0], self.num_basis] + [1] * (x.dim() - 2)
        u = (x.unsqueeze(2) - self.translation.view(shape)) / self.scale.view(shape)
        return cat_basis(wavelet(u, self.wavelet_type), prefix)

    def extra_repr(self) -> str:
        return f"num_channels={self.scale.shape[0]}, num_wavelets={self.num_basis}, wavelet_type={self.wavelet_type!r}"

    @classmethod
    def flops(cls, num_wavelets: int = 4, wavelet_type: str = "mexican_hat", **_: object) -> int:
        r""":math:`\psi((x-\tau_j)/s_j)` for n wavelets: :math:`n(2 + F_\psi)`, with :math:`F_\psi` from
        :data:`WAVELET_FLOPS` (mexican hat 6: u², -1, ×C, ×-½, exp, ×)."""
        return check_count("num_wavelets", num_wavelets, 1) * (2 + WAVELET_FLOPS[check_wavelet(wavelet_type)])

    def flops_per_scalar(self) -> int:
        return self.flops(self.num_basis, self.wavelet_type)
