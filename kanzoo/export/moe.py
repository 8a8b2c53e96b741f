"""An exportable form of kanzoo's sparsely gated mixture-of-experts convolutions.

:class:`~kanzoo.layers.MoEKANConvNd` runs each expert only on the samples routed to it: the sub-batch sizes
are data (``bincount(...).tolist()``), which neither the ONNX tracer nor ``torch.export`` can express, and a
trace would freeze one input's routing into the graph. :class:`DenseRoutedMoE` computes the same function
with a fixed graph: every expert runs on the whole batch and the outputs are combined with the dense gate
matrix, which is zero outside each sample's top-k experts,

.. math:: y_b = \\sum_{e=1}^{E} g_{b,e}\\, \\mathrm{expert}_e(x)_b,\\qquad
          g_{b,\\cdot} = \\mathrm{scatter}\\big(\\operatorname{top-k}(m_b W_g),\\ \\mathrm{softmax}\\big)

with :math:`m_b` the spatial mean of sample b, as the eval-mode gate of the original layer (no noise).
In eval mode the experts are per-sample functions (no batch statistics), so the outputs equal the sparse
dispatch's up to the order of float additions; the cost is E expert convolutions instead of k per sample.
The load-balancing loss is a training quantity and is returned as zero.
"""
from __future__ import annotations

import copy
from typing import List, Optional, Tuple

import torch
from torch import nn

from ..layers.moe import MoEKANConvNd

__all__ = ["DenseRoutedMoE", "make_moe_exportable"]


class DenseRoutedMoE(nn.Module):
    """Eval-mode :class:`~kanzoo.layers.MoEKANConvNd` with dense routing (see the module docstring).

    Shares ``experts`` and ``w_gate`` with the layer it is built from. ``forward`` returns ``(y, zero)``
    like the original. Scriptable and traceable.
    """

    def __init__(self, moe: MoEKANConvNd):
        super().__init__()
        self.experts = moe.experts
        self.w_gate = moe.w_gate
        self.top_k = int(moe.top_k)
        self.in_channels = int(moe.in_channels)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        m = x.flatten(2).mean(-1).to(self.w_gate.dtype)
        logits = m @ self.w_gate
        top_vals, top_idx = logits.topk(self.top_k, dim=1)
        gates = torch.zeros_like(logits).scatter(1, top_idx, torch.softmax(top_vals, dim=1)).to(x.dtype)
        y: Optional[torch.Tensor] = None
        for e, expert in enumerate(self.experts):
            out = expert(x)
            shape: List[int] = [-1] + [1] * (out.dim() - 1)
            out = out * gates[:, e].reshape(shape)
            y = out if y is None else y + out
        assert y is not None
        return y, x.new_zeros(())


def make_moe_exportable(model: nn.Module) -> Tuple[nn.Module, int]:
    """``(model_for_export, n)``: a deep copy of ``model`` with each of its ``n`` MoE convolutions replaced by
    :class:`DenseRoutedMoE`, or ``model`` itself (``n = 0``) when it has none. The caller's model is never
    modified."""
    names = [name for name, m in model.named_modules() if isinstance(m, MoEKANConvNd)]
    if not names:
        return model, 0
    if isinstance(model, MoEKANConvNd):
        return DenseRoutedMoE(copy.deepcopy(model)).train(model.training), 1
    dense = copy.deepcopy(model)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = dense.get_submodule(parent_name) if parent_name else dense
        layer = getattr(parent, child)
        setattr(parent, child, DenseRoutedMoE(layer).train(layer.training))
    return dense, len(names)
