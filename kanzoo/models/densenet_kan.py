"""DenseNet-BC with Kolmogorov-Arnold convolutions (DenseKANet).

Papers:
    "Densely Connected Convolutional Networks", Huang et al., CVPR 2017 (arXiv 1608.06993): dense blocks in
    which every layer sees the concatenation of all earlier outputs, 1×1 bottlenecks (``bn_size``·k
    channels) before each 3×3 conv, and transitions that halve the channels (compression 0.5) and the
    resolution.
    "Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies", Drokin (arXiv 2407.01092):
    KAN convolutions (a base conv plus a conv over a learnable univariate basis) as drop-in conv
    replacements, DenseKANet among them.

Which convs are KAN: all of them except the linear classifier. The stem (7×7, stride 2), both convs of
every dense layer (the 1×1 bottleneck and the 3×3 growth conv) and the 1×1 transition conv are
:class:`~kanzoo.layers.KANConv2d`, as in torch-conv-kan's DenseKANet for the dense layers. A KAN conv
already ends in norm and activation (post-activation), so the BN-ReLU in front of each torchvision
DenseNet conv and the final ``norm5`` are dropped: every tensor that enters a concatenation is
normalised. The 1×1 bottleneck carries most weights and MACs (it reads the whole concatenated history);
with a degree-3 polynomial basis a KAN conv has about 5× the weights of a plain one.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from timm.models._manipulate import MATCH_PREV_GROUP, checkpoint
from torch import nn

from ..layers import KANConv2d
from ._base import (
    BASIS_TAGS,
    PAPER_TCK,
    SequentialKANClassifier,
    _cfg,
    adapt_kan_stem,
    build_kan_model,
    default_basis_kwargs,
    generate_kan_cfgs,
    register_variants,
    unwrap_checkpoint,
)

__all__ = ["DenseNetKAN"]

PAPER_DENSENET = "arXiv:1608.06993"

# name -> (growth_rate, block_config, num_init_features), Huang et al. table 1
ARCHS = {
    "121": (32, (6, 12, 24, 16), 64),
    "161": (48, (6, 12, 36, 24), 96),
    "169": (32, (6, 12, 32, 32), 64),
    "201": (32, (6, 12, 48, 32), 64),
}


def _norm_kwargs(norm_layer: str) -> Dict[str, Any]:
    """Learnable affine for the norms that take ``affine`` (batch/instance/group), nothing otherwise."""
    return {"affine": True} if isinstance(norm_layer, str) and norm_layer in ("batch", "instance", "group") else {}


class DenseLayerKAN(nn.Module):
    """One dense layer: concat(previous features) → KAN 1×1 (``bn_size``·k) → KAN 3×3 (k new channels)."""

    def __init__(self, in_chs: int, growth_rate: int, bn_size: int, conv_kwargs: Dict[str, Any],
                 dropout: float = 0.0, device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        mid = bn_size * growth_rate
        self.conv1 = KANConv2d(in_chs, mid, 1, **conv_kwargs, **dd)
        self.conv2 = KANConv2d(mid, growth_rate, 3, padding=1, dropout=dropout, **conv_kwargs, **dd)
        self.grad_checkpointing = False

    @torch.jit.unused
    def _checkpointed_bottleneck(self, features: List[torch.Tensor]) -> torch.Tensor:
        # recompute the concat and the 1×1 in backward: the concat is what costs memory in DenseNets
        return checkpoint(lambda *xs: self.conv1(torch.cat(xs, 1)), *features)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting() and torch.is_grad_enabled():
            y = self._checkpointed_bottleneck(features)
        else:
            y = self.conv1(torch.cat(features, 1))
        return self.conv2(y)


class DenseBlockKAN(nn.ModuleDict):
    """``num_layers`` dense layers; the output concatenates the input and every layer's k channels."""

    def __init__(self, num_layers: int, in_chs: int, growth_rate: int, bn_size: int, conv_kwargs: Dict[str, Any],
                 dropout: float = 0.0, device=None, dtype=None):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", DenseLayerKAN(
                in_chs + i * growth_rate, growth_rate, bn_size, conv_kwargs, dropout, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class TransitionKAN(nn.Sequential):
    """KAN 1×1 conv (compression) then 2×2 average pooling."""

    def __init__(self, in_chs: int, out_chs: int, conv_kwargs: Dict[str, Any], device=None, dtype=None):
        super().__init__()
        self.conv = KANConv2d(in_chs, out_chs, 1, **conv_kwargs, device=device, dtype=dtype)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNetKAN(SequentialKANClassifier):
    """DenseNet-BC with KAN convolutions (see the module docstring for which convs are KAN).

    ``features``: ``conv0`` (KAN 7×7, stride 2), ``pool0`` (3×3 max, stride 2), then ``denseblock{i}``
    and, between blocks, ``transition{i}`` (KAN 1×1 to half the channels, 2×2 average pool). Output
    stride 32: 7×7 features at 224². The feature taps (``feature_info``) are the dense blocks' outputs, before
    their transitions (``forward_intermediates``, ``prune_intermediate_layers``, ``features_only``).

    Args:
        growth_rate: k, channels each dense layer adds (multiplied by ``width_scale``).
        block_config: dense layers per block.
        num_init_features: stem width (multiplied by ``width_scale``).
        bn_size: bottleneck width factor (the 1×1 conv outputs ``bn_size``·k).
        basis: KAN basis name; ``basis_kwargs`` go to it (default degree 3 for polynomial bases).
        norm_layer: norm inside each KAN conv (default BatchNorm with affine).
        width_scale: multiplies ``growth_rate`` and ``num_init_features`` (rounded, at least 1); for tests.
        dropout: channel dropout on the basis input of each dense layer's 3×3 conv.
        in_chans, num_classes, global_pool, drop_rate: as in timm (``drop_rate``: before the classifier).
        device, dtype: where and in which dtype to create parameters and buffers.
    """

    checkpoint_layers = False  # each DenseLayerKAN checkpoints its own bottleneck

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        basis: str = "gram",
        basis_kwargs: Optional[Dict[str, Any]] = None,
        norm_layer: str = "batch",
        width_scale: float = 1.0,
        dropout: float = 0.0,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if not block_config or any(int(n) < 1 for n in block_config):
            raise ValueError(f"block_config needs at least one block, each with >= 1 layer, got {block_config!r}")
        dd = dict(device=device, dtype=dtype)
        self.in_chans = in_chans
        growth_rate = max(1, int(round(growth_rate * width_scale)))
        num_init_features = max(1, int(round(num_init_features * width_scale)))
        self.growth_rate = growth_rate
        conv_kwargs = dict(basis=basis, norm_layer=norm_layer, norm_kwargs=_norm_kwargs(norm_layer),
                           use_base=True, **dict(default_basis_kwargs(basis), **(basis_kwargs or {})))

        layers: List[Tuple[str, nn.Module]] = [
            ("conv0", KANConv2d(in_chans, num_init_features, 7, stride=2, padding=3, **conv_kwargs, **dd)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]
        self.feature_info = []
        chs, reduction = num_init_features, 4
        for i, num_layers in enumerate(block_config):
            layers.append((f"denseblock{i + 1}", DenseBlockKAN(
                int(num_layers), chs, growth_rate, bn_size, conv_kwargs, dropout, **dd)))
            chs += int(num_layers) * growth_rate
            self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"features.denseblock{i + 1}"))
            if i != len(block_config) - 1:
                layers.append((f"transition{i + 1}", TransitionKAN(chs, chs // 2, conv_kwargs, **dd)))
                chs //= 2
                reduction *= 2
        self.features = nn.Sequential(OrderedDict(layers))
        # positions of the feature taps within self.features
        names = [n for n, _ in self.features.named_children()]
        self.feature_ends = [names.index(f["module"].split(".", 1)[1]) for f in self.feature_info]
        self._init_head(chs, num_classes, global_pool, drop_rate, **dd)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r"^features\.conv0",
            blocks=r"^features\.(?:denseblock|transition)(\d+)" if coarse else [
                (r"^features\.denseblock(\d+)\.denselayer(\d+)", None),
                (r"^features\.transition(\d+)", MATCH_PREV_GROUP),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for m in self.features.modules():
            if isinstance(m, DenseLayerKAN):
                m.grad_checkpointing = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: DenseNetKAN) -> Dict[str, torch.Tensor]:
    """Unwraps training checkpoints and adapts the stem to the model's ``in_chans``."""
    state_dict = unwrap_checkpoint(state_dict)
    adapt_kan_stem(state_dict, "features.conv0", model.in_chans)
    return state_dict


def _create_densenet_kan(variant: str, pretrained: bool = False, **kwargs) -> DenseNetKAN:
    n = len(kwargs.get("block_config", ARCHS["121"][1]))
    return build_kan_model(DenseNetKAN, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=dict(flatten_sequential=True, out_indices=tuple(range(n))), **kwargs)


def _variant(arch: str, basis: str) -> Dict[str, Any]:
    growth_rate, block_config, num_init_features = ARCHS[arch]
    return dict(growth_rate=growth_rate, block_config=block_config, num_init_features=num_init_features,
                basis=basis)


# the Gram basis (KAGN) in every depth, every other basis at depth 121
VARIANTS = {f"densenet_kagn{arch}": _variant(arch, "gram") for arch in ARCHS}
VARIANTS.update({f"densenet_{tag}121": _variant("121", basis) for tag, basis in BASIS_TAGS.items() if tag != "kagn"})

default_cfgs = generate_kan_cfgs({
    name: _cfg(first_conv="features.conv0", paper_ids=(PAPER_DENSENET, PAPER_TCK)) for name in VARIANTS
})

register_variants(globals(), VARIANTS, _create_densenet_kan, doc="""{name}: DenseNet-BC with KAN convs ({args}).

    Huang et al., arXiv 1608.06993; KAN convs as in Drokin, arXiv 2407.01092. No weights.
    """)
