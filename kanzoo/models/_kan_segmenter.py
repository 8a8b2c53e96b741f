"""What the KAN-conv segmenters (:mod:`~kanzoo.models.ukanet`, :mod:`~kanzoo.models.u2kanet`) share: the KAN
conv settings, the model base class (task flag, checkpointing, encoder-feature APIs), the segmentation
pretrained cfg and the checkpoint filter; and the output conv, :func:`seg_head`, which
:mod:`~kanzoo.models.ukan` uses too.

Both families map (B, in_chans, H, W) to per-pixel logits (B, num_classes, H, W) at the input resolution.
Every conv is a :class:`~kanzoo.layers.KANConv2d` except the output convs (plain ``nn.Conv2d``: they produce
logits, which must not pass through a KAN conv's norm and activation).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint
from torch import nn

from ._base import _cfg, adapt_kan_stem, default_basis_kwargs, unwrap_checkpoint

__all__ = ["KANSegmenter", "seg_conv_kwargs", "scale_width", "resize_like", "seg_cfg", "filter_seg_checkpoint"]


def seg_conv_kwargs(basis: str, basis_kwargs: Optional[Dict[str, Any]], norm_layer: str) -> Dict[str, Any]:
    """KAN conv settings shared by every conv of a model: the base branch always on (the stem then has a
    ``weight``), learnable affine for the norms that take one."""
    affine = {"affine": True} if norm_layer in ("batch", "instance", "group") else {}
    return dict(basis=basis, norm_layer=norm_layer, norm_kwargs=affine, use_base=True,
                **dict(default_basis_kwargs(basis), **(basis_kwargs or {})))


def scale_width(c: int, width_scale: float) -> int:
    """``round(c · width_scale)``, at least 1."""
    return max(1, int(round(c * width_scale)))


def resize_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to the spatial size of ``ref``."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def seg_head(in_chs: int, num_classes: int, device=None, dtype=None) -> nn.Module:
    """The output layer of a segmenter: a 1×1 conv from ``in_chs`` to ``num_classes`` per-pixel logits, or an
    identity for ``num_classes=0`` (the model then returns its decoder features)."""
    if num_classes <= 0:
        return nn.Identity()
    return nn.Conv2d(in_chs, num_classes, 1, device=device, dtype=dtype)


class KANSegmenter(nn.Module):
    """What UKANet and U2KANet share: the task flag, checkpointing, and encoder-feature APIs.

    Subclasses hold their encoder stages in ``stages`` and define ``_encode`` (the stage outputs, shallowest
    first) and ``feature_info``.
    """

    #: read by kanzoo's tools (timm's PretrainedCfg takes no ``task`` field; the cfg says it in ``notes``)
    task = "segmentation"

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def _encode(self, x: torch.Tensor) -> List[torch.Tensor]:
        raise NotImplementedError

    def _run_stages(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Every output of ``stages`` run in sequence on ``x`` (checkpointed when enabled)."""
        feats: List[torch.Tensor] = []
        for stage in self.stages:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(stage, x)
            else:
                x = stage(x)
            feats.append(x)
        return feats

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


def seg_cfg(**kwargs) -> Dict[str, Any]:
    """A segmentation cfg: per-pixel logits, no pooled features (``pool_size=None``), binary by default."""
    return _cfg(**dict(dict(
        num_classes=1, input_size=(3, 256, 256), pool_size=None, crop_pct=1.0, notes=("task=segmentation",),
        description="semantic segmentation: per-pixel logits (B, num_classes, H, W) at the input size"), **kwargs))


def filter_seg_checkpoint(state_dict: Dict[str, torch.Tensor], model: nn.Module,
                          first_conv: str) -> Dict[str, torch.Tensor]:
    """Unwraps training checkpoints, adapts the first conv (``first_conv``) to ``in_chans`` and drops head
    tensors whose shape differs from the model's (U²-Net's side convs depend on ``num_classes`` as well as the
    fuse conv)."""
    state_dict = unwrap_checkpoint(state_dict)
    adapt_kan_stem(state_dict, first_conv, model.in_chans)
    own = model.state_dict()
    for k in [k for k in state_dict if k.startswith("head.")]:
        if k in own and own[k].shape != state_dict[k].shape:
            del state_dict[k]
    return state_dict
