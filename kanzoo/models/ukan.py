"""U-KAN: a U-Net whose two deepest encoder stages and first two decoder stages are tokenized KAN blocks, from
"U-KAN Makes Strong Backbone for Medical Image Segmentation and Generation" (Li et al., arXiv 2406.02918,
AAAI-25), also used on 12-band Sentinel-2 crop fields by "KAN You See It? KANs and Sentinel for Effective and
Explainable Crop Field Segmentation" (Rege Cambrin et al., arXiv 2408.07040).

Layout (embed dims E = [E0, E1, E2], conv widths c = [c1, c2], U-KAN: c = [E0/8, E0/4]):

====================  =============================================================  ==========  =========
stage                 operation                                                      channels    scale
====================  =============================================================  ==========  =========
encoder1..3           [conv 3×3, BN, ReLU] ×2, max-pool 2, ReLU                      c1, c2, E0  1/2..1/8
patch_embed3, block1  conv 3×3 stride 2 → tokens → LN → KAN blocks → LN (``norm3``)  E1          1/16
patch_embed4, block2  the same (bottleneck; ``norm4``)                               E2          1/32
decoder1, dblock1     [conv, BN, ReLU] ×2 → bilinear ×2 → ReLU → + skip → KAN blocks  E1          1/16
decoder2, dblock2     the same                                                       E0          1/8
decoder3..5           [conv, BN, ReLU] ×2 → bilinear ×2 → ReLU (→ + skip)            c2, c1, c1  1/4..1
final                 1×1 conv                                                       num_classes 1
====================  =============================================================  ==========  =========

Skips are added, not concatenated. Each KAN block is :class:`~kanzoo.layers.TokenKANBlock`: x + three rounds
of [B-spline KAN linear (efficient-kan, G=5, K=3) → depthwise 3×3 conv → BN → ReLU] on the layer-normed
tokens. Compared with the reference code, kanzoo honours ``in_chans`` (the reference always builds a
3-channel stem), ``depths`` (KAN blocks per token stage), ``kan=False`` (the MLP twin that the reference's
``no_kan`` flag never built) and takes any input size (see :class:`UKAN`).
"""
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function
from timm.layers.helpers import get_device_dtype
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint
from torch import nn

from ..layers import SplineKANLinear, TokenKANBlock
from ..layers._utils import is_symbolic
from ..weights import Upstream
from ._base import _cfg, build_kan_model, generate_kan_cfgs, register_variants, unwrap_checkpoint
from ._kan_segmenter import seg_head

__all__ = ["UKAN"]

PAPER_UKAN = "arXiv:2406.02918"
PAPER_CROP = "arXiv:2408.07040"
PAPER_UNEXT = "arXiv:2203.04967"


class ConvBNReLU2x(nn.Module):
    """[3×3 conv (bias), BN, ReLU] twice, as ``self.conv`` (a Sequential: U-KAN's keys ``conv.{0,1,3,4}``).

    The first conv maps ``in_chs`` → ``mid_chs``, the second ``mid_chs`` → ``out_chs`` (U-KAN's encoder
    ``ConvLayer``: mid = out; decoder ``D_ConvLayer``: mid = in).
    """

    def __init__(self, in_chs: int, out_chs: int, mid_chs: int, device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.grad_checkpointing = False
        self.conv = nn.Sequential(
            nn.Conv2d(in_chs, mid_chs, 3, padding=1, **dd), nn.BatchNorm2d(mid_chs, **dd), nn.ReLU(inplace=True),
            nn.Conv2d(mid_chs, out_chs, 3, padding=1, **dd), nn.BatchNorm2d(out_chs, **dd), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint(self.conv, x)
        return self.conv(x)


class OverlapPatchEmbed(nn.Module):
    """3×3 conv with stride 2 and padding 1, then tokens (B, H·W, C) (row-major) and a LayerNorm."""

    def __init__(self, in_chs: int, embed_dim: int, device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.proj = nn.Conv2d(in_chs, embed_dim, 3, stride=2, padding=1, **dd)
        self.norm = nn.LayerNorm(embed_dim, **dd)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        H, W = x.shape[2], x.shape[3]
        return self.norm(x.flatten(2).transpose(1, 2)), H, W


def _channels_last(x: torch.Tensor) -> bool:
    """Whether the conv stages run in channels-last memory: yes except in float64, whose CPU convolutions have
    no channels-last kernel (2.5× slower there)."""
    return x.dtype != torch.float64


@register_notrace_function  # the memory layout depends on the dtype: one FX op (timm's tracer)
def _tokens_to_image(x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Tokens (B, H·W, C) -> an image (B, C, H, W): a channels-last view (no copy), or a contiguous copy in
    float64 (see :func:`_channels_last`)."""
    x = x.reshape(x.shape[0], H, W, -1).permute(0, 3, 1, 2)
    return x if _channels_last(x) else x.contiguous()


@register_notrace_function  # the memory layout depends on the dtype: one FX op (timm's tracer)
def _pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    """Zero-pads the bottom and right of ``x`` to multiples of ``m``, in the conv stages' memory layout."""
    h, w = x.shape[-2], x.shape[-1]
    x = F.pad(x, [0, (m - w % m) % m, 0, (m - h % m) % m])
    return x.contiguous(memory_format=torch.channels_last) if _channels_last(x) else x.contiguous()


torch.fx.wrap("_tokens_to_image")  # and for plain torch.fx.symbolic_trace
torch.fx.wrap("_pad_to_multiple")


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.relu(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))


def _positive_ints(value, n: int, name: str) -> List[int]:
    values = [value] * n if isinstance(value, int) and not isinstance(value, bool) else list(value)
    if len(values) != n or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{name} must be {n} positive ints (or one int for all), got {value!r}")
    return values


class UKAN(nn.Module):
    r"""U-KAN (Li et al., arXiv 2406.02918): a U-Net with tokenized KAN blocks at 1/16 and 1/32 scale.

    See the module docstring for the layout; state-dict keys follow the reference (``encoder1.conv.0``,
    ``block1.0.layer.fc1.spline_weight`` ...), except that each KAN linear keeps its knots once, in
    ``*.basis.grid`` (G+2K+1 values), instead of one identical row per input feature.

    **Any input size.** The five halvings need H and W divisible by 32 (the reference crashes otherwise,
    e.g. at 48×48). ``forward`` zero-pads the bottom and right of the input to the next multiple of 32 and
    crops the logits back to (H, W); sizes that are already multiples are computed exactly as the reference
    does. (Padding changes BatchNorm's batch statistics a little in training.)

    Args:
        embed_dims: (E0, E1, E2): channels at 1/8 (the last conv stage, and the last KAN decoder stage),
            1/16 and 1/32.
        conv_dims: (c1, c2), the conv encoder widths at 1/2 and 1/4 (default (E0/8, E0/4), the paper's;
            the crop-field paper uses (E0/4, E0/2)). The decoder mirrors them.
        depths: KAN blocks in ``block1`` (encoder, 1/16), ``block2`` (bottleneck, 1/32), ``dblock1``
            (decoder, 1/16) and ``dblock2`` (decoder, 1/8); one int for all (the paper: 1).
        kan: KAN linear layers in the blocks (True) or plain ``nn.Linear`` (the MLP twin).
        kan_kwargs: :class:`~kanzoo.layers.SplineKANLinear` arguments (default G=5, K=3, range (-1, 1)).
        in_chans: input channels (e.g. 12 Sentinel-2 bands).
        num_classes: output channels; 0 returns the last decoder features (c1 channels).
        drop_rate: 2-d dropout before the output conv.
        drop_path_rate: stochastic depth, rising linearly over the KAN blocks in forward order.
        width_scale: multiplies every width (at least 1), for tests and light models.

    Shape:
        - Input: (B, in_chans, H, W), any H, W >= 1.
        - Output: (B, num_classes, H, W) logits (the paper's loss applies the sigmoid).
    """

    #: read by kanzoo's tools and tests
    task = "segmentation"

    def __init__(
        self,
        embed_dims: Sequence[int] = (128, 160, 256),
        conv_dims: Optional[Sequence[int]] = None,
        depths: Union[int, Sequence[int]] = 1,
        kan: bool = True,
        kan_kwargs: Optional[Dict[str, Any]] = None,
        in_chans: int = 3,
        num_classes: int = 1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        width_scale: float = 1.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        e0, e1, e2 = _positive_ints(embed_dims, 3, "embed_dims")
        c1, c2 = _positive_ints(conv_dims if conv_dims is not None else (max(1, e0 // 8), max(1, e0 // 4)), 2,
                                "conv_dims")
        if not isinstance(width_scale, (int, float)) or isinstance(width_scale, bool) or not width_scale > 0:
            raise ValueError(f"width_scale must be a number > 0, got {width_scale!r}")
        e0, e1, e2, c1, c2 = (max(1, int(round(c * width_scale))) for c in (e0, e1, e2, c1, c2))
        d_b1, d_b2, d_d1, d_d2 = _positive_ints(depths, 4, "depths")
        if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
        self.in_chans = in_chans
        self.embed_dims = (e0, e1, e2)
        self.conv_dims = (c1, c2)
        self.kan = bool(kan)
        self.grad_checkpointing = False
        self.pad_multiple = 32  # five halvings
        self.encoder_levels = 5  # fewer after prune_intermediate_layers
        self.has_decoder = True

        self.encoder1 = ConvBNReLU2x(in_chans, c1, c1, **dd)
        self.encoder2 = ConvBNReLU2x(c1, c2, c2, **dd)
        self.encoder3 = ConvBNReLU2x(c2, e0, e0, **dd)
        self.norm3 = nn.LayerNorm(e1, **dd)
        self.norm4 = nn.LayerNorm(e2, **dd)
        self.dnorm3 = nn.LayerNorm(e1, **dd)
        self.dnorm4 = nn.LayerNorm(e0, **dd)

        total = d_b1 + d_b2 + d_d1 + d_d2
        dpr = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]

        def blocks(dim: int, n: int) -> nn.ModuleList:
            return nn.ModuleList([TokenKANBlock(dim, drop_path=dpr.pop(0), kan=kan, kan_kwargs=kan_kwargs, **dd)
                                  for _ in range(n)])

        self.block1 = blocks(e1, d_b1)
        self.block2 = blocks(e2, d_b2)
        self.dblock1 = blocks(e1, d_d1)
        self.dblock2 = blocks(e0, d_d2)
        self.patch_embed3 = OverlapPatchEmbed(e0, e1, **dd)
        self.patch_embed4 = OverlapPatchEmbed(e1, e2, **dd)
        self.decoder1 = ConvBNReLU2x(e2, e1, e2, **dd)
        self.decoder2 = ConvBNReLU2x(e1, e0, e1, **dd)
        self.decoder3 = ConvBNReLU2x(e0, c2, e0, **dd)
        self.decoder4 = ConvBNReLU2x(c2, c1, c2, **dd)
        self.decoder5 = ConvBNReLU2x(c1, c1, c1, **dd)

        self.feature_info = [
            dict(num_chs=c1, reduction=2, module="encoder1"),
            dict(num_chs=c2, reduction=4, module="encoder2"),
            dict(num_chs=e0, reduction=8, module="encoder3"),
            dict(num_chs=e1, reduction=16, module="block1"),
            dict(num_chs=e2, reduction=32, module="block2"),
        ]
        self.num_features = e2
        self.head_hidden_size = c1
        self.drop_rate = drop_rate
        self.head_drop = nn.Dropout2d(drop_rate) if drop_rate > 0 else nn.Identity()
        self.num_classes = num_classes
        self.final = seg_head(self.head_hidden_size, num_classes, **dd)
        self.init_weights()

    def init_weights(self) -> None:
        """The reference initialisation: N(0, √(2/fan_out)) and zero bias for the patch-embedding and depthwise
        convs, LayerNorms (1, 0), PyTorch defaults elsewhere (KAN linears: efficient-kan's init)."""
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d) and (name.endswith(".proj") or name.endswith(".dwconv")):
                if m.weight.is_meta:
                    continue
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.final

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Rebuilds the output 1×1 conv for ``num_classes`` (0: decoder features); keeps device, dtype and
        train mode. ``global_pool`` is accepted for timm's API and ignored (no pooling in segmentation)."""
        self.num_classes = num_classes
        dd = get_device_dtype(self.encoder1)
        self.final = seg_head(self.head_hidden_size, num_classes, **dd).train(self.training)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recomputes every conv stage and KAN block in backward instead of keeping its activations."""
        self.grad_checkpointing = enable
        for m in self.modules():
            if isinstance(m, (ConvBNReLU2x, TokenKANBlock)):
                m.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^encoder1", blocks=[(r"^encoder(\d+)", None), (r"^(?:patch_embed|norm)(\d+)", None),
                                               (r"^(?:block|dblock)(\d+)", None), (r"^dnorm(\d+)", None),
                                               (r"^decoder(\d+)", None), (r"^final", (99999,))])

    @torch.jit.ignore
    def kan_parameters(self) -> Iterator[Tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of every KAN linear weight (``base_weight``, ``spline_weight``,
        ``spline_scaler``). U-KAN trains these with lr 1e-2 and everything else with lr 1e-4 (Adam, weight
        decay 1e-4); the reference picks them by a name substring, kanzoo by layer type."""
        for mname, m in self.named_modules():
            if isinstance(m, SplineKANLinear):
                for pname, p in m.named_parameters(recurse=False):
                    yield f"{mname}.{pname}", p

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pads the bottom and right to a multiple of 32, in channels-last memory (not in float64): the
        convs run 1.5-3× faster so on CPU, and the tokens of the KAN stages are then views of the conv outputs."""
        return _pad_to_multiple(x, self.pad_multiple)

    def _encode(self, x: torch.Tensor, num_levels: int = -1) -> List[torch.Tensor]:
        """Encoder outputs t1..t5 (1/2 .. 1/32) of an input whose sides are multiples of 32, the first
        ``num_levels`` of them (-1: every kept level)."""
        if num_levels < 0:
            num_levels = self.encoder_levels
        feats: List[torch.Tensor] = []
        x = F.relu(F.max_pool2d(self.encoder1(x), 2, 2))
        feats.append(x)
        if num_levels > 1:
            x = F.relu(F.max_pool2d(self.encoder2(x), 2, 2))
            feats.append(x)
        if num_levels > 2:
            x = F.relu(F.max_pool2d(self.encoder3(x), 2, 2))
            feats.append(x)
        if num_levels > 3:
            t, H, W = self.patch_embed3(x)
            for blk in self.block1:
                t = blk(t, H, W)
            x = _tokens_to_image(self.norm3(t), H, W)
            feats.append(x)
        if num_levels > 4:
            t, H, W = self.patch_embed4(x)
            for blk in self.block2:
                t = blk(t, H, W)
            x = _tokens_to_image(self.norm4(t), H, W)
            feats.append(x)
        return feats

    def _decode(self, feats: List[torch.Tensor]) -> torch.Tensor:
        if not self.has_decoder:
            return feats[-1]
        t1, t2, t3, t4, x = feats[0], feats[1], feats[2], feats[3], feats[4]
        x = _up(self.decoder1(x)) + t4
        H, W = x.shape[2], x.shape[3]
        t = x.flatten(2).transpose(1, 2)
        for blk in self.dblock1:
            t = blk(t, H, W)
        x = _tokens_to_image(self.dnorm3(t), H, W)
        x = _up(self.decoder2(x)) + t3
        H, W = x.shape[2], x.shape[3]
        t = x.flatten(2).transpose(1, 2)
        for blk in self.dblock2:
            t = blk(t, H, W)
        x = _tokens_to_image(self.dnorm4(t), H, W)
        x = _up(self.decoder3(x)) + t2
        x = _up(self.decoder4(x)) + t1
        return _up(self.decoder5(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck features (E2 channels, 1/32 of the padded input)."""
        return self._encode(self._pad(x))[-1]

    @torch.jit.ignore
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """timm's intermediate-feature API over the encoder outputs t1..t5 of ``feature_info`` (of the input
        zero-padded as ``forward`` pads it).

        Args:
            indices: levels to return: None all, an int the last n, a list those (negative from the end).
            norm: accepted for timm's API (the token stages' norms ``norm3``/``norm4`` are part of their levels).
            stop_early: stop after the last level taken (the final tensor is then that level's output).
            output_fmt: only ``'NCHW'``.
            intermediates_only: return the list of levels alone (deeper levels are not run).

        Returns:
            ``(final, features)``, ``final`` equal to ``forward_features(x)`` unless ``stop_early``; or
            ``features``.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        num_levels = min(max_index + 1, self.encoder_levels) if stop_early or intermediates_only else -1
        feats = self._encode(self._pad(x), num_levels)
        intermediates = [feats[i] for i in take_indices if i < len(feats)]
        if intermediates_only:
            return intermediates
        return feats[-1], intermediates

    def forward_head(self, x: List[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """The decoder and output conv on the encoder features ``x`` (t1..t5, as ``forward_intermediates(...,
        intermediates_only=True)`` gives them): logits (B, num_classes, Hp, Wp) at the padded input size
        (``forward`` crops them to (H, W)); ``pre_logits``: the last decoder features (``head_hidden_size``
        channels). After ``prune_intermediate_layers``: the deepest kept features."""
        y = self._decode(x)
        return y if pre_logits else self.final(self.head_drop(y))

    @torch.jit.ignore
    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Keeps the encoder up to the last level in ``indices``. The decoder and the output conv need every
        level: they are dropped when levels are (and with ``prune_head``), and ``forward`` then returns the
        deepest kept level (``num_features`` = ``head_hidden_size`` = its channels, ``num_classes=0``).
        Returns the kept (absolute) indices, to pass to ``forward_intermediates``."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        if max_index >= self.encoder_levels - 1 and not prune_head:
            return take_indices
        for name in ("decoder1", "decoder2", "decoder3", "decoder4", "decoder5", "dnorm3", "dnorm4", "final",
                     "head_drop"):
            setattr(self, name, nn.Identity())
        self.dblock1, self.dblock2 = nn.ModuleList(), nn.ModuleList()
        dropped = {1: ("encoder2",), 2: ("encoder3",), 3: ("patch_embed3", "norm3"), 4: ("patch_embed4", "norm4")}
        for level, names in dropped.items():
            if level > max_index:
                for name in names:
                    setattr(self, name, nn.Identity())
        if max_index < 3:
            self.block1 = nn.ModuleList()
        if max_index < 4:
            self.block2 = nn.ModuleList()
        self.encoder_levels = min(self.encoder_levels, max_index + 1)
        self.has_decoder = False
        self.num_features = self.head_hidden_size = self.feature_info[self.encoder_levels - 1]["num_chs"]
        self.num_classes = 0
        return take_indices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not is_symbolic(x) and (x.dim() != 4 or x.shape[1] != self.in_chans):
            raise ValueError(f"UKAN expects images (B, {self.in_chans}, H, W), got shape {list(x.shape)}")
        h, w = x.shape[-2], x.shape[-1]
        y = self._decode(self._encode(self._pad(x)))
        return self.final(self.head_drop(y))[:, :, :h, :w].contiguous()


#: a key of a reference KAN linear's knot buffer
_GRID_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)grid$")


def is_reference_ukan_state(state: Dict[str, torch.Tensor]) -> bool:
    """True for a reference-keyed U-KAN (or KAN block / KAN linear) state dict: knots in ``*.grid`` rows."""
    return any(k.endswith(".grid") and not k.endswith("basis.grid") and v.dim() == 2 for k, v in state.items()) \
        or ("grid" in state and state["grid"].dim() == 2)


def convert_ukan_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Reference (CUHK-AIM-Group/U-KAN) keys -> kanzoo keys: each KAN linear's ``grid`` (in, G+2K+1) becomes
    ``basis.grid`` (G+2K+1,) after checking that all its rows are equal; every other key is kept."""
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _GRID_KEY.match(key)
        if m and value.dim() == 2:
            rows = value
            if not torch.equal(rows, rows[:1].expand_as(rows)):
                diff = (rows - rows[:1]).abs().max().item()
                raise ValueError(f"{key!r}: the knot rows differ between input features (max difference {diff:g}); "
                                 f"kanzoo's U-KAN keeps one knot row per layer (U-KAN never updates its grids). A "
                                 f"checkpoint trained with efficient-kan's update_grid cannot be converted")
            out[f"{m.group('prefix')}basis.grid"] = rows[0].clone()
        else:
            out[key] = value
    return out


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: UKAN) -> Dict[str, torch.Tensor]:
    """Loads kanzoo or reference (CUHK-AIM-Group/U-KAN) weights: unwraps training checkpoints, strips a
    ``module.`` prefix and converts reference keys (:func:`convert_ukan_state`: per-feature ``grid`` rows ->
    ``basis.grid``)."""
    state_dict = unwrap_checkpoint(state_dict)
    if is_reference_ukan_state(state_dict):
        state_dict = convert_ukan_state(state_dict)
    return state_dict


def _create(variant: str, pretrained: bool = False, **kwargs) -> UKAN:
    return build_kan_model(UKAN, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                           feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3, 4)), **kwargs)


def _ukan_cfg(**kwargs) -> Dict[str, Any]:
    """Binary segmentation at 256² with U-KAN's preprocessing (resize, ImageNet mean/std)."""
    return _cfg(**dict(dict(
        num_classes=1, input_size=(3, 256, 256), pool_size=None, crop_pct=1.0, first_conv="encoder1.conv.0",
        classifier="final", notes=("task=segmentation",), license="mit",
        origin_url="https://github.com/CUHK-AIM-Group/U-KAN", paper_ids=PAPER_UKAN,
        paper_name="U-KAN Makes Strong Backbone for Medical Image Segmentation and Generation",
        description="semantic segmentation: per-pixel logits (B, num_classes, H, W) at the input size"), **kwargs))


VARIANTS: Dict[str, Dict[str, Any]] = {
    "ukan_small": dict(embed_dims=(128, 160, 256)),
    "ukan_base": dict(embed_dims=(256, 320, 512)),
    "ukan_large": dict(embed_dims=(256, 512, 1024), conv_dims=(64, 128)),
}

# the U-KAN authors' released segmentation checkpoints (README of CUHK-AIM-Group/U-KAN): tag -> (dataset, input
# side, IoU, F1). Their weights are on OneDrive only: the tags carry the published numbers for the model cards
# and get an hf_hub_id once converted weights are on the Hub (``kanzoo convert --from ukan model.pth``).
_RELEASED = {
    "ukan_busi": ("BUSI", 256, 65.26, 78.75),
    "ukan_glas": ("GlaS", 512, 87.51, 93.33),
    "ukan_cvc": ("CVC-ClinicDB", 256, 85.61, 92.19),
}


def _released_upstream(tag: str) -> Upstream:
    return Upstream(
        repo="https://github.com/CUHK-AIM-Group/U-KAN", host="onedrive", file="model.pth", revision="b20bf63",
        revision_note=("the U-KAN repository commit whose README links the checkpoints and whose Seg_UKAN code "
                       "kanzoo reproduces; the OneDrive files have no revision and their sha256 is not published, "
                       "so a converted copy records the hash of the file it was made from"),
        metrics_source="U-KAN README, segmentation results table (CUHK-AIM-Group/U-KAN@b20bf63)",
        metrics_revision="the released checkpoint (a single run, per the README; the paper averages 3 runs)",
        convert=f"kanzoo convert --from ukan model.pth {tag}/ --tag {tag} (strict; every tensor of the file is used)")


def _released_cfg(tag: str, dataset: str, side: int, iou: float, f1: float) -> Dict[str, Any]:
    return _ukan_cfg(
        upstream=_released_upstream(tag),
        input_size=(3, side, side), metrics={"iou": iou, "f1": f1}, dataset=dataset,
        description=f"U-KAN segmentation checkpoint for {dataset} (binary); reported IoU {iou}, F1 {f1}",
        provenance=(f"Trained and released by the U-KAN authors (CUHK-AIM-Group/U-KAN, MIT licence) on {dataset}, "
                    f"{side}x{side} inputs: Adam, lr 1e-4 (KAN linear weights 1e-2), weight decay 1e-4, cosine to "
                    f"1e-5 over 400 epochs, batch 8, BCE + Dice loss, an 80/20 train/validation split; the reported "
                    f"IoU/F1 are the best validation scores of a single run, with IoU pooled per validation batch "
                    f"and F1 = 2·IoU/(1 + IoU). The checkpoint is a PyTorch state dict; "
                    f"`kanzoo convert --from ukan model.pth OUT` converts it. Its weights are not on the Hub yet."))


default_cfgs = generate_kan_cfgs({
    "ukan_small": _ukan_cfg(),
    **{f"ukan_small.{tag}": _released_cfg(tag, *v) for tag, v in _RELEASED.items()},
    "ukan_base": _ukan_cfg(),
    "ukan_large": _ukan_cfg(paper_ids=(PAPER_UKAN, PAPER_CROP), origin_url=(
        "https://github.com/DarthReca/crop-field-segmentation-ukan")),
})

register_variants(globals(), VARIANTS, _create, doc="""{name}: U-KAN, a U-Net with tokenized KAN blocks ({args}).

    Li et al., "U-KAN Makes Strong Backbone for Medical Image Segmentation and Generation", arXiv 2406.02918.
    Per-pixel logits (B, num_classes, H, W) for any input size.
    """)
