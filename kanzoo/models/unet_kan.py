"""Segmentation models with Kolmogorov-Arnold convolutions: UKANet (a U-Net with a ResNet-style KAN
encoder) and U2KANet (U²-Net built from KAN convs).

Papers:
    "U-Net: Convolutional Networks for Biomedical Image Segmentation", Ronneberger et al. (arXiv 1505.04597):
    an encoder-decoder whose decoder upsamples and concatenates the encoder features of the same scale.
    "Deep Residual Learning for Image Recognition", He et al. (arXiv 1512.03385): basic residual blocks,
    ResNet-18/34 depths (2, 2, 2, 2) / (3, 4, 6, 3).
    "U²-Net: Going Deeper with Nested U-Structure for Salient Object Detection", Qin et al.
    (arXiv 2005.09007): residual U-blocks (RSU) nested in a six-stage U, side outputs fused by a 1×1 conv.
    "Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies", Drokin (arXiv 2407.01092):
    KAN convolutions and their U-Net / U²-Net variants (torch-conv-kan's UKANet, U2KANet).

Both models map (B, in_chans, H, W) to per-pixel logits (B, num_classes, H, W) at the input resolution,
for any H and W. Every conv is a :class:`~kanzoo.layers.KANConv2d` except the output convs (plain
``nn.Conv2d``: they produce logits, which must not pass through a KAN conv's norm and activation).
``num_classes=0`` returns the last decoder features instead (``head_hidden_size`` channels).
``forward_features`` returns the deepest encoder features; ``features_only=True`` gives the encoder stages.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from timm.layers.helpers import get_device_dtype
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint
from torch import nn

from ..layers import KANConv2d
from ._base import build_kan_model, generate_kan_cfgs
from ._base import PAPER_TCK, _cfg, adapt_kan_stem, default_basis_kwargs, register_variants, unwrap_checkpoint

__all__ = ["UKANet", "U2KANet"]

PAPER_UNET = "arXiv:1505.04597"
PAPER_RESNET = "arXiv:1512.03385"
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


def _conv_kwargs(basis: str, basis_kwargs: Optional[Dict[str, Any]], norm_layer: str) -> Dict[str, Any]:
    """KAN conv settings shared by every conv of a model: the base branch always on (the stem then has a
    ``weight``), learnable affine for the norms that take one."""
    affine = {"affine": True} if norm_layer in ("batch", "instance", "group") else {}
    return dict(basis=basis, norm_layer=norm_layer, norm_kwargs=affine, use_base=True,
                **dict(default_basis_kwargs(basis), **(basis_kwargs or {})))


def _scale(c: int, width_scale: float) -> int:
    return max(1, int(round(c * width_scale)))


def _resize_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to the spatial size of ``ref``."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class _KANSegmenter(nn.Module):
    """What UKANet and U2KANet share: the task flag, checkpointing, and encoder-feature APIs."""

    #: read by kanzoo's tools (timm's PretrainedCfg takes no ``task`` field; the cfg says it in ``notes``)
    task = "segmentation"

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def _encode(self, x: torch.Tensor) -> List[torch.Tensor]:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The deepest encoder features (``num_features`` channels), without the input padding of ``forward``."""
        return self._encode(x)[-1]

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Encoder stage outputs at ``indices`` (see ``feature_info``); the final tensor is ``forward_features``."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, _ = feature_take_indices(len(self.feature_info), indices)
        feats = self._encode(x)
        intermediates = [feats[i] for i in take_indices]
        if intermediates_only:
            return intermediates
        return feats[-1], intermediates


class BasicBlockKAN(nn.Module):
    """ResNet basic block of KAN convs: ``conv2(conv1(x)) + shortcut(x)``.

    The shortcut is a KAN 1×1 conv (with the block's stride) when the shape changes, else identity.
    Each KAN conv ends in its own norm and activation, so nothing follows the addition.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int, conv_kwargs: Dict[str, Any], dropout: float = 0.0,
                 device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.conv1 = KANConv2d(in_chs, out_chs, 3, stride=stride, padding=1, **conv_kwargs, **dd)
        self.conv2 = KANConv2d(out_chs, out_chs, 3, padding=1, dropout=dropout, **conv_kwargs, **dd)
        if stride != 1 or in_chs != out_chs:
            self.shortcut = KANConv2d(in_chs, out_chs, 1, stride=stride, **conv_kwargs, **dd)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + self.shortcut(x)


class UpBlockKAN(nn.Module):
    """U-Net decoder step: upsample ×2 (bilinear) to the skip's size, concat the skip, two KAN 3×3 convs."""

    def __init__(self, in_chs: int, skip_chs: int, out_chs: int, conv_kwargs: Dict[str, Any], device=None,
                 dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.conv1 = KANConv2d(in_chs + skip_chs, out_chs, 3, padding=1, **conv_kwargs, **dd)
        self.conv2 = KANConv2d(out_chs, out_chs, 3, padding=1, **conv_kwargs, **dd)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([_resize_like(x, skip), skip], 1)
        return self.conv2(self.conv1(x))


class UKANet(_KANSegmenter):
    """U-Net with a ResNet-style KAN encoder and a KAN-conv decoder.

    * ``stem``: KAN 3×3, stride 1, to ``widths[0]``;
    * ``stages.{i}``: ``depths[i]`` basic residual blocks of KAN convs (:class:`BasicBlockKAN`) at
      ``widths[i]``; stage 0 keeps the resolution, every later stage halves it (the first block's stride);
    * ``decoder.{j}``: from the deepest stage up, upsample ×2, concat the encoder stage of that scale,
      two KAN 3×3 convs to that stage's width (:class:`UpBlockKAN`);
    * ``head``: 1×1 ``nn.Conv2d`` to ``num_classes`` (dropout ``drop_rate`` before it).

    Any input size: ``forward`` zero-pads the bottom and right of the input to a multiple of
    ``pad_multiple`` = 2^(stages-1) (8 by default), so every downsampling and upsampling is an exact ×2,
    and crops the logits back to (H, W). Padding changes the batch statistics a little for sizes that are
    not multiples.

    The default widths (32, 64, 128, 256) are half of ResNet's: with a degree-3 polynomial basis each KAN
    conv holds about 5× the weights of a plain conv, so the model stays near a plain ResNet-18 U-Net's size.

    Args:
        depths: basic blocks per encoder stage (ResNet-18: (2, 2, 2, 2), ResNet-34: (3, 4, 6, 3)).
        widths: channels per encoder stage (multiplied by ``width_scale``).
        basis, basis_kwargs: KAN basis and its settings (default degree 3 for polynomial bases).
        norm_layer: norm inside each KAN conv (default BatchNorm with affine).
        width_scale: multiplies every width (rounded, at least 1); for tests and light models.
        dropout: channel dropout on the basis input of each block's second conv.
        in_chans: input channels; num_classes: output channels (0: return decoder features).
        drop_rate: 2-d dropout before the output conv.
        device, dtype: where and in which dtype to create parameters and buffers.
    """

    def __init__(
        self,
        depths: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (32, 64, 128, 256),
        basis: str = "gram",
        basis_kwargs: Optional[Dict[str, Any]] = None,
        norm_layer: str = "batch",
        width_scale: float = 1.0,
        dropout: float = 0.0,
        in_chans: int = 3,
        num_classes: int = 1,
        drop_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if len(depths) != len(widths) or len(depths) < 2 or any(int(d) < 1 for d in depths):
            raise ValueError(f"depths and widths need the same length >= 2 and depths >= 1, got depths={depths!r}, "
                             f"widths={widths!r}")
        dd = dict(device=device, dtype=dtype)
        ckw = _conv_kwargs(basis, basis_kwargs, norm_layer)
        widths = [_scale(w, width_scale) for w in widths]
        self.in_chans = in_chans
        self.grad_checkpointing = False
        self.pad_multiple = 2 ** (len(widths) - 1)

        self.stem = KANConv2d(in_chans, widths[0], 3, padding=1, **ckw, **dd)
        stages, self.feature_info, c = [], [], widths[0]
        for i, (d, w) in enumerate(zip(depths, widths)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlockKAN(c if j == 0 else w, w, stride if j == 0 else 1, ckw,
                                    dropout, **dd) for j in range(int(d))]
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=w, reduction=2 ** i, module=f"stages.{i}"))
            c = w
        self.stages = nn.Sequential(*stages)
        self.decoder = nn.ModuleList([
            UpBlockKAN(widths[i + 1], widths[i], widths[i], ckw, **dd) for i in reversed(range(len(widths) - 1))])

        self.num_features = widths[-1]
        self.head_hidden_size = widths[0]
        self.drop_rate = drop_rate
        self.head_drop = nn.Dropout2d(drop_rate) if drop_rate > 0 else nn.Identity()
        self.num_classes = num_classes
        self.head = self._make_head(num_classes, **dd)

    def _make_head(self, num_classes: int, device=None, dtype=None) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        return nn.Conv2d(self.head_hidden_size, num_classes, 1, device=device, dtype=dtype)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Rebuilds the output 1×1 conv for ``num_classes`` (0: decoder features); keeps device, dtype and
        train mode. ``global_pool`` is accepted for timm's API and ignored (no pooling in segmentation)."""
        self.num_classes = num_classes
        self.head = self._make_head(num_classes, **get_device_dtype(self.stem)).train(self.training)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^stem", blocks=r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)",
                    decoder=r"^decoder\.(\d+)")

    def _encode(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem(x)
        feats: List[torch.Tensor] = []
        for stage in self.stages:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(stage, x)
            else:
                x = stage(x)
            feats.append(x)
        return feats

    def _decode(self, feats: List[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for i, block in enumerate(self.decoder):
            skip = feats[len(feats) - 2 - i]
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x, skip)
            else:
                x = block(x, skip)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        m = self.pad_multiple
        x = F.pad(x, [0, (m - w % m) % m, 0, (m - h % m) % m])
        x = self.head(self.head_drop(self._decode(self._encode(x))))
        return x[:, :, :h, :w]


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
                h = _resize_like(h, skip)
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
                s = _resize_like(s, feats[0])
            sides.append(s)
        return [self.fuse(torch.cat(sides, 1))] + sides


class U2KANet(_KANSegmenter):
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
        ckw = _conv_kwargs(basis, basis_kwargs, norm_layer)
        self.in_chans = in_chans
        self.grad_checkpointing = False

        stages, self.feature_info, c, enc_out = [], [], in_chans, []
        for i, (height, mid, out, dilated) in enumerate(encoder_cfg):
            mid, out = _scale(mid, width_scale), _scale(out, width_scale)
            stages.append(RSU(int(height), c, mid, out, ckw, dilated=bool(dilated), downsample=i > 0, **dd))
            self.feature_info.append(dict(num_chs=out, reduction=2 ** i, module=f"stages.{i}"))
            enc_out.append(out)
            c = out
        self.stages = nn.Sequential(*stages)

        decoder, side_chs = [], [c]
        for j, (height, mid, out, dilated) in enumerate(decoder_cfg):
            mid, out = _scale(mid, width_scale), _scale(out, width_scale)
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

    def _encode(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats: List[torch.Tensor] = []
        for stage in self.stages:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(stage, x)
            else:
                x = stage(x)
            feats.append(x)
        return feats

    def _decode(self, feats: List[torch.Tensor]) -> List[torch.Tensor]:
        """Decoder outputs, top level first, then the deepest encoder stage (the side-output inputs)."""
        h = feats[-1]
        outs = [h]
        for j, stage in enumerate(self.decoder):
            skip = feats[len(feats) - 2 - j]
            x = torch.cat([_resize_like(h, skip), skip], 1)
            if self.grad_checkpointing and not torch.jit.is_scripting():
                h = checkpoint(stage, x)
            else:
                h = stage(x)
            outs.insert(0, h)
        return outs

    def forward_side_outputs(self, x: torch.Tensor) -> List[torch.Tensor]:
        """[fused, side_1, .., side_6] logits, each (B, num_classes, H, W), for deep supervision."""
        return self.head(self._decode(self._encode(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._decode(self._encode(x)))[0]


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Unwraps training checkpoints, adapts the first conv to ``in_chans`` and drops head tensors whose shape
    differs from the model's (U²-Net's side convs depend on ``num_classes`` as well as the fuse conv)."""
    state_dict = unwrap_checkpoint(state_dict)
    adapt_kan_stem(state_dict, "stem" if isinstance(model, UKANet) else "stages.0.conv_in", model.in_chans)
    own = model.state_dict()
    for k in [k for k in state_dict if k.startswith("head.")]:
        if k in own and own[k].shape != state_dict[k].shape:
            del state_dict[k]
    return state_dict


def _create_ukanet(variant: str, pretrained: bool = False, **kwargs) -> UKANet:
    n = len(kwargs.get("depths", (2, 2, 2, 2)))
    return build_kan_model(UKANet, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=dict(flatten_sequential=True, out_indices=tuple(range(n))), **kwargs)


def _create_u2kanet(variant: str, pretrained: bool = False, **kwargs) -> U2KANet:
    n = len(kwargs.get("encoder_cfg", U2NET_SMALL_ENCODER))
    return build_kan_model(U2KANet, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=dict(flatten_sequential=True, out_indices=tuple(range(n))), **kwargs)


def _seg_cfg(**kwargs) -> Dict[str, Any]:
    """A segmentation cfg: per-pixel logits, no pooled features (``pool_size=None``), binary by default."""
    return _cfg(**dict(dict(
        num_classes=1, input_size=(3, 256, 256), pool_size=None, crop_pct=1.0, notes=("task=segmentation",),
        description="semantic segmentation: per-pixel logits (B, num_classes, H, W) at the input size"), **kwargs))


UKANET_VARIANTS = {
    "ukanet_kagn18": dict(depths=(2, 2, 2, 2), basis="gram"),
    "ukanet_kagn34": dict(depths=(3, 4, 6, 3), basis="gram"),
    "ukanet_kacn18": dict(depths=(2, 2, 2, 2), basis="chebyshev"),
    "ukanet_kan18": dict(depths=(2, 2, 2, 2), basis="bspline"),
}
U2KANET_VARIANTS = {
    "u2kanet_kagn_small": dict(encoder_cfg=U2NET_SMALL_ENCODER, decoder_cfg=U2NET_SMALL_DECODER, basis="gram",
                               width_scale=0.5),
    "u2kanet_kagn": dict(encoder_cfg=U2NET_ENCODER, decoder_cfg=U2NET_DECODER, basis="gram", width_scale=0.5),
}

default_cfgs = generate_kan_cfgs({
    **{name: _seg_cfg(first_conv="stem", classifier="head", paper_ids=(PAPER_UNET, PAPER_RESNET, PAPER_TCK))
       for name in UKANET_VARIANTS},
    **{name: _seg_cfg(input_size=(3, 320, 320), first_conv="stages.0.conv_in", classifier="head.fuse",
                      paper_ids=(PAPER_U2NET, PAPER_TCK)) for name in U2KANET_VARIANTS},
})

register_variants(globals(), UKANET_VARIANTS, _create_ukanet, doc="""{name}: U-Net with a ResNet-style KAN
    encoder and a KAN-conv decoder ({args}).

    Per-pixel logits (B, num_classes, H, W) for any input size. No weights.
    """)
register_variants(globals(), U2KANET_VARIANTS, _create_u2kanet, doc="""{name}: U²-Net of KAN convs ({args}).

    Qin et al., arXiv 2005.09007. Per-pixel logits (B, num_classes, H, W) for any input size. No weights.
    """)
