"""KAN self-attention and KAN focal modulation over N-d feature maps.

* :class:`KANSelfAttention`: non-local self-attention (Wang et al., "Non-local Neural Networks",
  arXiv 1711.07971; SAGAN, Zhang et al., arXiv 1805.08318) whose query/key/value maps are KAN
  convolutions, as in Drokin, "Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies"
  (arXiv 2407.01092). Optional rotary position embedding with learnable mixed frequencies
  (:class:`MixedRoPE`; Heo et al., "Rotary Position Embedding for Vision Transformer", arXiv 2403.13298).
* :class:`KANFocalModulation`: focal modulation (Yang et al., "Focal Modulation Networks", arXiv 2203.11926)
  with KAN convolutions for the projections and the depthwise focal layers.
"""
from __future__ import annotations

import inspect
import math
from typing import Optional, Sequence, Tuple, Union

import torch
from timm.layers import register_notrace_module
from torch import nn

from ._utils import IntOrTuple, check_ndim, to_ntuple
from .bases import BasisType, get_basis_class
from .bottleneck import BottleneckKANConvNd
from .conv import KANConvNd, check_input
from .create import LayerType, create_norm, get_act_layer

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_LAYERS = {"kan": KANConvNd, "bottleneck": BottleneckKANConvNd}


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _conv_layer_class(conv_layer):
    if isinstance(conv_layer, str):
        key = conv_layer.lower()
        if key not in _CONV_LAYERS:
            raise ValueError(f"unknown conv_layer {conv_layer!r}; choose one of {sorted(_CONV_LAYERS)} "
                             f"or pass a layer class")
        return _CONV_LAYERS[key]
    if callable(conv_layer):
        return conv_layer
    raise TypeError(f"conv_layer must be a name or a class, got {type(conv_layer).__name__}")


def _takes_degree(basis: BasisType) -> bool:
    try:
        return "degree" in inspect.signature(get_basis_class(basis)).parameters
    except (TypeError, ValueError):
        return False


@register_notrace_module  # its position table depends on the map's size: FX calls it as one op
class MixedRoPE(nn.Module):
    r"""Rotary position embedding with learnable frequencies mixed across the spatial axes (RoPE-Mixed).

    Channels (2f, 2f+1) of a token at position :math:`p = (p_0, .., p_{A-1})` are read as one complex
    number and rotated by

    .. math:: \theta_f(p) = \sum_a p_a \, \omega_{a,f},

    with :math:`\omega` = ``freqs`` of shape (A, C/2). Axis a = 0 is the **last** spatial axis (x, the
    width), a = 1 the one before it (y), then z: the (x, y) order of RoPE-Mixed. Since the rotation is
    linear in p, the score :math:`\langle R_p q, R_{p'} k\rangle` depends only on the offset p - p'.

    Args:
        dim: channels C of each token (even).
        num_axes: number of position axes A (the spatial dims of the map for ``layout='grid'``).
        layout: ``'grid'`` (kanzoo): token n of the flattened (row-major) map sits at its real grid
            position. ``'reference'`` (torch-conv-kan): token 0 is a class token and stays unrotated;
            tokens 1..N-1 lie on an s×s grid, s = √(N-1) (A must be 2 and N-1 a perfect square).
        theta: base of the initial frequency magnitudes :math:`\theta^{-2f/C}`; directions are random.

    The rotation is computed in the dtype of its input.
    """

    def __init__(self, dim: int, num_axes: int = 2, layout: str = "grid", theta: float = 10.0,
                 device=None, dtype=None):
        super().__init__()
        _positive_int(dim, "dim")
        if dim % 2:
            raise ValueError(f"RoPE pairs channels, so the attention width must be even, got {dim}")
        if layout not in ("grid", "reference"):
            raise ValueError(f"layout must be 'grid' or 'reference', got {layout!r}")
        if layout == "reference" and num_axes != 2:
            raise ValueError(f"layout='reference' uses a 2-d grid (num_axes=2), got num_axes={num_axes}")
        self.dim, self.num_axes, self.layout, self.theta = dim, _positive_int(num_axes, "num_axes"), layout, theta
        self.freqs = nn.Parameter(torch.empty(num_axes, dim // 2, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            mag = self.theta ** (-torch.arange(self.dim // 2, dtype=torch.float64) * 2.0 / self.dim)
            direction = torch.randn(self.num_axes, self.dim // 2, dtype=torch.float64)
            direction = direction / direction.norm(dim=0, keepdim=True).clamp_min(1e-12)
            self.freqs.copy_(direction * mag)

    def positions(self, spatial: Sequence[int], device=None, dtype=None) -> Tuple[torch.Tensor, int]:
        """Positions (N_rot, A) of the rotated tokens and the number of leading unrotated tokens."""
        n = math.prod(spatial)
        if self.layout == "reference":
            s = math.isqrt(max(n - 1, 0))
            if n < 2 or s * s != n - 1:
                raise ValueError(f"layout='reference' needs H·W - 1 to be a perfect square (a class token plus "
                                 f"an s×s grid), got {n} positions from spatial size {list(spatial)}; "
                                 f"use layout='grid'")
            t = torch.arange(n - 1, device=device, dtype=dtype)
            return torch.stack([torch.remainder(t, s), torch.div(t, s, rounding_mode="floor")], dim=1), 1
        if len(spatial) != self.num_axes:
            raise ValueError(f"MixedRoPE has {self.num_axes} axes but got a {len(spatial)}-d map {list(spatial)}")
        axes = [torch.arange(size, device=device, dtype=dtype) for size in spatial]
        grid = torch.meshgrid(*axes, indexing="ij")
        return torch.stack([g.flatten() for g in reversed(grid)], dim=1), 0

    def forward(self, x: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
        """Rotates ``x`` of shape (B, N, C), N = prod(spatial) tokens in row-major order."""
        pos, skip = self.positions(spatial, device=x.device, dtype=x.dtype)
        angle = pos @ self.freqs.to(x.dtype)  # (N_rot, C/2)
        cos, sin = torch.cos(angle), torch.sin(angle)
        head, rest = x[:, :skip], x[:, skip:]
        pairs = rest.unflatten(-1, (-1, 2))
        a, b = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)
        return torch.cat([head, rotated], dim=1) if skip else rotated

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_axes={self.num_axes}, layout={self.layout!r}"


class KANSelfAttention(nn.Module):
    r"""Self-attention over all positions of an N-d map, with KAN convolutions as query/key/value maps.

    With :math:`a = W_{in} x` (a 1×1 conv C → C', or :math:`a = x` without ``inner_projection``) and
    Q, K, V the outputs of three KAN convs C' → C' flattened to (C', N):

    .. math::
        A = \mathrm{softmax}_{\text{keys}}\big(s\, Q^\top K\big) \in \mathbb{R}^{N\times N},\qquad
        o = W_{out}\,(V A^\top),\qquad y = \mathrm{Norm}(\gamma\, x + o)

    where s = ``scale`` (default :math:`1/\sqrt{C'}`, the scaled dot product of Vaswani et al.,
    arXiv 1706.03762), :math:`W_{out}` is a 1×1 conv C' → C (only with ``inner_projection``) and γ is a
    learnable scalar initialised to 0, so the block starts as Norm(x) (SAGAN, arXiv 1805.08318).
    With ``rope=True``, Q and K are rotated by :class:`MixedRoPE` before the product.

    The KAN convs use padding ``dilation·(k-1)/2`` so every map keeps the input's spatial size; the
    kernel must therefore be odd.

    Args:
        channels: input and output channels C.
        ndim: 1, 2 or 3 spatial dims.
        kernel_size: kernel of the q/k/v KAN convs.
        conv_layer: ``'kan'`` (:class:`KANConvNd`), ``'bottleneck'`` (:class:`BottleneckKANConvNd`) or a
            class called as ``cls(C', C', kernel_size, padding=.., ndim=.., basis=.., norm_layer=..,
            norm_kwargs=.., device=.., dtype=.., **layer_kwargs)``.
        basis: basis of the q/k/v convs (``'gram'``, ``'relu'`` ...).
        inner_projection: C' (None: C' = C and no 1×1 projections).
        scale: multiplier of the scores (None: 1/√C').
        norm_layer, norm_kwargs: the output norm (BatchNorm by default).
        proj_norm_layer: norm inside the q/k/v convs (None: same as ``norm_layer``, with ``norm_kwargs``).
        rope: apply rotary position embedding to Q and K (C' must be even).
        rope_layout: ``'grid'`` (real positions) or ``'reference'`` (torch-conv-kan: class token + √(N-1)
            grid, 2-d only); see :class:`MixedRoPE`.
        rope_theta: base of the initial RoPE frequencies.
        **layer_kwargs: more arguments of the q/k/v conv layers (``degree=3``, ``g=5`` ...).

    Shape:
        (N, C, *S) -> (N, C, *S). Memory grows with (prod S)².

    Examples::
        >>> att = KANSelfAttention(16, ndim=2, degree=3)
        >>> att(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(
        self,
        channels: int,
        ndim: int = 2,
        kernel_size: IntOrTuple = 3,
        conv_layer: Union[str, type] = "kan",
        basis: BasisType = "gram",
        inner_projection: Optional[int] = None,
        scale: Optional[float] = None,
        norm_layer: LayerType = "batch",
        norm_kwargs: Optional[dict] = None,
        proj_norm_layer: LayerType = None,
        rope: bool = False,
        rope_layout: str = "grid",
        rope_theta: float = 10.0,
        device=None,
        dtype=None,
        **layer_kwargs,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.ndim = check_ndim(ndim)
        self.channels = _positive_int(channels, "channels")
        inner = channels if inner_projection is None else _positive_int(inner_projection, "inner_projection")
        self.inner_channels = inner
        for bad in ("padding", "stride"):
            if bad in layer_kwargs:
                raise ValueError(f"KANSelfAttention sets {bad} of its q/k/v convs itself (the maps must keep "
                                 f"the input's size); remove {bad}={layer_kwargs[bad]!r}")
        self.kernel_size = to_ntuple(kernel_size, ndim, "kernel_size", 1)
        dilation = to_ntuple(layer_kwargs.get("dilation", 1), ndim, "dilation", 1)
        if any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"kernel_size must be odd so the q/k/v maps keep the input's size, "
                             f"got {kernel_size!r}")
        padding = tuple(d * (k - 1) // 2 for k, d in zip(self.kernel_size, dilation))
        if scale is None:
            scale = 1.0 / math.sqrt(inner)
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale > 0:
            raise ValueError(f"scale must be a positive number or None (1/sqrt(C')), got {scale!r}")
        self.scale = float(scale)

        if inner_projection is None:
            self.in_proj, self.out_proj = nn.Identity(), nn.Identity()
        else:
            self.in_proj = _CONV[ndim](channels, inner, 1, **dd)
            self.out_proj = _CONV[ndim](inner, channels, 1, **dd)
        layer_cls = _conv_layer_class(conv_layer)
        qkv_norm = norm_layer if proj_norm_layer is None else proj_norm_layer

        def make():
            return layer_cls(inner, inner, self.kernel_size, padding=padding, ndim=ndim, basis=basis,
                             norm_layer=qkv_norm, norm_kwargs=dict(norm_kwargs or {}), **dd, **layer_kwargs)

        self.q_proj, self.k_proj, self.v_proj = make(), make(), make()
        self.rope = MixedRoPE(inner, 2 if rope_layout == "reference" else ndim, rope_layout, rope_theta, **dd) \
            if rope else None
        self.gamma = nn.Parameter(torch.zeros(1, **dd))
        self.norm = create_norm(norm_layer, channels, ndim, **dd, **(norm_kwargs or {}))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention matrix softmax(s·QᵀK) of shape (B, N, N) for input ``x`` (not stored)."""
        check_input(x, self.ndim, self.channels, "KANSelfAttention")
        return self._scores(self.in_proj(x))[0]

    def _scores(self, a: torch.Tensor):
        spatial = a.shape[2:]
        q = self.q_proj(a).flatten(2).transpose(1, 2)  # (B, N, C')
        k = self.k_proj(a).flatten(2).transpose(1, 2)
        if self.rope is not None:
            q, k = self.rope(q, spatial), self.rope(k, spatial)
        return torch.softmax(torch.bmm(q, k.transpose(1, 2)) * self.scale, dim=-1), spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.ndim, self.channels, "KANSelfAttention")
        a = self.in_proj(x)
        attn, spatial = self._scores(a)
        v = self.v_proj(a).flatten(2)  # (B, C', N)
        out = torch.bmm(v, attn.transpose(1, 2)).unflatten(2, spatial)
        return self.norm(self.gamma * x + self.out_proj(out))

    def extra_repr(self) -> str:
        return (f"{self.channels}, inner_channels={self.inner_channels}, kernel_size={self.kernel_size}, "
                f"scale={self.scale:.6g}")


class KANFocalModulation(nn.Module):
    r"""Focal modulation (FocalNet) with KAN convolutions.

    With :math:`[q, z_0, g] = f(x)` split into C, C and L+1 channels:

    .. math::
        z_l = \mathrm{focal}_l(z_{l-1}),\quad
        Z = \sum_{l=1}^{L} g_l \odot z_l + g_{L+1} \odot \phi\big(\mathrm{mean}_{S}(c)\big),\quad
        y = \mathrm{proj}\big(\mathrm{Norm}(q \odot h(Z / (L+1)))\big)

    * f (C → 2C+L+1), h (C → C) and proj (C → C) are kernel-1 KAN convs (bottleneck KAN convs with
      ``bottleneck=True``); with ``full_kan=False``, f and h are plain 1×1 convs with bias.
    * focal_l is a depthwise KAN conv with kernel :math:`k_l = \text{focal\_factor}\cdot(l-1) +
      \text{focal\_window}` (odd), padding k_l//2.
    * The global context c is the last level :math:`z_L` and φ is GELU (``global_context='last'``,
      ``context_act='gelu'``), as in FocalNet. torch-conv-kan pools the running sum instead
      (``global_context='all'``) with no activation (``context_act='identity'``).
    * The division by L+1 happens only with ``normalize_modulator``; the Norm only with
      ``use_postln_in_modulation``.

    Args:
        channels: C.
        ndim: 1, 2 or 3 spatial dims.
        focal_window, focal_level, focal_factor: kernel of the first level, number of levels L, kernel
            growth per level.
        basis: basis of every KAN conv; ``degree`` goes to it when it takes one; ``**basis_kwargs`` too.
        bottleneck: f, h and proj are :class:`BottleneckKANConvNd` (``dim_reduction``, ``min_internal``
            may be given in ``bottleneck_kwargs``).
        norm_layer, norm_kwargs: norm inside every KAN conv and of the post-modulation norm.
        focal_layout: basis layout of the depthwise focal convs: ``'channel'`` (each channel sees its
            own basis functions) or ``'degree_global'`` (torch-conv-kan's KAGN v2 layout, for its
            checkpoints; see :class:`KANConvNd`).

    Shape:
        (N, C, *S) -> (N, C, *S).
    """

    def __init__(
        self,
        channels: int,
        ndim: int = 2,
        focal_window: int = 3,
        focal_level: int = 2,
        focal_factor: int = 2,
        basis: BasisType = "gram",
        degree: int = 3,
        bottleneck: bool = False,
        full_kan: bool = True,
        use_postln_in_modulation: bool = True,
        normalize_modulator: bool = True,
        global_context: str = "last",
        context_act: LayerType = "gelu",
        focal_layout: str = "channel",
        norm_layer: LayerType = "batch",
        norm_kwargs: Optional[dict] = None,
        bottleneck_kwargs: Optional[dict] = None,
        device=None,
        dtype=None,
        **basis_kwargs,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.ndim = check_ndim(ndim)
        C = self.channels = _positive_int(channels, "channels")
        L = self.focal_level = _positive_int(focal_level, "focal_level")
        _positive_int(focal_window, "focal_window")
        if isinstance(focal_factor, bool) or not isinstance(focal_factor, int) or focal_factor < 0:
            raise ValueError(f"focal_factor must be an int >= 0, got {focal_factor!r}")
        self.kernel_sizes = [focal_factor * l + focal_window for l in range(L)]
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"focal kernels {self.kernel_sizes} (focal_factor·l + focal_window) must all be odd "
                             f"to keep the map size; use an odd focal_window and an even focal_factor")
        if global_context not in ("last", "all"):
            raise ValueError(f"global_context must be 'last' or 'all', got {global_context!r}")
        self.global_context = global_context
        self.normalize_modulator = bool(normalize_modulator)
        self.full_kan, self.bottleneck = bool(full_kan), bool(bottleneck)
        if bottleneck_kwargs and not bottleneck:
            raise ValueError("bottleneck_kwargs needs bottleneck=True")

        if _takes_degree(basis):
            basis_kwargs.setdefault("degree", degree)
        kan_kw = dict(ndim=ndim, basis=basis, norm_layer=norm_layer, norm_kwargs=dict(norm_kwargs or {}),
                      **dd, **basis_kwargs)

        def pointwise(cin, cout, kan=True):
            if not kan:
                return _CONV[ndim](cin, cout, 1, **dd)
            if self.bottleneck:
                return BottleneckKANConvNd(cin, cout, 1, **kan_kw, **(bottleneck_kwargs or {}))
            return KANConvNd(cin, cout, 1, **kan_kw)

        self.f = pointwise(C, 2 * C + L + 1, self.full_kan)
        self.h = pointwise(C, C, self.full_kan)
        self.proj = pointwise(C, C)
        self.focal_layers = nn.ModuleList(
            KANConvNd(C, C, k, padding=k // 2, groups=C, basis_layout=focal_layout, **kan_kw)
            for k in self.kernel_sizes)
        self.context_act = get_act_layer(context_act)()
        self.norm = (create_norm(norm_layer, C, ndim, **dd, **(norm_kwargs or {}))
                     if use_postln_in_modulation else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.ndim, self.channels, "KANFocalModulation")
        C, L = self.channels, self.focal_level
        q, ctx, gates = torch.split(self.f(x), [C, C, L + 1], dim=1)
        ctx_all = 0.0
        for level, layer in enumerate(self.focal_layers):
            ctx = layer(ctx)
            ctx_all = ctx_all + ctx * gates[:, level:level + 1]
        source = ctx if self.global_context == "last" else ctx_all
        pooled = self.context_act(source.mean(dim=tuple(range(2, self.ndim + 2)), keepdim=True))
        ctx_all = ctx_all + pooled * gates[:, L:]
        if self.normalize_modulator:
            ctx_all = ctx_all / (L + 1)
        return self.proj(self.norm(q * self.h(ctx_all)))

    def extra_repr(self) -> str:
        return (f"{self.channels}, focal_level={self.focal_level}, kernel_sizes={self.kernel_sizes}, "
                f"global_context={self.global_context!r}, bottleneck={self.bottleneck}, full_kan={self.full_kan}")


class KANSelfAttention1d(KANSelfAttention):
    """:class:`KANSelfAttention` over (N, C, L) inputs."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(channels, ndim=1, **kwargs)


class KANSelfAttention2d(KANSelfAttention):
    """:class:`KANSelfAttention` over (N, C, H, W) inputs."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(channels, ndim=2, **kwargs)


class KANSelfAttention3d(KANSelfAttention):
    """:class:`KANSelfAttention` over (N, C, D, H, W) inputs."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(channels, ndim=3, **kwargs)


class KANFocalModulation1d(KANFocalModulation):
    """:class:`KANFocalModulation` over (N, C, L) inputs."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(channels, ndim=1, **kwargs)


class KANFocalModulation2d(KANFocalModulation):
    """:class:`KANFocalModulation` over (N, C, H, W) inputs."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(channels, ndim=2, **kwargs)


class KANFocalModulation3d(KANFocalModulation):
    """:class:`KANFocalModulation` over (N, C, D, H, W) inputs."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(channels, ndim=3, **kwargs)
