"""Kolmogorov-Arnold Transformer (KAT): a ViT whose MLPs are GR-KAN layers (Yang & Wang, "Kolmogorov-Arnold
Transformer", arXiv 2409.10594).

The model is timm's :class:`~timm.models.vision_transformer.VisionTransformer` with
:class:`~kanzoo.layers.GRKANMlp` as its ``mlp_layer``: every block computes

    x = x + Attention(LN1(x));   x = x + fc2(φ2(fc1(φ1(LN2(x)))))

where φ1, φ2 are group-rational activations (:class:`~kanzoo.layers.GroupRational`, 8 groups, a shared degree-5
numerator and per-group degree-4 denominators). φ1 starts as the identity, φ2 as a rational fit of swish
(``act_init='swish'``, every ``kat_*_patch16_224`` and ``kat_*_swish_*`` name) or GELU (``kat_*_gelu_*``).
LayerNorm eps 1e-6, qkv bias, class-token pooling, as in the reference.

The state-dict keys are the reference's (``blocks.3.mlp.act2.weight_denominator`` ...), so its six published
ImageNet-1k checkpoints load strictly without conversion:

* ``kat_{tiny,small,base}_patch16_224.in1k``: trained from scratch (``adamdad/kat_{size}_patch16_224``);
* ``kat_{tiny,small,base}_patch16_224.vitft_in1k``: initialised from AugReg ViT weights
  (``adamdad/kat_{size}_patch16_224.vitft``).

The rationals compute the reference GPU kernels' function (denominator 1 + Σ|b_j|·|x|^(j+1)), which the
checkpoints were trained with, on any device; see :mod:`kanzoo.layers.rational` and docs/compat.md.
"""
import math
from functools import partial
from typing import Any, Dict, Optional, Sequence

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn as _vit_filter_fn
from torch import nn

from ..layers.rational import GRKANMlp, GroupRational, group_rational
from ..weights import Upstream
from ._base import _cfg, build_kan_model, generate_kan_cfgs, register_variants, unwrap_checkpoint

__all__ = ["KAT", "GRKANMlp", "checkpoint_filter_fn", "rational_gain"]

PAPER_KAT = "arXiv:2409.10594"
KAT_INITS = ("kan", "mimetic", "kan_mimetic")


def rational_gain(act: GroupRational) -> float:
    """The variance-preserving gain 1/√E[F(z)²], z ~ N(0, 1), of a rational (group 0), by quadrature.

    With it, ``fc2`` weights of std gain/√fan_in keep a unit-variance input at unit variance (KAT's
    variance-preserving initialisation, section 4 of the paper).
    """
    z = torch.linspace(-12.0, 12.0, 24001, dtype=torch.float64)
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    a = act.weight_numerator.detach().double().cpu()
    b = act.weight_denominator.detach().double().cpu()[:1]
    f = group_rational(z.unsqueeze(-1), a, b, num_groups=1)[:, 0]
    second_moment = torch.trapezoid(f * f * pdf, z).item()
    return 1.0 / math.sqrt(second_moment)


def _mimetic_factors(dim: int, alpha: float, beta: float, generator: Optional[torch.Generator] = None):
    """(L, R) with L @ R = alpha·Z + beta·I, Z uniform with variance 1/dim, split evenly through the SVD."""
    bound = math.sqrt(3.0 / dim)
    z = (torch.rand(dim, dim, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * bound
    u, s, vh = torch.linalg.svd(alpha * z + beta * torch.eye(dim, dtype=torch.float64))
    root = s.sqrt()
    return u * root, root.unsqueeze(1) * vh


class KAT(VisionTransformer):
    """Kolmogorov-Arnold Transformer (Yang & Wang, arXiv 2409.10594): timm's ViT with GR-KAN channel mixers.

    Args:
        act_init: initial fit of each block's second rational (``'swish'``, ``'gelu'``, or any
            :func:`~kanzoo.layers.rational_init_modes` name); the first starts as the identity.
        rational_groups: groups of every rational (embed_dim and the hidden width must be divisible by it).
        rational_order: (numerator, denominator) degrees; the named fits are (5, 4).
        rational_kernel: ``'auto'``, ``'compiled'``, ``'eager'``, ``'formula'`` or None (process default); see
            :mod:`kanzoo.layers.rational`.
        width_scale: multiplies ``embed_dim``, rounded to a multiple of lcm(num_heads, rational_groups).
        weight_init: timm's modes (``''``, ``'jax'``, ``'moco'``, ``'reset'``, ``'skip'``) or

            * ``'kan'`` (default): timm's init, then KAT's variance-preserving init of the GR-KAN layers
              (fc1 std 1/√fan_in, fc2 std gain/√fan_in with the :func:`rational_gain` of act2) and a
              per-matrix uniform init of q, k and v;
            * ``'kan_mimetic'``: ``'kan'`` plus mimetic attention init (Trockman & Kolter, arXiv 2305.09828),
              the reference's default, drawn from torch's RNG (one SVD per head: seconds for kat_base);
            * ``'mimetic'``: timm's init plus mimetic attention init.

        Other arguments are timm's ``VisionTransformer``'s (img_size, patch_size, embed_dim, depth, num_heads,
        mlp_ratio, drop_path_rate, global_pool, in_chans, num_classes, device, dtype, ...).
    """

    def __init__(
            self,
            embed_dim: int = 768,
            num_heads: int = 12,
            mlp_ratio: float = 4.0,
            act_init: str = "swish",
            rational_groups: int = 8,
            rational_order: Sequence[int] = (5, 4),
            rational_kernel: Optional[str] = None,
            width_scale: float = 1.0,
            weight_init: str = "kan",
            **kwargs: Any,
    ):
        if "mlp_layer" in kwargs:
            raise TypeError("KAT builds its own mlp_layer (GRKANMlp); use VisionTransformer for another MLP")
        if width_scale != 1.0:
            if not width_scale > 0:
                raise ValueError(f"width_scale must be > 0, got {width_scale!r}")
            step = math.lcm(num_heads, rational_groups)
            embed_dim = max(step, int(round(embed_dim * width_scale / step)) * step)
        hidden = int(embed_dim * mlp_ratio)
        if embed_dim % rational_groups or hidden % rational_groups:
            raise ValueError(
                f"KAT needs embed_dim ({embed_dim}) and the hidden width int(embed_dim * mlp_ratio) ({hidden}) to be "
                f"divisible by rational_groups={rational_groups}; change embed_dim, mlp_ratio or rational_groups")
        kat_init = weight_init if weight_init in KAT_INITS else None
        mlp = partial(GRKANMlp, act_init=act_init, num_groups=rational_groups, order=tuple(rational_order),
                      kernel=rational_kernel)
        super().__init__(embed_dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, mlp_layer=mlp,
                         weight_init="" if kat_init else weight_init, **kwargs)
        self.act_init = act_init
        if kat_init:
            self.weight_init_mode = kat_init
            self._init_kat(kat_init)

    def init_weights(self, mode: str = "", needs_reset: bool = True) -> None:
        """timm's ``init_weights`` plus the KAT modes (see the class docstring)."""
        mode = mode or self.weight_init_mode
        if mode not in KAT_INITS:
            return super().init_weights(mode, needs_reset=needs_reset)
        saved, self.weight_init_mode = self.weight_init_mode, ""
        try:
            super().init_weights("", needs_reset=needs_reset)
        finally:
            self.weight_init_mode = saved
        self._init_kat(mode)

    @torch.jit.ignore
    def no_weight_decay(self):
        """The position embedding and class token (timm's ViT set, restricted to the parameters KAT has)."""
        names = {n for n, _ in self.named_parameters()}
        return {n for n in super().no_weight_decay() if n in names}

    @torch.no_grad()
    def _init_kat(self, mode: str) -> None:
        if self.cls_token is not None and self.cls_token.device.type == "meta":
            return
        for block in self.blocks:
            attn, mlp = block.attn, block.mlp
            if "kan" in mode:
                dim = attn.qkv.weight.shape[1]
                bound = math.sqrt(6.0 / (attn.qkv.weight.shape[0] // 3 + dim))
                nn.init.uniform_(attn.qkv.weight, -bound, bound)
                nn.init.normal_(mlp.fc1.weight, std=1.0 / math.sqrt(mlp.fc1.in_features))
                nn.init.normal_(mlp.fc2.weight, std=rational_gain(mlp.act2) / math.sqrt(mlp.fc2.in_features))
            if "mimetic" in mode:
                self._init_attn_mimetic(attn)

    @staticmethod
    def _init_attn_mimetic(attn: nn.Module, alpha_qk: float = 0.7, beta_qk: float = 0.7, alpha_vo: float = 0.4,
                           beta_vo: float = 0.4) -> None:
        """Mimetic init (arXiv 2305.09828): W_qᵀW_k ≈ α·Z + β·I per head, and W_proj·W_v ≈ α·Z − β·I."""
        w = attn.qkv.weight
        dim = w.shape[1]
        hd = dim // attn.num_heads
        for h in range(attn.num_heads):
            left, right = _mimetic_factors(dim, alpha_qk, beta_qk)
            w[h * hd:(h + 1) * hd].copy_(left[:, :hd].T)
            w[dim + h * hd:dim + (h + 1) * hd].copy_(right[:hd])
        left, right = _mimetic_factors(dim, alpha_vo, -beta_vo)
        w[2 * dim:].copy_(right)
        attn.proj.weight.copy_(left)


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: KAT) -> Dict[str, torch.Tensor]:
    """Loads KAT weights: Hub ``pytorch_model.bin`` files, kanzoo files and the reference training script's
    checkpoints (``state_dict_ema`` > ``state_dict`` > ``model``; a DDP ``module.`` prefix is removed).

    The keys are kanzoo's already; timm's ViT filter then resamples ``pos_embed`` and the patch embedding when
    ``img_size`` or ``patch_size`` differ from the checkpoint's.
    """
    state_dict = unwrap_checkpoint(state_dict)
    return _vit_filter_fn(state_dict, model)


def _create(variant: str, pretrained: bool = False, **kwargs) -> KAT:
    out_indices = kwargs.pop("out_indices", min(3, kwargs.get("depth", 12)))  # the last 3 blocks, as timm's ViTs
    return build_kan_model(KAT, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                           feature_cfg=dict(out_indices=out_indices, feature_cls="getter"), **kwargs)


_SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}
_PATCH = dict(img_size=224, patch_size=16, depth=12, mlp_ratio=4.0, qkv_bias=True)

VARIANTS: Dict[str, Dict[str, Any]] = {}
for _size, (_dim, _heads) in _SIZES.items():
    for _act, _suffix in (("swish", ""), ("gelu", "_gelu"), ("swish", "_swish")):
        VARIANTS[f"kat_{_size}{_suffix}_patch16_224"] = dict(embed_dim=_dim, num_heads=_heads, act_init=_act,
                                                             **_PATCH)


def _kat_cfg(**kwargs) -> Dict[str, Any]:
    return _cfg(pool_size=None, interpolation="bicubic", fixed_input_size=True, crop_pct=0.875,
                mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, first_conv="patch_embed.proj",
                classifier="head", paper_ids=PAPER_KAT, paper_name="Kolmogorov-Arnold Transformer",
                origin_url="https://github.com/Adamdad/kat", **kwargs)


# The six published ImageNet-1k checkpoints (KAT README; sha256 of each Hub pytorch_model.bin where seen):
# size -> {tag: (Hub repo, top-1, sha256, ViT initialisation or None)}
_PUBLISHED = {
    "tiny": {
        "in1k": ("adamdad/kat_tiny_patch16_224", 74.6,
                 "07ae82e0269dcd691813b9a35d260192db926382229925b6c12b5e8b1d23910f", None),
        "vitft_in1k": ("adamdad/kat_tiny_patch16_224.vitft", 75.7,
                       "1c3324572020e611729d69f7eee928ac7e801b96b4f77a074bff74be2686438b",
                       "ViT-Ti/16 AugReg (ImageNet-21k, then ImageNet-1k; Ti_16-i21k-300ep-lr_0.001-aug_none-"
                       "wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_224)"),
    },
    "small": {
        "in1k": ("adamdad/kat_small_patch16_224", 81.2,
                 "cc3837b2b10475322d8c85addfab7f2170a6205158c530a4d963b4695b6ca9ba", None),
        "vitft_in1k": ("adamdad/kat_small_patch16_224.vitft", 82.0,
                       "855d276ad48465822e7cfd2a7c5226992a1d6e776b07e9e87deb7736c8713819",
                       "ViT-S/16 AugReg (ImageNet-21k; S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0)"),
    },
    "base": {
        # the sha256 of this file was not recorded; downloads are checked against the Hub's LFS sha256
        "in1k": ("adamdad/kat_base_patch16_224", 82.3, None, None),
        "vitft_in1k": ("adamdad/kat_base_patch16_224.vitft", 82.8,
                       "d81629e416bb8cb0455dd62e6c9b87b77231ef3af0cd95ab5514a78c11f03160",
                       "ViT-B/16 AugReg (ImageNet-21k; B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0)"),
    },
}
_DROP_PATH = {"tiny": 0.1, "small": 0.1, "base": 0.4}

#: Hub repo -> the commit that added its pytorch_model.bin ("Add model"), abbreviated as in the public record
_WEIGHT_COMMITS = {
    "adamdad/kat_tiny_patch16_224": "46ebed4", "adamdad/kat_tiny_patch16_224.vitft": "e393609",
    "adamdad/kat_small_patch16_224": "a9dd937", "adamdad/kat_small_patch16_224.vitft": "70a4328",
    "adamdad/kat_base_patch16_224": "5d5fa31", "adamdad/kat_base_patch16_224.vitft": "5c3b905",
}


def _kat_upstream(size: str, tag: str, repo: str, sha256: Optional[str]) -> Upstream:
    commit = _WEIGHT_COMMITS[repo]
    pin = ("its sha256 pins the download" if sha256 else
           "neither a full commit id nor the file's sha256 is in the public record, so the download reads main, "
           "checked against the Hub's sha256 (ETag)")
    return Upstream(
        repo=repo, file="pytorch_model.bin", revision=commit,
        revision_note=f"the commit that added pytorch_model.bin (\"Add model\", abbreviated); {pin}",
        sha256=sha256, metrics_source="Adamdad/kat README, ImageNet-1k table (Adamdad/kat@ecb0eb7)",
        metrics_revision=(f"the file of {commit}" + (" with this sha256" if sha256 else "") +
                          "; the KAT README names no revision"),
        convert=(f"the upstream file holds kanzoo's keys: kanzoo.create_model('kat_{size}_patch16_224.{tag}', "
                 f"pretrained=True) loads it strictly; `kanzoo release` rewrites it as model.safetensors"))


def _published_cfg(size: str, tag: str, repo: str, top1: float, sha256: Optional[str], vit: Optional[str]
                   ) -> Dict[str, Any]:
    upstream = _kat_upstream(size, tag, repo, sha256)
    setup = f"initialised from {vit.split(' (')[0]} weights" if vit else "trained from scratch"
    start = (f"Initialised from the {vit} checkpoint, then trained" if vit else "Trained from scratch")
    provenance = (
        f"Published by Xingyi Yang with the KAT paper (Adamdad/kat). {start} on the 1,281,167 ImageNet-1k training "
        f"images with the kat_{size}_swish_patch16_224 entrypoint and the group-rational CUDA kernel: 300 epochs of "
        f"AdamW (lr 1e-3, weight decay 0.05, batch 1024 on 8 GPUs, cosine schedule), RandAugment rand-m9-mstd0.5, "
        f"mixup 0.8, cutmix 1.0, random erasing 0.25, label smoothing 0.1, drop-path {_DROP_PATH[size]}, model EMA "
        f"0.9999 and mixed precision (the repository's scripts/train_kat_{size}_8x128"
        f"{'_vitft' if vit else ''}.sh). The Hub repo {repo} holds timm's pytorch_model.bin (a flat float32 state "
        f"dict, read with torch.load(weights_only=True)) and config.json; its keys are kanzoo's, so it loads "
        f"strictly without conversion. The top-1 accuracy is the one the KAT README reports (ImageNet-1k val, "
        f"resize 256 bicubic, center crop 224); kanzoo has not re-measured it.")
    return _kat_cfg(
        hf_hub_id=upstream.hub_id, hf_hub_filename="pytorch_model.bin", sha256=sha256, upstream=upstream,
        license="apache-2.0",
        description=f"KAT-{size.capitalize()} ImageNet-1k checkpoint, {setup}; reported top-1 {top1}% (224², "
                    f"resize 256, crop 224)",
        notes=(f"top-1 {top1} (reported)", "reference keys, loaded strictly"),
        metrics={"top1": top1}, dataset="imagenet-1k", provenance=provenance)


default_cfgs = generate_kan_cfgs({
    **{f"kat_{size}_patch16_224.{tag}": _published_cfg(size, tag, *entry)
       for size, tags in _PUBLISHED.items() for tag, entry in tags.items()},
    **{name: _kat_cfg() for name in VARIANTS if "_gelu_" in name or "_swish_" in name},
})

register_variants(globals(), VARIANTS, _create, doc="""{name}: a Kolmogorov-Arnold Transformer ({args}).

    Yang & Wang, "Kolmogorov-Arnold Transformer", arXiv 2409.10594: timm's ViT with GR-KAN (group-rational)
    channel mixers. See kanzoo.models.kat.
    """)
