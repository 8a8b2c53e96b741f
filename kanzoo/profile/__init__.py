"""Parameters and FLOPs of any model, KAN basis evaluation included, and budget matching.

* :mod:`.counting`: :func:`count` (per-layer parameters and FLOPs of one forward, kanzoo's or KANbeFair's
  convention), :func:`count_macs` (the dense MACs alone), the :class:`Profile` it returns;
* :mod:`.formulas`: KANbeFair's formulas (:func:`kanbefair_flops`, ...), kanzoo's per-basis FLOPs (read from the
  basis classes: :func:`basis_flops`, :func:`gram_flops`, ...) and per-layer formulas (:func:`kan_linear_flops`);
* :mod:`.matching`: :func:`match`, the width of an MLP or CNN with a given model's budget.

Derivations and the differences between the two conventions: docs/profile.md.
"""
from .counting import COUNTED_OPS, LayerProfile, Profile, count, count_macs
from .formulas import (  # noqa: F401  (BASIS_FLOPS, WAVELET_FLOPS: importable here, outside __all__ as before)
    ACT_FLOPS,
    BASIS_FLOPS,
    FLOPS_MAP,
    WAVELET_FLOPS,
    basis_flops,
    basis_module_flops,
    bernstein_flops,
    bspline_flops,
    chebyshev_flops,
    gram_flops,
    jacobi_flops,
    kan_linear_flops,
    kan_linear_params,
    kanbefair_bspline_act_flops,
    kanbefair_flops,
    kanbefair_layer,
    kanbefair_params,
    kanbefair_total,
    legendre_flops,
    rational_flops,
    rbf_flops,
    relu_flops,
    rswaf_flops,
    wavelet_flops,
)
from .matching import MatchResult, match

__all__ = [
    "ACT_FLOPS", "COUNTED_OPS", "FLOPS_MAP", "LayerProfile", "MatchResult", "Profile", "basis_flops",
    "basis_module_flops", "bernstein_flops", "bspline_flops", "chebyshev_flops", "count", "count_macs",
    "gram_flops", "jacobi_flops", "kan_linear_flops", "kan_linear_params", "kanbefair_bspline_act_flops",
    "kanbefair_flops", "kanbefair_layer", "kanbefair_params", "kanbefair_total", "legendre_flops", "match",
    "rbf_flops", "relu_flops", "rswaf_flops", "wavelet_flops", "rational_flops",
]
