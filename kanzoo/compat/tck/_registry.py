"""The registry of torch-conv-kan families: which reference classes belong to which family, and the builder that
makes each family's kanzoo module and key mapper. :mod:`kanzoo.compat.tck` fills it; builders that delegate to
another family's builder (the MoE experts) look it up here.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Tuple

#: ref_class pattern -> family, in match order (the layer modules append their own)
FAMILY_PATTERNS: List[Tuple[str, str]] = [
    (r"^KAGNConv\dDLayerV2$", "KAGNv2"),
    (r"^KANConv\dDLayer$", "KANConv"),
    (r"^KALNConv\dDLayer$", "KALN"),
    (r"^KACNConv\dDLayer$", "KACN"),
    (r"^KAGNConv\dDLayer$", "KAGN"),
    (r"^KAJNConv\dDLayer$", "KAJN"),
    (r"^KABNConv\dDLayer$", "KABN"),
    (r"^FastKANConv\dDLayer$", "FastKAN"),
    (r"^ReLUKANConv\dDLayer$", "ReLUKAN"),
    (r"^BottleNeckKAGNConv\dDLayer$", "BottleNeckKAGN"),
    (r"^BottleNeckReLUKANConv\dDLayer$", "BottleNeckReLUKAN"),
    (r"^WavKANConv\dDLayer$", "WavKAN"),
]

#: family -> builder(case) -> (kanzoo module, mapper(reader) -> state in kanzoo keys)
BUILDERS: Dict[str, Callable] = {}


def register_family(*families: str):
    """Decorator: registers a builder for ``families``."""
    def deco(fn):
        for f in families:
            BUILDERS[f] = fn
        return fn
    return deco


def family_of(case: Dict[str, Any]) -> str:
    """The description's ``family``, or the one its ``ref_class`` matches."""
    if case.get("family"):
        return case["family"]
    for pat, fam in FAMILY_PATTERNS:
        if re.match(pat, case["ref_class"]):
            return fam
    raise ValueError(f"unknown torch-conv-kan class {case['ref_class']!r}; supported families: {sorted(BUILDERS)}")
