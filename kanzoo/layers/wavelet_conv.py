"""Wav-KAN convolutions with one wavelet per (output, input) edge (Bozorgasl & Chen, "Wav-KAN: Wavelet
Kolmogorov-Arnold Networks", arXiv 2405.12832; conv form as in Drokin, arXiv 2407.01092)."""

import contextlib
import itertools
import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn
from torch.autograd.function import once_differentiable

from ._utils import IntOrTuple, check_probability, fixed_ndim, init_conv_geometry
from .bases import kernels as KK
from .bases.wavelet import check_wavelet, wavelet, wavelet_derivative
from .conv import _DROPOUT, check_input
from .create import LayerType, create_act, create_norm, get_act_layer

#: default budget of ψ elements per chunk (see ``chunk_size`` of :class:`WaveletKANConvNd`)
CHUNK_ELEMENTS = 1 << 22


def _conv(x: torch.Tensor, weight: torch.Tensor, stride: List[int], padding: List[int], dilation: List[int],
          groups: int, ndim: int) -> torch.Tensor:
    # like conv.conv_nd, with List annotations so that TorchScript accepts it
    if ndim == 1:
        return F.conv1d(x, weight, None, stride, padding, dilation, groups)
    if ndim == 2:
        return F.conv2d(x, weight, None, stride, padding, dilation, groups)
    return F.conv3d(x, weight, None, stride, padding, dilation, groups)


def _edge_chunk(x: torch.Tensor, scale: torch.Tensor, translation: torch.Tensor, weight: torch.Tensor,
                window: Optional[torch.Tensor], wavelet_type: str, stride: List[int], padding: List[int],
                dilation: List[int], ndim: int) -> torch.Tensor:
    """One chunk of m output channels per group.

    x (N, G·Cig, *S); scale, translation (G, m, Cig); weight (G, m, Cig, *k); window (Cig,) or None.
    Returns (N, G, m, *S_out).
    """
    groups, m, cig = scale.shape[0], scale.shape[1], scale.shape[2]
    n = x.shape[0]
    spatial = list(x.shape[2:])
    ones = [1] * ndim
    pshape = [1, groups, m, cig] + ones
    u = (x.reshape([n, groups, 1, cig] + spatial) - translation.reshape(pshape)) / scale.reshape(pshape)
    psi = wavelet(u, wavelet_type)
    if window is not None:
        psi = psi * window.reshape([1, 1, 1, cig] + ones)
    kernel = list(weight.shape[3:])
    z = _conv(psi.reshape([n, groups * m * cig] + spatial), weight.reshape([groups * m, cig] + kernel),
              stride, padding, dilation, groups * m, ndim)
    return z.reshape([n, groups, m] + list(z.shape[2:]))


def _grouped(t: torch.Tensor, groups: int) -> torch.Tensor:
    """(C_out, Cig, *rest) -> (G, Cog, Cig, *rest), a view."""
    return t.reshape([groups, t.shape[0] // groups] + list(t.shape[1:]))


def wavelet_edge_conv(x: torch.Tensor, scale: torch.Tensor, translation: torch.Tensor, weight: torch.Tensor,
                      window: Optional[torch.Tensor], wavelet_type: str, groups: int, stride: List[int],
                      padding: List[int], dilation: List[int], ndim: int, chunk_size: int) -> torch.Tensor:
    r"""The edge-wise wavelet convolution, plain autograd (the eager path).

    .. math:: z_o = \sum_{c} W_{o,c} \star \psi\big((x_c - \tau_{o,c}) / s_{o,c}\big)\, w_c

    over the input channels c of o's group. ``chunk_size`` output channels per group are evaluated at a
    time, which bounds the peak memory without autograd; with autograd every chunk's intermediates are
    kept (use :class:`WaveletKANConvNd`'s memory-lean path for training).

    Shapes: x (N, C_in, *S); scale, translation (C_out, C_in/G); weight (C_out, C_in/G, *k);
    window (C_in/G,) or None. Returns (N, C_out, *S_out).
    """
    s = _grouped(scale, groups)
    t = _grouped(translation, groups)
    w = _grouped(weight, groups)
    cog = s.shape[1]
    parts: List[torch.Tensor] = []
    for o0 in range(0, cog, chunk_size):
        o1 = min(o0 + chunk_size, cog)
        parts.append(_edge_chunk(x, s[:, o0:o1], t[:, o0:o1], w[:, o0:o1], window, wavelet_type,
                                 stride, padding, dilation, ndim))
    z = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
    return z.flatten(1, 2)


def _autocast_state(device_type: str):
    try:
        if torch.is_autocast_enabled(device_type):
            return device_type, torch.get_autocast_dtype(device_type)
    except RuntimeError:  # device types without autocast (meta, ...)
        pass
    return None


def _autocast(state):
    return contextlib.nullcontext() if state is None else torch.autocast(state[0], dtype=state[1])


class _LeanWaveletConv(torch.autograd.Function):
    """:func:`wavelet_edge_conv` that saves only its inputs and recomputes ψ chunk by chunk in backward."""

    @staticmethod
    def forward(ctx, x, scale, translation, weight, window, wavelet_type, groups, stride, padding, dilation,
                ndim, chunk_size):
        ctx.save_for_backward(x, scale, translation, weight, window)
        ctx.conf = (wavelet_type, groups, stride, padding, dilation, ndim, chunk_size)
        ctx.autocast = _autocast_state(x.device.type)
        # the forward of an autograd.Function runs without grad: each chunk is freed after use
        s, t, w = _grouped(scale, groups), _grouped(translation, groups), _grouped(weight, groups)
        cog = s.shape[1]
        z = None
        for o0 in range(0, cog, chunk_size):
            o1 = min(o0 + chunk_size, cog)
            zc = _edge_chunk(x, s[:, o0:o1], t[:, o0:o1], w[:, o0:o1], window, wavelet_type,
                             stride, padding, dilation, ndim)
            if z is None:
                z = zc.new_empty([zc.shape[0], groups, cog] + list(zc.shape[3:]))
            z[:, :, o0:o1] = zc
        return z.flatten(1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, scale, translation, weight, window = ctx.saved_tensors
        wavelet_type, groups, stride, padding, dilation, ndim, chunk_size = ctx.conf
        need_x, need_s, need_t, need_w = ctx.needs_input_grad[:4]
        s, t, w = _grouped(scale, groups), _grouped(translation, groups), _grouped(weight, groups)
        cog = s.shape[1]
        grad = grad.reshape([grad.shape[0], groups, cog] + list(grad.shape[2:]))
        gx = torch.zeros_like(x) if need_x else None
        gs = torch.zeros_like(s) if need_s else None
        gt = torch.zeros_like(t) if need_t else None
        gw = torch.zeros_like(w) if need_w else None
        xd = x.detach().requires_grad_(need_x)
        for o0 in range(0, cog, chunk_size):
            o1 = min(o0 + chunk_size, cog)
            leaves = [xd]
            for p, need in ((s, need_s), (t, need_t), (w, need_w)):
                leaves.append(p[:, o0:o1].detach().requires_grad_(need))
            # recompute under the autocast state of the forward, so that ψ is the same function
            with torch.enable_grad(), _autocast(ctx.autocast):
                zc = _edge_chunk(leaves[0], leaves[1], leaves[2], leaves[3], window, wavelet_type,
                                 stride, padding, dilation, ndim)
            wanted = [i for i, need in enumerate((need_x, need_s, need_t, need_w)) if need]
            grads = torch.autograd.grad(zc, [leaves[i] for i in wanted], grad[:, :, o0:o1])
            for i, g in zip(wanted, grads):
                if i == 0:
                    gx += g
                else:
                    (gs, gt, gw)[i - 1][:, o0:o1] += g
        shape = lambda g, p: None if g is None else g.reshape(p.shape)  # noqa: E731
        return (gx, shape(gs, scale), shape(gt, translation), shape(gw, weight),
                None, None, None, None, None, None, None, None)


# ------------------------------------------------------------------------------------------------ fast path
# The edge-wise conv as GEMMs. With ψ laid out as (G·m, Cig, P), P = N·prod(S) the input positions, the conv
# z_o = sum_c W_oc ⋆ ψ_oc is q = W_o (K, Cig) @ ψ_o (Cig, P) per output channel (K = prod(kernel) taps; one
# batched matmul), then z_o = sum_k q_{o,k} shifted by tap k (strided slices of the zero-padded q, which apply
# the layer's stride, padding and dilation). ψ (forward, and recomputed in backward) and its derivative are each
# one compiled elementwise kernel (KANZOO_BASIS_KERNEL).
def _psi_kernel(x: torch.Tensor, translation: torch.Tensor, scale: torch.Tensor, window: torch.Tensor,
                name: str) -> torch.Tensor:
    """ψ((x - τ)/s)·w for x (G, 1, Cig, P), τ and s (G, m, Cig, 1), w (1, 1, Cig, 1): (G, m, Cig, P)."""
    return wavelet((x - translation) / scale, name) * window


def _psi_backward_kernel(x: torch.Tensor, grad: torch.Tensor, translation: torch.Tensor, scale: torch.Tensor,
                         window: torch.Tensor, name: str):
    """ψ again, and from grad = dL/dψ (G, m, Cig, P), with u = (x - τ)/s and g = grad·w·ψ'(u)/s:
    dL/dx = sum_m g (G, 1, Cig, P), dL/dτ = -sum_P g and dL/ds = -sum_P g·u (G, m, Cig, 1)."""
    u = (x - translation) / scale
    g = grad * window * wavelet_derivative(u, name) / scale
    return (wavelet(u, name) * window, g.sum(dim=1, keepdim=True), -g.sum(dim=3, keepdim=True),
            -(g * u).sum(dim=3, keepdim=True))


def _columns(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, G·Cig, *S) -> (G, 1, Cig, N·prod(S)), contiguous."""
    n, c = x.shape[0], x.shape[1]
    return x.detach().reshape(n, groups, c // groups, -1).permute(1, 2, 0, 3).reshape(groups, 1, c // groups, -1)


def _tap_slices(kernel: List[int], stride: List[int], dilation: List[int], out: List[int]):
    """Per tap (row-major over the kernel), the slices of the padded spatial dims that tap k reads."""
    for tap in itertools.product(*[range(k) for k in kernel]):
        yield tuple(slice(t * d, t * d + (o - 1) * st + 1, st) for t, d, o, st in zip(tap, dilation, out, stride))


def _shift_sum(q: torch.Tensor, kernel: List[int], stride: List[int], padding: List[int], dilation: List[int],
               out: List[int]) -> torch.Tensor:
    """(R, K, N, *S) -> (R, N, *S_out): z[.., i] = sum_k q_pad[.., k, .., i·stride + tap_k·dilation]."""
    qp = F.pad(q, [p for p in reversed(padding) for _ in range(2)])
    z: Optional[torch.Tensor] = None
    for k, sl in enumerate(_tap_slices(kernel, stride, dilation, out)):
        v = qp[(slice(None), k, slice(None)) + sl]
        z = v.clone() if z is None else z.add_(v)
    assert z is not None
    return z


def _shift_sum_adjoint(dz: torch.Tensor, kernel: List[int], stride: List[int], padding: List[int],
                       dilation: List[int], spatial: List[int]) -> torch.Tensor:
    """The adjoint of :func:`_shift_sum`: (R, N, *S_out) -> (R, K, N·prod(S))."""
    taps = math.prod(kernel)
    padded = [s + 2 * p for s, p in zip(spatial, padding)]
    dqp = dz.new_zeros([dz.shape[0], taps, dz.shape[1]] + padded)
    for k, sl in enumerate(_tap_slices(kernel, stride, dilation, list(dz.shape[2:]))):
        dqp[(slice(None), k, slice(None)) + sl] += dz
    crop = tuple(slice(p, p + s) for p, s in zip(padding, spatial))
    return dqp[(slice(None), slice(None), slice(None)) + crop].reshape(dz.shape[0], taps, -1)


class _FastPlan:
    """Shapes and per-chunk views shared by the fast forward and backward."""

    def __init__(self, x, scale, translation, weight, window, groups, chunk_size):
        self.n, self.spatial = x.shape[0], list(x.shape[2:])
        self.groups, self.cig = groups, x.shape[1] // groups
        self.kernel = list(weight.shape[2:])
        self.taps = math.prod(self.kernel)
        self.cog = scale.shape[0] // groups
        self.chunk = chunk_size
        self.cols = _columns(x, groups)
        self.s = _grouped(scale.detach(), groups).unsqueeze(-1)
        self.t = _grouped(translation.detach(), groups).unsqueeze(-1)
        # (G, Cog, K, Cig): W_o as a (K, Cig) matrix per output
        self.w = _grouped(weight.detach(), groups).reshape(groups, self.cog, self.cig, self.taps).transpose(2, 3)
        win = torch.ones(self.cig, dtype=x.dtype, device=x.device) if window is None else window.to(x.dtype)
        self.window = win.view(1, 1, self.cig, 1)

    def out_spatial(self, stride: List[int], padding: List[int], dilation: List[int]) -> List[int]:
        return [(s + 2 * p - d * (k - 1) - 1) // st + 1
                for s, p, d, k, st in zip(self.spatial, padding, dilation, self.kernel, stride)]

    def chunks(self):
        for o0 in range(0, self.cog, self.chunk):
            yield o0, min(o0 + self.chunk, self.cog)


def _fast_forward(x, scale, translation, weight, window, wavelet_type: str, groups: int, stride, padding,
                  dilation, ndim: int, chunk_size: int, kernel: str) -> torch.Tensor:
    """:func:`wavelet_edge_conv` by the fast path (no autograd)."""
    plan = _FastPlan(x, scale, translation, weight, window, groups, chunk_size)
    n, g = plan.n, groups
    out = plan.out_spatial(stride, padding, dilation)
    z = x.new_empty([n, g, plan.cog] + out)
    with torch.no_grad():
        for o0, o1 in plan.chunks():
            m = o1 - o0
            psi = KK.run(_psi_kernel, kernel, plan.cols, plan.t[:, o0:o1], plan.s[:, o0:o1], plan.window,
                         wavelet_type)
            q = torch.bmm(plan.w[:, o0:o1].reshape(g * m, plan.taps, plan.cig), psi.view(g * m, plan.cig, -1))
            zc = _shift_sum(q.view([g * m, plan.taps, n] + plan.spatial), plan.kernel, stride, padding, dilation, out)
            z[:, :, o0:o1] = zc.view([g, m, n] + out).movedim(2, 0)
    return z.flatten(1, 2)


class _FastWaveletConv(torch.autograd.Function):
    """The fast path under autograd: saves the inputs; backward recomputes ψ chunk by chunk in one compiled pass
    with its derivative, and runs the conv's adjoints as matmuls."""

    @staticmethod
    def forward(ctx, x, scale, translation, weight, window, wavelet_type, groups, stride, padding, dilation,
                ndim, chunk_size, kernel):
        ctx.save_for_backward(x, scale, translation, weight, window)
        ctx.conf = (wavelet_type, groups, stride, padding, dilation, ndim, chunk_size, kernel)
        return _fast_forward(x, scale, translation, weight, window, wavelet_type, groups, stride, padding,
                             dilation, ndim, chunk_size, kernel)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, scale, translation, weight, window = ctx.saved_tensors
        wavelet_type, groups, stride, padding, dilation, ndim, chunk_size, kernel = ctx.conf
        plan = _FastPlan(x, scale, translation, weight, window, groups, chunk_size)
        n, g, taps, cig = plan.n, groups, plan.taps, plan.cig
        grad = grad.reshape([n, g, plan.cog] + list(grad.shape[2:]))
        gx = torch.zeros_like(plan.cols)
        gs, gt, gw = torch.zeros_like(plan.s), torch.zeros_like(plan.t), torch.zeros_like(plan.w)
        for o0, o1 in plan.chunks():
            m = o1 - o0
            dz = grad[:, :, o0:o1].movedim(0, 2).reshape([g * m, n] + list(grad.shape[3:]))
            dq = _shift_sum_adjoint(dz, plan.kernel, stride, padding, dilation, plan.spatial)
            w = plan.w[:, o0:o1].reshape(g * m, taps, cig)
            dpsi = torch.bmm(w.transpose(1, 2), dq).view(g, m, cig, -1)
            psi, gx_c, gt_c, gs_c = KK.run(_psi_backward_kernel, kernel, plan.cols, dpsi, plan.t[:, o0:o1],
                                           plan.s[:, o0:o1], plan.window, wavelet_type)
            gw[:, o0:o1] = torch.bmm(dq, psi.view(g * m, cig, -1).transpose(1, 2)).view(g, m, taps, cig)
            gx += gx_c
            gt[:, o0:o1] = gt_c
            gs[:, o0:o1] = gs_c
        need = ctx.needs_input_grad
        grad_x = gx.view([g, cig, n] + plan.spatial).movedim(2, 0).reshape(x.shape) if need[0] else None
        grad_s = gs.reshape(scale.shape) if need[1] else None
        grad_t = gt.reshape(translation.shape) if need[2] else None
        grad_w = gw.transpose(2, 3).reshape(weight.shape) if need[3] else None
        return grad_x, grad_s, grad_t, grad_w, None, None, None, None, None, None, None, None, None


@register_notrace_module  # picks its memory-lean path by grad mode and chunks by size: FX calls it as one op
class WaveletKANConvNd(nn.Module):
    r"""Wav-KAN convolution: every (output, input) channel pair has its own scaled and shifted wavelet.

    For output channel o in group g and input channels c of that group (C_ig = C_in/groups of them):

    .. math::
        u_{o,c} = \frac{x_c - \tau_{o,c}}{s_{o,c}},\qquad
        z_o = \sum_{c} W_{o,c} \star \psi(u_{o,c})\, w_c,\qquad
        y = \sigma_{out}\Big(\mathrm{Norm}\big(M \ast z + W_{base} \star b(x)\big)\Big)

    where ψ is the mother wavelet (:func:`kanzoo.layers.bases.wavelet.wavelet`), :math:`\star` a
    grouped convolution with the layer's kernel, stride, padding and dilation, :math:`\ast` a grouped
    1×1 convolution M that mixes the C_out/groups wavelet channels of each group, and b the base
    activation (SiLU). w_c = 1 except for the Shannon wavelet with ``shannon_window=True`` (below).
    Unlike :class:`~kanzoo.layers.KANConvNd` with ``basis='wavelet'`` (a few wavelets per input
    channel shared by all outputs) this is the original Wav-KAN parametrisation.

    **Memory.** ψ has one value per edge and position, (N, C_out, C_in/groups, *S), which is
    C_out/groups times the size of the input. Stored for backward by plain autograd (as
    torch-conv-kan does) this costs tens of times the memory of an ordinary conv. When gradients are
    needed kanzoo therefore uses a custom autograd function that saves only the (dropped-out) input
    and the parameters, and recomputes ψ in backward, ``chunk_size`` output channels per group at a
    time. Gradients are exact; backward costs one more evaluation of ψ. (Batch 8, 64→64 channels,
    32×32, 3×3, float32 on CPU: tensors kept for backward 904 MiB plain vs 10 MiB lean; peak
    training memory of the layer 681 MiB vs 126 MiB, against 19 MiB for a conv + BatchNorm.) The plain autograd path
    (:func:`wavelet_edge_conv`) is used when no gradient is needed, under ``torch.jit``
    script/trace, ONNX export and ``torch.compile``, or with ``memory_efficient=False``; both paths
    compute the same numbers. The lean path supports first-order gradients only; for double backward
    (e.g. gradient penalties) set ``memory_efficient=False``. Under autocast the recomputation uses the
    forward's autocast state.

    Args:
        in_channels, out_channels: channel counts; both divisible by ``groups``.
        kernel_size, stride, padding, dilation: as in :class:`torch.nn.Conv2d` (zero padding).
        groups: channel groups; each output sees only the input channels of its group.
        ndim: 1, 2 or 3 spatial dims.
        wavelet_type: ``'mexican_hat'``, ``'morlet'``, ``'dog'``, ``'meyer'`` or ``'shannon'``.
        base_act: activation of the base branch.
        norm_layer: ``'batch'`` (Wav-KAN's default), ``'instance'``, ``'group'``, ``'layer'``,
            ``'none'`` or a class; ``norm_kwargs`` go to it (e.g. ``affine=True``).
        act_layer: output activation (default none, as in Wav-KAN).
        dropout: channel dropout on the wavelet branch's input, in training only.
        shannon_window: multiply the Shannon wavelet by a symmetric Hamming window over the input
            channel index c of the group, :math:`w_c = 0.54 - 0.46\cos(2\pi c/(C_{ig}-1))` (w = [1]
            when C_ig = 1). Both the Wav-KAN code and torch-conv-kan do this, so it is on by
            default. It is a fixed per-input-channel factor that the weights could absorb: it
            does not change what the layer can represent, only how fast the weights of edge
            channels train. ``False`` gives the plain sin(u)/u.
        chunk_size: output channels per group whose ψ is evaluated at once (in the forward and in
            the lean backward). A chunk's ψ has ``chunk_size`` × (the input's size) elements, and
            evaluating it briefly holds about 10 such tensors. None (default): as many channels as
            keep a chunk's ψ within ``CHUNK_ELEMENTS`` = 2^22 elements (16 MiB in float32), at least
            one; small layers then run in one chunk. Larger chunks mean fewer, bigger kernels.
        memory_efficient: use the memory-lean path when gradients are needed.

    Shape:
        - Input: (N, C_in, *S), S of length ``ndim``.
        - Output: (N, C_out, *S_out), with S_out = floor((S + 2p - d(k-1) - 1)/s + 1).

    Attributes:
        weight: base kernels (C_out, C_in/groups, *k).
        scale, translation: (C_out, C_in/groups), initialised to 1 and 0.
        wavelet_weight: wavelet kernels W (C_out, C_in/groups, *k).
        mix_weight: 1×1 mixing M (C_out, C_out/groups, 1, ..).

    Examples::
        >>> layer = WaveletKANConvNd(16, 32, 3, padding=1, wavelet_type="dog")
        >>> layer(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 32, 8, 8])
    """

    __jit_unused_properties__ = ["chunk_size"]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        ndim: int = 2,
        wavelet_type: str = "mexican_hat",
        base_act: LayerType = "silu",
        norm_layer: LayerType = "batch",
        norm_kwargs: Optional[dict] = None,
        act_layer: LayerType = "identity",
        dropout: float = 0.0,
        shannon_window: bool = True,
        chunk_size: Optional[int] = None,
        memory_efficient: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        init_conv_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, ndim)
        self.wavelet_type = check_wavelet(wavelet_type)
        self._chunk: int = 0
        self.chunk_size = chunk_size
        self._chunk_elements: int = CHUNK_ELEMENTS
        self.shannon_window = bool(shannon_window)
        self.memory_efficient = bool(memory_efficient)
        # lists for TorchScript
        self._stride: List[int] = list(self.stride)
        self._padding: List[int] = list(self.padding)
        self._dilation: List[int] = list(self.dilation)

        self.base_act = get_act_layer(base_act, "silu")()
        self.norm = create_norm(norm_layer, out_channels, ndim, **dd, **(norm_kwargs or {}))
        self.act = create_act(act_layer, out_channels, "identity", **dd)
        self.dropout = _DROPOUT[ndim](check_probability(dropout)) if dropout > 0 else nn.Identity()

        cig, cog = in_channels // groups, out_channels // groups
        self.weight = nn.Parameter(torch.empty((out_channels, cig) + self.kernel_size, **dd))
        self.scale = nn.Parameter(torch.empty(out_channels, cig, **dd))
        self.translation = nn.Parameter(torch.empty(out_channels, cig, **dd))
        self.wavelet_weight = nn.Parameter(torch.empty((out_channels, cig) + self.kernel_size, **dd))
        self.mix_weight = nn.Parameter(torch.empty((out_channels, cog) + (1,) * ndim, **dd))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        k = math.prod(self.kernel_size)
        cig, cog = self.in_channels // self.groups, self.out_channels // self.groups
        for w, fan_in in ((self.weight, cig * k), (self.wavelet_weight, cig * k), (self.mix_weight, cog)):
            bound = math.sqrt(3.0 / fan_in)
            nn.init.uniform_(w, -bound, bound)
        with torch.no_grad():
            self.scale.fill_(1.0)
            self.translation.zero_()

    def _window(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        if self.wavelet_type != "shannon" or not self.shannon_window:
            return None
        return torch.hamming_window(self.in_channels // self.groups, periodic=False, dtype=x.dtype, device=x.device)

    @property
    def chunk_size(self) -> Optional[int]:
        return self._chunk if self._chunk > 0 else None

    @chunk_size.setter
    def chunk_size(self, value: Optional[int]) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"chunk_size must be None or an int >= 1 (output channels per group), got {value!r}")
        self._chunk = 0 if value is None else value  # 0: auto

    def _chunk_for(self, x: torch.Tensor) -> int:
        cog = self.out_channels // self.groups
        if self._chunk > 0:
            return min(self._chunk, cog)
        # one output channel per group costs x.numel() elements of ψ
        return max(1, min(cog, self._chunk_elements // max(1, x.numel())))

    @torch.jit.unused
    def _use_lean(self, x: torch.Tensor) -> bool:
        if not self.memory_efficient or not torch.is_grad_enabled():
            return False
        if torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
            return False
        return x.requires_grad or any(p.requires_grad for p in (self.scale, self.translation, self.wavelet_weight))

    @torch.jit.unused
    def _lean(self, x: torch.Tensor, window: Optional[torch.Tensor]) -> torch.Tensor:
        return _LeanWaveletConv.apply(x, self.scale, self.translation, self.wavelet_weight, window,
                                      self.wavelet_type, self.groups, self._stride, self._padding,
                                      self._dilation, self.ndim, self._chunk_for(x))

    @torch.jit.unused
    def _fast_kernel(self, x: torch.Tensor) -> Optional[str]:
        """The kernel setting of the fast path, or None where the eager paths must run (see
        :mod:`kanzoo.layers.bases.kernels`; also under autocast and for parameters of another dtype)."""
        if x.dim() != self.ndim + 2 or _autocast_state(x.device.type) is not None:
            return None
        if any(p.dtype != x.dtype or p.device != x.device for p in (self.scale, self.translation,
                                                                   self.wavelet_weight)):
            return None
        return KK.use_kernel(x, x.numel() * (self.out_channels // self.groups))

    @torch.jit.unused
    def _fast(self, x: torch.Tensor, window: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        kernel = self._fast_kernel(x)
        if kernel is None:
            return None
        args = (x, self.scale, self.translation, self.wavelet_weight, window, self.wavelet_type, self.groups,
                self._stride, self._padding, self._dilation, self.ndim, self._chunk_for(x), kernel)
        if self._use_lean(x):
            return _FastWaveletConv.apply(*args)
        if torch.is_grad_enabled() and (x.requires_grad or any(
                p.requires_grad for p in (self.scale, self.translation, self.wavelet_weight))):
            return None  # memory_efficient=False: plain autograd
        return _fast_forward(*args)

    def wavelet_branch(self, x: torch.Tensor) -> torch.Tensor:
        """z (before the 1×1 mixing) for an input that already went through dropout."""
        window = self._window(x)
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            out = self._fast(x, window)
            if out is not None:
                return out
        if torch.jit.is_scripting() or torch.jit.is_tracing() or not self._use_lean(x):
            return wavelet_edge_conv(x, self.scale, self.translation, self.wavelet_weight, window,
                                     self.wavelet_type, self.groups, self._stride, self._padding,
                                     self._dilation, self.ndim, self._chunk_for(x))
        return self._lean(x, window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.ndim, self.in_channels, "WaveletKANConvNd")
        base = _conv(self.base_act(x), self.weight, self._stride, self._padding, self._dilation,
                     self.groups, self.ndim)
        z = self.wavelet_branch(self.dropout(x))
        ones = [1] * self.ndim
        y = _conv(z, self.mix_weight, ones, [0] * self.ndim, ones, self.groups, self.ndim)
        return self.act(self.norm(y + base))

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
             f"wavelet_type={self.wavelet_type!r}")
        if self.wavelet_type == "shannon":
            s += f", shannon_window={self.shannon_window}"
        return s



WaveletKANConv1d = fixed_ndim(WaveletKANConvNd, 1, "WaveletKANConv1d")
WaveletKANConv2d = fixed_ndim(WaveletKANConvNd, 2, "WaveletKANConv2d")
WaveletKANConv3d = fixed_ndim(WaveletKANConvNd, 3, "WaveletKANConv3d")
