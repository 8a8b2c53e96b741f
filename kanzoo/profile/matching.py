"""Budget matching: :func:`match` finds the width of an MLP (or CNN) factory with the parameter or FLOP budget
of a given model (or a given target), counted by :func:`~kanzoo.profile.count`."""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Sequence, Tuple

from torch import nn

from ..layers.bases.base import check_count
from .counting import count

__all__ = ["MatchResult", "match"]


@dataclasses.dataclass
class MatchResult:
    """The result of :func:`match`.

    Attributes:
        width: the width whose budget is closest to ``target``; model: the model built at that width.
        budget: its budget; target: the budget matched; by: ``'params'`` or ``'flops'``.
        lower, upper: ``(width, budget)`` of the widest model at or under the target and the narrowest at
            or over it (``upper[0] - lower[0] <= step`` for a budget that grows with the width).
    """

    width: int
    model: nn.Module
    budget: int
    target: int
    by: str
    lower: Tuple[int, int]
    upper: Tuple[int, int]

    @property
    def rel_error(self) -> float:
        return (self.budget - self.target) / self.target if self.target else 0.0


def match(kan_model: Optional[nn.Module], mlp_factory: Callable[[int], nn.Module], by: str = "params",
          input_size: Optional[Sequence[int]] = None, convention: str = "kanzoo", target: Optional[int] = None,
          min_width: int = 1, step: int = 1, max_width: int = 1 << 20,
          elementwise: Optional[bool] = None) -> MatchResult:
    """Finds the width w for which ``mlp_factory(w)`` has the budget of ``kan_model``.

    Args:
        kan_model: the model whose budget is matched (or None with ``target``).
        mlp_factory: width -> model; its budget must not decrease with the width (an MLP's hidden width, a
            CNN's channel multiplier ...).
        by: ``'params'`` (parameters under ``convention``) or ``'flops'`` (:func:`count`'s total).
        input_size: input shape without the batch dim (needed for FLOPs; parameters also run a forward).
        convention, elementwise: passed to :func:`count` for both models.
        target: a budget to match instead of ``kan_model``'s.
        min_width, step, max_width: the widths tried are ``min_width + i·step`` up to ``max_width``.

    Searches by doubling and bisection (about 2·log2(w) factory calls). The returned width is the one of
    the two neighbours around the target whose budget is closer, so it is within one width step of the
    budget. Raises ValueError when even ``min_width`` is over the target or ``max_width`` is under it.
    """
    if by not in ("params", "flops"):
        raise ValueError(f"by must be 'params' or 'flops', got {by!r}")
    check_count("min_width", min_width, 1), check_count("step", step, 1), check_count("max_width", max_width, min_width)
    if target is None:
        if kan_model is None:
            raise ValueError("give kan_model or target")
        target = getattr(count(kan_model, input_size, convention, elementwise), by)
    cache: Dict[int, Tuple[int, nn.Module]] = {}

    def budget(i: int) -> int:
        if i not in cache:
            w = min_width + i * step
            m = mlp_factory(w)
            cache[i] = (getattr(count(m, input_size, convention, elementwise), by), m)
        return cache[i][0]

    if budget(0) > target:
        raise ValueError(f"the narrowest model (width {min_width}) already has {by}={budget(0):,} > target "
                         f"{target:,}; lower min_width or change the factory")
    max_i = (max_width - min_width) // step
    hi = 1
    while budget(min(hi, max_i)) < target:
        if hi >= max_i:
            raise ValueError(f"even width {min_width + max_i * step} has {by}={budget(max_i):,} < target "
                             f"{target:,}; raise max_width")
        hi *= 2
    hi = min(hi, max_i)
    lo = 0
    while hi - lo > 1:  # invariant: budget(lo) < target <= budget(hi), or lo == 0 with budget(0) <= target
        mid = (lo + hi) // 2
        if budget(mid) < target:
            lo = mid
        else:
            hi = mid
    if budget(lo) >= target:
        hi = lo
    best = lo if abs(budget(lo) - target) <= abs(budget(hi) - target) else hi
    w = lambda i: min_width + i * step  # noqa: E731
    return MatchResult(width=w(best), model=cache[best][1], budget=budget(best), target=int(target), by=by,
                       lower=(w(lo), budget(lo)), upper=(w(hi), budget(hi)))
