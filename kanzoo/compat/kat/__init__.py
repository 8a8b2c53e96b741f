"""Build kanzoo modules from Kolmogorov-Arnold Transformer reference descriptions (Adamdad/kat with the
``kat_rational`` package of Adamdad/rational_kat_cu) and load their weights.

A description is shaped like an entry of the golden ``manifest.json``::

    {"family": "KAT-Block", "ctor_kwargs": {"dim": 48, "num_heads": 3, "qkv_bias": true,
                                            "norm_layer": "partial(torch.nn.LayerNorm, eps=1e-6)",
                                            "act_init": "swish"}}

=============  ============================================  =========================================================
family         reference                                     kanzoo equivalent
=============  ============================================  =========================================================
``KAT_Group``  ``kat_rational.KAT_Group``                    :class:`~kanzoo.layers.GroupRational`
``KAN-MLP``    ``katransformer.KAN``                         :class:`~kanzoo.layers.GRKANMlp`
``KAT-Block``  ``katransformer.Block``                       timm's ``Block`` with a ``GRKANMlp``; the reference
                                                             Block's own defaults: LayerNorm eps 1e-5, no qkv bias
``KAT-model``  a registered entrypoint (``timm_model``)      ``kanzoo.create_model(timm_model, **ctor_kwargs)``
``KAT-hub``    the architecture of a published checkpoint    the same, at full size
=============  ============================================  =========================================================

The keys are identical, so loading is a strict identity mapping: every reference key must be consumed and every
kanzoo tensor filled. The modules compute the reference's GPU-kernel function (see docs/compat.md).
"""
from __future__ import annotations

import re
from functools import partial
from typing import Any, Dict, Optional

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ...layers.rational import GRKANMlp, GroupRational
from ...models import create_model
from ...weights import unwrap_checkpoint
from ..tck._state import StateReader

FAMILIES = ("KAT_Group", "KAN-MLP", "KAT-Block", "KAT-model", "KAT-hub")
_CLASS_FAMILIES = {"KAT_Group": "KAT_Group", "KAN": "KAN-MLP", "Block": "KAT-Block",
                   "KATVisionTransformer": "KAT-model"}


def family_of(case: Dict[str, Any]) -> str:
    """The description's ``family``, or the one its ``ref_class`` implies."""
    if case.get("family"):
        fam = case["family"]
    else:
        cls = str(case.get("ref_class", "")).split(" ")[0].rsplit(".", 1)[-1]
        fam = _CLASS_FAMILIES.get(cls)
        if fam is None:
            raise ValueError(f"unknown KAT reference class {case.get('ref_class')!r}; give one of "
                             f"{sorted(_CLASS_FAMILIES)} or a 'family' of {FAMILIES}")
    if fam not in FAMILIES:
        raise ValueError(f"unknown KAT family {fam!r}; supported: {FAMILIES}")
    return fam


def _norm_layer(spec: Any):
    """The reference's ``norm_layer`` as written in a description (None: the Block default nn.LayerNorm)."""
    if spec is None or spec in ("torch.nn.LayerNorm", "nn.LayerNorm", "LayerNorm"):
        return nn.LayerNorm
    if isinstance(spec, str):
        m = re.fullmatch(r"\s*partial\(\s*(?:torch\.)?(?:nn\.)?LayerNorm\s*,\s*eps\s*=\s*([0-9.eE+-]+)\s*\)\s*", spec)
        if m:
            return partial(nn.LayerNorm, eps=float(m.group(1)))
    raise ValueError(f"unsupported norm_layer {spec!r}: use 'torch.nn.LayerNorm' or "
                     f"'partial(torch.nn.LayerNorm, eps=...)'")


def _kwargs(case: Dict[str, Any]) -> Dict[str, Any]:
    if case.get("ctor_args"):
        raise ValueError(f"give the reference constructor's arguments as ctor_kwargs, not positional ctor_args "
                         f"({case['ctor_args']!r})")
    return dict(case.get("ctor_kwargs") or {})


def build(case: Dict[str, Any], **overrides: Any) -> nn.Module:
    """The kanzoo module a description stands for, freshly initialised (``overrides`` go to its constructor,
    e.g. ``rational_kernel``/``kernel`` or ``device``)."""
    fam = family_of(case)
    kw = _kwargs(case)
    if fam == "KAT_Group":
        kw.pop("device", None)  # the reference's 'cuda' default selected its Triton kernel
        return GroupRational(num_groups=kw.pop("num_groups", 8), mode=kw.pop("mode", "gelu"), **kw, **overrides)
    if fam == "KAN-MLP":
        kernel = overrides.pop("kernel", None)
        return GRKANMlp(kw.pop("in_features"), kw.pop("hidden_features", None), kw.pop("out_features", None),
                        bias=kw.pop("bias", True), drop=kw.pop("drop", 0.0), act_init=kw.pop("act_init", "gelu"),
                        kernel=kernel, **_reject(kw, fam), **overrides)
    if fam == "KAT-Block":
        kernel = overrides.pop("kernel", None)
        mlp = partial(GRKANMlp, act_init=kw.pop("act_init", "gelu"), kernel=kernel)
        return Block(kw.pop("dim"), kw.pop("num_heads"), mlp_ratio=kw.pop("mlp_ratio", 4.0),
                     qkv_bias=kw.pop("qkv_bias", False), norm_layer=_norm_layer(kw.pop("norm_layer", None)),
                     mlp_layer=mlp, **_reject(kw, fam), **overrides)
    name = case.get("timm_model")
    if not name:
        raise ValueError(f"a {fam} description needs 'timm_model' (e.g. 'kat_tiny_patch16_224')")
    if "kernel" in overrides:
        overrides["rational_kernel"] = overrides.pop("kernel")
    model = create_model(name, **kw, **overrides)
    if case.get("act_init") and case["act_init"] != model.act_init:
        raise ValueError(f"{name} starts act2 as {model.act_init!r}, but the description says act_init="
                         f"{case['act_init']!r}")
    return model


def _reject(kw: Dict[str, Any], fam: str) -> Dict[str, Any]:
    # drop / proj_drop / attn_drop / drop_path are inert in eval and accepted; anything else is an error
    passthrough = {k: kw.pop(k) for k in ("proj_drop", "attn_drop", "drop_path", "init_values", "qk_norm")
                   if k in kw}
    kw.pop("act_layer", None)  # ignored by the reference too
    if kw:
        raise ValueError(f"{fam}: unsupported reference arguments {sorted(kw)}")
    return passthrough


def from_reference(case: Dict[str, Any], state_dict: Optional[Dict[str, torch.Tensor]] = None,
                   dtype: Optional[torch.dtype] = None, **overrides: Any) -> nn.Module:
    """Builds the kanzoo equivalent of a KAT reference module and loads its reference-keyed state strictly.

    Args:
        case: ``{"family" or "ref_class", "ctor_kwargs"}``, plus ``"timm_model"`` (and optionally ``"act_init"``)
            for the model families.
        state_dict: the reference ``state_dict()`` (a training checkpoint is unwrapped: ``state_dict_ema`` >
            ``state_dict`` > ``model``, and a ``module.`` prefix removed); None returns the fresh module.
        dtype: floating dtype of the module, set before loading.
        overrides: constructor arguments for kanzoo (``kernel=...``).

    Returns:
        The kanzoo module, in train mode like a fresh ``nn.Module``.
    """
    if state_dict is None:
        module = build(case, **overrides)
        return module.to(dtype) if dtype is not None else module
    state = unwrap_checkpoint(state_dict)
    # built on the meta device: nothing is initialised only to be overwritten
    module = build(case, **dict(overrides, device="meta"))
    reader = StateReader(state)
    mapped = {k: reader.take(k) for k in module.state_dict()}
    reader.finish()
    own = module.state_dict()
    for k, v in mapped.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise ValueError(f"shape mismatch for {k!r}: kanzoo {tuple(own[k].shape)} vs reference {tuple(v.shape)}")
    mapped = {k: v.detach().to(dtype=dtype if dtype is not None and v.is_floating_point() else v.dtype, copy=True)
              for k, v in mapped.items()}
    module.load_state_dict(mapped, strict=True, assign=True)
    left = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"tensors without a value after loading: {left[:8]}")
    return module.train()


__all__ = ["FAMILIES", "build", "family_of", "from_reference"]
