"""``BasisAdapterConfig``: what a basis-coefficient adapter trains, as a JSON-serialisable dataclass."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

__all__ = ["BasisAdapterConfig", "CONFIG_NAME", "WEIGHTS_NAME", "PEFT_TYPE"]

#: ``peft_type`` written to ``adapter_config.json`` (peft's own loaders refuse it, on purpose: peft has no such tuner)
PEFT_TYPE = "KANZOO_BASIS"
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"

#: prefix of a layer type in ``target_modules`` / ``exclude_modules`` given as a string (``"type:KANLinear"``)
TYPE_PREFIX = "type:"

TargetSpec = Union[None, str, Sequence[Union[str, type]]]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _normalize_targets(value: TargetSpec, name: str) -> Union[None, str, List[str]]:
    """None, a regex string, or a list of names / ``type:Class`` strings (classes become ``type:`` strings)."""
    if value is None or isinstance(value, str):
        if isinstance(value, str) and not value:
            raise ValueError(f"{name} must not be an empty string; use None for the default")
        return value
    if isinstance(value, type):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{name} must be None, a regex string, or a list of module names / layer classes, "
                        f"got {type(value).__name__}") from None
    out: List[str] = []
    for item in items:
        if isinstance(item, type):
            out.append(TYPE_PREFIX + item.__name__)
        elif isinstance(item, str) and item:
            out.append(item)
        else:
            raise TypeError(f"{name} entries must be non-empty module names or layer classes, got {item!r}")
    if not out:
        raise ValueError(f"{name} is an empty list: it would match nothing; use None for the default")
    return out


@dataclass
class BasisAdapterConfig:
    r"""Configuration of a basis-coefficient adapter (shaped like ``peft.LoraConfig``).

    A KAN layer computes :math:`\sum_f W_f \star B_f(x)` plus a base branch. The adapter freezes the layer
    and trains, per targeted layer:

    * a **delta** :math:`\Delta_f` added to the coefficients of the chosen degrees
      (``trainable_degrees``), zero at the start;
    * ``extra_degrees`` **new basis functions** :math:`B_{D+1}..B_{D+E}` with their own coefficients,
      zero at the start, so the adapted model starts out computing exactly what the base model computes;
    * for the Gram basis, a delta on the recurrence weight :math:`\beta_{d-1}` of every trainable degree
      d ≥ 2 and new weights :math:`\beta_D..\beta_{D+E-1}` for the extra degrees (zero at the start).

    With ``rank`` the coefficient deltas are low rank: the tensor (out, in/groups, n, \*k) is
    :math:`B A` with B (out, r), zero at the start, and A (r, in/groups·n·k).

    A group-rational activation (:class:`~kanzoo.layers.GroupRational`, KAT's GR-KAN) computes
    :math:`P(x)/Q_g(x)` with :math:`P = \sum_{i\le m} a_i x^i` shared by its groups and
    :math:`Q_g = 1 + \sum_{j<n} |b_{gj}|\,|x|^{j+1}`; the adapter trains a delta on the coefficients of the
    trainable degrees (powers of x), :math:`a' = a + \Delta a`, :math:`b' = b + \Delta b` (before the
    :math:`|\cdot|`), merged exactly by addition. Rationals take no extra degrees and no rank (docs/peft.md).

    Args:
        target_modules: which KAN layers to adapt. None (default): every supported KAN layer
            (:class:`~kanzoo.layers.KANConvNd`, :class:`~kanzoo.layers.BottleneckKANConvNd`,
            :class:`~kanzoo.layers.KANLinear`, :class:`~kanzoo.layers.BottleneckKANLinear`) whose basis has
            adapter rules (the polynomial bases, B-spline and RBF), and every
            :class:`~kanzoo.layers.GroupRational`; others are left alone. A string is a
            regex that must match a module's full dotted name; a list holds module names (a name matches
            itself and every name that ends with ``'.' + name``) and layer classes (or ``'type:ClassName'``).
        exclude_modules: names/classes (same forms) that are never adapted.
        trainable_degrees: degrees whose coefficients get a delta: ``'all'`` (default), a list of degrees
            (0 = the constant term), or None / ``[]`` for none. For B-spline and RBF layers these are the
            indices of the grid functions (0..num_basis-1). For a GroupRational of order (m, n) degree d is the
            power x^d: the numerator's a_d (d <= m) and every group's b_(d-1), the coefficient of |x|^d
            (1 <= d <= n); 'all' is 0..max(m, n).
        extra_degrees: how many higher degrees to add (polynomial bases only; an error on a GroupRational).
        rank: None for full deltas, or the rank of low-rank deltas. KAN layers only: rationals always get
            full deltas, and a rank with rationals named in ``target_modules``, or with only rationals
            targeted, is an error.
        train_base: also train the targeted layers' base-branch and projection weights
            (``weight``, ``bias``, ``inner_*``, ``outer_*``); saved whole in the adapter file. A GroupRational
            has none (an error when only rationals are targeted; list KAT's ``fc1``/``fc2`` in
            ``modules_to_save`` to train them).
        train_norm: also train every normalisation layer of the model (affine parameters, and the running
            statistics of BatchNorm); saved whole. Without it norms are frozen, and BatchNorm layers stay in
            eval mode while the adapter trains, so their running statistics never change (a base model plus
            the adapter file then reproduces the adapted model exactly).
        modules_to_save: module names trained and saved whole (``'classifier'`` means the model's classifier,
            ``model.get_classifier()``).
        num_classes: replace the classifier by a freshly initialised one with this many classes
            (``model.reset_classifier``) and add it to ``modules_to_save``.
        base_model_name_or_path: the timm name of the base model (with its tag); filled in from the model's
            ``pretrained_cfg`` when None.
        inference_mode: adapter tensors are frozen (set when loading with ``is_trainable=False``).
    """

    target_modules: TargetSpec = None
    exclude_modules: TargetSpec = None
    trainable_degrees: Union[None, str, Sequence[int]] = "all"
    extra_degrees: int = 0
    rank: Optional[int] = None
    train_base: bool = False
    train_norm: bool = False
    modules_to_save: Optional[Sequence[str]] = None
    num_classes: Optional[int] = None
    base_model_name_or_path: Optional[str] = None
    inference_mode: bool = False
    peft_type: str = field(default=PEFT_TYPE)
    task_type: Optional[str] = None
    kanzoo_version: Optional[str] = None

    def __post_init__(self) -> None:
        self.target_modules = _normalize_targets(self.target_modules, "target_modules")
        self.exclude_modules = _normalize_targets(self.exclude_modules, "exclude_modules")
        self.trainable_degrees = self._check_degrees(self.trainable_degrees)
        if not _is_int(self.extra_degrees) or self.extra_degrees < 0:
            raise ValueError(f"extra_degrees must be an int >= 0, got {self.extra_degrees!r}")
        if self.rank is not None and (not _is_int(self.rank) or self.rank < 1):
            raise ValueError(f"rank must be None (full deltas) or an int >= 1, got {self.rank!r}")
        for name in ("train_base", "train_norm", "inference_mode"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.modules_to_save is not None:
            if isinstance(self.modules_to_save, str):
                self.modules_to_save = [self.modules_to_save]
            mts = list(self.modules_to_save)
            if not all(isinstance(m, str) and m for m in mts):
                raise TypeError(f"modules_to_save must be a list of module names, got {self.modules_to_save!r}")
            self.modules_to_save = mts or None
        if self.num_classes is not None and (not _is_int(self.num_classes) or self.num_classes < 1):
            raise ValueError(f"num_classes must be None or an int >= 1, got {self.num_classes!r}")
        if self.peft_type != PEFT_TYPE:
            raise ValueError(f"peft_type {self.peft_type!r} is not a kanzoo basis adapter ({PEFT_TYPE!r}); "
                             f"adapters of other types (LoRA, ...) load with the peft library")
        if self.base_model_name_or_path is not None and not isinstance(self.base_model_name_or_path, str):
            raise TypeError(f"base_model_name_or_path must be a string or None, got {self.base_model_name_or_path!r}")
        if (self.trainable_degrees == [] and self.extra_degrees == 0 and not self.train_base and not self.train_norm
                and not self.modules_to_save and self.num_classes is None):
            raise ValueError("this config trains nothing: trainable_degrees is empty, extra_degrees is 0 and "
                             "train_base, train_norm, modules_to_save and num_classes are unset; set "
                             "trainable_degrees='all' (or a list of degrees) or extra_degrees >= 1")

    @staticmethod
    def _check_degrees(value) -> Union[str, List[int]]:
        if value is None:
            return []
        if isinstance(value, str):
            if value != "all":
                raise ValueError(f"trainable_degrees must be 'all', a list of degrees or None, got {value!r}")
            return value
        if _is_int(value):
            value = [value]
        try:
            degrees = list(value)
        except TypeError:
            raise TypeError(f"trainable_degrees must be 'all', a list of ints or None, got {value!r}") from None
        for d in degrees:
            if not _is_int(d) or d < 0:
                raise ValueError(f"trainable_degrees must hold ints >= 0, got {d!r} in {value!r}")
        if len(set(degrees)) != len(degrees):
            raise ValueError(f"trainable_degrees has repeated degrees: {value!r}")
        return sorted(degrees)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "BasisAdapterConfig":
        """Builds a config from ``adapter_config.json`` contents; keys written by kanzoo but not config
        fields (``target_layers``) are ignored, unknown keys raise."""
        if not isinstance(data, dict):
            raise TypeError(f"an adapter config must be a JSON object, got {type(data).__name__}")
        if data.get("peft_type", PEFT_TYPE) != PEFT_TYPE:
            raise ValueError(f"adapter_config.json has peft_type {data.get('peft_type')!r}, not a kanzoo basis "
                             f"adapter ({PEFT_TYPE!r}); load adapters of other types with the peft library")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"target_layers"})
        if unknown:
            raise ValueError(f"adapter_config.json has keys kanzoo does not know: {unknown}; it was written by "
                             f"another tool or a newer kanzoo")
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_pretrained(cls, directory: Union[str, os.PathLike]) -> "BasisAdapterConfig":
        """Reads ``adapter_config.json`` from a local folder."""
        path = os.path.join(os.fspath(directory), CONFIG_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no {CONFIG_NAME} in {os.fspath(directory)!r}; pass the folder that "
                                    f"save_pretrained() wrote")
        with open(path, "r", encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not valid JSON: {e}") from None
        return cls.from_dict(data)
