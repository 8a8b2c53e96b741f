"""Whole torch-conv-kan checkpoints (as published on the Hub by ``PyTorchModelHubMixin``) -> kanzoo models.

A published repo holds ``config.json`` (the JSON-able constructor arguments of ``VGGKAGN``/``VGGKAGN_BN``) and
``model.safetensors`` (the reference state dict). ``config.json`` cannot say which class wrote it: ``norm_layer``
is not JSON, so the bottleneck/BatchNorm checkpoint looks like the InstanceNorm one. The class is read from the
state dict instead: BatchNorm running statistics and bottleneck projections (``inner_proj``) mean
``VGGKAGN_BN``. The result is matched to a registered kanzoo architecture, whose own layout must agree tensor for
tensor, and the weights are converted strictly (every reference key used, every kanzoo tensor filled).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import nn

from ...errors import WeightsNotFoundError
from ...models import create_model, list_models
from ...models.vgg_kan import VGGKAN, _name
from ...weights import download_weights, fetch_file, load_state_file
from .vgg import is_reference_vgg_state, vgg_kwargs

#: config.json keys that identify a torch-conv-kan VGG
_VGG_KEYS = {"vgg_type", "width_scale", "degree"}


def reference_vgg_class(state_dict: Dict[str, torch.Tensor]) -> str:
    """``'VGGKAGN_BN'`` when the state has BatchNorm statistics or bottleneck projections, else ``'VGGKAGN'``."""
    bottleneck = any(".inner_proj." in k or k.endswith("running_mean") for k in state_dict)
    return "VGGKAGN_BN" if bottleneck else "VGGKAGN"


def describe_vgg_checkpoint(config: Dict[str, Any], state_dict: Dict[str, torch.Tensor]) -> Dict[str, Any]:
    """A ``from_reference``-style description (``ref_class``, ``ctor_kwargs``) of a published VGG checkpoint."""
    if not _VGG_KEYS <= set(config):
        raise ValueError(f"config.json is not a torch-conv-kan VGG config: it lacks {sorted(_VGG_KEYS - set(config))} "
                         f"(keys: {sorted(config)}); give the kanzoo architecture explicitly (--arch NAME)")
    ref = reference_vgg_class(state_dict)
    kwargs = dict(config)
    if ref == "VGGKAGN_BN":
        kwargs["norm_layer"] = "torch.nn.BatchNorm2d"
    return {"ref_class": ref, "ctor_kwargs": kwargs}


def _depth_version(vgg_type: str) -> Tuple[int, str]:
    m = re.fullmatch(r"VGG(\d+)(v\d+)?", vgg_type)
    if not m:
        raise ValueError(f"unexpected vgg_type {vgg_type!r}; expected e.g. 'VGG11' or 'VGG11v4'")
    return int(m.group(1)), m.group(2) or ""


def match_registered_vgg(description: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """The registered kanzoo VGG whose layout equals the checkpoint's, and the kwargs that differ from it
    (``num_classes``, ``in_chans``). Raises ``ValueError`` naming the mismatch when none does.

    The candidates are the architecture the name scheme gives (``vgg_kagn_bn11_v4``) and its ``_opt`` variant
    where one is registered (the inferred ``vgg_kagn_bn11_v4_opt``: width 3, 3×3 flatten head)."""
    kw = vgg_kwargs(description)
    depth, version = _depth_version(kw["cfg"])
    bn = description["ref_class"] == "VGGKAGN_BN"
    name = _name("kagn", depth, version, bn=bn)
    if name not in list_models(name):
        raise ValueError(f"no registered kanzoo VGG for {description['ref_class']} {kw['cfg']} (looked for {name!r})")
    extra = {"num_classes": kw["num_classes"], "in_chans": kw["in_chans"]}
    with torch.device("meta"):
        expected = VGGKAN(**kw).state_dict()
    first_diff = None
    for candidate in [name] + list_models(_name("kagn", depth, version, bn=bn, opt=True)):
        model = create_model(candidate, device="meta", **extra)
        got = model.state_dict()
        diff = sorted(set(expected) ^ set(got)) or [k for k in expected if expected[k].shape != got[k].shape]
        if not diff and model.head_pool_size != kw["head_pool_size"]:  # (1, 9) and (3, 3) give one fc shape
            diff = [f"head_pool_size {model.head_pool_size}"]
        if not diff:
            return candidate, extra
        first_diff = first_diff or diff
    raise ValueError(f"the checkpoint's layout differs from the registered {name!r} at {first_diff[:3]} (degree "
                     f"{kw['basis_kwargs']}, width_scale {kw['width_scale']}, head_pool_size "
                     f"{kw['head_pool_size']}); it has no kanzoo name yet")


def read_checkpoint(source: Union[str, Path], revision: Optional[str] = None
                    ) -> Tuple[Optional[Dict[str, Any]], Dict[str, torch.Tensor], str]:
    """``(config or None, state dict, where)`` from a local folder, a local weight file or a Hub repo id."""
    path = Path(source)
    if path.is_dir():
        cfg_path = path / "config.json"
        config = json.loads(cfg_path.read_text()) if cfg_path.is_file() else None
        return config, load_state_file(path), str(path)
    if path.is_file():
        return None, load_state_file(path), str(path)
    source = str(source)
    if source.count("/") != 1 or source.startswith((".", "/")):
        raise FileNotFoundError(f"{source!r} is neither a local file or folder nor a Hub repo id ('org/name')")
    weights = download_weights(source, revision=revision)
    repo_id, _, pinned = source.partition("@")
    try:
        config = json.loads(fetch_file(repo_id, "config.json", revision=revision or pinned or None).read_text())
    except WeightsNotFoundError:  # the weights were found above: only config.json is missing
        config = None
    return config, load_state_file(weights), f"hf-hub:{source}"


def convert_checkpoint(source: Union[str, Path], arch: Optional[str] = None, revision: Optional[str] = None,
                       **model_kwargs: Any) -> nn.Module:
    """Builds the kanzoo model for an upstream checkpoint and loads its converted weights strictly.

    Args:
        source: a folder (``config.json`` + weights), a weight file, or a Hub repo id (``org/name[@rev]``).
        arch: the kanzoo architecture; default: inferred from ``config.json`` and the state dict.
        model_kwargs: passed to :func:`kanzoo.create_model` (``num_classes``...); inferred ones are overridden.
    """
    config, state, where = read_checkpoint(source, revision=revision)
    if arch is None:
        if config is None:
            raise ValueError(f"{where} has no config.json, so its architecture cannot be inferred: give the kanzoo "
                             f"architecture (arch=... / --arch NAME)")
        if not is_reference_vgg_state(state):
            raise ValueError(f"{where} does not hold torch-conv-kan VGG keys (first keys: {list(state)[:3]}); only "
                             f"the published VGGKAGN/VGGKAGN_BN checkpoints are inferred, give --arch for others")
        arch, inferred = match_registered_vgg(describe_vgg_checkpoint(config, state))
        model_kwargs = dict(inferred, **model_kwargs)
    model = create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(state_dict=state), **model_kwargs)
    model.pretrained_cfg = dict(model.pretrained_cfg, source=None)
    return model.eval()
