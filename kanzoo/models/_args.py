"""Checks of the size-like constructor arguments every kanzoo family shares, made before a model is built.

timm passes ``create_model``'s keyword arguments straight to the model class, where a bad size either builds
a wrong model without a word (``num_classes=-1`` returns features, ``width_scale=0`` builds 1-channel layers)
or fails deep inside torch. :func:`check_model_args` reads each argument by its name, with the meaning it has
in every family, and raises one ``ValueError`` that names the model, the argument and the value.
"""
import math
from numbers import Integral, Real
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

__all__ = ["check_model_args", "ARG_RULES", "pool_error", "scaled_vit_widths"]


def _is_int(v: Any) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _int_at_least(minimum: int) -> Tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_int(v) and v >= minimum), f"an int >= {minimum}"


def _size(minimum: int = 1) -> Tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        if _is_int(v):
            return v >= minimum
        return isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_int(s) and s >= minimum for s in v)
    return ok, f"an int >= {minimum} or a pair (H, W) of them"


def _ints(minimum: int = 1) -> Tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        if _is_int(v):  # several families take one int for every stage
            return v >= minimum
        return isinstance(v, (tuple, list)) and len(v) > 0 and all(_is_int(s) and s >= minimum for s in v)
    return ok, f"a non-empty sequence of ints >= {minimum}"


_POSITIVE = ((lambda v: _is_real(v) and v > 0), "a number > 0")
_PROBABILITY = ((lambda v: _is_real(v) and 0 <= v < 1), "a probability in [0, 1)")

#: argument name -> (test, what a valid value is)
ARG_RULES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "num_classes": _int_at_least(0),
    "in_chans": _int_at_least(1),
    "width_scale": _POSITIVE,
    "mlp_ratio": _POSITIVE,
    "img_size": _size(1),
    "patch_size": _size(1),
    "depth": _int_at_least(1),
    "embed_dim": _int_at_least(1),
    "num_heads": _int_at_least(1),
    "growth_rate": _int_at_least(1),
    "num_init_features": _int_at_least(1),
    "depths": _ints(1),
    "widths": _ints(1),
    "embed_dims": _ints(1),
    "layers": _ints(1),
    "block_config": _ints(1),
    "strides": _ints(1),
    "degree": _int_at_least(0),
    "grid_size": _int_at_least(1),
    "spline_order": _int_at_least(0),
    "drop_rate": _PROBABILITY,
    "drop_path_rate": _PROBABILITY,
    "proj_drop_rate": _PROBABILITY,
    "attn_drop_rate": _PROBABILITY,
    "pos_drop_rate": _PROBABILITY,
    "dropout": _PROBABILITY,
    "global_pool": ((lambda v: isinstance(v, str)), "a pooling name (str)"),
    "head_pool_size": _size(1),
}

_HINTS = {"num_classes": " (0 removes the classifier)"}


def check_model_args(variant: str, kwargs: Mapping[str, Any]) -> None:
    """Raises ValueError for the first argument of ``kwargs`` (and of ``basis_kwargs`` within it) that breaks
    its rule in :data:`ARG_RULES`; arguments without a rule, and None values (a family's default), pass."""
    nested = kwargs.get("basis_kwargs")
    items = list(kwargs.items()) + (list(nested.items()) if isinstance(nested, Mapping) else [])
    for name, value in items:
        rule = ARG_RULES.get(name)
        if rule is None or value is None:
            continue
        ok, what = rule
        if not ok(value):
            raise ValueError(f"{variant}: {name} must be {what}, got {value!r}{_HINTS.get(name, '')}")


def pool_error(variant: str, global_pool: Optional[str], error: AssertionError) -> Optional[ValueError]:
    """The ValueError for a pooling name the model rejected with an assertion (timm's pooling layers assert),
    or None when ``error`` is about something else."""
    if global_pool is None or "pool" not in str(error).lower():
        return None
    return ValueError(f"{variant}: global_pool={global_pool!r} is not supported ({str(error).strip()}); "
                      f"use one of '', 'avg', 'max', 'avgmax' (CNNs also 'catavgmax'; ViTs 'token', 'map')")


def scaled_vit_widths(embed_dim: int, num_heads: int, width_scale: float, hidden_name: str, hidden: int,
                      min_hidden: int = 1) -> Tuple[int, int]:
    """``(embed_dim, hidden)`` of a ViT with a KAN MLP after checking them and applying ``width_scale``: the
    embedding rounds to a multiple of ``num_heads``, the MLP's hidden width to at least ``min_hidden``."""
    if isinstance(width_scale, bool) or not isinstance(width_scale, (int, float)) or not width_scale > 0:
        raise ValueError(f"width_scale must be a number > 0, got {width_scale!r}")
    for name, v in (("embed_dim", embed_dim), ("num_heads", num_heads), (hidden_name, hidden)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if width_scale != 1.0:
        embed_dim = max(1, int(round(embed_dim * width_scale / num_heads))) * num_heads
        hidden = max(min_hidden, int(round(hidden * width_scale)))
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim={embed_dim} must be a multiple of num_heads={num_heads}")
    return embed_dim, hidden
