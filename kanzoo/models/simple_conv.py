"""SimpleConv and EightSimpleConv: the small all-KAN CNNs of the MNIST/CIFAR tables in
"Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies" (Drokin, arXiv 2407.01092).

Four (or eight) 3×3 KAN convs, two of them with stride 2, then global average pooling and a linear
classifier. They are kanzoo's tiny models for tests, demos and small datasets.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import torch
from timm.models._manipulate import checkpoint_seq
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

__all__ = ["SimpleConvKAN"]

# name -> (widths, strides)
ARCHS = {
    "simple_conv": ((32, 64, 128, 256), (1, 2, 2, 1)),
    "eight_simple_conv": ((16, 32, 64, 128, 256, 256, 512, 512), (1, 2, 2, 1, 1, 2, 1, 1)),
}


class SimpleConvKAN(SequentialKANClassifier):
    """A plain stack of KAN convs (``widths``, ``strides``), global pooling and a linear head.

    ``stages.{i}`` is the i-th conv; every conv's output is a feature tap (``feature_info``,
    ``forward_intermediates``, ``prune_intermediate_layers``, ``features_only``).

    Args:
        widths, strides: per-layer output channels and strides (3×3 kernels, padding 1).
        basis: KAN basis name; ``basis_kwargs`` go to it (default degree 3 for polynomial bases).
        norm_layer: norm after each conv (default BatchNorm, as in the paper's small-data runs).
        width_scale: multiplies every width (rounded, at least 1).
        in_chans, num_classes, global_pool, drop_rate: as in timm.
        dropout: channel dropout on each conv's basis input (all but the first layer).
    """

    sequential_attr = "stages"

    def __init__(
        self,
        widths: Sequence[int] = ARCHS["simple_conv"][0],
        strides: Sequence[int] = ARCHS["simple_conv"][1],
        basis: str = "gram",
        basis_kwargs: Optional[Dict[str, Any]] = None,
        norm_layer: str = "batch",
        width_scale: float = 1.0,
        in_chans: int = 3,
        num_classes: int = 10,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if len(widths) != len(strides):
            raise ValueError(f"widths and strides need the same length, got {len(widths)} and {len(strides)}")
        dd = dict(device=device, dtype=dtype)
        bkw = dict(default_basis_kwargs(basis), **(basis_kwargs or {}))
        self.in_chans = in_chans
        widths = [max(1, int(round(w * width_scale))) for w in widths]
        layers, self.feature_info, c, reduction = [], [], in_chans, 1
        for i, (w, s) in enumerate(zip(widths, strides)):
            layers.append(KANConv2d(c, w, 3, stride=s, padding=1, basis=basis, norm_layer=norm_layer,
                                    norm_kwargs={"affine": True}, use_base=True, dropout=dropout if i else 0.0,
                                    **dd, **bkw))
            reduction *= s
            self.feature_info.append(dict(num_chs=w, reduction=reduction, module=f"stages.{i}"))
            c = w
        self.stages = nn.Sequential(*layers)
        self.feature_ends = list(range(len(layers)))
        self._init_head(c, num_classes, global_pool, drop_rate, **dd)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^stages\.0", blocks=r"^stages\.(\d+)")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.stages, x)
        return self.stages(x)


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: SimpleConvKAN) -> Dict[str, torch.Tensor]:
    """Unwraps training checkpoints and adapts the stem to the model's ``in_chans``."""
    state_dict = unwrap_checkpoint(state_dict)
    adapt_kan_stem(state_dict, "stages.0", model.in_chans)
    return state_dict


def _create(variant: str, pretrained: bool = False, **kwargs) -> SimpleConvKAN:
    n = len(kwargs.get("widths", ()))
    return build_kan_model(SimpleConvKAN, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                           feature_cfg=dict(flatten_sequential=True, out_indices=tuple(range(n))), **kwargs)


def _cifar_cfg(strides: Sequence[int], **kwargs) -> Dict[str, Any]:
    s = 32 // math.prod(strides)
    return _cfg(num_classes=10, input_size=(3, 32, 32), pool_size=(s, s), crop_pct=1.0,
                mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), first_conv="stages.0",
                paper_ids=PAPER_TCK, **kwargs)


VARIANTS = {
    f"{arch}_{tag}": dict(widths=widths, strides=strides, basis=basis)
    for arch, (widths, strides) in ARCHS.items() for tag, basis in BASIS_TAGS.items()
}

default_cfgs = generate_kan_cfgs({name: _cifar_cfg(args["strides"]) for name, args in VARIANTS.items()})

register_variants(globals(), VARIANTS, _create, doc="""{name}: a small all-KAN CNN ({args}).

    From the MNIST/CIFAR tables of Drokin, arXiv 2407.01092. 32×32 inputs, 10 classes by default.
    """)
