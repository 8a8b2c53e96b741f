"""UKANet: a U-Net whose encoder is a ResNet of KAN convolutions and whose decoder is KAN convs
(torch-conv-kan's UKANet).

Papers:
    "U-Net: Convolutional Networks for Biomedical Image Segmentation", Ronneberger et al. (arXiv 1505.04597):
    an encoder-decoder whose decoder upsamples and concatenates the encoder features of the same scale.
    "Deep Residual Learning for Image Recognition", He et al. (arXiv 1512.03385): basic residual blocks,
    ResNet-18/34 depths (2, 2, 2, 2) / (3, 4, 6, 3).
    "Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies", Drokin (arXiv 2407.01092):
    KAN convolutions and their U-Net variant.

The model maps (B, in_chans, H, W) to per-pixel logits (B, num_classes, H, W) at the input resolution, for any
H and W. Every conv is a :class:`~kanzoo.layers.KANConv2d` except the output 1×1 conv (plain ``nn.Conv2d``:
logits must not pass through a KAN conv's norm and activation). ``num_classes=0`` returns the last decoder
features instead (``head_hidden_size`` channels). The encoder follows the contract of
:class:`~kanzoo.models._kan_segmenter.KANSegmenter`: ``feature_info`` and ``forward_intermediates`` over the
stem-and-stage outputs, ``forward_head`` (the decoder and output conv on them), ``prune_intermediate_layers``
and ``features_only=True``.
"""
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from timm.layers.helpers import get_device_dtype
from timm.models._manipulate import checkpoint
from torch import nn

from ..layers import KANConv2d
from ._base import PAPER_TCK, build_kan_model, generate_kan_cfgs, register_variants
from ._kan_segmenter import (
    KANSegmenter,
    filter_seg_checkpoint,
    resize_like,
    scale_width,
    seg_cfg,
    seg_conv_kwargs,
    seg_head,
)

__all__ = ["UKANet", "BasicBlockKAN", "UpBlockKAN"]

PAPER_UNET = "arXiv:1505.04597"
PAPER_RESNET = "arXiv:1512.03385"


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
        x = torch.cat([resize_like(x, skip), skip], 1)
        return self.conv2(self.conv1(x))


class UKANet(KANSegmenter):
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
        ckw = seg_conv_kwargs(basis, basis_kwargs, norm_layer)
        widths = [scale_width(w, width_scale) for w in widths]
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
        self.head = seg_head(self.head_hidden_size, num_classes, **dd)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Rebuilds the output 1×1 conv for ``num_classes`` (0: decoder features); keeps device, dtype and
        train mode. ``global_pool`` is accepted for timm's API and ignored (no pooling in segmentation)."""
        self.num_classes = num_classes
        self.head = seg_head(self.head_hidden_size, num_classes, **get_device_dtype(self.stem)).train(self.training)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^stem", blocks=r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)",
                    decoder=r"^decoder\.(\d+)")

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def _decode(self, feats: List[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for i, block in enumerate(self.decoder):
            skip = feats[len(feats) - 2 - i]
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x, skip)
            else:
                x = block(x, skip)
        return x

    def forward_head(self, x: List[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Decoder and output conv on the encoder features ``x`` (every stage, shallowest first): logits
        (B, num_classes, Hp, Wp) at the padded input size (``forward`` crops them to (H, W)); ``pre_logits``: the
        last decoder features (``head_hidden_size`` channels). After ``prune_intermediate_layers``: the deepest
        kept features."""
        x = self._decode(x)
        return x if pre_logits else self.head(self.head_drop(x))

    def _drop_decoder(self, num_chs: int) -> None:
        self.decoder = nn.ModuleList()
        self.head_hidden_size = num_chs
        self.reset_classifier(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        m = self.pad_multiple
        x = F.pad(x, [0, (m - w % m) % m, 0, (m - h % m) % m])
        x = self.head(self.head_drop(self._decode(self._encode(x))))
        return x[:, :, :h, :w]


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: UKANet) -> Dict[str, torch.Tensor]:
    """Unwraps training checkpoints, adapts the stem to ``in_chans``, drops a head of another ``num_classes``."""
    return filter_seg_checkpoint(state_dict, model, "stem")


def _create_ukanet(variant: str, pretrained: bool = False, **kwargs) -> UKANet:
    n = len(kwargs.get("depths", (2, 2, 2, 2)))
    return build_kan_model(UKANet, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                           feature_cfg=dict(feature_cls="getter", out_indices=tuple(range(n))), **kwargs)


UKANET_VARIANTS = {
    "ukanet_kagn18": dict(depths=(2, 2, 2, 2), basis="gram"),
    "ukanet_kagn34": dict(depths=(3, 4, 6, 3), basis="gram"),
    "ukanet_kacn18": dict(depths=(2, 2, 2, 2), basis="chebyshev"),
    "ukanet_kan18": dict(depths=(2, 2, 2, 2), basis="bspline"),
}

default_cfgs = generate_kan_cfgs({
    name: seg_cfg(first_conv="stem", classifier="head", paper_ids=(PAPER_UNET, PAPER_RESNET, PAPER_TCK))
    for name in UKANET_VARIANTS})

register_variants(globals(), UKANET_VARIANTS, _create_ukanet, doc="""{name}: U-Net with a ResNet-style KAN
    encoder and a KAN-conv decoder ({args}).

    Per-pixel logits (B, num_classes, H, W) for any input size. No weights.
    """)
