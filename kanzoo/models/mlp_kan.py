"""MLP-KAN: a DeiT-style vision transformer whose FFN is a top-2 mixture of MLP and FasterKAN experts, from
"MLP-KAN: Unifying Deep Representation and Function Learning" (He et al., arXiv 2410.03027), on the ViT of
"An Image is Worth 16x16 Words" (Dosovitskiy et al., arXiv 2010.11929) and DeiT (Touvron et al.,
arXiv 2012.12877).

The model is timm's ``VisionTransformer`` with ``mlp_layer=MoEKANMlp`` (:class:`kanzoo.layers.MoEKANMlp`):
per token, a router picks 2 of 8 experts, 4 MLPs (C → h → C, GELU) and 4 FasterKAN networks (C → h/2 → C,
RSWAF basis), and sums their outputs with renormalised router weights. This is the sparse Mixtral-style
router of the authors' code; the paper describes a soft MoE with slots, which the code does not build.

Compared with the reference code (DLYuanGod/MLP-KAN): no dead standard MLP in each block (the reference
keeps an unused 4× FFN per block, 3.55 M parameters in the tiny model), stochastic depth works, ``qkv_bias``
is honoured (the registered models have DeiT's qkv bias; the reference has none), the expert hidden width is
an argument, routing runs in float64, and an optional load-balancing loss is returned for the training loop.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Any, Dict, List, Optional, Set, Tuple

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from ..layers import MoEKANMlp
from ..layers.moe import routed_active_parameters
from ._args import scaled_vit_widths
from ._base import build_kan_model, generate_kan_cfgs, register_variants, unwrap_checkpoint

__all__ = ["MLPKAN"]

PAPER_MLPKAN = "arXiv:2410.03027"
PAPER_DEIT = "arXiv:2012.12877"

_ROUTER_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _block_fn(block_norm_eps: float):
    """timm ``Block`` with its own LayerNorm epsilon (MLP-KAN's blocks use 1e-5, its final norm 1e-6)."""
    def make(**kwargs):
        kwargs["norm_layer"] = partial(nn.LayerNorm, eps=block_norm_eps)
        return Block(**kwargs)
    return make


class MLPKAN(VisionTransformer):
    r"""A ViT whose FFNs are top-k mixtures of MLP and FasterKAN experts (MLP-KAN, arXiv 2410.03027).

    Everything but the FFN is timm's :class:`~timm.models.vision_transformer.VisionTransformer` (class token,
    learned position embedding, pre-norm blocks, token pooling, ``forward_features``/``forward_head``,
    ``forward_intermediates``, gradient checkpointing). Each block's FFN is
    :class:`~kanzoo.layers.MoEKANMlp`.

    **Parameters.** ``sum(p.numel() for p in model.parameters())`` counts every expert;
    :meth:`active_parameters` (alias :meth:`num_active_parameters`) counts what one token uses (shared weights plus
    k experts per block); :meth:`parameter_counts` gives both and the range over routes.

    **Load balancing.** After a training-mode forward, :meth:`aux_loss` returns the sum over blocks of the
    Switch-Transformer balancing loss (``aux_loss_coef`` per block; 0 disables it);
    :meth:`forward_with_aux_loss` returns ``(logits, aux_loss)`` in one call. Add it to the task loss.

    Args:
        img_size, patch_size, in_chans, num_classes, global_pool, embed_dim, depth, num_heads: as in timm's ViT.
        qkv_bias: bias on the qkv projection (DeiT: True; the reference's blocks have none).
        expert_hidden: hidden width h of the experts (MLP: h, FasterKAN: h/2; MLP-KAN: 192 at every size).
        num_experts, num_mlp_experts, top_k: the mixture (8 experts, 4 of them MLPs, top 2).
        router_dtype: ``'float64'`` (default) or ``'float32'`` (the reference) for softmax, top-k and
            renormalisation.
        aux_loss_coef: weight of each block's balancing loss.
        kan_kwargs: FasterKAN basis arguments (``grid_size=8``, ``grid_range=(-2, 2)``, ``denominator=0.33``).
        block_norm_eps, norm_eps: LayerNorm epsilons in the blocks (1e-5) and after them (1e-6), as the
            reference.
        width_scale: multiplies ``embed_dim`` (rounded to a multiple of ``num_heads``) and ``expert_hidden``;
            for tests and light models.
        drop_rate, pos_drop_rate, proj_drop_rate, attn_drop_rate, drop_path_rate, weight_init: as in timm.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "token",
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        qkv_bias: bool = True,
        expert_hidden: int = 192,
        num_experts: int = 8,
        num_mlp_experts: Optional[int] = None,
        top_k: int = 2,
        router_dtype: str = "float64",
        aux_loss_coef: float = 0.01,
        kan_kwargs: Optional[Dict[str, Any]] = None,
        block_norm_eps: float = 1e-5,
        norm_eps: float = 1e-6,
        width_scale: float = 1.0,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        weight_init: str = "",
        device=None,
        dtype=None,
    ):
        if router_dtype not in _ROUTER_DTYPES:
            raise ValueError(f"router_dtype must be one of {sorted(_ROUTER_DTYPES)}, got {router_dtype!r}")
        embed_dim, expert_hidden = scaled_vit_widths(embed_dim, num_heads, width_scale, "expert_hidden",
                                                     expert_hidden, min_hidden=2)
        mlp_layer = partial(MoEKANMlp, expert_hidden=expert_hidden, num_experts=num_experts,
                            num_mlp_experts=num_mlp_experts, top_k=top_k, router_dtype=_ROUTER_DTYPES[router_dtype],
                            aux_loss_coef=aux_loss_coef, kan_kwargs=kan_kwargs)
        super().__init__(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=num_classes,
            global_pool=global_pool, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            mlp_ratio=expert_hidden / embed_dim, qkv_bias=qkv_bias, drop_rate=drop_rate, pos_drop_rate=pos_drop_rate,
            proj_drop_rate=proj_drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
            weight_init=weight_init, norm_layer=partial(nn.LayerNorm, eps=norm_eps),
            block_fn=_block_fn(block_norm_eps), mlp_layer=mlp_layer, device=device, dtype=dtype)
        self.expert_hidden = expert_hidden
        self.top_k = top_k

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        return {"pos_embed", "cls_token"}

    @torch.jit.ignore
    def moe_layers(self):
        """The :class:`MoEKANMlp` of every block, in order."""
        return [m for m in self.modules() if isinstance(m, MoEKANMlp)]

    @torch.jit.ignore
    def aux_loss(self) -> Optional[torch.Tensor]:
        """Sum of the blocks' load-balancing losses from the last training-mode forward (None if none)."""
        losses = [m.aux_loss for m in self.moe_layers() if m.aux_loss is not None]
        return torch.stack([loss.float() for loss in losses]).sum() if losses else None

    @torch.jit.ignore
    def forward_with_aux_loss(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(logits, aux_loss)``; the loss is a zero scalar in eval mode or with ``aux_loss_coef=0``."""
        logits = self(x)
        aux = self.aux_loss()
        return logits, aux if aux is not None else logits.new_zeros(())

    routing_unit = "token"  # the router picks experts per token (kanzoo info's active-parameter row)

    @torch.jit.ignore
    def active_parameters(self) -> int:
        """Parameters one token uses: everything outside the experts, plus ``top_k`` experts per block.

        Experts differ in size (a FasterKAN expert holds about 4× an MLP expert), so a token's count depends
        on its route; this is the mean over uniformly random routes, k times the mean expert size per block.
        """
        n = routed_active_parameters(self)
        return sum(p.numel() for p in self.parameters()) if n is None else n

    @torch.jit.ignore
    def num_active_parameters(self) -> int:
        """The same as :meth:`active_parameters` (the name ``kanzoo info`` and other sparse models use)."""
        return self.active_parameters()

    @torch.jit.ignore
    def parameter_counts(self) -> Dict[str, int]:
        """``total``, ``active`` (see :meth:`active_parameters`) and the range of per-token counts
        (``active_min``: k smallest experts per block, ``active_max``: k largest)."""
        total = sum(p.numel() for p in self.parameters())
        moe = self.moe_layers()
        shared = total - sum(p.numel() for m in moe for p in m.experts.parameters())
        sizes = [sorted(sum(p.numel() for p in e.parameters()) for e in m.experts) for m in moe]
        lo = shared + sum(sum(s[:m.top_k]) for s, m in zip(sizes, moe))
        hi = shared + sum(sum(s[-m.top_k:]) for s, m in zip(sizes, moe))
        return dict(total=total, active=self.active_parameters(), active_min=lo, active_max=hi)


#: a reference block's FFN keys, dead where the block also has a ``kan`` FFN
_DEAD = re.compile(r"^(?P<prefix>(?:.*\.)?)mlp\.fc[12]\.(?:weight|bias)$")


def split_dead_keys(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Separates the reference's dead per-block FFN (``{block}.mlp.fc1/fc2.weight/bias``, where the block
    also has ``{block}.kan.gate.weight``) from the rest; returns ``(live state, dead keys in order)``."""
    live: Dict[str, torch.Tensor] = {}
    dead: List[str] = []
    for key, value in state.items():
        m = _DEAD.match(key)
        if m and f"{m.group('prefix')}kan.gate.weight" in state:
            dead.append(key)
        else:
            live[key] = value
    return live, dead


def is_reference_mlpkan_state(state: Dict[str, torch.Tensor]) -> bool:
    """True for reference-keyed MLP-KAN weights (a ``kan.`` FFN, or FasterKAN's ``rbf.grid``/``spline_linear``)."""
    return any(k.startswith("kan.") or ".kan." in k or "rbf.grid" in k or "spline_linear.weight" in k
               for k in state)


def convert_mlpkan_state(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Reference (DLYuanGod/MLP-KAN) keys -> kanzoo keys. Returns ``(converted state, dropped dead keys)``.

    The dead per-block FFN is dropped (:func:`split_dead_keys`); ``kan.*`` -> ``mlp.*``; in each FasterKAN layer
    ``layernorm.*`` -> ``basis_norm.*``, ``rbf.grid`` -> ``basis.grid`` and ``spline_linear.weight`` (out, in·G)
    -> ``basis_weight`` (out, in, G), G the size of the layer's grid. Every other key is kept.
    """
    live, dead = split_dead_keys(state)
    out: Dict[str, torch.Tensor] = {}
    for key, value in live.items():
        new = re.sub(r"(^|\.)kan\.", r"\1mlp.", key)
        if new.endswith("spline_linear.weight"):
            prefix = key[: -len("spline_linear.weight")]
            grid = live.get(prefix + "rbf.grid")
            if grid is None:
                raise KeyError(f"{key!r} has no {prefix + 'rbf.grid'!r} beside it: cannot tell the number of "
                               f"basis functions per input")
            g = grid.numel()
            if value.dim() != 2 or value.shape[1] % g:
                raise ValueError(f"{key!r} has shape {tuple(value.shape)}, not (out, in·{g})")
            value = value.reshape(value.shape[0], value.shape[1] // g, g)
            new = new[: -len("spline_linear.weight")] + "basis_weight"
        elif new.endswith("rbf.grid"):
            new = new[: -len("rbf.grid")] + "basis.grid"
        elif ".layernorm." in "." + new:
            new = re.sub(r"(^|\.)layernorm\.", r"\1basis_norm.", new)
        out[new] = value
    return out, dead


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: MLPKAN) -> Dict[str, torch.Tensor]:
    """Loads kanzoo or reference (DLYuanGod/MLP-KAN) weights: unwraps training checkpoints, converts reference
    keys (:func:`convert_mlpkan_state`: drops the dead per-block MLPs, ``kan.*`` -> ``mlp.*``) and gives a model
    with a qkv bias zeros where the checkpoint has none (the same function)."""
    state_dict = unwrap_checkpoint(state_dict)
    if is_reference_mlpkan_state(state_dict):
        state_dict = convert_mlpkan_state(state_dict)[0]
    own = model.state_dict()
    for key, value in own.items():
        if key.endswith("attn.qkv.bias") and key not in state_dict and key[:-4] + "weight" in state_dict:
            state_dict[key] = torch.zeros_like(value, device="cpu")
    return state_dict


def _create(variant: str, pretrained: bool = False, **kwargs) -> MLPKAN:
    return build_kan_model(MLPKAN, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                           feature_cfg=dict(out_indices=3, feature_cls="getter"), **kwargs)


def _mlpkan_cfg(img: int = 224, **kwargs) -> Dict[str, Any]:
    return dict(dict(
        url="", num_classes=1000, input_size=(3, img, img), pool_size=None, fixed_input_size=True,
        crop_pct=0.875 if img == 224 else 1.0, interpolation="bicubic", mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD, first_conv="patch_embed.proj", classifier="head", license="apache-2.0",
        origin_url="https://github.com/DLYuanGod/MLP-KAN", paper_ids=(PAPER_MLPKAN, PAPER_DEIT),
        paper_name="MLP-KAN: Unifying Deep Representation and Function Learning",
        notes=("no published weights: the reference repository holds none",)), **kwargs)


VARIANTS: Dict[str, Dict[str, Any]] = {
    "mlp_kan_tiny_patch16_224": dict(patch_size=16, embed_dim=192, depth=12, num_heads=3),
    "mlp_kan_small_patch16_224": dict(patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "mlp_kan_base_patch16_224": dict(patch_size=16, embed_dim=768, depth=12, num_heads=12),
    "mlp_kan_base_patch16_384": dict(img_size=384, patch_size=16, embed_dim=768, depth=12, num_heads=12),
}

default_cfgs = generate_kan_cfgs({name: _mlpkan_cfg(args.get("img_size", 224)) for name, args in VARIANTS.items()})

register_variants(globals(), VARIANTS, _create, doc="""{name}: MLP-KAN, a ViT whose FFN is a top-2 MoE ({args}).

    Each block's FFN routes every token to 2 of 8 experts, 4 MLPs and 4 FasterKANs (expert_hidden=192).
    He et al., "MLP-KAN: Unifying Deep Representation and Function Learning", arXiv 2410.03027. No weights.
    """)
