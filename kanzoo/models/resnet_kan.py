"""ResNet-KAN: residual networks whose convolutions are Kolmogorov-Arnold convolutions.

The ResNet layout of "Deep Residual Learning for Image Recognition" (He et al., arXiv 1512.03385), with
every conv of the residual branches (and the stem) replaced by a KAN conv over a learnable basis, as in
the ResKANet models of "Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies"
(Drokin, arXiv 2407.01092):

* stem: a 7×7/2 KAN conv (norm + act inside; He et al.'s ImageNet stem, as in torch-conv-kan's
  ``reskagnet18/50``), then a 3×3/2 max-pool, so features are 7×7 at 224²;
* four stages ``layer1..layer4`` of basic blocks (ResNet-18/34: KAN 3×3 → KAN 3×3) or bottleneck blocks
  (ResNet-50/101/152: KAN 1×1 → KAN 3×3 → KAN 1×1, expansion 4, stride on the 3×3 as in ResNet v1.5);
* block: ``act(drop_path(f(x)) + shortcut(x))``; the last KAN conv of f has norm but no activation,
  the basis's default activation follows the add (timm's ResNet order);
* shortcut: identity, or where the shape changes a projection (``downsample_type='conv'``: 1×1 conv +
  norm, He et al.'s option B; ``'kan'``: a 1×1 KAN conv + norm, as torch-conv-kan does);
* ``moe=True``: every 3×3 KAN conv of the blocks becomes a sparsely gated mixture of KAN-conv experts
  (:class:`~kanzoo.layers.MoEKANConv2d`); see :meth:`ResNetKAN.forward_with_aux` for its loss.

Widths are He et al.'s (stem 64, stages 64/128/256/512 planes) times ``width_scale``; torch-conv-kan's
ImageNet ResKANets use 8/16/32/64 planes, i.e. ``width_scale=0.125``.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from timm.layers import DropPath
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers import KANConv2d, MoEKANConv2d, create_act, create_norm, get_basis_class
from ..layers.moe import routed_active_parameters
from ._base import (
    BASIS_TAGS,
    PAPER_TCK,
    KANClassifier,
    _cfg,
    adapt_kan_stem,
    build_kan_model,
    default_basis_kwargs,
    generate_kan_cfgs,
    register_variants,
    unwrap_checkpoint,
)

__all__ = ["ResNetKAN", "ResNetKANMoE", "BasicBlockKAN", "BottleneckKAN", "MoEKANConvNormAct"]

PAPER_RESNET = "arXiv:1512.03385"

# depth -> (block type, blocks per stage)
ARCHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
DOWNSAMPLE_TYPES = ("conv", "kan")


class _ConvFactory:
    """Builds the KAN convs of one model: shared basis, norm, activation, dropout, MoE and device settings."""

    def __init__(self, basis, basis_kwargs, norm_layer, act_layer, dropout, moe_kwargs, device, dtype):
        self.basis, self.basis_kwargs = basis, basis_kwargs
        self.norm_layer, self.act_layer, self.dropout = norm_layer, act_layer, dropout
        # InstanceNorm has no affine parameters by default; the others do (and LayerNorm has no `affine`)
        self.norm_kwargs = {"affine": True} if str(norm_layer).lower() == "instance" else {}
        self.moe_kwargs = moe_kwargs
        self.dd = dict(device=device, dtype=dtype)

    def act(self, channels: int) -> nn.Module:
        """The output activation (the basis's default unless ``act_layer`` is given)."""
        return create_act(self.act_layer, channels, get_basis_class(self.basis).default_act, **self.dd)

    def norm(self, channels: int) -> nn.Module:
        return create_norm(self.norm_layer, channels, 2, **self.norm_kwargs, **self.dd)

    def conv(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, apply_act: bool = True,
             moe: bool = False, dropout: Optional[float] = None) -> nn.Module:
        """A KAN conv + norm (+ act); with ``moe`` a :class:`MoEKANConvNormAct` returning ``(y, aux)``."""
        if moe:
            return MoEKANConvNormAct(in_chs, out_chs, kernel_size, stride, self, apply_act)
        return KANConv2d(in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2, basis=self.basis,
                         use_base=True, norm_layer=self.norm_layer, norm_kwargs=self.norm_kwargs,
                         act_layer=self.act_layer if apply_act else "identity",
                         dropout=self.dropout if dropout is None else dropout,
                         **self.dd, **self.basis_kwargs)

    def downsample(self, in_chs: int, out_chs: int, stride: int, kind: str) -> nn.Module:
        if kind == "kan":
            return self.conv(in_chs, out_chs, 1, stride, apply_act=False)
        return nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False, **self.dd),
                             self.norm(out_chs))


class MoEKANConvNormAct(nn.Module):
    """A mixture of KAN-conv experts (:class:`~kanzoo.layers.MoEKANConv2d`) followed by one shared norm and
    activation. The experts have no norm or activation of their own, so BatchNorm statistics are taken
    over the whole batch rather than each expert's sub-batch. ``forward`` returns ``(y, aux_loss)``."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, make: _ConvFactory,
                 apply_act: bool = True):
        super().__init__()
        self.conv = MoEKANConv2d(in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2,
                                 basis=make.basis, use_base=True, norm_layer="none", act_layer="identity",
                                 dropout=make.dropout, **make.moe_kwargs, **make.dd, **make.basis_kwargs)
        self.norm = make.norm(out_chs)
        self.act = make.act(out_chs) if apply_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        y, aux = self.conv(x)
        return self.act(self.norm(y)), aux


class BasicBlockKAN(nn.Module):
    """``act(drop_path(conv2(conv1(x))) + shortcut(x))`` with two 3×3 KAN convs (stride on conv1).

    ``forward_aux`` also returns the block's MoE load-balancing loss (zero without MoE).
    """

    expansion = 1
    moe: torch.jit.Final[bool]

    def __init__(self, in_chs: int, planes: int, stride: int, make: _ConvFactory,
                 downsample: Optional[nn.Module] = None, drop_path: float = 0.0, moe: bool = False):
        super().__init__()
        self.moe = moe
        self.conv1 = make.conv(in_chs, planes, 3, stride, moe=moe)
        self.conv2 = make.conv(planes, planes, 3, apply_act=False, moe=moe)
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = make.act(planes)

    def forward_aux(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        shortcut = self.downsample(x)
        if self.moe:
            out, aux = self.conv1(x)
            out, aux2 = self.conv2(out)
            aux = aux + aux2
        else:
            out = self.conv2(self.conv1(x))
            aux = x.new_zeros(())
        return self.act(self.drop_path(out) + shortcut), aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_aux(x)[0]


class BottleneckKAN(nn.Module):
    """``act(drop_path(conv3(conv2(conv1(x)))) + shortcut(x))``: KAN 1×1 → KAN 3×3 (stride, MoE) → KAN 1×1
    to ``4·planes`` channels."""

    expansion = 4
    moe: torch.jit.Final[bool]

    def __init__(self, in_chs: int, planes: int, stride: int, make: _ConvFactory,
                 downsample: Optional[nn.Module] = None, drop_path: float = 0.0, moe: bool = False):
        super().__init__()
        self.moe = moe
        out_chs = planes * self.expansion
        self.conv1 = make.conv(in_chs, planes, 1)
        self.conv2 = make.conv(planes, planes, 3, stride, moe=moe)
        self.conv3 = make.conv(planes, out_chs, 1, apply_act=False)
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = make.act(out_chs)

    def forward_aux(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        shortcut = self.downsample(x)
        out = self.conv1(x)
        if self.moe:
            out, aux = self.conv2(out)
        else:
            out = self.conv2(out)
            aux = x.new_zeros(())
        out = self.conv3(out)
        return self.act(self.drop_path(out) + shortcut), aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_aux(x)[0]


class ResNetKAN(KANClassifier):
    """A ResNet built from KAN convolutions (see the module docstring for the layout).

    Args:
        layers: blocks per stage (4 entries).
        block_type: ``'basic'`` (ResNet-18/34) or ``'bottleneck'`` (ResNet-50/101/152, expansion 4).
        basis: KAN basis name; ``basis_kwargs`` go to it (default degree 3 for polynomial bases).
        norm_layer: norm after every KAN conv and in the projection shortcuts (default ``'batch'``).
        act_layer: activation after the convs and the residual add (None: the basis's default).
        width_scale: multiplies every width (stem and stages; rounded, at least 1).
        downsample_type: projection shortcut, ``'conv'`` (1×1 conv + norm) or ``'kan'`` (1×1 KAN conv + norm).
        moe: make the blocks' 3×3 KAN convs mixtures of experts; ``moe_kwargs`` go to
            :class:`~kanzoo.layers.MoEKANConv2d` (default ``num_experts=8, top_k=2``).
        in_chans, num_classes, global_pool, drop_rate: as in timm (``drop_rate``: dropout before the fc).
        drop_path_rate: stochastic depth, rising linearly over the blocks to this rate.
        dropout: channel dropout on the basis input of every KAN conv but the stem.

    With ``moe=True`` the load-balancing loss is returned by :meth:`forward_with_aux` only; ``forward``
    keeps timm's single-output contract. Idle experts get no gradient in a step (see
    :class:`~kanzoo.layers.MoEKANConvNd`), and the MoE layer is not TorchScript-scriptable.
    """

    def __init__(
        self,
        layers: Sequence[int] = ARCHS[18][1],
        block_type: str = "basic",
        basis: str = "gram",
        basis_kwargs: Optional[Dict[str, Any]] = None,
        norm_layer: str = "batch",
        act_layer: Optional[str] = None,
        width_scale: float = 1.0,
        downsample_type: str = "conv",
        moe: bool = False,
        moe_kwargs: Optional[Dict[str, Any]] = None,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        blocks = {"basic": BasicBlockKAN, "bottleneck": BottleneckKAN}
        if block_type not in blocks:
            raise ValueError(f"block_type must be one of {sorted(blocks)}, got {block_type!r}")
        if len(layers) != 4 or any(not isinstance(n, int) or n < 1 for n in layers):
            raise ValueError(f"layers must give 4 block counts >= 1, got {layers!r}")
        if downsample_type not in DOWNSAMPLE_TYPES:
            raise ValueError(f"downsample_type must be one of {DOWNSAMPLE_TYPES}, got {downsample_type!r}")
        if not width_scale > 0:
            raise ValueError(f"width_scale must be > 0, got {width_scale!r}")
        if moe_kwargs is not None and not moe:
            raise ValueError("moe_kwargs is only used with moe=True")
        dd = dict(device=device, dtype=dtype)
        block_cls = blocks[block_type]
        bkw = dict(default_basis_kwargs(basis), **(basis_kwargs or {}))
        make = _ConvFactory(basis, bkw, norm_layer, act_layer, dropout,
                            dict(dict(num_experts=8, top_k=2), **(moe_kwargs or {})), device, dtype)
        self.in_chans = in_chans
        self.moe = moe

        def scaled(w: int) -> int:
            return max(1, int(round(w * width_scale)))

        stem_chs = scaled(64)
        self.conv1 = make.conv(in_chans, stem_chs, 7, stride=2, dropout=0.0)  # no channel dropout on the image
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.feature_info = [dict(num_chs=stem_chs, reduction=2, module="conv1")]

        total, idx, in_chs, reduction = sum(layers), 0, stem_chs, 4
        for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512))):
            planes, stride = scaled(planes), 1 if i == 0 else 2
            reduction *= stride
            out_chs = planes * block_cls.expansion
            stage = []
            for j in range(n):
                s = stride if j == 0 else 1
                down = make.downsample(in_chs, out_chs, s, downsample_type) if s != 1 or in_chs != out_chs else None
                dpr = drop_path_rate * idx / max(total - 1, 1)
                stage.append(block_cls(in_chs, planes, s, make, downsample=down, drop_path=dpr, moe=moe))
                in_chs, idx = out_chs, idx + 1
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            self.feature_info.append(dict(num_chs=out_chs, reduction=reduction, module=f"layer{i + 1}"))
        self._init_head(in_chs, num_classes, global_pool, drop_rate, **dd)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^conv1|^maxpool", blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)")

    routing_unit = "image"  # moe=True gates each image (kanzoo info's active-parameter row)

    @torch.jit.ignore
    def num_active_parameters(self) -> Optional[int]:
        """With ``moe=True``: the parameters one image uses (top-k experts per routed conv, see
        :func:`~kanzoo.layers.moe.routed_active_parameters`); None for a dense model."""
        return routed_active_parameters(self)

    def _stages(self) -> List[nn.Module]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self._stages(), x, flatten=True)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    @torch.jit.ignore
    def forward_with_aux(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(logits, aux_loss)``: the forward pass plus the sum of all MoE load-balancing losses (a zero
        scalar without MoE; torch-conv-kan averages per stage instead). Train a MoE model with
        ``loss = criterion(logits, y) + aux_loss``."""
        x = self.maxpool(self.conv1(x))
        aux = x.new_zeros(())
        for stage in self._stages():
            for block in stage:
                if self.grad_checkpointing:
                    x, a = checkpoint(block.forward_aux, x, use_reentrant=False)
                else:
                    x, a = block.forward_aux(x)
                aux = aux + a
        return self.forward_head(x), aux

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
        """timm's intermediate-feature API over ``feature_info``: the outputs of ``conv1`` (before the max-pool)
        and ``layer1..layer4``.

        Args:
            indices: taps to return: None all, an int the last n, a list those (negative from the end).
            norm: accepted for timm's API; ResNet-KAN has no final norm.
            stop_early: stop after the last tap taken (the final tensor is then that tap, or the max-pooled stem).
            output_fmt: only ``'NCHW'``.
            intermediates_only: return the list of taps alone.

        Returns:
            ``(final, taps)``, ``final`` equal to ``forward_features(x)`` unless ``stop_early``; or ``taps``.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"ResNetKAN only outputs 'NCHW' features, got output_fmt={output_fmt!r}")
        take_indices, max_index = feature_take_indices(5, indices)
        x = self.conv1(x)
        intermediates = [x] if 0 in take_indices else []
        x = self.maxpool(x)
        stages = self._stages()[:max_index] if stop_early else self._stages()
        for i, stage in enumerate(stages, start=1):
            x = checkpoint_seq(stage, x) if self.grad_checkpointing else stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    @torch.jit.ignore
    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drops the stages after the last tap in ``indices`` (and the max-pool when that is the stem); the head
        keeps no classifier and no pooling (``num_classes=0``: ``forward`` returns the features) when stages were
        dropped or with ``prune_head``. Returns the kept (absolute) indices, to pass to ``forward_intermediates``."""
        take_indices, max_index = feature_take_indices(5, indices)
        for i in range(max_index + 1, 5):
            setattr(self, f"layer{i}", nn.Sequential())
        if max_index == 0:
            self.maxpool = nn.Identity()
        if max_index < 4:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or max_index < 4:
            self.reset_classifier(0, "")
        return take_indices


class ResNetKANMoE(ResNetKAN):
    """The class :func:`_create` uses for ``moe=True``: a :class:`ResNetKAN` that declares where it departs
    from the per-model contract of ``tests/test_models_contract.py``."""

    _contract_skip = {
        "all_params_grad": "sparse top-k routing: experts that no sample of a batch is routed to are not run "
                           "and get no gradient in that step",
        "torchscript": "MoEKANConvNd's data-dependent dispatch is not scriptable; checked with torch.jit.trace",
    }


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: ResNetKAN) -> Dict[str, torch.Tensor]:
    """Unwraps training checkpoints and adapts the KAN stem to the model's ``in_chans``."""
    state_dict = unwrap_checkpoint(state_dict)
    adapt_kan_stem(state_dict, "conv1", model.in_chans)
    return state_dict


def _create(variant: str, pretrained: bool = False, **kwargs) -> ResNetKAN:
    model_cls = ResNetKANMoE if kwargs.get("moe") else ResNetKAN
    return build_kan_model(model_cls, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=dict(out_indices=(0, 1, 2, 3, 4)), **kwargs)


def _variant(depth: int, basis: str, moe: bool = False) -> Dict[str, Any]:
    block_type, layers = ARCHS[depth]
    args = dict(layers=layers, block_type=block_type, basis=basis)
    return dict(args, moe=True) if moe else args


VARIANTS = {f"resnet_kagn{d}": _variant(d, "gram") for d in ARCHS}
VARIANTS["resnet_kagn_moe18"] = _variant(18, "gram", moe=True)
VARIANTS.update({f"resnet_{tag}18": _variant(18, basis) for tag, basis in BASIS_TAGS.items() if tag != "kagn"})

default_cfgs = generate_kan_cfgs({
    name: _cfg(first_conv="conv1", paper_ids=f"{PAPER_RESNET},{PAPER_TCK}") for name in VARIANTS
})

register_variants(globals(), VARIANTS, _create, doc="""{name}: a ResNet of KAN convolutions ({args}).

    He et al., arXiv 1512.03385, with KAN convs as in Drokin, arXiv 2407.01092. 224×224, 1000 classes
    by default; no pretrained weights.
    """)
