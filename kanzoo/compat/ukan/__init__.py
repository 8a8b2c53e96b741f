"""Build kanzoo modules from U-KAN reference descriptions (CUHK-AIM-Group/U-KAN, ``Seg_UKAN``) and load their
weights.

A description is shaped like an entry of the golden ``manifest.json``::

    {"family": "UKAN", "ctor_kwargs": {"num_classes": 1, "embed_dims": [128, 160, 256], "img_size": 256}}

=============  =====================================  ==========================================================
family         reference                              kanzoo equivalent
=============  =====================================  ==========================================================
``KANLinear``  ``kan.KANLinear`` (efficient-kan)      :class:`~kanzoo.layers.SplineKANLinear`
``KANBlock``   ``archs.KANBlock``, called m(x, H, W)  :class:`~kanzoo.layers.TokenKANBlock`, called the same way
``UKAN``       ``archs.UKAN``                         :class:`~kanzoo.models.ukan.UKAN` (3 input channels, as the
                                                      reference always builds)
``UKAN-hub``   the released checkpoints' UKAN         the same, at ``embed_dims=[128, 160, 256]`` (``ukan_small``)
=============  =====================================  ==========================================================

Keys are the reference's except for the knots: the reference stores a ``grid`` row per input feature
(``(in, G+2K+1)``, identical rows: U-KAN never updates its grids), kanzoo one row, ``basis.grid``. The conversion
checks that every row equals the first one and raises if not. Loading is strict: every reference key is
consumed and every kanzoo tensor filled. The key conversion is the model's own
(:func:`kanzoo.models.ukan.convert_ukan_state`, re-exported here with :func:`is_reference_ukan_state`), so the
model's checkpoint filter reads reference weights too.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Dict, Optional

import torch
from torch import nn

from ...layers import SplineKANLinear, TokenKANBlock
from ...models.ukan import UKAN, convert_ukan_state, is_reference_ukan_state
from ..tck._state import build_loaded

FAMILIES = ("KANLinear", "KANBlock", "UKAN", "UKAN-hub")
_CLASS_FAMILIES = {"KANLinear": "KANLinear", "KANBlock": "KANBlock", "UKAN": "UKAN"}


def family_of(case: Dict[str, Any]) -> str:
    """The description's ``family``, or the one its ``ref_class`` implies."""
    fam = case.get("family")
    if not fam:
        cls = str(case.get("ref_class", "")).rsplit(":", 1)[-1].rsplit(".", 1)[-1]
        fam = _CLASS_FAMILIES.get(cls)
        if fam is None:
            raise ValueError(f"unknown U-KAN reference class {case.get('ref_class')!r}; give one of "
                             f"{sorted(_CLASS_FAMILIES)} or a 'family' of {FAMILIES}")
    if fam not in FAMILIES:
        raise ValueError(f"unknown U-KAN family {fam!r}; supported: {FAMILIES}")
    return fam


def _act_name(value: Any) -> str:
    name = str(value).rsplit(".", 1)[-1].strip("'\"<>").lower()
    return {"silu": "silu", "swish": "silu", "gelu": "gelu", "relu": "relu", "tanh": "tanh"}.get(name, name)


def _kan_kwargs(kw: Dict[str, Any]) -> Dict[str, Any]:
    """SplineKANLinear arguments from efficient-kan's ``KANLinear`` keywords (init-only ones are checked)."""
    if not kw.get("enable_standalone_scale_spline", True):
        raise ValueError("enable_standalone_scale_spline=False is not supported: kanzoo's SplineKANLinear always "
                         "has the spline_scaler (set it to ones to reproduce the reference)")
    out = dict(grid_size=int(kw.get("grid_size", 5)), spline_order=int(kw.get("spline_order", 3)),
               grid_range=tuple(float(v) for v in kw.get("grid_range", (-1.0, 1.0))),
               base_act=_act_name(kw.get("base_activation", "silu")))
    for name in ("scale_noise", "scale_base", "scale_spline"):
        if name in kw:
            out[name] = float(kw[name])
    return out


def build(case: Dict[str, Any], device=None) -> nn.Module:
    """The kanzoo module of a description (freshly initialised; ``device='meta'`` allocates nothing)."""
    fam = family_of(case)
    kw = dict(case.get("ctor_kwargs", {}))
    if fam == "KANLinear":
        return SplineKANLinear(int(kw["in_features"]), int(kw["out_features"]), **_kan_kwargs(kw), device=device)
    if fam == "KANBlock":  # its dropout ('drop') is built but never applied by the reference
        return TokenKANBlock(int(kw["dim"]), drop_path=float(kw.get("drop_path", 0.0)),
                             kan=not bool(kw.get("no_kan", False)), device=device)
    # UKAN: the reference ignores input_channels (always 3), depths (always 1), no_kan (always KAN), patch_size,
    # img_size and deep_supervision, so the same arguments build the same kanzoo model whatever they say
    return UKAN(embed_dims=tuple(int(e) for e in kw.get("embed_dims", (256, 320, 512))),
                num_classes=int(kw.get("num_classes", 1)), in_chans=3,
                drop_path_rate=float(kw.get("drop_path_rate", 0.0)), device=device)


def from_reference(case: Dict[str, Any], state_dict: Optional[Dict[str, torch.Tensor]] = None,
                   dtype: Optional[torch.dtype] = None) -> nn.Module:
    """Builds the kanzoo equivalent of a U-KAN reference module and loads its reference-keyed state strictly.

    Args:
        case: ``{"family" or "ref_class", "ctor_kwargs"}`` (a golden manifest entry).
        state_dict: the reference ``state_dict()``; None returns the freshly initialised kanzoo module.
        dtype: floating dtype of the module, set before loading (float64 weights stay float64).

    Returns:
        The kanzoo module in train mode. ``KANBlock`` modules are called like the reference, ``m(x, H, W)``.
    """
    return build_loaded(partial(build, case), state_dict, convert_ukan_state, dtype)


__all__ = ["FAMILIES", "build", "convert_ukan_state", "family_of", "from_reference", "is_reference_ukan_state"]
