"""U2KANet: U²-Net (nested residual U-blocks, fused side outputs) built from KAN convolutions
(torch-conv-kan's U2KANet).

Papers:
    "U²-Net: Going Deeper with Nested U-Structure for Salient Object Detection", Qin et al.
    (arXiv 2005.09007): residual U-blocks (RSU) nested in a six-stage U, side outputs fused by a 1×1 conv.
    "Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies", Drokin (arXiv 2407.01092):
    KAN convolutions and their U²-Net variant.

The model maps (B, in_chans, H, W) to per-pixel logits (B, num_classes, H, W) at the input resolution, for any
H and W. Every conv is a :class:`~kanzoo.layers.KANConv2d` except the side and fuse convs (plain
``nn.Conv2d``: logits must not pass through a KAN conv's norm and activation). ``num_classes=0`` returns the
top decoder features instead (``head_hidden_size`` channels). The encoder follows the contract of
:class:`~kanzoo.models._kan_segmenter.KANSegmenter`: ``feature_info`` and ``forward_intermediates`` over the six
RSU stages, ``forward_head`` (the decoder and fused output on them), ``prune_intermediate_layers`` and
``features_only=True``.
"""
from typing import Any, Dict, List, Optional, Sequence

import torch
from timm.layers.helpers import get_device_dtype
from timm.models._manipulate import checkpoint
from torch import nn

from ..layers import KANConv2d
from ._base import PAPER_TCK, build_kan_model, generate_kan_cfgs, register_variants
from ._kan_segmenter import KANSegmenter, filter_seg_checkpoint, resize_like, scale_width, seg_cfg, seg_conv_kwargs

__all__ = ["U2KANet", "RSU", "U2Head"]

PAPER_U2NET = "arXiv:2005.09007"

# U²-Net stage tables, Qin et al. table 1: (height L of RSU-L, mid channels, out channels, dilated: RSU-4F)
U2NET_ENCODER = ((7, 32, 64, False), (6, 32, 128, False), (5, 64, 256, False), (4, 128, 512, False),
                 (4, 256, 512, True), (4, 256, 512, True))
U2NET_DECODER = ((4, 256, 512, True), (4, 128, 256, False), (5, 64, 128, False), (6, 32, 64, False),
                 (7, 16, 64, False))
# U²-Net† (the 4.7 MB model): every stage 16 mid / 64 out channels
U2NET_SMALL_ENCODER = ((7, 16, 64, False), (6, 16, 64, False), (5, 16, 64, False), (4, 16, 64, False),
                       (4, 16, 64, True), (4, 16, 64, True))
U2NET_SMALL_DECODER = ((4, 16, 64, True), (4, 16, 64, False), (5, 16, 64, False), (6, 16, 64, False),
                       (7, 16, 64, False))


class RSU(nn.Module):
    """Residual U-block RSU-L (Qin et al.), every conv a KAN 3×3.

    ``conv_in`` maps the input to ``out_chs``; an inner U of height L runs on that: L-1 encoder convs
    (``mid_chs``; 2×2 ceil-mode max pooling between them), a dilation-2 ``bottom`` conv, and L-1 decoder
    convs on [upsampled, skip] concatenations; the result is added to ``conv_in``'s output.
    ``dilated=True`` is RSU-LF: no pooling, dilations 1, 2, 4, .. instead (for low-resolution stages).
    ``downsample=True`` max-pools the input first (the pooling between U²-Net's stages).
    """

    def __init__(self, height: int, in_chs: int, mid_chs: int, out_chs: int, conv_kwargs: Dict[str, Any],
                 dilated: bool = False, downsample: bool = False, device=None, dtype=None):
        super().__init__()
        if height < 2:
            raise ValueError(f"an RSU needs height >= 2, got {height}")
        dd = dict(device=device, dtype=dtype)

        def conv(cin: int, cout: int, dilation: int = 1) -> KANConv2d:
            return KANConv2d(cin, cout, 3, padding=dilation, dilation=dilation, **conv_kwargs, **dd)

        self.dilated = dilated
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True) if downsample else nn.Identity()
        self.inner_pool = nn.Identity() if dilated else nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.conv_in = conv(in_chs, out_chs)
        n = height - 1
        self.encoder = nn.ModuleList([
            conv(out_chs if i == 0 else mid_chs, mid_chs, 2 ** i if dilated else 1) for i in range(n)])
        self.bottom = conv(mid_chs, mid_chs, 2 ** n if dilated else 2)
        self.decoder = nn.ModuleList([
            conv(2 * mid_chs, out_chs if i == n - 1 else mid_chs, 2 ** (n - 1 - i) if dilated else 1)
            for i in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = self.conv_in(self.pool(x))
        h = x_in
        skips: List[torch.Tensor] = []
        for i, conv in enumerate(self.encoder):
            if i > 0:
                h = self.inner_pool(h)
            h = conv(h)
            skips.append(h)
        h = self.bottom(h)
        for i, conv in enumerate(self.decoder):
            skip = skips[len(skips) - 1 - i]
            if i > 0 and not self.dilated:
                h = resize_like(h, skip)
            h = conv(torch.cat([h, skip], 1))
        return h + x_in


class U2Head(nn.Module):
    """U²-Net's outputs: a 3×3 side conv per decoder level (and the deepest encoder stage), each resized to
    the input size, and the 1×1 ``fuse`` conv over their concatenation. With ``num_classes=0`` it returns
    the top decoder features. ``drop_rate``: 2-d dropout on each side conv's input."""

    def __init__(self, in_chs: Sequence[int], num_classes: int, drop_rate: float = 0.0, device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.num_classes = num_classes
        self.drop = nn.Dropout2d(drop_rate) if drop_rate > 0 else nn.Identity()
        if num_classes > 0:
            self.sides = nn.ModuleList([nn.Conv2d(c, num_classes, 3, padding=1, **dd) for c in in_chs])
            self.fuse = nn.Conv2d(len(in_chs) * num_classes, num_classes, 1, **dd)
        else:
            self.sides = nn.ModuleList()
            self.fuse = nn.Identity()

    def forward(self, feats: List[torch.Tensor]) -> List[torch.Tensor]:
        """``feats``: top decoder level first. Returns [fused, side_1, .., side_n], all at feats[0]'s size."""
        if self.num_classes <= 0:
            return [feats[0]]
        sides: List[torch.Tensor] = []
        for i, side in enumerate(self.sides):
            s = side(self.drop(feats[i]))
            if i > 0:
                s = resize_like(s, feats[0])
            sides.append(s)
        return [self.fuse(torch.cat(sides, 1))] + sides


class U2KANet(KANSegmenter):
    """U²-Net with KAN convs: six RSU encoder stages, five RSU decoder stages, fused side outputs.

    * ``stages.{i}``: :class:`RSU` blocks (RSU-7, -6, -5, -4, -4F, -4F); each stage after the first
      max-pools its input by 2 (ceil mode);
    * ``decoder.{j}``: from the deepest level up (De_5 .. De_1), an RSU on [upsampled previous, encoder
      stage of that scale];
    * ``head``: :class:`U2Head`; ``forward`` returns the fused logits, :meth:`forward_side_outputs` all seven
      logit maps (for U²-Net's deeply supervised loss).

    Any input size without padding: as in U²-Net's reference code, pooling uses ceil mode and every
    upsampling resizes to the exact size of the skip it joins, so sizes never need to divide by 32.
    The deepest maps are 1/32 of the input (RSU-7 in stage 1 pools five times), so training with
    BatchNorm needs batch × (H/32) × (W/32) > 1: batch ≥ 2, or inputs of at least 64 px.

    Channel tables are U²-Net's (Qin et al. table 1) times ``width_scale``; the registered models use 0.5,
    which keeps them near the plain U²-Net's parameter count (a degree-3 KAN conv holds ~5× the weights).

    Args:
        encoder_cfg, decoder_cfg: per stage (height L, mid channels, out channels, dilated), see
            ``U2NET_ENCODER`` / ``U2NET_SMALL_ENCODER``; the decoder has one stage fewer.
        basis, basis_kwargs: KAN basis and its settings (default degree 3 for polynomial bases).
        norm_layer: norm inside each KAN conv (default BatchNorm with affine).
        width_scale: multiplies every channel count of the tables (rounded, at least 1).
        in_chans: input channels; num_classes: output channels (0: return the top decoder features).
        drop_rate: 2-d dropout on the inputs of the side convs.
        device, dtype: where and in which dtype to create parameters and buffers.
    """

    def __init__(
        self,
        encoder_cfg: Sequence[Sequence[Any]] = U2NET_SMALL_ENCODER,
        decoder_cfg: Sequence[Sequence[Any]] = U2NET_SMALL_DECODER,
        basis: str = "gram",
        basis_kwargs: Optional[Dict[str, Any]] = None,
        norm_layer: str = "batch",
        width_scale: float = 1.0,
        in_chans: int = 3,
        num_classes: int = 1,
        drop_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if len(encoder_cfg) < 2 or len(decoder_cfg) != len(encoder_cfg) - 1:
            raise ValueError(f"U2KANet needs >= 2 encoder stages and one decoder stage fewer, got "
                             f"{len(encoder_cfg)} encoder and {len(decoder_cfg)} decoder stages")
        dd = dict(device=device, dtype=dtype)
        ckw = seg_conv_kwargs(basis, basis_kwargs, norm_layer)
        self.in_chans = in_chans
        self.grad_checkpointing = False

        stages, self.feature_info, c, enc_out = [], [], in_chans, []
        for i, (height, mid, out, dilated) in enumerate(encoder_cfg):
            mid, out = scale_width(mid, width_scale), scale_width(out, width_scale)
            stages.append(RSU(int(height), c, mid, out, ckw, dilated=bool(dilated), downsample=i > 0, **dd))
            self.feature_info.append(dict(num_chs=out, reduction=2 ** i, module=f"stages.{i}"))
            enc_out.append(out)
            c = out
        self.stages = nn.Sequential(*stages)

        decoder, side_chs = [], [c]
        for j, (height, mid, out, dilated) in enumerate(decoder_cfg):
            mid, out = scale_width(mid, width_scale), scale_width(out, width_scale)
            skip = enc_out[len(enc_out) - 2 - j]
            decoder.append(RSU(int(height), c + skip, mid, out, ckw, dilated=bool(dilated), **dd))
            side_chs.insert(0, out)
            c = out
        self.decoder = nn.ModuleList(decoder)

        self.num_features = enc_out[-1]
        self.head_hidden_size = c
        self._side_chs = side_chs
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.head = U2Head(side_chs, num_classes, drop_rate, **dd)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fuse

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Rebuilds the side convs and the fuse conv for ``num_classes`` (0: decoder features); keeps device,
        dtype and train mode. ``global_pool`` is accepted for timm's API and ignored."""
        self.num_classes = num_classes
        dd = get_device_dtype(self.stages)
        self.head = U2Head(self._side_chs, num_classes, self.drop_rate, **dd).train(self.training)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^stages\.0\.conv_in", blocks=r"^stages\.(\d+)", decoder=r"^decoder\.(\d+)")

    def _decode(self, feats: List[torch.Tensor]) -> List[torch.Tensor]:
        """Decoder outputs, top level first, then the deepest encoder stage (the side-output inputs)."""
        h = feats[-1]
        outs = [h]
        for j, stage in enumerate(self.decoder):
            skip = feats[len(feats) - 2 - j]
            x = torch.cat([resize_like(h, skip), skip], 1)
            if self.grad_checkpointing and not torch.jit.is_scripting():
                h = checkpoint(stage, x)
            else:
                h = stage(x)
            outs.insert(0, h)
        return outs

    def forward_head(self, x: List[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Decoder and fused output on the encoder features ``x`` (every stage, shallowest first): logits
        (B, num_classes, H, W) at the size of the first stage's features, i.e. of the input; ``pre_logits``:
        the top decoder features (``head_hidden_size`` channels). After ``prune_intermediate_layers``: the
        deepest features."""
        feats = self._decode(x)
        return feats[0] if pre_logits else self.head(feats)[0]

    def _drop_decoder(self, num_chs: int) -> None:
        self.decoder = nn.ModuleList()
        self.head_hidden_size = num_chs
        self._side_chs = [num_chs]
        self.reset_classifier(0)

    def forward_side_outputs(self, x: torch.Tensor) -> List[torch.Tensor]:
        """[fused, side_1, .., side_6] logits, each (B, num_classes, H, W), for deep supervision."""
        return self.head(self._decode(self._encode(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._decode(self._encode(x)))[0]


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: U2KANet) -> Dict[str, torch.Tensor]:
    """Unwraps training checkpoints, adapts the first conv (``stages.0.conv_in``) to ``in_chans``, drops side and
    fuse convs of another ``num_classes``."""
    return filter_seg_checkpoint(state_dict, model, "stages.0.conv_in")


def _create_u2kanet(variant: str, pretrained: bool = False, **kwargs) -> U2KANet:
    n = len(kwargs.get("encoder_cfg", U2NET_SMALL_ENCODER))
    return build_kan_model(U2KANet, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                           feature_cfg=dict(feature_cls="getter", out_indices=tuple(range(n))), **kwargs)


U2KANET_VARIANTS = {
    "u2kanet_kagn_small": dict(encoder_cfg=U2NET_SMALL_ENCODER, decoder_cfg=U2NET_SMALL_DECODER, basis="gram",
                               width_scale=0.5),
    "u2kanet_kagn": dict(encoder_cfg=U2NET_ENCODER, decoder_cfg=U2NET_DECODER, basis="gram", width_scale=0.5),
}

def _u2_classifier(args) -> tuple:
    """Every ``num_classes``-shaped conv: the fuse conv first, then one side conv per decoder level and the
    deepest encoder stage (a replaced head replaces them all)."""
    return ("head.fuse",) + tuple(f"head.sides.{i}" for i in range(len(args["decoder_cfg"]) + 1))


default_cfgs = generate_kan_cfgs({
    name: seg_cfg(input_size=(3, 320, 320), first_conv="stages.0.conv_in", classifier=_u2_classifier(args),
                  paper_ids=(PAPER_U2NET, PAPER_TCK)) for name, args in U2KANET_VARIANTS.items()})

register_variants(globals(), U2KANET_VARIANTS, _create_u2kanet, doc="""{name}: U²-Net of KAN convs ({args}).

    Qin et al., arXiv 2005.09007. Per-pixel logits (B, num_classes, H, W) for any input size. No weights.
    """)
