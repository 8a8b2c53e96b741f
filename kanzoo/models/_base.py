"""Shared pieces of kanzoo's classification models: the timm model API, configs, the builder and stem
adaptation."""
import dataclasses
import inspect
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, Union

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead
from timm.models import PretrainedCfg, build_model_with_cfg, generate_default_cfgs, model_entrypoint, register_model
from timm.models._builder import resolve_pretrained_cfg
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint
from torch import nn

from ..layers.bases import basis_tags, get_basis_class, polynomial_bases
from ..weights import Upstream, fit_state_dict, resolve_pretrained_state, unwrap_checkpoint, weight_source
from ._args import check_model_args, pool_error

#: the KAN basis behind each name tag used in model names (``vgg_kagn11``: Gram basis), from the bases' own
#: ``model_tag`` declarations
BASIS_TAGS: Dict[str, str] = basis_tags()
POLYNOMIAL_BASES = tuple(polynomial_bases())

PAPER_TCK = "arXiv:2407.01092"


def default_basis_kwargs(basis: str, degree: int = 3) -> Dict[str, Any]:
    """The basis settings kanzoo's zoo models use unless ``basis_kwargs`` says otherwise (``degree`` for a
    polynomial basis)."""
    return {"degree": degree} if get_basis_class(basis).polynomial else {}


def _cfg(url: str = "", **kwargs) -> Dict[str, Any]:
    """A timm pretrained cfg with kanzoo's defaults (ImageNet-1k, 224², bilinear, crop 0.875)."""
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem",
        "classifier": "head.fc",
        "license": "apache-2.0",
        **kwargs,
    }


#: fields kanzoo adds to timm's pretrained cfg; they stay on the cfg object and never reach
#: ``model.pretrained_cfg`` or a pushed config.json, which timm must still be able to read
KANZOO_CFG_FIELDS = ("sha256", "metrics", "dataset", "provenance", "upstream")


@dataclasses.dataclass
class KANPretrainedCfg(PretrainedCfg):
    """timm's :class:`~timm.models.PretrainedCfg` plus what kanzoo's hub and model cards need.

    Attributes:
        sha256: sha256 of the weight file; when set, downloads are checked against it instead of the Hub's ETag.
        metrics: published evaluation results, e.g. ``{"top1": 61.17, "top5": 83.26}`` (percent).
        dataset: Hub id of the training/evaluation dataset (``"imagenet-1k"``).
        provenance: where the weights come from and how they were trained, one paragraph.
        upstream: the published file the weights come from, with its revision and hash
            (:class:`~kanzoo.weights.Upstream`); set on every tag whose weights someone else published.
    """

    sha256: Optional[str] = None
    metrics: Optional[Dict[str, float]] = None
    dataset: Optional[str] = None
    provenance: Optional[str] = None
    upstream: Optional[Upstream] = None

    def to_dict(self, remove_source: bool = False, remove_null: bool = True) -> Dict[str, Any]:
        # dataclasses.asdict deep-copies values: keep an in-memory state dict out of it (no second copy of the weights)
        state_dict = self.state_dict
        d = PretrainedCfg.to_dict(dataclasses.replace(self, state_dict=None), remove_source, remove_null)
        if state_dict is not None:
            d["state_dict"] = state_dict
        for key in KANZOO_CFG_FIELDS:
            d.pop(key, None)
        return d


def generate_kan_cfgs(cfgs: Dict[str, Dict[str, Any]]):
    """timm's ``generate_default_cfgs`` over :class:`KANPretrainedCfg` entries (dicts are converted)."""
    return generate_default_cfgs({k: KANPretrainedCfg(**v) if isinstance(v, dict) else v for k, v in cfgs.items()})


def _strict_filter(family_filter: Optional[Callable], cfg: PretrainedCfg, name: str, num_classes: Optional[int],
                   source: str) -> Callable:
    """timm's ``pretrained_filter_fn`` hook, running kanzoo's loader: unwrap, convert (the family's own filter),
    fit every key (:func:`kanzoo.weights.fit_state_dict`) and load strictly. timm's own load that follows sees
    exactly the model's keys and shapes, so it cannot drop anything silently."""
    def filter_fn(state_dict: Dict[str, Any], model: nn.Module) -> Dict[str, Any]:
        state = unwrap_checkpoint(state_dict)
        if family_filter is not None:
            state = family_filter(state, model)
        replace_head = num_classes is not None and num_classes != cfg.num_classes
        state = fit_state_dict(model, state, source=source, name=name, classifier=cfg.classifier,
                               first_conv=cfg.first_conv, replace_head=replace_head)
        model.load_state_dict(state, strict=True)
        return state
    return filter_fn


def _source_name(cfg: PretrainedCfg, name: str) -> str:
    kind, where = weight_source(cfg)
    if kind == "state_dict":
        return str(cfg.file) if cfg.file else f"the state dict given for {name}"
    if kind == "hf-hub" and cfg.hf_hub_filename:
        return f"{where}/{cfg.hf_hub_filename}"
    return str(where) if where else name


def build_kan_model(model_cls: Type[nn.Module], variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """timm's ``build_model_with_cfg``, with pretrained weights fetched, verified and loaded by :mod:`kanzoo.weights`.

    The weights are resolved from the pretrained cfg (``hf-hub:`` name, ``local-dir:``, ``state_dict``, ``file``,
    ``hf_hub_id``), downloaded through ``huggingface_hub`` and hash-checked, then converted by the family's
    ``pretrained_filter_fn`` and loaded strictly: every key must fit, except a classifier the caller replaced
    by asking for another ``num_classes`` (one log line says so). ``model.pretrained_cfg`` keeps the original cfg.

    Size-like arguments (``num_classes``, ``in_chans``, ``width_scale``, depths, widths, ``img_size``, degrees,
    drop rates, ...) are checked first (:func:`~kanzoo.models._args.check_model_args`): a bad one raises a
    ValueError naming the model, the argument and the value.
    """
    check_model_args(variant, kwargs)
    try:
        return _build(model_cls, variant, pretrained, **kwargs)
    except AssertionError as e:  # timm's pooling layers assert on an unknown pool name
        error = pool_error(variant, kwargs.get("global_pool"), e)
        if error is None:
            raise
        raise error from None


def _build(model_cls: Type[nn.Module], variant: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    if not pretrained:
        return build_model_with_cfg(model_cls, variant, pretrained, **kwargs)
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.pop("pretrained_cfg", None),
                                 pretrained_cfg_overlay=kwargs.pop("pretrained_cfg_overlay", None))
    name = f"{variant}.{cfg.tag}" if cfg.tag else variant
    filter_fn = _strict_filter(kwargs.pop("pretrained_filter_fn", None), cfg, name, kwargs.get("num_classes"),
                               _source_name(cfg, name))
    state = resolve_pretrained_state(cfg, model_name=name, cache_dir=kwargs.get("cache_dir"))
    if state is None:  # a url: timm's own download (weights_only=True)
        return build_model_with_cfg(model_cls, variant, pretrained, pretrained_cfg=cfg,
                                    pretrained_filter_fn=filter_fn, **kwargs)
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    load_cfg = KANPretrainedCfg(**dict(fields, state_dict=state, source=None))
    model = build_model_with_cfg(model_cls, variant, pretrained, pretrained_cfg=load_cfg,
                                 pretrained_filter_fn=filter_fn, **kwargs)
    model.pretrained_cfg = model.default_cfg = {k: v for k, v in cfg.to_dict().items() if k != "state_dict"}
    return model


def check_head_pool_size(value: Any) -> Tuple[int, int]:
    """``head_pool_size`` as a pair (h, w): an int n >= 1 means (n, n); anything else is a ValueError."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair)):
        raise ValueError(f"head_pool_size must be an int >= 1 or a pair (h, w) of them, got {value!r}; "
                         f"1 is the global average pool, (h, w) pools to h×w and flattens")
    return int(pair[0]), int(pair[1])


def adaptive_bins(size: int, bins: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(bins, size) averaging weights: row i is 1/n on positions [⌊i·size/bins⌋, ⌈(i+1)·size/bins⌉) (n of
    them), PyTorch's adaptive-pooling bins."""
    i = torch.arange(bins, device=device)
    start = torch.div(i * size, bins, rounding_mode="floor")
    end = torch.div((i + 1) * size + bins - 1, bins, rounding_mode="floor")
    r = torch.arange(size, device=device)
    mask = ((r.unsqueeze(0) >= start.unsqueeze(1)) & (r.unsqueeze(0) < end.unsqueeze(1))).to(dtype)
    return mask / mask.sum(dim=1, keepdim=True)


class AdaptiveAvgPool2dMatmul(nn.Module):
    """``nn.AdaptiveAvgPool2d(output_size)`` as two matrix products with the bin weights of
    :func:`adaptive_bins` (p = A_h · x · A_wᵀ), so that it exports: ONNX has no adaptive pooling to an output
    size that does not divide the input (7×7 → 3×3) or over a dynamic input size."""

    def __init__(self, output_size: Tuple[int, int]):
        super().__init__()
        self.output_size = (int(output_size[0]), int(output_size[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = adaptive_bins(x.shape[-2], self.output_size[0], x.dtype, x.device)
        cols = adaptive_bins(x.shape[-1], self.output_size[1], x.dtype, x.device)
        return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class FlattenClassifierHead(nn.Module):
    """A classifier head that average-pools to a fixed h×w map and flattens it, torch-conv-kan's VGG head with
    ``expected_feature_shape=(h, w)`` (``AdaptiveAvgPool2d((h, w))``, flatten, dropout, linear).

    For features x of shape (B, C, H, W), with ``pool_type='avg'``:

    * pool: p[b, c, i, j] = mean of x[b, c, r, s] over rows r in [⌊iH/h⌋, ⌈(i+1)H/h⌉) and columns s in
      [⌊jW/w⌋, ⌈(j+1)W/w⌉) (PyTorch's adaptive bins, ``nn.AdaptiveAvgPool2d((h, w))``; they overlap when
      H < h, and the pool is the identity when H = h and W = w), computed as matrix products
      (:class:`AdaptiveAvgPool2dMatmul`) so that it exports to ONNX;
    * flatten channel-major: z[b, c·h·w + i·w + j] = p[b, c, i, j], ``num_features`` = C·h·w features;
    * logits = ``fc``(dropout(z)) with ``fc`` a Linear(C·h·w → num_classes) (an Identity for num_classes=0).

    ``pool_type`` is the model's ``global_pool``: ``'avg'`` is the pooling above; ``''`` is no pooling and no
    flattening (the unpooled map passes through, so it needs ``num_classes=0``). Other timm pool names
    (``'max'``, ``'avgmax'`` ...) are a ValueError: this head's pooling is fixed by ``pool_size``.
    """

    def __init__(self, in_features: int, num_classes: int, pool_size: Union[int, Tuple[int, int]],
                 pool_type: str = "avg", drop_rate: float = 0.0, device=None, dtype=None):
        super().__init__()
        self.in_features = in_features
        self.pool_size = check_head_pool_size(pool_size)
        self.num_features = in_features * self.pool_size[0] * self.pool_size[1]
        self.drop = nn.Dropout(drop_rate)
        self._build(num_classes, pool_type, device, dtype)

    def _build(self, num_classes: int, pool_type: str, device, dtype) -> None:
        h, w = self.pool_size
        if pool_type not in ("avg", ""):
            raise ValueError(f"global_pool={pool_type!r} does not work with head_pool_size=({h}, {w}), which "
                             f"average-pools to {h}×{w} and flattens; use global_pool='avg', or '' with "
                             f"num_classes=0 for the unpooled map, or build with head_pool_size=1 for timm's pools")
        if not pool_type and num_classes > 0:
            raise ValueError(f"global_pool='' with num_classes={num_classes}: without pooling the head has no "
                             f"fixed width to classify; use num_classes=0 with it, or global_pool='avg'")
        self.pool_type = pool_type
        self.global_pool = AdaptiveAvgPool2dMatmul((h, w)) if pool_type else nn.Identity()
        self.flatten = nn.Flatten(1) if pool_type else nn.Identity()
        self.fc = (nn.Linear(self.num_features, num_classes, device=device, dtype=dtype) if num_classes > 0
                   else nn.Identity())

    def reset(self, num_classes: int, pool_type: Optional[str] = None, device=None, dtype=None) -> None:
        """A new classifier for ``num_classes`` (0: none); keeps the train mode. ``pool_type`` None keeps the
        pooling, except that a classifier (``num_classes`` > 0) after the unpooled map (``''``) returns to
        ``'avg'``, the only pooling this head classifies with."""
        if pool_type is None:
            pool_type = self.pool_type if self.pool_type or num_classes == 0 else "avg"
        self._build(num_classes, pool_type, device, dtype)
        for m in (self.global_pool, self.flatten, self.fc):
            m.train(self.training)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(self.global_pool(x))
        x = self.drop(x)
        if pre_logits:
            return x
        return self.fc(x)


class KANClassifier(nn.Module):
    """Base of kanzoo's CNN classifiers: the head API that timm's tools and tests expect.

    Subclasses build ``self.head`` with :meth:`_init_head` and implement ``forward_features`` (unpooled
    features, ``num_features`` channels). ``forward_head`` pools, drops out and classifies;
    ``reset_classifier(0)`` gives pooled features (``head_hidden_size`` of them).
    """

    num_classes: int
    num_features: int
    head_hidden_size: int
    #: the head's pooled map: (1, 1) the global pool, (h, w) a :class:`FlattenClassifierHead`
    head_pool_size: Tuple[int, int] = (1, 1)
    grad_checkpointing: bool = False

    def _init_head(self, num_features: int, num_classes: int, global_pool: str, drop_rate: float,
                   device=None, dtype=None, pool_size: Union[int, Tuple[int, int]] = 1) -> None:
        """``pool_size`` 1 (or (1, 1)): timm's :class:`~timm.layers.ClassifierHead` (global pool ``global_pool``);
        (h, w) otherwise: a :class:`FlattenClassifierHead` (``head_hidden_size`` = ``num_features``·h·w)."""
        self.num_classes = num_classes
        self.grad_checkpointing = False  # an instance attribute, so TorchScript sees it
        self.head_pool_size = check_head_pool_size(pool_size)
        self.num_features = self.head_hidden_size = num_features
        self.drop_rate = drop_rate
        if self.head_pool_size == (1, 1):
            self.head = ClassifierHead(num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate,
                                       device=device, dtype=dtype)
        else:
            self.head = FlattenClassifierHead(num_features, num_classes, self.head_pool_size, pool_type=global_pool,
                                              drop_rate=drop_rate, device=device, dtype=dtype)
            self.head_hidden_size = self.head.num_features

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replaces the classifier (``num_classes=0``: pooled features); keeps device, dtype and train mode.

        ``global_pool`` None keeps the pooling. With a flatten head (``head_pool_size`` (h, w)) it may only be
        ``'avg'`` (pool to h×w and flatten) or ``''`` (no pooling, ``num_classes=0``), and a classifier after
        ``''`` returns to ``'avg'``; see :class:`FlattenClassifierHead`."""
        w = self.head.fc.weight if isinstance(self.head.fc, nn.Linear) else next(self.parameters())
        self.head.reset(num_classes, pool_type=global_pool, device=w.device, dtype=w.dtype)
        self.num_classes = num_classes

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class SequentialKANClassifier(KANClassifier):
    """A :class:`KANClassifier` whose body is one ``nn.Sequential`` (the attribute named by ``sequential_attr``:
    ``features`` for VGG and DenseNet, ``stages`` for SimpleConv and S-ConvKAN), with the feature taps of
    ``feature_info`` at the positions ``self.feature_ends`` of it: timm's ``forward_intermediates`` and
    ``prune_intermediate_layers`` for that layout."""

    #: the attribute holding the body
    sequential_attr: str = "features"
    #: whether ``forward_features`` checkpoints the body layer by layer (DenseNet checkpoints inside its layers)
    checkpoint_layers: bool = True
    feature_ends: List[int]

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
        """timm's intermediate-feature API over the taps of ``feature_info``.

        Args:
            indices: taps to return: None all, an int the last n, a list those (negative from the end).
            norm: accepted for timm's API; these models have no final norm.
            stop_early: stop after the last tap taken (the final tensor is then that tap).
            output_fmt: only ``'NCHW'``.
            intermediates_only: return the list of taps alone.

        Returns:
            ``(final, taps)``, ``final`` equal to ``forward_features(x)`` unless ``stop_early``; or ``taps``.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.feature_ends), indices)
        body = getattr(self, self.sequential_attr)
        end = self.feature_ends[max_index] if stop_early or intermediates_only else len(body) - 1
        checkpointing = self.grad_checkpointing and self.checkpoint_layers
        intermediates = []
        for i, layer in enumerate(body[:end + 1]):
            x = checkpoint(layer, x) if checkpointing else layer(x)
            if i in self.feature_ends and self.feature_ends.index(i) in take:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    @torch.jit.ignore
    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drops the layers after the last tap in ``indices``; the head, sized for that tap, keeps no classifier
        and no pooling (``num_classes=0``: ``forward`` then returns the tap) when layers were dropped or with
        ``prune_head``. Keeps device, dtype, train mode and gradient checkpointing. Returns the kept (absolute)
        indices, to pass to ``forward_intermediates``."""
        take, max_index = feature_take_indices(len(self.feature_ends), indices)
        end = self.feature_ends[max_index]
        body = getattr(self, self.sequential_attr)
        pruned = end < len(body) - 1
        setattr(self, self.sequential_attr, body[:end + 1])
        if pruned or prune_head:
            w = self.head.fc.weight if isinstance(self.head.fc, nn.Linear) else next(self.parameters())
            checkpointing = self.grad_checkpointing
            self._init_head(self.feature_info[max_index]["num_chs"], 0, "", self.drop_rate, device=w.device,
                            dtype=w.dtype, pool_size=self.head_pool_size)
            self.grad_checkpointing = checkpointing
            self.head.train(self.training)
        return take


def declared_task(model: nn.Module) -> Optional[str]:
    """The task a model declares: its ``task`` attribute, else a ``task=...`` note of its pretrained cfg."""
    task = getattr(model, "task", None)
    if task:
        return str(task)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    for note in cfg.get("notes") or ():
        if isinstance(note, str) and note.startswith("task="):
            return note.split("=", 1)[1].strip()
    return None


def model_task(model: nn.Module) -> str:
    """``'segmentation'``, ``'classification'`` (what a model that declares nothing is taken to be), ..."""
    return declared_task(model) or "classification"


def adapt_kan_stem(state_dict: Dict[str, torch.Tensor], key_prefix: str, in_chans: int) -> None:
    """Adapts a KAN stem's weights (``weight`` and ``basis_weight``, input channels on dim 1) to ``in_chans``.

    Same rule as timm's ``adapt_input_conv``: sum for one channel, otherwise repeat and rescale.
    Works in place on ``state_dict``; keys that are absent are left alone.
    """
    for name in ("weight", "basis_weight"):
        key = f"{key_prefix}.{name}"
        if key not in state_dict:
            continue
        w = state_dict[key]
        c = w.shape[1]
        if c == in_chans:
            continue
        if in_chans == 1:
            w = w.sum(dim=1, keepdim=True)
        else:
            reps = -(-in_chans // c)
            w = w.repeat([1, reps] + [1] * (w.dim() - 2))[:, :in_chans]
            w = w * (c / float(in_chans))
        state_dict[key] = w


def register_variants(module_globals: Dict[str, Any], variants: Dict[str, Dict[str, Any]], create_fn,
                      doc: str) -> None:
    """Registers one timm entrypoint per entry of a config table.

    ``variants`` maps a model name to the keyword arguments that define it; each entrypoint calls
    ``create_fn(name, pretrained, **dict(variant_args, **kwargs))`` and is documented with ``doc``
    formatted with the name and its arguments. Call it after ``default_cfgs`` is defined (timm reads
    the cfgs when a model is registered).
    """
    for name, model_args in variants.items():
        def entrypoint(pretrained: bool = False, _name=name, _args=model_args, **kwargs):
            return create_fn(_name, pretrained, **dict(_args, **kwargs))

        entrypoint.__name__ = entrypoint.__qualname__ = name
        entrypoint.__module__ = module_globals["__name__"]
        entrypoint.variant_args = dict(model_args)
        entrypoint.__doc__ = doc.format(name=name, args=", ".join(f"{k}={v!r}" for k, v in model_args.items()))
        module_globals[name] = register_model(entrypoint)


def architecture_defaults(name: str, model_cls: Type[nn.Module]) -> Dict[str, Any]:
    """The arguments architecture ``name`` gets when a caller passes none: ``model_cls``'s constructor defaults,
    updated by the arguments its registered variant passes (``{}`` for an architecture kanzoo did not register)."""
    variant = getattr(model_entrypoint(name), "variant_args", None)
    if variant is None:
        return {}
    params = inspect.signature(model_cls.__init__).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    return dict(defaults, **variant)
