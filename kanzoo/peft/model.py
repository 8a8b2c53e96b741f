"""``PeftModel``: a model with basis-coefficient adapters; save, load and merge them.

The model is adapted in place (as with the peft library): each targeted KAN layer is replaced by a
:class:`~kanzoo.peft.layers.BasisAdapterLayer` holding it (a :class:`~kanzoo.peft.layers.RationalAdapterLayer`
for each group-rational activation of a KAT). ``save_pretrained`` writes
``adapter_config.json`` and ``adapter_model.safetensors`` (adapter tensors, plus whatever the config trains
whole: ``modules_to_save``, ``train_base`` and ``train_norm`` tensors), with peft's key prefix
``base_model.model.`` and the original model's key names.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import warnings
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from .._version import __version__
from ..io import atomic_write, write_json
from ..layers.rational import GroupRational
from ..weights import load_state_file
from .bases import get_basis_rule
from .config import CONFIG_NAME, TYPE_PREFIX, WEIGHTS_NAME, BasisAdapterConfig
from .layers import (
    BASE_PARAM_NAMES,
    BasisAdapterLayer,
    adapter_layer_kind,
    layer_signature,
    make_adapter_layer,
    rational_order,
    unsupported_reason,
)

__all__ = ["PeftModel", "get_peft_model", "load_adapter", "get_peft_model_state_dict", "set_peft_model_state_dict"]

#: key prefix of every tensor in adapter_model.safetensors (peft's convention)
KEY_PREFIX = "base_model.model."
_WRAPPER_CHILD = "base_layer"
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _inside(name: str, parents) -> bool:
    """True if module ``name`` is one of ``parents`` or nested in one."""
    return any(p == "" or name == p or name.startswith(p + ".") for p in parents)


def _matches(name: str, module: nn.Module, spec) -> bool:
    if spec is None:
        return False
    if isinstance(spec, str):
        return re.fullmatch(spec, name) is not None
    for entry in spec:
        if entry.startswith(TYPE_PREFIX):
            if any(c.__name__ == entry[len(TYPE_PREFIX):] for c in type(module).__mro__):
                return True
        elif name == entry or name.endswith("." + entry):
            return True
    return False


def model_name(model: nn.Module) -> Optional[str]:
    """The timm name of a model built by timm's factory (``'arch.tag'``), or None."""
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, dict) or not cfg.get("architecture"):
        return None
    return cfg["architecture"] + (f".{cfg['tag']}" if cfg.get("tag") else "")


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


def _layer_record(layer: BasisAdapterLayer) -> Dict[str, Any]:
    return layer.record()


class _Plan:
    """What one targeted layer gets: its trainable degrees, extra degrees and rank (checked)."""

    def __init__(self, name: str, layer: nn.Module, config: BasisAdapterConfig):
        self.name = name
        self.rational = adapter_layer_kind(layer) is GroupRational
        if self.rational:
            self._plan_rational(name, layer, config)
            return
        where = f"layer {name or '<root>'!r} ({type(layer).__name__}"
        rule = get_basis_rule(layer.basis)
        self.extra = config.extra_degrees
        self.rank = config.rank
        n = int(layer.num_basis)
        where += f", {rule.name} basis" + (f" of degree {n - 1})" if rule.polynomial else f" with {n} grid functions)")
        if config.trainable_degrees == "all":
            self.degrees = list(range(n))
        else:
            self.degrees = list(config.trainable_degrees)
            bad = [d for d in self.degrees if d >= n]
            if bad:
                what = (f"degrees 0..{n - 1}" if rule.polynomial else f"grid function indices 0..{n - 1}")
                hint = (f"; the extra degrees {n}.. come from extra_degrees and are always trained"
                        if rule.polynomial else "")
                raise ValueError(f"trainable_degrees={list(config.trainable_degrees)} contains {bad}, out of range "
                                 f"for {where}: it has {what}{hint}")
        if self.extra and not rule.polynomial:
            raise ValueError(f"extra_degrees={self.extra} cannot apply to {where}: B-spline and RBF layers have a "
                             f"fixed grid and adapt their coefficients only; set extra_degrees=0 or exclude the layer "
                             f"with exclude_modules=[{name!r}]")
        w = layer.basis_weight
        k = 1
        for s in w.shape[3:]:
            k *= int(s)
        for what, count in (("trainable-degree delta", len(self.degrees)), ("extra-degree coefficients", self.extra)):
            if self.rank is None or count == 0:
                continue
            cols = int(w.shape[1]) * count * k
            limit = min(int(w.shape[0]), cols)
            if self.rank > limit:
                raise ValueError(
                    f"rank={self.rank} is larger than the {what} of {where} allows: that tensor is a "
                    f"{int(w.shape[0])}x{cols} matrix (out x in/groups*{count}*kernel), so rank <= {limit}; lower "
                    f"rank or leave the layer out with exclude_modules=[{name!r}]")

    def _plan_rational(self, name: str, layer: nn.Module, config: BasisAdapterConfig) -> None:
        """A GroupRational: trainable degrees are powers of x; no extra degrees; no rank (full deltas)."""
        m, n = rational_order(layer)
        top = max(m, n)
        groups = int(layer.weight_denominator.shape[0])
        where = f"layer {name or '<root>'!r} ({type(layer).__name__} of order ({m}, {n}))"
        if config.trainable_degrees == "all":
            self.degrees = list(range(top + 1))
        else:
            self.degrees = list(config.trainable_degrees)
            bad = [d for d in self.degrees if d > top]
            if bad:
                raise ValueError(
                    f"trainable_degrees={list(config.trainable_degrees)} contains {bad}, out of range for {where}: "
                    f"a rational's degrees are the powers of x 0..{top} (degree d trains the numerator's a_d for "
                    f"d <= {m} and the denominator's b_(d-1), the coefficient of |x|^d, for 1 <= d <= {n}); lower "
                    f"them or leave the rationals out with exclude_modules=['type:GroupRational']")
        if config.extra_degrees:
            raise ValueError(
                f"extra_degrees={config.extra_degrees} is not supported for {where}: raising a rational's order "
                f"would change the shapes of weight_numerator/weight_denominator, so the merged model would lose "
                f"the KAT checkpoint layout and could not be rebuilt by name (the named rational fits exist for "
                f"order (5, 4) only). Use extra_degrees=0 (trainable_degrees adapts the existing coefficients), "
                f"or leave the rationals out with exclude_modules=['type:GroupRational']")
        if config.rank is not None and config.target_modules is not None:
            raise ValueError(
                f"rank={config.rank} does not apply to {where}, which target_modules names: its coefficients are "
                f"a (1, {m + 1}) numerator and a ({groups}, {n}) denominator, adapted by full deltas; set "
                f"rank=None, or leave the rationals out of target_modules (rank then applies to the KAN layers)")
        self.extra = 0
        self.rank = None      # the default targeting gives rationals full deltas, whatever rank the KAN layers get


class PeftModel(nn.Module):
    """A model whose KAN layers carry basis-coefficient adapters (see :class:`BasisAdapterConfig`).

    Build it with :func:`get_peft_model` or :meth:`from_pretrained`. The wrapped model is
    ``self.base_model``; calls and unknown attributes go to it. The model passed in is modified in place.

    Norm policy: unless ``train_norm``, every norm is frozen and every norm with running statistics
    (BatchNorm) stays in eval mode under ``train()``, so training the adapter never changes the base
    model's buffers; with ``train_norm`` the norms train and are saved whole in the adapter file.
    """

    def __init__(self, model: nn.Module, config: BasisAdapterConfig,
                 _expected_layers: Optional[Dict[str, Any]] = None):
        super().__init__()
        if not isinstance(config, BasisAdapterConfig):
            raise TypeError(f"config must be a BasisAdapterConfig, got {type(config).__name__}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if isinstance(model, (PeftModel, BasisAdapterLayer)) or any(
                isinstance(m, BasisAdapterLayer) for m in model.modules()):
            raise ValueError("this model already carries basis adapters; merge_and_unload() or unload() it first")
        config = BasisAdapterConfig.from_dict(config.to_dict())   # a copy: the name below is this model's
        name = model_name(model)
        if config.base_model_name_or_path is None and name is not None:
            config.base_model_name_or_path = name

        # everything that can fail is checked before the model is touched
        saved = self._resolve_saved(model, config, check_only=True)
        targets, plans = self._plan(model, config, saved, _expected_layers)
        if config.num_classes is not None:
            if not hasattr(model, "reset_classifier"):
                raise ValueError(f"num_classes={config.num_classes} needs a model with reset_classifier(); "
                                 f"{type(model).__name__} has none: replace the classifier yourself and list it "
                                 f"in modules_to_save")
            if getattr(model, "num_classes", None) != config.num_classes:
                model.reset_classifier(config.num_classes)
        saved = self._resolve_saved(model, config)
        targets, plans = self._plan(model, config, saved, _expected_layers)

        self.peft_config = config
        self._saved_modules: List[str] = saved
        self._merged = False
        wrapped = model
        for plan in plans:
            layer = make_adapter_layer(targets[plan.name], plan.degrees, plan.extra, plan.rank)
            if plan.name == "":
                wrapped = layer
            else:
                _set_module(model, plan.name, layer)
        self.base_model = wrapped
        self._wrapper_names = [p.name for p in plans]
        self._whole_keys = self._collect_whole_keys()
        self._set_trainable(not config.inference_mode)
        self.train(wrapped.training)

    # -- targeting ------------------------------------------------------------------------------------------
    def _plan(self, model: nn.Module, config: BasisAdapterConfig, saved: List[str],
              expected: Optional[Dict[str, Any]]) -> Tuple["OrderedDict[str, nn.Module]", List[_Plan]]:
        """The target layers and their checked plans; raises on any configuration error."""
        targets = self._resolve_targets(model, config, saved)
        if expected is not None:
            self._check_expected(model, targets, expected)
        plans = [_Plan(n, m, config) for n, m in targets.items()]
        if all(p.rational for p in plans):
            what = (f"every targeted layer is a GroupRational ({len(plans)} of them), whose coefficients get full "
                    f"deltas")
            if config.rank is not None:
                raise ValueError(f"rank={config.rank} would have no effect: {what}; set rank=None")
            if config.train_base:
                raise ValueError(f"train_base=True would have no effect: {what} and which have no base-branch "
                                 f"weights; to train KAT's GR-KAN linears as well, list them in modules_to_save "
                                 f"(e.g. modules_to_save=['fc1', 'fc2'])")
        if config.extra_degrees:
            self._check_rebuildable(model, targets)
        return targets, plans

    @staticmethod
    def _resolve_saved(model: nn.Module, config: BasisAdapterConfig, check_only: bool = False) -> List[str]:
        names = list(config.modules_to_save or [])
        if config.num_classes is not None and "classifier" not in names:
            names.append("classifier")
        modules = dict(model.named_modules())
        out: List[str] = []
        for entry in names:
            if entry == "classifier":
                if not hasattr(model, "get_classifier"):
                    raise ValueError(f"modules_to_save names 'classifier', but {type(model).__name__} has no "
                                     f"get_classifier(); give the classifier's module name instead")
                if check_only:
                    continue
                clf = model.get_classifier()
                found = [n for n, m in modules.items() if m is clf and n]
                if not found:
                    raise ValueError(f"the classifier {type(clf).__name__} is not a submodule of the model; "
                                     f"name the module to save in modules_to_save")
            else:
                found = [n for n in modules if n and (n == entry or n.endswith("." + entry))]
                if not found:
                    near = [n for n in modules if n and entry.split(".")[-1] in n][:8]
                    raise ValueError(f"modules_to_save entry {entry!r} matches no module of {type(model).__name__}"
                                     + (f"; similar names: {near}" if near else ""))
            out.extend(n for n in found if n not in out)
        return out

    @staticmethod
    def _resolve_targets(model: nn.Module, config: BasisAdapterConfig,
                         saved: List[str]) -> "OrderedDict[str, nn.Module]":
        spec = config.target_modules
        targets: "OrderedDict[str, nn.Module]" = OrderedDict()
        explicit: List[Tuple[str, nn.Module]] = []
        excluded: List[str] = []
        for name, module in model.named_modules():
            if _inside(name, excluded) or _matches(name, module, config.exclude_modules):
                excluded.append(name)   # with everything inside it
                continue
            if any(_inside(name, [t]) for t in targets if t != name):
                continue  # inside a layer already targeted (its basis, norm, ...)
            if spec is None:
                if adapter_layer_kind(module) is None or unsupported_reason(module) is not None:
                    continue
                if _inside(name, saved):
                    continue
                targets[name] = module
            elif _matches(name, module, spec):
                explicit.append((name, module))
                if adapter_layer_kind(module) is not None:
                    targets[name] = module
        if spec is not None:
            for name, module in explicit:
                if name in targets:
                    reason = unsupported_reason(module)
                    if reason is not None:
                        raise ValueError(f"target_modules matches {name!r}, which cannot take an adapter: {reason}")
                    if _inside(name, saved):
                        raise ValueError(f"{name!r} is both a target and (inside) a module in modules_to_save; "
                                         f"a module is either adapted or saved whole")
                elif not any(_inside(name, [t]) for t in targets):
                    raise ValueError(f"target_modules matches {name!r}, a {type(module).__name__}, which is not a KAN "
                                     f"layer or GroupRational; make the pattern match those only (e.g. a list of "
                                     f"their names)")
        if not targets:
            kan = [n for n, m in model.named_modules() if adapter_layer_kind(m) is not None]
            skipped = {n: unsupported_reason(m) for n, m in model.named_modules()
                       if adapter_layer_kind(m) is not None and unsupported_reason(m) is not None}
            msg = f"target_modules={spec!r} matches no KAN layer this adapter can handle in {type(model).__name__}"
            if config.exclude_modules is not None:
                msg += f" (exclude_modules={config.exclude_modules!r})"
            msg += f"; its KAN layers: {kan[:10]}" if kan else "; the model has no KAN layers"
            if skipped:
                msg += f"; unsupported: {dict(list(skipped.items())[:5])}"
            raise ValueError(msg)
        return targets

    @staticmethod
    def _check_expected(model: nn.Module, targets: Dict[str, nn.Module], expected: Dict[str, Any]) -> None:
        """Fails with a clear message when an adapter file's layers do not fit ``model``."""
        arch = model_name(model) or type(model).__name__
        missing = sorted(set(expected) - set(targets))
        extra = sorted(set(targets) - set(expected))
        if missing or extra:
            parts = ([f"it adapts layers {missing[:8]} that {arch} lacks"] if missing else []) + (
                [f"{arch} has KAN layers it does not cover: {extra[:8]}"] if extra else [])
            raise ValueError("this adapter was saved for a different architecture: " + "; ".join(parts))
        for name, rec in expected.items():
            have = layer_signature(targets[name])
            want = {k: rec.get(k) for k in have}
            if have != want:
                raise ValueError(f"this adapter was saved for a different architecture: layer {name!r} was {want} "
                                 f"when saved, but in {arch} it is {have}")

    @staticmethod
    def _check_rebuildable(model: nn.Module, targets: Dict[str, nn.Module]) -> None:
        """A zoo model sets one degree for all its KAN layers (``basis_kwargs``): raising it must raise all."""
        if model_name(model) is None:
            return
        arch = model_name(model)
        untargeted = [n for n, m in model.named_modules()
                      if n not in targets and isinstance(getattr(m, "basis", None), nn.Module)
                      and hasattr(m, "basis_weight") and getattr(get_basis_rule(m.basis), "polynomial", False)]
        if untargeted:
            raise ValueError(f"extra_degrees raises the degree of the targeted layers only, but {arch} takes one "
                             f"degree for all its KAN layers (basis_kwargs), so a merged model could not be rebuilt "
                             f"by name. Not targeted: {untargeted[:8]}; target every KAN layer (target_modules=None) "
                             f"or use extra_degrees=0")
        degrees = {int(m.basis.degree) for m in targets.values() if hasattr(m.basis, "degree")}
        if len(degrees) > 1:
            raise ValueError(f"{arch}'s KAN layers have different degrees {sorted(degrees)}; extra_degrees needs one "
                             f"degree per model to record it in basis_kwargs")
        if "basis_kwargs" not in inspect.signature(type(model).__init__).parameters:
            raise ValueError(f"{type(model).__name__} has no basis_kwargs argument, so a merged model with raised "
                             f"degree could not be rebuilt by name; use extra_degrees=0")

    # -- bookkeeping ----------------------------------------------------------------------------------------
    def _root(self) -> nn.Module:
        return self.base_model

    def adapter_layers(self) -> "OrderedDict[str, BasisAdapterLayer]":
        """The adapted layers by their name in the original model."""
        root = self._root()
        return OrderedDict((n, root if n == "" else root.get_submodule(self._adapted_name(n)))
                           for n in self._wrapper_names)

    def _adapted_name(self, original: str) -> str:
        """Name of a module in the adapted model from its name in the original model."""
        parts = original.split(".") if original else []
        out: List[str] = [_WRAPPER_CHILD] if parts and "" in self._wrapper_names else []
        for i, part in enumerate(parts):
            out.append(part)
            if i + 1 < len(parts) and ".".join(parts[: i + 1]) in self._wrapper_names:
                out.append(_WRAPPER_CHILD)
        return ".".join(out)

    def _original_key(self, adapted: str) -> str:
        """A state key of the adapted model -> the original model's key (``base_layer.`` segments dropped)."""
        parts = adapted.split(".")
        i = 1 if "" in self._wrapper_names and parts[0] == _WRAPPER_CHILD else 0
        out: List[str] = []
        while i < len(parts):
            out.append(parts[i])
            i += 1
            if i < len(parts) and parts[i] == _WRAPPER_CHILD and ".".join(out) in self._wrapper_names:
                i += 1
        return ".".join(out)

    def _collect_whole_keys(self) -> List[str]:
        """Original-model state keys saved whole: modules_to_save, train_base and train_norm tensors."""
        config = self.peft_config
        state = self._root().state_dict(keep_vars=True)
        originals = {self._original_key(k): k for k in state}
        keys: List[str] = []

        def add_module(name: str) -> None:
            pre = name + "." if name else ""
            keys.extend(k for k in originals if k.startswith(pre) and k not in keys)

        for name in self._saved_modules:
            add_module(name)
        if config.train_base:
            for name, layer in self.adapter_layers().items():
                for p in BASE_PARAM_NAMES:
                    if getattr(layer.base_layer, p, None) is not None:
                        key = _join(name, p)
                        if key not in keys:
                            keys.append(key)
        if config.train_norm:
            for name in self._norm_names(self._root()):
                add_module(self._original_key(name))
        return keys

    def _norm_names(self, root: nn.Module) -> List[str]:
        saved = [self._adapted_name(n) for n in self._saved_modules]
        return [n for n, m in root.named_modules() if isinstance(m, _NORM_TYPES) and not _inside(n, saved)]

    def _whole_tensors(self) -> Dict[str, torch.Tensor]:
        state = self._root().state_dict(keep_vars=True)
        by_original = {self._original_key(k): v for k, v in state.items()}
        return {k: by_original[k] for k in self._whole_keys}

    def _set_trainable(self, trainable: bool) -> None:
        root = self._root()
        for p in root.parameters():
            p.requires_grad_(False)
        for layer in self.adapter_layers().values():
            for p in layer.adapter_parameters().values():
                p.requires_grad_(trainable)
        for t in self._whole_tensors().values():
            if isinstance(t, nn.Parameter):
                t.requires_grad_(trainable)

    def train(self, mode: bool = True) -> "PeftModel":
        """Sets train/eval mode; norms with running statistics that the adapter does not save stay in eval."""
        super().train(mode)
        if mode:
            whole = set(self._whole_keys)
            for name, m in self._root().named_modules():
                if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
                    if _join(self._original_key(name), "running_mean") not in whole:
                        m.eval()
        return self

    def forward(self, *args, **kwargs):
        return self.base_model(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    # -- reporting ------------------------------------------------------------------------------------------
    def get_nb_trainable_parameters(self) -> Tuple[int, int]:
        """(trainable parameters, all parameters) of the adapted model, adapter included."""
        params = list(self._root().parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def print_trainable_parameters(self) -> None:
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || "
              f"trainable%: {100.0 * trainable / max(total, 1):.4f}")

    # -- state ----------------------------------------------------------------------------------------------
    def _check_live(self) -> None:
        if self._merged:
            raise RuntimeError("the adapters were merged or unloaded; this PeftModel no longer holds them")

    def adapter_state_dict(self) -> Dict[str, torch.Tensor]:
        """The tensors ``save_pretrained`` writes, keyed as in the file (``base_model.model.`` + original key)."""
        self._check_live()
        out: Dict[str, torch.Tensor] = {}
        for name, layer in self.adapter_layers().items():
            for pname, p in layer.adapter_parameters().items():
                out[KEY_PREFIX + _join(name, pname)] = p.detach()
        for key, t in self._whole_tensors().items():
            out[KEY_PREFIX + key] = t.detach()
        return out

    def load_adapter_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Copies adapter tensors (keys as in :meth:`adapter_state_dict`) into the model.

        Strict: every key must be present, none extra, shapes equal; nothing is copied unless all fit.
        Values are cast to each target tensor's dtype and device.
        """
        self._check_live()
        own = self.adapter_state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"the adapter tensors do not fit this model: missing {missing[:10]}"
                             f"{' ...' if len(missing) > 10 else ''}, unexpected {unexpected[:10]}"
                             f"{' ...' if len(unexpected) > 10 else ''}; was it saved for another architecture "
                             f"or config?")
        for k, v in state.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ValueError(f"adapter tensor {k!r} has shape {tuple(v.shape)}, this model expects "
                                 f"{tuple(own[k].shape)}; the adapter was saved for another architecture or config")
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v.to(device=own[k].device, dtype=own[k].dtype))

    def save_pretrained(self, save_directory: Union[str, os.PathLike], **kwargs: Any) -> None:
        """Writes ``adapter_config.json`` and ``adapter_model.safetensors`` (adapter weights only) to a folder.

        Each file is written to a temporary file in the folder and renamed into place.
        """
        self._check_live()
        if kwargs.get("safe_serialization", True) is False:
            raise ValueError("kanzoo adapters are saved as safetensors only")
        from safetensors.torch import save_file

        directory = os.fspath(save_directory)
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise NotADirectoryError(f"save_pretrained needs a folder, but {directory!r} is a file")
        os.makedirs(directory, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in self.adapter_state_dict().items()}
        config = self.peft_config.to_dict()
        config["kanzoo_version"] = __version__
        config["inference_mode"] = True
        config["target_layers"] = {n: _layer_record(layer) for n, layer in self.adapter_layers().items()}
        atomic_write(os.path.join(directory, WEIGHTS_NAME),
                     lambda p: save_file(tensors, p, metadata={"format": "pt", "peft_type": config["peft_type"]}))
        write_json(os.path.join(directory, CONFIG_NAME), config)

    @classmethod
    def from_pretrained(cls, model: nn.Module, model_id: Union[str, os.PathLike], is_trainable: bool = False,
                        config: Optional[BasisAdapterConfig] = None) -> "PeftModel":
        """Loads an adapter folder written by :meth:`save_pretrained` onto ``model`` (modified in place).

        Checks, before touching the model, that the adapter was saved for this architecture (the timm name
        in ``base_model_name_or_path`` and the adapted layers' types, bases and shapes). With
        ``is_trainable=False`` (default) the adapter is frozen. Weights load through safetensors only.
        """
        directory = os.fspath(model_id)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"adapter folder {directory!r} does not exist; pass the folder that "
                                    f"save_pretrained() wrote (download a Hub adapter first)")
        path = os.path.join(directory, CONFIG_NAME)
        saved = BasisAdapterConfig.from_pretrained(directory)
        with open(path, "r", encoding="utf-8") as f:
            layers = json.load(f).get("target_layers")
        config = BasisAdapterConfig.from_dict((saved if config is None else config).to_dict())  # a copy
        config.inference_mode = not is_trainable
        weights = os.path.join(directory, WEIGHTS_NAME)
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"no {WEIGHTS_NAME} in {directory!r}; kanzoo adapters load from safetensors only")
        _check_name(model, config.base_model_name_or_path, directory)
        state = load_state_file(weights)
        peft_model = cls(model, config, _expected_layers=layers)
        try:
            peft_model.load_adapter_state_dict(state)
        except Exception:
            peft_model.unload()
            raise
        return peft_model

    # -- merge ----------------------------------------------------------------------------------------------
    def _finish(self, merged_layers: Dict[str, nn.Module]) -> nn.Module:
        root = self._root()
        for name, layer in merged_layers.items():
            if name == "":
                root = layer
            else:
                _set_module(root, self._adapted_name(name), layer)
        for p in root.parameters():
            p.requires_grad_(True)
        root.train(self.training)
        self._merged = True
        return root

    def merge_and_unload(self) -> nn.Module:
        """Folds every adapter into its layer and returns the plain model (the original class).

        Layers that got extra degrees now have degree D+E; for a timm-built model the new degree is
        recorded in its model args (``basis_kwargs``), so ``kanzoo.create_model(name,
        **timm.models._input.get_model_args(merged))`` rebuilds the same architecture. All parameters
        are trainable again, as in a freshly built model.
        """
        self._check_live()
        layers = self.adapter_layers()
        raised = {l.degree + l.extra_degrees for l in layers.values() if l.extra_degrees}
        merged = {name: layer.merge() for name, layer in layers.items()}
        model = self._finish(merged)
        if raised and model_name(model) is not None:
            from timm.models._input import update_model_args
            bkw = dict(getattr(model, "_model_args", {}).get("basis_kwargs") or {})
            bkw["degree"] = raised.pop()
            update_model_args(model, basis_kwargs=bkw)
        return model

    def unload(self) -> nn.Module:
        """Removes the adapters without merging them and returns the model (base weights as they are now)."""
        self._check_live()
        return self._finish({name: layer.base_layer for name, layer in self.adapter_layers().items()})


def _check_name(model: nn.Module, saved_name: Optional[str], directory: str) -> None:
    have = model_name(model)
    if not saved_name or not have:
        return
    saved_arch, _, saved_tag = saved_name.partition(".")
    arch, _, tag = have.partition(".")
    if saved_arch != arch:
        raise ValueError(f"the adapter in {directory!r} was saved for {saved_name!r}, but the model is {have!r}; "
                         f"load it onto kanzoo.create_model({saved_name!r}, ...)")
    if saved_tag and saved_tag != tag:
        warnings.warn(f"the adapter in {directory!r} was trained on {saved_name!r}; loading it onto {have!r} "
                      f"(same architecture, other weights)")


def get_peft_model(model: nn.Module, config: BasisAdapterConfig) -> PeftModel:
    """Adds basis-coefficient adapters to ``model`` (in place) and returns the :class:`PeftModel`.

    Every configuration error (degree out of range, no matching layer, rank too large, ...) raises here,
    before any training.
    """
    return PeftModel(model, config)


def get_peft_model_state_dict(model: PeftModel) -> Dict[str, torch.Tensor]:
    """The adapter tensors of ``model`` as ``save_pretrained`` writes them."""
    return model.adapter_state_dict()


def set_peft_model_state_dict(model: PeftModel, state: Dict[str, torch.Tensor]) -> None:
    """Loads adapter tensors (strict; see :meth:`PeftModel.load_adapter_state_dict`)."""
    model.load_adapter_state_dict(state)


def load_adapter(model: nn.Module, adapter_dir: Union[str, os.PathLike], merge: bool = True,
                 is_trainable: bool = False) -> nn.Module:
    """Applies a saved adapter folder to ``model``: the merged plain model (``merge=True``) or the
    :class:`PeftModel`. For command-line tools: ``model = load_adapter(create_model(name), dir)``."""
    peft_model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=is_trainable)
    return peft_model.merge_and_unload() if merge else peft_model
