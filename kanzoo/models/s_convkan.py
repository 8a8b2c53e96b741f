"""S-ConvKAN: small classification CNNs whose KAN convs learn, per output channel, which basis to use
("Activation Space Selectable Kolmogorov-Arnold Networks", Yang et al., arXiv 2408.08338).

Four 3×3 selectable KAN convs (:class:`~kanzoo.layers.SelectableKANConv2d`; two with stride 2), global
average pooling and a linear classifier, at MNIST/CIFAR scale. Every conv trains a softmax mixture of its
candidate bases (B-spline, Chebyshev, Gram, RBF, wavelet by default); the training schedule
(:class:`~kanzoo.workflows.selection.SelectionSchedule`) then freezes each channel's top-k and prunes the
rest (the phase lengths are in the pretrained cfg's ``selection``). The paper publishes no code or weights;
the layout and phase settings are kanzoo's (docs/selectable.md).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional, Sequence, Set

import torch
from timm.models._input import update_model_args
from timm.models._manipulate import checkpoint_seq
from torch import nn

from ..layers.selectable import (
    DEFAULT_POOL,
    PoolType,
    SelectableKANConv2d,
    masks_from_spec,
    masks_to_spec,
    prune_masks,
    prune_model,
    select_model,
    selection_summary,
)
from ._base import (
    KANPretrainedCfg,
    SequentialKANClassifier,
    _cfg,
    adapt_kan_stem,
    build_kan_model,
    generate_kan_cfgs,
    register_variants,
    unwrap_checkpoint,
)

__all__ = ["SConvKAN", "SKANPretrainedCfg"]

PAPER_SKAN = "arXiv:2408.08338"


@dataclasses.dataclass
class SKANPretrainedCfg(KANPretrainedCfg):
    """:class:`~kanzoo.models._base.KANPretrainedCfg` plus ``selection``: the S-KAN phase settings
    (``full_epochs``, ``select_epochs``, ``top_k``, ``prune``; see
    :class:`~kanzoo.workflows.selection.SelectionSchedule`).
    Like kanzoo's other extra fields it stays on the cfg object and never reaches ``model.pretrained_cfg``
    or a pushed config.json (timm could not read it); read it with
    :func:`kanzoo.workflows.selection.selection_schedule`."""

    selection: Optional[Dict[str, Any]] = None

    def to_dict(self, remove_source: bool = False, remove_null: bool = True) -> Dict[str, Any]:
        d = KANPretrainedCfg.to_dict(self, remove_source, remove_null)
        d.pop("selection", None)
        return d


class SConvKAN(SequentialKANClassifier):
    """A stack of selectable KAN convs (``widths``, ``strides``), global pooling and a linear head.

    ``stages.{i}`` is the i-th conv; every conv's output is a feature tap (``feature_info``,
    ``forward_intermediates``, ``prune_intermediate_layers``, ``features_only``).

    Args:
        widths, strides: per-layer output channels and strides (3×3 kernels, padding 1).
        pool: candidate bases of every conv (see :func:`kanzoo.layers.selectable.parse_pool`).
        temperature, alpha_mode: the mixing softmax (see :class:`~kanzoo.layers.SelectableKANConvNd`).
        norm_layer, act_layer: applied to each conv's mixture (BatchNorm with affine, SiLU).
        width_scale: multiplies every width (rounded, at least 1).
        in_chans, num_classes, global_pool, drop_rate: as in timm.
        dropout: channel dropout on each conv's basis input (all but the first layer).
        pruned_selection: build the model in its pruned form: per stage (``'stages.0'`` ...), the members each
            output channel keeps, as :func:`~kanzoo.layers.selectable.masks_to_spec` writes them. :meth:`prune` (and
            ``kanzoo train``'s selection schedule) record it in the model arguments, so a saved pruned model
            (config.json) rebuilds with the right structure before its weights load. (Not ``pruned``: timm's
            builder takes that name for its own pruned-model files.)

    The model-level selection API (:meth:`select`, :meth:`prune`, :meth:`selection_summary`) forwards to
    :func:`~kanzoo.layers.select_model` and friends; after :meth:`prune` the stages hold plain KAN convs
    (or :class:`~kanzoo.layers.PrunedKANConvNd`) and the model exports.
    """

    sequential_attr = "stages"

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int] = (1, 2, 2, 1),
        pool: Optional[PoolType] = None,
        temperature: float = 1.0,
        alpha_mode: str = "softmax",
        norm_layer: str = "batch",
        act_layer: str = "silu",
        width_scale: float = 1.0,
        in_chans: int = 3,
        num_classes: int = 10,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        dropout: float = 0.0,
        pruned_selection: Optional[Dict[str, str]] = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if len(widths) != len(strides):
            raise ValueError(f"widths and strides need the same length, got {len(widths)} and {len(strides)}")
        # pruning reads real tensors: a pruned model asked for on the meta device is built on the CPU and moved
        meta = pruned_selection is not None and device is not None and torch.device(device).type == "meta"
        dd = dict(device="cpu" if meta else device, dtype=dtype)
        self.in_chans = in_chans
        widths = [max(1, int(round(w * width_scale))) for w in widths]
        pool = DEFAULT_POOL if pool is None else pool
        layers, self.feature_info, c, reduction = [], [], in_chans, 1
        for i, (w, s) in enumerate(zip(widths, strides)):
            layers.append(SelectableKANConv2d(
                c, w, 3, stride=s, padding=1, pool=pool, temperature=temperature, alpha_mode=alpha_mode,
                norm_layer=norm_layer, norm_kwargs={"affine": True} if norm_layer in ("batch", "instance") else None,
                act_layer=act_layer, dropout=dropout if i else 0.0, **dd))
            reduction *= s
            self.feature_info.append(dict(num_chs=w, reduction=reduction, module=f"stages.{i}"))
            c = w
        self.stages = nn.Sequential(*layers)
        self.feature_ends = list(range(len(layers)))
        self._init_head(c, num_classes, global_pool, drop_rate, **dd)
        if pruned_selection is not None:
            select_model(self, masks=masks_from_spec(pruned_selection, self))
            prune_model(self)
            if meta:
                self.to("meta")

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^stages\.0", blocks=r"^stages\.(\d+)")

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        """The mixing logits: weight decay would pull every channel back towards the uniform mixture."""
        return {n for n, _ in self.named_parameters() if n.endswith(".alpha")}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.stages, x)
        return self.stages(x)

    @torch.jit.ignore
    def select(self, top_k: int = 1) -> Dict[str, Dict[str, int]]:
        """Freezes every conv's selection to each channel's top-k bases; returns the per-layer counts."""
        return select_model(self, top_k)

    @torch.jit.ignore
    def prune(self, top_k: Optional[int] = None) -> "SConvKAN":
        """Prunes every selectable conv in place (see :func:`~kanzoo.layers.prune_model`) and records the kept
        members in the model arguments (``pruned_selection``), so that a saved model rebuilds pruned; returns self."""
        masks = prune_masks(self, top_k)
        prune_model(self, top_k)
        self.record_pruned(masks)
        return self

    @torch.jit.ignore
    def record_pruned(self, masks: Dict[str, Any]) -> Dict[str, str]:
        """Records ``masks`` (layer name -> what pruning kept, bool (out, M)) as the ``pruned_selection`` model
        argument (timm's ``update_model_args``), which config.json carries, and returns it. For code that prunes
        with :func:`~kanzoo.layers.prune_model` or :class:`~kanzoo.workflows.selection.SelectionSchedule`
        directly."""
        spec = masks_to_spec(masks)
        update_model_args(self, pruned_selection=spec)
        return spec

    @torch.jit.ignore
    def selection_summary(self, top_k: Optional[int] = None) -> Dict[str, Dict[str, int]]:
        return selection_summary(self, top_k)


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: SConvKAN) -> Dict[str, torch.Tensor]:
    """Unwraps training checkpoints and adapts every member's stem weights to the model's ``in_chans``."""
    state_dict = unwrap_checkpoint(state_dict)
    stem = model.stages[0]
    if hasattr(stem, "members"):
        prefixes = [f"stages.0.members.{i}" for i in range(len(stem.members))]
    elif hasattr(stem, "branches"):  # pruned, channels of several bases
        prefixes = [f"stages.0.branches.{i}" for i in range(len(stem.branches))]
    else:  # pruned to one plain KAN conv
        prefixes = ["stages.0"]
    for prefix in prefixes:
        adapt_kan_stem(state_dict, prefix, model.in_chans)
    return state_dict


def _create(variant: str, pretrained: bool = False, **kwargs) -> SConvKAN:
    n = len(kwargs.get("widths", ()))
    model = build_kan_model(SConvKAN, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                            feature_cfg=dict(flatten_sequential=True, out_indices=tuple(range(n))), **kwargs)
    return model


def _skan_cfg(in_chans: int, size: int, strides: Sequence[int], selection: Dict[str, Any], **kwargs):
    s = size // math.prod(strides)
    if in_chans == 1:
        norm = dict(mean=(0.1307,), std=(0.3081,))
    else:
        norm = dict(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
    return SKANPretrainedCfg(**_cfg(num_classes=10, input_size=(in_chans, size, size), pool_size=(s, s), crop_pct=1.0,
                                    first_conv="stages.0.members.0", paper_ids=PAPER_SKAN,
                                    paper_name="Activation Space Selectable Kolmogorov-Arnold Networks",
                                    selection=dict(selection), **norm, **kwargs))


_STRIDES = (1, 2, 2, 1)
# name -> (model args, input channels, input size, selection phases). The phase lengths are kanzoo's choice
# (the paper's are not published): about 60% full, 20% selective, the rest pruned fine-tuning.
_ARCHS = {
    "s_convkan_tiny": (dict(widths=(8, 16, 32, 64), in_chans=1), 1, 28,
                       dict(full_epochs=6, select_epochs=2, top_k=1, prune=True)),
    "s_convkan_small": (dict(widths=(16, 32, 64, 128)), 3, 32,
                        dict(full_epochs=30, select_epochs=10, top_k=1, prune=True)),
    "s_convkan_base": (dict(widths=(32, 64, 128, 256)), 3, 32,
                       dict(full_epochs=30, select_epochs=10, top_k=1, prune=True)),
}

VARIANTS = {name: dict(args, strides=_STRIDES) for name, (args, _, _, _) in _ARCHS.items()}

default_cfgs = generate_kan_cfgs({
    name: _skan_cfg(c, size, _STRIDES, sel) for name, (_, c, size, sel) in _ARCHS.items()})

register_variants(globals(), VARIANTS, _create, doc="""{name}: an S-ConvKAN CNN of selectable KAN convs ({args}).

    Yang et al., arXiv 2408.08338 (layout and phase settings are kanzoo's). Pool: B-spline, Chebyshev, Gram,
    RBF, wavelet; train with SelectionSchedule (settings: kanzoo.workflows.selection.selection_schedule(name)).
    """)
