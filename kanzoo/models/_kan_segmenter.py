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
    """What UKANet and U2KANet share: the task flag, checkpointing, and the encoder contract.

    **Encoder contract** (what segmentation_models_pytorch-style decoders take from an encoder, in timm's API):

    * ``feature_info``: one entry per encoder stage, shallowest first, with ``num_chs``, ``reduction`` and
      ``module``;
    * ``forward_intermediates(x, indices, stop_early=..., intermediates_only=True)``: those stages' outputs;
      the final tensor of the non-``intermediates_only`` form is ``forward_features(x)``, the deepest stage;
    * ``forward_head(features)``: the decoder and output conv on the list of all encoder features, so that
      ``forward(x)`` is ``forward_head(forward_intermediates(x, intermediates_only=True))`` cropped to x's size;
    * ``prune_intermediate_layers(indices)``: drops the decoder, the output convs and the stages after the last
      index; ``forward`` then returns ``forward_features`` (the deepest kept stage);
    * ``features_only=True``: timm's ``FeatureGetterNet`` over ``forward_intermediates``.

    The encoder sees the input as ``forward`` does: zero-padded at the bottom and right to a multiple of
    ``pad_multiple`` (1, no padding, for U2KANet), so a level of reduction r is ``ceil(H / pad_multiple) *
    pad_multiple / r`` high.

    Subclasses hold their encoder stages in ``stages`` (after ``_stem``) and define ``feature_info``, ``_decode``,
    ``forward_head`` and ``_drop_decoder``.
    """

    #: read by kanzoo's tools (timm's PretrainedCfg takes no ``task`` field; the cfg says it in ``notes``)
    task = "segmentation"
    pad_multiple = 1

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        """What runs before ``stages`` (nothing by default)."""
        return x

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` zero-padded at the bottom and right to a multiple of ``pad_multiple``, as ``forward`` pads it."""
        m = self.pad_multiple
        if m == 1:
            return x
        h, w = x.shape[-2], x.shape[-1]
        return F.pad(x, [0, (m - w % m) % m, 0, (m - h % m) % m])

    def _encode(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The outputs of every encoder stage for an input already padded."""
        return self._run_stages(self._stem(x))

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
        """The deepest encoder features (``num_features`` channels) of the input padded as ``forward`` pads it."""
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
        """timm's intermediate-feature API over the encoder stages of ``feature_info``, for the input padded as
        ``forward`` pads it.

        Args:
            indices: stages to return: None all, an int the last n, a list those (negative from the end).
            norm: accepted for timm's API; the encoders have no final norm.
            stop_early: stop after the last stage taken (the final tensor is then that stage's output).
            output_fmt: only ``'NCHW'``.
            intermediates_only: return the list of stage outputs alone (the stages after the last one taken
                are not run).

        Returns:
            ``(final, features)``, ``final`` equal to ``forward_features(x)`` unless ``stop_early``; or
            ``features``.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        stages = self.stages[:max_index + 1] if stop_early or intermediates_only else self.stages
        x = self._stem(self._pad(x))
        intermediates = []
        for i, stage in enumerate(stages):
            x = checkpoint(stage, x) if self.grad_checkpointing else stage(x)
            if i in take:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def forward_head(self, x: List[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """The decoder and output conv on ``x``, the list of every encoder stage's features (shallowest first, as
        ``forward_intermediates(..., intermediates_only=True)`` gives them): logits at the padded input size;
        ``pre_logits``: the decoder features (``head_hidden_size`` channels) without the output conv."""
        raise NotImplementedError

    def _drop_decoder(self, num_chs: int) -> None:
        """Removes the decoder and every output conv; the model then outputs its ``num_chs``-channel encoder
        features."""
        raise NotImplementedError

    @torch.jit.ignore
    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Keeps the encoder stages up to the last one in ``indices``. The decoder and the output convs need every
        stage: they are dropped when stages are (and with ``prune_head``), and ``forward`` then returns the
        deepest kept stage's features (``num_features`` = ``head_hidden_size`` = its channels,
        ``num_classes=0``). Returns the kept (absolute) indices, to pass to ``forward_intermediates``."""
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        if max_index < len(self.stages) - 1 or prune_head:
            self.stages = self.stages[:max_index + 1]
            self.num_features = self.feature_info[max_index]["num_chs"]
            self._drop_decoder(self.num_features)
        return take


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
