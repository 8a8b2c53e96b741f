"""Model statistics for ``kanzoo info``, model cards and benchmarks; the implementation lives in
:mod:`kanzoo.profile` (``count`` for parameters and FLOPs including the KAN basis evaluation)."""
from ..profile import COUNTED_OPS, count, count_macs

__all__ = ["COUNTED_OPS", "count", "count_macs"]
