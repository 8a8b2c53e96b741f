"""A fused backward for parameter-free bases whose derivative has a closed form (RBF).

Training through autograd keeps the intermediates of the basis (the scaled distances and their
exponentials) until backward; these are (N, C, F, ...) tensors, several times the layer input. Here the
forward runs without a graph and saves only x; backward evaluates dB_f/dx in one go and reduces it
against the incoming gradient, so the only large tensors alive are transient.
"""
from typing import Optional

import torch

from .._utils import is_symbolic
from .base import Basis, CompilableValues, cat_basis


class _ClosedFormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, prefix, basis):
        ctx.basis, ctx.has_prefix = basis, prefix is not None
        ctx.save_for_backward(x)
        with torch.no_grad():
            return cat_basis(basis.evaluate(x), prefix)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        off = 1 if ctx.has_prefix else 0
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad.narrow(2, off, grad.shape[2] - off) * ctx.basis.derivatives(x)).sum(dim=2)
        grad_prefix = grad.select(2, 0) if ctx.has_prefix and ctx.needs_input_grad[1] else None
        return grad_x, grad_prefix, None


class ClosedFormBasis(Basis, CompilableValues):
    """Base of bases with ``values(x)`` and ``derivatives(x)`` (both (N, C, F, ...)) and no learnable
    parameters. Scripting, tracing and no-grad inference use ``values`` directly."""

    def values(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivatives(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.jit.unused
    def _forward_fused(self, x: torch.Tensor, prefix: Optional[torch.Tensor]) -> torch.Tensor:
        return _ClosedFormFunction.apply(x, prefix, self)

    def forward(self, x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        if torch.jit.is_scripting() or torch.jit.is_tracing() or is_symbolic(x) or not torch.is_grad_enabled():
            return cat_basis(self.values(x), prefix)
        if not x.requires_grad and (prefix is None or not prefix.requires_grad):
            return cat_basis(self.evaluate(x), prefix)
        return self._forward_fused(x, prefix)
