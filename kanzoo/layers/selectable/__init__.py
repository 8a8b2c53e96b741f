r"""Selectable KAN layers: every output channel learns which basis it uses.

S-KAN / S-ConvKAN (Yang, Zhang, Luo, Lu, Shen, "Activation Space Selectable Kolmogorov-Arnold Networks",
arXiv 2408.08338) give each KAN node a pool of candidate activation families (B-spline, Chebyshev, wavelet,
RBF, ...), train them in a learnable weighted combination, keep the strongest and prune the rest. The paper
publishes no code; what kanzoo implements, and which parts are its own choices, is written down in
docs/selectable.md. In short, for a pool of M kanzoo bases:

.. math::
    y_o = \sigma_{out}\Big(\mathrm{Norm}\big(\textstyle\sum_{m=1}^{M} \alpha_{om}\,\mathrm{KAN}_m(x)_o\big)\Big),
    \qquad \alpha_{o\cdot} = \mathrm{softmax}\big(a_{o\cdot} / T\big)

where every :math:`\mathrm{KAN}_m` is a full kanzoo KAN layer (:class:`~kanzoo.layers.KANConvNd` or
:class:`~kanzoo.layers.KANLinear`, base branch included) over basis m, without its own norm and output
activation, and :math:`a` (``alpha``, shape (out, M)) is learnt. The norm and activation act on the
mixture, once. Training runs in three phases (:class:`kanzoo.workflows.selection.SelectionSchedule`):

1. full training: every member of every channel is active;
2. selective training: :meth:`~SelectableKANLinear.select` keeps each channel's top-k members (α is
   renormalised over them; with k = 1 it is exactly 1);
3. pruning: :meth:`~SelectableKANLinear.prune` returns a plain module that holds, per chosen basis, one KAN
   layer with only the channels that chose it (α folded into their weights), so the compute drops.

Because each member is linear in its own weights before the norm, folding α is exact: pruning changes no
output wherever α is one-hot (in particular after ``select(1)``).

The package holds the layers (:mod:`.modules`) and the operations on a whole model (:mod:`.ops`); the
training-loop schedule of the three phases belongs to the workflows (:mod:`kanzoo.workflows.selection`).
"""
from ...errors import NotPrunedError

# also importable from here, outside __all__ as before: ALPHA_MODES, PoolType, parse_pool, and for kanzoo.profile,
# which tells the selectable and pruned layers apart, SELECTABLE_LAYERS and _PrunedBase
from .modules import (  # noqa: F401
    ALPHA_MODES,
    DEFAULT_POOL,
    SELECTABLE_LAYERS,
    PoolType,
    PrunedKANConvNd,
    PrunedKANLinear,
    SelectableKANConv1d,
    SelectableKANConv2d,
    SelectableKANConv3d,
    SelectableKANConvNd,
    SelectableKANLinear,
    _PrunedBase,
    parse_pool,
)
from .ops import (
    check_exportable,
    masks_from_spec,
    masks_to_spec,
    prune_masks,
    prune_model,
    select_model,
    selectable_layers,
    selection_summary,
)

__all__ = [
    "DEFAULT_POOL", "NotPrunedError", "PrunedKANConvNd", "PrunedKANLinear", "SelectableKANConv1d",
    "SelectableKANConv2d", "SelectableKANConv3d", "SelectableKANConvNd", "SelectableKANLinear", "check_exportable",
    "masks_from_spec", "masks_to_spec", "prune_masks", "prune_model", "select_model", "selectable_layers",
    "selection_summary",
]
