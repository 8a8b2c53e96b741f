"""Vision-KAN: a DeiT whose block MLP is a two-layer FasterKAN (RSWAF basis), from "Vision-KAN: Exploring the
Possibility of KAN Replacing MLP in Vision Transformer" (Chen, Gundavarapu and Wu, 2024, GitHub
chenziwenhaoshuai/Vision-KAN, PyPI ``VisionKAN``; no paper), on DeiT (Touvron et al., arXiv 2012.12877).

The model is timm's ``VisionTransformer`` with ``mlp_layer=FasterKANMlp``: every block computes

    x = x + Attention(LN1(x));   x = x + KAN2(KAN1(LN2(x)))

where each KAN layer is :func:`~kanzoo.layers.fasterkan_linear` (its own LayerNorm, 8 RSWAF bumps
1 - tanh²((u - g_j)/0.33) on g = linspace(-2, 2, 8), a bias-free linear map over the C·8 basis values), widths
[C, H, C] with H the KAN hidden width (192, 384 or 768 in the released runs). No qkv bias, LayerNorm eps 1e-5 in
the blocks and 1e-6 after them, class-token pooling: the function the reference computes.

Compared with the reference code (chenziwenhaoshuai/Vision-KAN @ be29026): no dead timm MLP in each block (the
reference builds one per block and never calls it: 3.55 M unused parameters in the tiny model, dropped when its
weights are loaded), ``drop_path_rate`` works (the reference's blocks ignore it, and would fail with a NameError if
they did not), ``qkv_bias`` is an argument (the reference ignores its factory's ``qkv_bias=True``; the registered
models have none, as the released checkpoints), and ``num_heads`` reaches every block.

Released checkpoints (Vision-KAN README; none on the Hugging Face Hub): ImageNet-1k with H = 192 (Baidu Pan) and
CIFAR-100 with H = 192, 384 and 768 (Google Drive). Their tags carry the published accuracies and refuse
``pretrained=True`` with the conversion steps (``kanzoo convert --from visionkan checkpoint.pth OUT``). The
CIFAR-100 runs are mapped to the DeiT-tiny body with a wider KAN; the README's column could also mean DeiT-small/
base bodies, so that mapping is inferred (docs/compat.md).
"""
from __future__ import annotations

import re
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from ..layers import FasterKAN
from ..weights import Upstream
from ._args import scaled_vit_widths
from ._base import _cfg, build_kan_model, generate_kan_cfgs, register_variants, unwrap_checkpoint
from .mlp_kan import convert_mlpkan_state

__all__ = ["FasterKANMlp", "VisionKAN", "checkpoint_filter_fn", "convert_visionkan_state",
           "is_reference_visionkan_state", "split_dead_keys"]

PAPER_DEIT = "arXiv:2012.12877"
PAPER_KAN = "arXiv:2404.19756"
ORIGIN_URL = "https://github.com/chenziwenhaoshuai/Vision-KAN"
#: the reference commit kanzoo's golden vectors were made with (README-only changes after 2024-05-31)
REFERENCE_REVISION = "be2902606a13b01e57a813e5e1be2b8d435af879"


class FasterKANMlp(FasterKAN):
    r"""A two-layer FasterKAN [C, H, C] with timm's ``Mlp`` signature: Vision-KAN's block MLP.

    .. math:: y = \mathrm{KAN}_2(\mathrm{KAN}_1(x)),\quad
              \mathrm{KAN}_l(z)_o = \sum_{i,j} W_{o,i,j}\,\big(1 - \tanh^2((\mathrm{LN}_l(z)_i - g_j)/h)\big)

    (:class:`~kanzoo.layers.FasterKAN`: per layer a LayerNorm, the RSWAF basis, a bias-free linear map; the basis
    weight has shape ``(out, in, grid_size)``). Dropout follows timm's ``Mlp``: ``drop1`` on the hidden features,
    ``drop2`` on the output (the reference has none). ``act_layer`` and ``bias`` are accepted for timm's ``Block``
    and ignored: the basis is the nonlinearity and FasterKAN layers have no bias.

    Args:
        in_features, hidden_features, out_features: C, H (default C) and the output width (default C).
        grid_size, grid_range, denominator: the RSWAF basis (FasterKAN: 8 centres on [-2, 2], width 0.33).

    Shape:
        - Input: (\*, C); output (\*, out_features).

    Examples::
        >>> FasterKANMlp(16, 24)(torch.randn(2, 5, 16)).shape
        torch.Size([2, 5, 16])
    """

    def __init__(self, in_features: int, hidden_features: Optional[int] = None, out_features: Optional[int] = None,
                 act_layer=None, norm_layer=None, bias=True, drop=0.0, use_conv: bool = False, grid_size: int = 8,
                 grid_range: Sequence[float] = (-2.0, 2.0), denominator: float = 0.33, device=None, dtype=None):
        if use_conv:
            raise ValueError("FasterKANMlp works on channels-last tokens; use_conv=True is not supported (apply it to "
                             "x.permute(0, 2, 3, 1) instead)")
        if norm_layer is not None:
            raise ValueError(f"FasterKANMlp has no hidden norm layer (got norm_layer={norm_layer!r}, timm's "
                             f"scale_mlp_norm): the second KAN layer already normalises the hidden features; build "
                             f"the ViT with scale_mlp_norm=False")
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        super().__init__([in_features, hidden_features, out_features], grid_size=grid_size, grid_range=grid_range,
                         denominator=denominator, device=device, dtype=dtype)
        drop = drop if isinstance(drop, (tuple, list)) else (drop, drop)
        self.drop1 = nn.Dropout(drop[0])
        self.drop2 = nn.Dropout(drop[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.layers[0](x))
        return self.drop2(self.layers[1](x))


def _block_fn(block_norm_eps: float):
    """timm ``Block`` with its own LayerNorm epsilon (Vision-KAN's blocks use 1e-5, its final norm 1e-6)."""
    def make(**kwargs):
        kwargs["norm_layer"] = partial(nn.LayerNorm, eps=block_norm_eps)
        return Block(**kwargs)
    return make


def _mlp_fn(kan_hidden: int, kan_kwargs: Dict[str, Any]):
    """``mlp_layer`` building a :class:`FasterKANMlp` of hidden width ``kan_hidden`` exactly (timm's ``Block``
    passes ``int(dim * mlp_ratio)``, which float rounding can put one below)."""
    def make(in_features: int, hidden_features: Optional[int] = None, **kwargs):
        return FasterKANMlp(in_features, kan_hidden, **kwargs, **kan_kwargs)
    return make


class VisionKAN(VisionTransformer):
    r"""Vision-KAN: a DeiT whose block MLPs are two-layer FasterKANs [C, H, C] (:class:`FasterKANMlp`).

    Everything but the MLP is timm's :class:`~timm.models.vision_transformer.VisionTransformer` (class token,
    learned position embedding, pre-norm blocks, token pooling, ``forward_features``/``forward_head``,
    ``forward_intermediates``, gradient checkpointing).

    Args:
        img_size, patch_size, in_chans, num_classes, global_pool, embed_dim, depth, num_heads: as in timm's ViT.
        kan_hidden: hidden width H of each block's FasterKAN (the reference's ``hdim_kan``; 192 by default).
        qkv_bias: bias on the qkv projection (False: the reference's blocks have none, whatever it is told).
        kan_kwargs: the RSWAF basis (``grid_size=8``, ``grid_range=(-2, 2)``, ``denominator=0.33``).
        block_norm_eps, norm_eps: LayerNorm epsilons in the blocks (1e-5) and after them (1e-6), as the reference.
        width_scale: multiplies ``embed_dim`` (rounded to a multiple of ``num_heads``) and ``kan_hidden``; for
            tests and light models.
        drop_rate, pos_drop_rate, proj_drop_rate, attn_drop_rate, drop_path_rate, weight_init: as in timm
            (``drop_path_rate`` works here; the reference ignores it).
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
        kan_hidden: int = 192,
        qkv_bias: bool = False,
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
        kan_kwargs = dict(kan_kwargs or {})
        unknown = sorted(set(kan_kwargs) - {"grid_size", "grid_range", "denominator"})
        if unknown:
            raise ValueError(f"unknown kan_kwargs {unknown}; the FasterKAN basis takes grid_size, grid_range and "
                             f"denominator")
        embed_dim, kan_hidden = scaled_vit_widths(embed_dim, num_heads, width_scale, "kan_hidden", kan_hidden)
        super().__init__(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=num_classes,
            global_pool=global_pool, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            mlp_ratio=kan_hidden / embed_dim, qkv_bias=qkv_bias, drop_rate=drop_rate, pos_drop_rate=pos_drop_rate,
            proj_drop_rate=proj_drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
            weight_init=weight_init, norm_layer=partial(nn.LayerNorm, eps=norm_eps),
            block_fn=_block_fn(block_norm_eps), mlp_layer=_mlp_fn(kan_hidden, kan_kwargs), device=device,
            dtype=dtype)
        self.kan_hidden = kan_hidden

    @torch.jit.ignore
    def no_weight_decay(self):
        return {"pos_embed", "cls_token"}


# ----------------------------------------------------------------------------------------- reference weights
#: a reference block's timm MLP keys: dead where the block also has a FasterKAN ``kan``
_DEAD = re.compile(r"^(?P<prefix>(?:.*\.)?)mlp\.fc[12]\.(?:weight|bias)$")
#: a reference FasterKAN layer's spline weights (``blocks.3.kan.layers.1.spline_linear.weight``)
_KAN_LAYER = re.compile(r"(?:^|\.)kan\.layers\.\d+\.spline_linear\.weight$")


def split_dead_keys(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Separates the reference's dead per-block timm MLP (``{block}.mlp.fc1/fc2.weight/bias``, where the block
    also has ``{block}.kan.layers.0.spline_linear.weight``) from the rest; returns ``(live state, dead keys)``."""
    live: Dict[str, torch.Tensor] = {}
    dead: List[str] = []
    for key, value in state.items():
        m = _DEAD.match(key)
        if m and f"{m.group('prefix')}kan.layers.0.spline_linear.weight" in state:
            dead.append(key)
        else:
            live[key] = value
    return live, dead


def is_reference_visionkan_state(state: Dict[str, Any]) -> bool:
    """True for reference-keyed Vision-KAN weights: FasterKAN block MLPs under ``kan.layers.N`` (MLP-KAN's
    reference keeps its FasterKANs under ``kan.experts.N`` beside a ``kan.gate``)."""
    return any(_KAN_LAYER.search(k) for k in state) and not any(".kan.gate." in k or k.startswith("kan.gate.")
                                                                 for k in state)


def convert_visionkan_state(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Reference (chenziwenhaoshuai/Vision-KAN) keys -> kanzoo keys. Returns ``(converted state, dropped keys)``.

    The dead per-block timm MLP is dropped (:func:`split_dead_keys`); then, as for MLP-KAN (whose reference shares
    Vision-KAN's ``fasterkan.py``), ``kan.*`` -> ``mlp.*`` and in each FasterKAN layer ``layernorm.*`` ->
    ``basis_norm.*``, ``rbf.grid`` -> ``basis.grid`` and ``spline_linear.weight`` (out, in·G) -> ``basis_weight``
    (out, in, G). Every other key is kept.
    """
    live, dead = split_dead_keys(state)
    converted, _ = convert_mlpkan_state(live)
    return converted, dead


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: VisionKAN) -> Dict[str, torch.Tensor]:
    """Loads kanzoo or reference (chenziwenhaoshuai/Vision-KAN) weights: unwraps training checkpoints (the
    reference's ``checkpoint.pth`` keeps them in ``model``), converts reference keys
    (:func:`convert_visionkan_state`: drops the dead per-block MLPs, ``kan.*`` -> ``mlp.*``) and gives a model
    built with ``qkv_bias=True`` zeros where the checkpoint has none (the same function)."""
    state_dict = unwrap_checkpoint(state_dict)
    if is_reference_visionkan_state(state_dict):
        state_dict = convert_visionkan_state(state_dict)[0]
    for key, value in model.state_dict().items():
        if key.endswith("attn.qkv.bias") and key not in state_dict and key[:-4] + "weight" in state_dict:
            state_dict[key] = torch.zeros_like(value, device="cpu")
    return state_dict


def _create(variant: str, pretrained: bool = False, **kwargs) -> VisionKAN:
    out_indices = kwargs.pop("out_indices", min(3, kwargs.get("depth", 12)))  # the last 3 blocks, as timm's ViTs
    return build_kan_model(VisionKAN, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                           feature_cfg=dict(out_indices=out_indices, feature_cls="getter"), **kwargs)


# ----------------------------------------------------------------------------------------------- variants
def _visionkan_cfg(**kwargs) -> Dict[str, Any]:
    return _cfg(**dict(dict(
        pool_size=None, fixed_input_size=True, crop_pct=0.875, interpolation="bicubic", mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD, first_conv="patch_embed.proj", classifier="head", license="mit",
        origin_url=ORIGIN_URL, paper_ids=(PAPER_DEIT, PAPER_KAN),
        paper_name="DeiT and KAN, which Vision-KAN builds on; Vision-KAN itself is a GitHub project without a paper"),
        **kwargs))


_TINY = dict(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3)

VARIANTS: Dict[str, Dict[str, Any]] = {
    "vision_kan_tiny_patch16_224": dict(_TINY, kan_hidden=192),
    "vision_kan_tiny_h384_patch16_224": dict(_TINY, kan_hidden=384),
    "vision_kan_tiny_h768_patch16_224": dict(_TINY, kan_hidden=768),
}

# The Vision-KAN authors' released checkpoints (README of chenziwenhaoshuai/Vision-KAN @ be29026, "Vision-KAN
# Models"): arch -> {tag: (dataset, classes, top-1, top-5, epochs, host, link)}. None is on the Hub: the tags carry
# the published numbers for the model cards and refuse pretrained=True with the conversion steps until converted
# weights are on the Hub (``kanzoo convert --from visionkan checkpoint.pth OUT --tag TAG``).
_RELEASED = {
    "vision_kan_tiny_patch16_224": {
        "in1k": ("imagenet-1k", 1000, 64.87, 86.14, "346 (stopped)", "baidu-pan",
                 "https://pan.baidu.com/s/117ox7oh6zzXLwPMmQ6od1Q?pwd=y1vw"),
        "cifar100": ("uoft-cs/cifar100", 100, 73.17, 93.307, "300 (stopped)", "google-drive",
                     "https://drive.google.com/drive/folders/19WPq6bZ9NgX-WxD7qXSTKiHc5D6P8jQP"),
    },
    "vision_kan_tiny_h384_patch16_224": {
        "cifar100": ("uoft-cs/cifar100", 100, 78.69, 94.73, "300 (stopped)", "google-drive",
                     "https://drive.google.com/drive/folders/1Uhj4yV0HZRQkPFUerxy88B19N1eDdgsc"),
    },
    "vision_kan_tiny_h768_patch16_224": {
        "cifar100": ("uoft-cs/cifar100", 100, 79.82, 95.42, "300 (stopped)", "google-drive",
                     "https://drive.google.com/drive/folders/1FT55_6tDO_a135sQKBDn409fDdXvCi4N"),
    },
}
_HOSTS = {"baidu-pan": "Baidu Pan", "google-drive": "Google Drive"}


def _released_upstream(tag: str, host: str, link: str) -> Upstream:
    return Upstream(
        repo=ORIGIN_URL, host=host, file=f"{link} (a main.py training checkpoint; file name and size not published)",
        revision=REFERENCE_REVISION[:7],  # the repository commit: it does not pin the shared file
        revision_note=("the Vision-KAN commit whose README links the checkpoint and whose models_kan.py/fasterkan.py "
                       "kanzoo reproduces (golden vectors); the shared files have no revision and their sha256 is "
                       "not published, so a converted copy records the hash of the file it was made from"),
        metrics_source=(f"Vision-KAN README, 'Vision-KAN Models' table "
                        f"(chenziwenhaoshuai/Vision-KAN@{REFERENCE_REVISION[:7]})"),
        metrics_revision="the released checkpoint: the README calls it the best checkpoint (main.py's "
                         "best_checkpoint.pth: the epoch with the best top-1 of its `model` weights, not the EMA)",
        convert=(f"kanzoo convert --from visionkan checkpoint.pth {tag}/ --tag {tag} (reads the `model` entry "
                 f"safely; every tensor used except the blocks' dead mlp.fc1/fc2)"))


def _released_cfg(arch: str, tag: str, dataset: str, classes: int, top1: float, top5: float, epochs: str,
                  host: str, link: str) -> Dict[str, Any]:
    hidden = VARIANTS[arch]["kan_hidden"]
    name = "ImageNet-1k" if dataset == "imagenet-1k" else "CIFAR-100"
    body = ("DeiT-tiny body (embed 192, 12 blocks, 3 heads, patch 16, 224² input) confirmed by the README and the "
            "code" if tag == "in1k" else
            "DeiT-tiny body inferred: the README's 'KAN Hidden Dim' column could also mean DeiT-small/base bodies, "
            "and the run predates the code's hdim_kan argument; kanzoo maps it to DeiT-tiny with a wider KAN")
    provenance = (
        f"Trained and released by the Vision-KAN authors (chenziwenhaoshuai/Vision-KAN, MIT licence) on {name}: "
        f"KAN hidden width {hidden}, {epochs} epochs with the repository's DeiT training script (main.py, 224² "
        f"inputs, EMA on); {body}. The reported top-1 {top1} / top-5 {top5} are the README's (validation set "
        f"resized to 224 bicubic and center-cropped to 224: main.py's eval_crop_ratio 1), not re-measured by kanzoo; "
        f"main.py saves the `model` (not the EMA) weights of the epoch with the best top-1 as best_checkpoint.pth. "
        f"The checkpoint ({_HOSTS[host]}: {link}) is a "
        f"torch.save training checkpoint (model, model_ema, optimizer, args, ...); `kanzoo convert --from visionkan "
        f"checkpoint.pth OUT --tag {tag}` reads its `model` entry safely, drops the dead per-block MLPs and writes "
        f"the kanzoo layout. Upstream repo {ORIGIN_URL}, revision {REFERENCE_REVISION} (the code kanzoo was checked "
        f"against), file sha256 unknown (not downloaded). Its weights are not on the Hub yet.")
    return _visionkan_cfg(
        num_classes=classes, crop_pct=1.0, metrics={"top1": top1, "top5": top5}, dataset=dataset,
        upstream=_released_upstream(tag, host, link),
        description=f"Vision-KAN (DeiT-tiny, KAN hidden {hidden}) {name} checkpoint of the Vision-KAN authors; "
                    f"reported top-1 {top1}%, top-5 {top5}% (224², resize 224, crop 224)",
        notes=(f"top-1 {top1} / top-5 {top5} (reported, Vision-KAN README)", f"weights: {_HOSTS[host]} ({link})",
               f"upstream revision {REFERENCE_REVISION}", "sha256 unknown") +
              (("tiny-body mapping inferred",) if tag != "in1k" else ()),
        provenance=provenance)


default_cfgs = generate_kan_cfgs({
    **{arch: _visionkan_cfg() for arch in VARIANTS},  # untagged first: the default cfg of each name
    **{f"{arch}.{tag}": _released_cfg(arch, tag, *entry) for arch, tags in _RELEASED.items()
       for tag, entry in tags.items()},
})

register_variants(globals(), VARIANTS, _create, doc="""{name}: Vision-KAN, a DeiT with FasterKAN block MLPs ({args}).

    Each block's MLP is a two-layer FasterKAN [192, kan_hidden, 192] (RSWAF basis). Chen et al., "Vision-KAN:
    Exploring the Possibility of KAN Replacing MLP in Vision Transformer" (GitHub, 2024). See
    kanzoo.models.vision_kan.
    """)
