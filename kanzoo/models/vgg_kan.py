"""VGG-style KAN classifiers: the VGG-KAGN family of "Kolmogorov-Arnold Convolutions: Design Principles and
Empirical Studies" (Drokin, arXiv 2407.01092), on the VGG layout of "Very Deep Convolutional Networks for
Large-Scale Image Recognition" (Simonyan & Zisserman, arXiv 1409.1556).

Every 3×3 conv of a VGG config is a KAN conv (or a bottleneck KAN conv) with a norm and no separate
activation; 2×2 max-pools halve the map; the head is global average pooling, dropout and a linear layer (or,
with ``head_pool_size`` (h, w), an average pool to h×w flattened into the linear layer).
The ImageNet-1k checkpoints of torch-conv-kan (``brivangl/vgg_kagn11_v2``, ``vgg_kagn11_v4``,
``vgg_kagn_bn11_v4``, ``vgg_kagn_bn11sa_v4``) load as the ``tck_in1k`` tag; their keys are converted on load.
``vgg_kagn_bn11_v4_opt`` is registered as an architecture without a tag: the configuration of
``brivangl/vgg_kagn_bn11_v4_opt`` is not public, and kanzoo's is inferred (docs/compat.md).

Model names: ``vgg_{basis tag}[_bn]{depth}[sa][_v{n}][_opt]``, for example ``vgg_kagn11_v4``.

* basis tag: the KAN basis (``kagn`` Gram, ``kaln`` Legendre, ... see ``BASIS_TAGS`` in ``_base.py``);
* ``_bn``: bottleneck KAN convs (dim_reduction 8) with BatchNorm, like torch-conv-kan's ``VGGKAGN_BN``;
  without it, plain KAN convs with affine InstanceNorm (``VGGKAGN``);
* depth 11/13/16/19 and width table v1 (no suffix), v2, v3 or v4 (``CFGS``). All registered models use
  width_scale 2, degree 5 for polynomial bases, dropout 0.15 (0.05 with ``_bn``) and a 0.25 head dropout,
  the settings of the published checkpoints;
* ``sa`` after the depth: the last conv is a KAN self-attention block (``last_attention``, with
  torch-conv-kan's unscaled scores), as in ``brivangl/vgg_kagn_bn11sa_v4``;
* ``_opt``: the architecture kanzoo infers for torch-conv-kan's ``brivangl/vgg_kagn_bn11_v4_opt`` (width_scale 3
  and a head that average-pools to 3×3 and flattens, ``head_pool_size=(3, 3)``); upstream does not say what
  "opt" stands for. Inferred, not confirmed: no pretrained tag.
"""
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from timm.models._manipulate import checkpoint_seq
from torch import nn

from ..layers import BottleneckKANConv2d, KANConv2d, KANSelfAttention
from ..weights import Upstream
from ._base import (
    BASIS_TAGS,
    PAPER_TCK,
    SequentialKANClassifier,
    _cfg,
    adapt_kan_stem,
    build_kan_model,
    check_head_pool_size,
    default_basis_kwargs,
    generate_kan_cfgs,
    register_variants,
    unwrap_checkpoint,
)
from ._tck_layers import StateReader, convert_layer_state

__all__ = ["VGGKAN", "CFGS", "convert_vgg_state", "is_reference_vgg_state"]

_DEPTHS = {
    11: [16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128],
    13: [16, 16, "M", 32, 32, "M", 64, 64, "M", 128, 128, "M", 128, 128],
    16: [16, 16, "M", 32, 32, "M", 64, 64, 64, "M", 128, 128, 128, "M", 128, 128, 128],
    19: [16, 16, "M", 32, 32, "M", 64, 64, 64, 64, "M", 128, 128, 128, 128, "M", 128, 128, 128, 128],
}
_TAILS = {"": [], "v2": ["M", 128, 128], "v3": ["M", 128, 256], "v4": ["M", 256, 256]}


def _with_attention(cfg: List[Union[int, str]]) -> List[Union[int, str]]:
    # the 'sa' tables turn the last two max-pools into self-attention + max-pool
    cfg = list(cfg)
    for i in [i for i, v in enumerate(cfg) if v == "M"][-2:]:
        cfg[i] = "SAM"
    return cfg


#: VGG configs, named as in torch-conv-kan: int = 3×3 KAN conv with that many channels (times
#: ``width_scale``), 'M' = 2×2 max-pool, 'SAM' = KAN self-attention followed by a 2×2 max-pool.
CFGS: Dict[str, List[Union[int, str]]] = {}
for _d, _base in _DEPTHS.items():
    for _v, _tail in _TAILS.items():
        CFGS[f"VGG{_d}{_v}"] = _base + _tail
    CFGS[f"VGG{_d}sa"] = _with_attention(CFGS[f"VGG{_d}"])
    CFGS[f"VGG{_d}v4sa"] = _with_attention(CFGS[f"VGG{_d}v4"])


def _resolve_cfg(cfg: Union[str, Sequence[Union[int, str]]]) -> List[Union[int, str]]:
    if isinstance(cfg, str):
        if cfg not in CFGS:
            raise ValueError(f"unknown VGG config {cfg!r}; choose one of {sorted(CFGS)} or pass a list")
        return list(CFGS[cfg])
    cfg = list(cfg)
    if not cfg or isinstance(cfg[0], str):
        raise ValueError(f"a VGG config must start with a conv width, got {cfg!r}")
    for v in cfg:
        if v not in ("M", "SAM") and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
            raise ValueError(f"VGG config entries are positive ints, 'M' or 'SAM'; got {v!r} in {cfg!r}")
    return cfg


def _num_pools(cfg) -> int:
    return sum(v in ("M", "SAM") for v in _resolve_cfg(cfg))


class VGGKAN(SequentialKANClassifier):
    """A VGG of KAN convolutions (Drokin, arXiv 2407.01092; VGG: Simonyan & Zisserman, arXiv 1409.1556).

    ``features`` holds one module per entry of ``cfg`` (a 'SAM' entry holds two: attention, then max-pool),
    so ``features.{i}`` matches torch-conv-kan's layer indices. Each conv is 3×3, padding 1, stride 1,
    followed by the conv layer's norm and output activation. The head pools globally (or to ``head_pool_size``
    and flattens), applies dropout ``drop_rate`` and a linear layer (``head.fc``). The feature taps
    (``feature_info``) are the ends of the stages, before their max-pools.

    Args:
        cfg: a ``CFGS`` name (``'VGG11v4'``) or a list of widths, ``'M'`` and ``'SAM'``.
        basis: KAN basis name; ``basis_kwargs`` go to it (default degree 5 for polynomial bases).
        bottleneck: use :class:`~kanzoo.layers.BottleneckKANConv2d` (``dim_reduction``, ``min_internal``).
        width_scale: multiplies every width of ``cfg``.
        groups: channel groups of every conv but the first.
        norm_layer, norm_kwargs: norm of every conv and attention block (default affine InstanceNorm).
        dropout: channel dropout inside every conv but the first (and the attention convs).
        last_attention: replace the last conv by a self-attention block (torch-conv-kan's option).
        attn_inner_reduction: attention width C' = C // attn_inner_reduction with 1×1 projections
            (None: C' = C, no projections).
        attn_kwargs: more :class:`~kanzoo.layers.KANSelfAttention` arguments (``scale=1.0`` reproduces
            torch-conv-kan's unscaled scores).
        head_pool_size: the map the head pools the C-channel features to, torch-conv-kan's
            ``expected_feature_shape``. 1 (the default, every model but ``vgg_kagn_bn11_v4_opt``): timm's head,
            global pool ``global_pool`` then ``Linear(C → num_classes)``. An int n > 1 or a pair (h, w): a
            :class:`~kanzoo.models._base.FlattenClassifierHead`: adaptive average pool to h×w (bin i of an axis
            of length H covers [⌊iH/h⌋, ⌈(i+1)H/h⌉), overlapping when H < h), flatten channel-major
            (feature c·h·w + i·w + j), dropout, ``Linear(C·h·w → num_classes)``. Then ``num_features`` stays C
            (the channels of ``forward_features``) and ``head_hidden_size`` is C·h·w (``forward_head(x,
            pre_logits=True)`` and ``reset_classifier(0)``); ``global_pool`` may only be ``'avg'`` or ``''``
            (no pooling, with ``num_classes=0``).
        in_chans, num_classes, global_pool, drop_rate: as in timm.
    """

    def __init__(
        self,
        cfg: Union[str, Sequence[Union[int, str]]] = "VGG11v4",
        basis: str = "gram",
        basis_kwargs: Optional[Dict[str, Any]] = None,
        bottleneck: bool = False,
        width_scale: float = 2.0,
        groups: int = 1,
        norm_layer: str = "instance",
        norm_kwargs: Optional[Dict[str, Any]] = None,
        dropout: float = 0.0,
        dim_reduction: float = 8.0,
        min_internal: int = 16,
        last_attention: bool = False,
        attn_inner_reduction: Optional[int] = None,
        attn_kwargs: Optional[Dict[str, Any]] = None,
        head_pool_size: Union[int, Tuple[int, int]] = 1,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        cfg = _resolve_cfg(cfg)
        head_pool_size = check_head_pool_size(head_pool_size)
        self.in_chans = in_chans
        bkw = dict(default_basis_kwargs(basis, degree=5), **(basis_kwargs or {}))
        nkw = {"affine": True} if norm_kwargs is None else dict(norm_kwargs)
        common = dict(basis=basis, norm_layer=norm_layer, **dd, **bkw)
        if bottleneck:
            common.update(dim_reduction=dim_reduction, min_internal=min_internal)

        def conv(cin: int, cout: int, first: bool) -> nn.Module:
            layer_cls = BottleneckKANConv2d if bottleneck else KANConv2d
            extra = {} if bottleneck else {"use_base": True}
            return layer_cls(cin, cout, 3, padding=1, groups=1 if first else groups, dropout=0.0 if first else dropout,
                             norm_kwargs=dict(nkw), **extra, **common)

        def attention(c: int) -> nn.Module:
            inner = None if attn_inner_reduction is None else c // attn_inner_reduction
            extra = {} if bottleneck else {"use_base": True}
            return KANSelfAttention(c, ndim=2, kernel_size=3, conv_layer="bottleneck" if bottleneck else "kan",
                                    inner_projection=inner, norm_kwargs=dict(nkw), groups=groups, dropout=dropout,
                                    **extra, **common, **(attn_kwargs or {}))

        layers: List[nn.Module] = []
        self.feature_info: List[Dict[str, Any]] = []
        self.feature_ends: List[int] = []
        c, reduction = in_chans, 1
        for idx, v in enumerate(cfg):
            if v in ("M", "SAM"):
                if v == "SAM":
                    layers.append(attention(c))
                self._add_feature(c, reduction, len(layers) - 1)
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                reduction *= 2
            elif idx == len(cfg) - 1 and last_attention and idx > 0:
                layers.append(attention(c))
            else:
                w = max(1, int(round(v * width_scale)))
                layers.append(conv(c, w, first=idx == 0))
                c = w
        self._add_feature(c, reduction, len(layers) - 1)
        self.features = nn.Sequential(*layers)
        self._init_head(c, num_classes, global_pool, drop_rate, pool_size=head_pool_size, **dd)

    def _add_feature(self, num_chs: int, reduction: int, index: int) -> None:
        self.feature_info.append(dict(num_chs=num_chs, reduction=reduction, module=f"features.{index}"))
        self.feature_ends.append(index)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^features\.0", blocks=r"^features\.(\d+)")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.features, x)
        return self.features(x)


_REFERENCE_KEY = re.compile(r"^features\.\d+\.(module\.)?(poly_weights|beta_weights|base_conv\.|layer_norm\.|"
                            r"spline_conv\.|poly_conv\.|relukan_conv\.|inner_proj\.\d|proj_q\.)")


def is_reference_vgg_state(state_dict: Dict[str, Any]) -> bool:
    """True for a torch-conv-kan VGG state dict (its conv/classifier key names), False for kanzoo's."""
    if "head.fc.weight" in state_dict:
        return False
    return any(k.startswith("classifier.") or _REFERENCE_KEY.match(k) for k in state_dict)


def convert_vgg_reader(reader: StateReader, model: VGGKAN) -> Dict[str, torch.Tensor]:
    """Maps a torch-conv-kan VGG state (``VGGKAGN``/``VGGKAGN_BN``, read through ``reader``) to ``model``'s keys.

    The reference keeps one module per config entry in ``features`` (max-pools take an index) and a
    ``classifier = Sequential(Dropout, Linear)``, so ``features.{i}.*`` (``features.{i}.module.*`` when
    ``l1_decay > 0`` wrapped the layer) maps to ``features.{i}.*``, each layer by
    :func:`~kanzoo.models._tck_layers.convert_layer_state`, and ``classifier.1.*`` to ``head.fc.*``.
    """
    out: Dict[str, torch.Tensor] = {}
    for i, layer in enumerate(model.features):
        if isinstance(layer, nn.MaxPool2d):
            continue
        src = f"features.{i}."
        if any(k.startswith(src + "module.") for k in reader.state):
            src += "module."
        out.update(convert_layer_state(reader.sub(src), layer, f"features.{i}."))
    out["head.fc.weight"] = reader.take("classifier.1.weight")
    out["head.fc.bias"] = reader.take("classifier.1.bias")
    return out


def convert_vgg_state(state_dict: Dict[str, torch.Tensor], model: VGGKAN) -> Dict[str, torch.Tensor]:
    """Strict conversion of a whole torch-conv-kan VGG state dict: every reference key must be used."""
    reader = StateReader(dict(state_dict))
    out = convert_vgg_reader(reader, model)
    reader.finish()
    return out


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: VGGKAN) -> Dict[str, torch.Tensor]:
    """Loads kanzoo or torch-conv-kan VGG weights into ``model``'s key layout.

    Unwraps training checkpoints (``state_dict_ema``/``state_dict``/``model``), converts torch-conv-kan
    keys (``features.0.poly_weights``, ``classifier.1.weight`` ...) strictly, then adapts the stem to
    ``model.in_chans``.
    """
    state_dict = unwrap_checkpoint(state_dict)
    if is_reference_vgg_state(state_dict):
        state_dict = convert_vgg_state(state_dict, model)
    stem = model.features[0]
    if isinstance(stem, BottleneckKANConv2d):
        _adapt_bottleneck_stem(state_dict, stem, model.in_chans)
    else:
        adapt_kan_stem(state_dict, "features.0", model.in_chans)
    return state_dict


def _adapt_bottleneck_stem(state_dict, stem: BottleneckKANConv2d, in_chans: int) -> None:
    inner = state_dict.get("features.0.inner_weight")
    if inner is None or inner.shape[1] == in_chans:
        return
    if inner.shape[0] != stem.inner_channels:
        raise ValueError(
            f"cannot adapt a bottleneck stem from {inner.shape[1]} to in_chans={in_chans}: its inner width "
            f"min(min_internal, C_in, C_out) changes from {inner.shape[0]} to {stem.inner_channels}; load the "
            f"weights with in_chans={inner.shape[1]} and repeat or project the input channels instead")
    for name in ("weight", "inner_weight"):
        tmp = {"stem.weight": state_dict[f"features.0.{name}"]}
        adapt_kan_stem(tmp, "stem", in_chans)
        state_dict[f"features.0.{name}"] = tmp["stem.weight"]


def _create(variant: str, pretrained: bool = False, **kwargs) -> VGGKAN:
    n = _num_pools(kwargs.get("cfg", "VGG11v4")) + 1
    return build_kan_model(VGGKAN, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=dict(flatten_sequential=True, out_indices=tuple(range(n))), **kwargs)


def _name(tag: str, depth: int, version: str = "", bn: bool = False, sa: bool = False, opt: bool = False) -> str:
    return (f"vgg_{tag}{'_bn' if bn else ''}{depth}{'sa' if sa else ''}{'_' + version if version else ''}"
            f"{'_opt' if opt else ''}")


def _variant(tag: str, depth: int, version: str = "", bn: bool = False, sa: bool = False,
             opt: bool = False) -> Dict[str, Any]:
    args: Dict[str, Any] = dict(cfg=f"VGG{depth}{version}", basis=BASIS_TAGS[tag], width_scale=2,
                                dropout=0.05 if bn else 0.15, drop_rate=0.25)
    if bn:
        args.update(bottleneck=True, norm_layer="batch")
    if sa:  # torch-conv-kan's attention scores are not scaled by 1/sqrt(C')
        args.update(last_attention=True, attn_kwargs=dict(scale=1.0))
    if opt:  # the inferred brivangl/vgg_kagn_bn11_v4_opt: wider, and a 3×3 flatten head
        args.update(width_scale=3, head_pool_size=(3, 3))
    return args


VARIANTS: Dict[str, Dict[str, Any]] = {}
for _d in _DEPTHS:
    for _v in ("", "v2", "v3", "v4"):
        VARIANTS[_name("kagn", _d, _v)] = _variant("kagn", _d, _v)
    VARIANTS[_name("kagn", _d, "v4", bn=True)] = _variant("kagn", _d, "v4", bn=True)
VARIANTS[_name("kagn", 11, "v2", bn=True)] = _variant("kagn", 11, "v2", bn=True)
VARIANTS[_name("kagn", 11, "v4", bn=True, sa=True)] = _variant("kagn", 11, "v4", bn=True, sa=True)
VARIANTS[_name("kagn", 11, "v4", bn=True, opt=True)] = _variant("kagn", 11, "v4", bn=True, opt=True)
for _t in BASIS_TAGS:
    if _t != "kagn":
        VARIANTS[_name(_t, 11, "v4")] = _variant(_t, 11, "v4")


def _vgg_cfg(name: str, **kwargs) -> Dict[str, Any]:
    stride = 2 ** _num_pools(VARIANTS[name]["cfg"])
    # min size: the instance norms of the last stage need a map of at least 2×2
    return _cfg(pool_size=(224 // stride,) * 2, min_input_size=(3, 2 * stride, 2 * stride), first_conv="features.0",
                classifier="head.fc", paper_ids=PAPER_TCK, **kwargs)


# published ImageNet-1k checkpoints (torch-conv-kan README and reports/imagenet1k-vggs.md: ImageNet-1k val,
# Resize 256, CenterCrop 224): name -> (top-1, top-5, peak learning rate of the 200-epoch AdamW run); None where
# torch-conv-kan reports nothing (the SA checkpoint is on the Hub without a reported accuracy or recipe)
_PUBLISHED = {
    "vgg_kagn11_v2": (59.1, 82.29, 9e-4),
    "vgg_kagn11_v4": (61.17, 83.26, 9e-4),
    "vgg_kagn_bn11_v4": (68.5, 88.46, 5e-4),
    "vgg_kagn_bn11sa_v4": (None, None, None),
}

_NO_FULL_COMMIT = ("only abbreviated commits are public, so the download reads main, checked against the Hub's "
                   "sha256 (ETag); the file's own sha256 is not in the public record")
_TCK_METRICS = "torch-conv-kan README and reports/imagenet1k-vggs.md (IvanDrokin/torch-conv-kan@7a0e83c)"

#: the Hub commit each tag was checked against (configuration, key layout, model card), as the public record shows it
_REVISIONS = {
    "vgg_kagn11_v2": ("23d48b2", "the model-card commit of 2024-05-31, the only commit of this repo in the public "
                                 "record"),
    "vgg_kagn11_v4": ("a2327bf", "the commit of config.json (seen verbatim, 276 bytes), one of the three commits "
                                 "813869c, a2327bf, fb138fe of 2024-06-01"),
    "vgg_kagn_bn11_v4": ("7f5bcc9", "main as seen in the public record (6 commits; an older commit c17b7ec exists)"),
    "vgg_kagn_bn11sa_v4": (None, "no commit of this repo is in the public record (pushed around 2024-06-23)"),
}


def _tck_upstream(name: str, reported: bool) -> Upstream:
    revision, seen = _REVISIONS[name]
    return Upstream(
        repo=f"brivangl/{name}", file="model.safetensors", revision=revision,
        revision_note=f"{seen}; {_NO_FULL_COMMIT}", metrics_source=_TCK_METRICS if reported else None,
        metrics_revision=("unknown: torch-conv-kan does not say which Hub upload its accuracy table belongs to"
                          if reported else "no accuracy is published"),
        convert=(f"kanzoo.create_model('{name}.tck_in1k', pretrained=True) reads the upstream file and converts "
                 f"torch-conv-kan's keys (checkpoint_filter_fn); `kanzoo release --tags {name}.tck_in1k` writes the "
                 f"converted model.safetensors"))


def _tck_cfg(name: str, top1: Optional[float], top5: Optional[float], lr: Optional[float]) -> Dict[str, Any]:
    keys = (f"The Hub repo brivangl/{name} holds the torch-conv-kan state dict (model.safetensors); kanzoo converts "
            f"its keys on load and reproduces the reference logits.")
    upstream = _tck_upstream(name, top1 is not None)
    common = dict(hf_hub_id=upstream.hub_id, upstream=upstream, license="mit", origin_url="https://github.com/IvanDrokin/torch-conv-kan",
                  paper_name="Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies",
                  dataset="imagenet-1k")
    if top1 is None:
        return _vgg_cfg(
            name, **common, description="torch-conv-kan ImageNet-1k checkpoint (no accuracy reported upstream)",
            notes=("no reported accuracy", "torch-conv-kan keys, converted on load"),
            provenance=("Trained and published by Ivan Drokin (torch-conv-kan) on ImageNet-1k; pushed to the Hub "
                        "around 2024-06-23. torch-conv-kan's README and reports give no accuracy or recipe for this "
                        "checkpoint (commit 7a0e83c). Its architecture (VGG11v4, bottleneck Gram convs of degree 5, "
                        "BatchNorm, width 2, self-attention in place of the last conv, no inner projection) is pinned "
                        "by its parameter count as loaded strictly by a third-party project; the layer list of its "
                        "model card, which shows two 512-filter convs before the attention, does not match the "
                        "weights. " + keys))
    recipe = (f"200 epochs of AdamW (lr {lr:g}, weight decay 5e-6, 7,500 warmup steps, polynomial decay with power "
              f"0.3 to 1e-7)")
    return _vgg_cfg(
        name, **common,
        description=f"torch-conv-kan ImageNet-1k checkpoint; reported top-1 {top1}% (224², Resize 256, crop 224)",
        notes=(f"top-1 {top1}", "torch-conv-kan keys, converted on load"),
        metrics={"top1": top1, "top5": top5},
        provenance=(f"Trained and published by Ivan Drokin (torch-conv-kan) on the 1,281,167 ImageNet-1k training "
                    f"images with random resized crops to 224, horizontal flips and AutoAugment (ImageNet or CIFAR-10 "
                    f"policy); {recipe}. " + keys))


#: architectures kanzoo registers for a published checkpoint whose configuration it could only infer: no tag
_INFERRED = ("vgg_kagn_bn11_v4_opt",)

#: how to load brivangl/vgg_kagn_bn11_v4_opt, for a user who has that file (kanzoo ships no tag for it)
OPT_LOAD = ('kanzoo.create_model("vgg_kagn_bn11_v4_opt", pretrained=True, '
            'pretrained_cfg_overlay=dict(hf_hub_id="brivangl/vgg_kagn_bn11_v4_opt"))')
_OPT_NOTE = (
    "Inferred configuration, no pretrained tag. torch-conv-kan's Hub repo brivangl/vgg_kagn_bn11_v4_opt (pushed "
    "around 2024-07-02) has no public config.json. Its name gives VGGKAGN_BN (bottleneck Gram convs, BatchNorm), "
    "VGG11v4 and no attention; its model card reportedly says about 22M parameters. No VGG11v4 config with the knobs "
    "of the other published checkpoints reaches 22M, so kanzoo infers the one that changes fewest of them: degree "
    "5, width_scale 3 and a head that average-pools to 3x3 and flattens (torch-conv-kan's "
    "expected_feature_shape=(3, 3)), 22,052,563 parameters. 16 configurations of the reference lie within 21.5M to "
    "22.6M (golden tck_extra README 3.2), so this one is a guess and kanzoo ships no tag for it. Whoever has the "
    f"file loads it with {OPT_LOAD}: the load is strict, so a file of another configuration fails with the list "
    "of mismatched keys and shapes instead of loading.")


def _inferred_cfg(name: str) -> Dict[str, Any]:
    return _vgg_cfg(name, license="mit", origin_url="https://github.com/IvanDrokin/torch-conv-kan",
                    paper_name="Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies",
                    description="architecture inferred for brivangl/vgg_kagn_bn11_v4_opt; no pretrained tag",
                    notes=("configuration inferred, not confirmed: no tag", f"load the upstream file: {OPT_LOAD}"),
                    provenance=_OPT_NOTE)


default_cfgs = generate_kan_cfgs({
    **{f"{n}.tck_in1k": _tck_cfg(n, *v) for n, v in _PUBLISHED.items()},
    **{n: _inferred_cfg(n) for n in _INFERRED},
    **{n: _vgg_cfg(n) for n in VARIANTS if n not in _PUBLISHED and n not in _INFERRED},
})

register_variants(globals(), VARIANTS, _create, doc="""{name}: a VGG of KAN convolutions ({args}).

    Drokin, "Kolmogorov-Arnold Convolutions: Design Principles and Empirical Studies", arXiv 2407.01092.
    Name scheme vgg_{{basis tag}}[_bn]{{depth}}[sa][_v{{n}}][_opt]; see kanzoo.models.vgg_kan.
    """)
for _n in _INFERRED:
    globals()[_n].__doc__ += "\n    " + _OPT_NOTE + "\n"
