"""Compiled basis kernels: the switch and the fallback shared by the RSWAF basis (MLP-KAN's FasterKAN experts)
and the local B-spline basis (U-KAN's KAN layers).

Each kernel is a plain function of torch ops (one elementwise pass for the values, one for the backward)
run through ``torch.compile(fullgraph=True, dynamic=True)``: inductor emits one fused loop, C++ on CPU and
Triton on GPU. The bases wrap them in a custom autograd function that saves only the basis input.

The switch: :func:`set_basis_kernel` or the environment variable ``KANZOO_BASIS_KERNEL``, process-wide, each
one of

* ``"auto"`` (default): compiled for bases of at least ``MIN_COMPILED_NUMEL`` (65,536) values, eager below
  (compiling costs seconds; small inputs gain nothing); on the first compiler failure kanzoo warns once and
  uses the eager basis from then on;
* ``"compiled"``: compiled wherever it applies; errors propagate;
* ``"eager"``: never compile.

TorchScript, tracing, ONNX and ``torch.export``, an outer ``torch.compile``, the meta device, dispatch modes
(FLOP counting), tensor subclasses and half precision always take the eager formulas (:func:`eager_only`), as
``KANZOO_RATIONAL_KERNEL`` does for KAT's group-rational activation.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Dict, Optional, Sequence

import torch

__all__ = ["set_basis_kernel", "get_basis_kernel", "MIN_COMPILED_NUMEL"]

KERNELS = ("auto", "compiled", "eager")
_ENV = "KANZOO_BASIS_KERNEL"
_state: Dict[str, object] = {"default": None, "compile_failed": None}
#: "auto" evaluates smaller bases eagerly
MIN_COMPILED_NUMEL = 1 << 16
_COMPILED: Dict[Callable, Callable] = {}


def set_kernel_setting(state: Dict[str, object], kernel: Optional[str], choices: Sequence[str]) -> None:
    """Stores a process-wide kernel choice in ``state["default"]`` after checking it (None clears it)."""
    if kernel is not None and kernel not in choices:
        raise ValueError(f"kernel must be one of {tuple(choices)} or None, got {kernel!r}")
    state["default"] = kernel


def kernel_setting(state: Dict[str, object], env: str, choices: Sequence[str]) -> str:
    """The process-wide kernel choice: ``state["default"]`` if set, else ``$env``, else "auto"."""
    if state["default"] is not None:
        return str(state["default"])
    value = os.environ.get(env, "auto").strip().lower() or "auto"
    if value not in choices:
        raise ValueError(f"${env}={value!r} is not one of {tuple(choices)}")
    return value


def set_basis_kernel(kernel: Optional[str]) -> None:
    """Sets the process-wide kernel of the compiled bases ("auto", "compiled", "eager"; None: back to
    ``$KANZOO_BASIS_KERNEL`` or "auto")."""
    set_kernel_setting(_state, kernel, KERNELS)


def get_basis_kernel() -> str:
    """The process-wide basis kernel (see :func:`set_basis_kernel`)."""
    return kernel_setting(_state, _ENV, KERNELS)


def eager_only(x: torch.Tensor) -> bool:
    """True where a compiled kernel must not run: tracing, export, an outer compile, meta tensors, dispatch modes,
    tensor subclasses, dtypes other than float32/float64."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or x.device.type == "meta":
        return True
    if x.dtype not in (torch.float32, torch.float64):
        return True
    try:
        if torch.onnx.is_in_onnx_export():
            return True
    except AttributeError:  # pragma: no cover
        pass
    return torch._C._len_torch_dispatch_stack() > 0 or type(x) is not torch.Tensor and not isinstance(
        x, torch.nn.Parameter)


def use_kernel(x: torch.Tensor, numel: int) -> Optional[str]:
    """The kernel setting to run with ("auto" or "compiled"), or None where the eager basis must run."""
    kernel = get_basis_kernel()
    if kernel == "eager" or eager_only(x):
        return None
    if kernel == "auto" and (_state["compile_failed"] or numel < MIN_COMPILED_NUMEL):
        return None
    return kernel


def basis_kernel_for(x: torch.Tensor, prefix: Optional[torch.Tensor], num_basis: int) -> Optional[str]:
    """The kernel setting for a basis of ``num_basis`` functions on ``x`` (with an optional ``prefix`` slot of
    x's shape), or None where the eager basis must run."""
    if x.dim() < 2:
        return None
    kernel = use_kernel(x, x.numel() * num_basis)
    if kernel is None:
        return None
    if prefix is not None and (prefix.shape != x.shape or prefix.dtype != x.dtype or eager_only(prefix)):
        return None
    return kernel


def compiled(fn: Callable) -> Callable:
    """``torch.compile(fn, fullgraph=True, dynamic=True)``, once per function."""
    c = _COMPILED.get(fn)
    if c is None:
        c = torch.compile(fn, fullgraph=True, dynamic=True)
        _COMPILED[fn] = c
    return c


def run(fn: Callable, requested: str, *args):
    """``fn(*args)`` compiled, without grad mode (one graph per dtype and rank); when ``requested`` is "auto", a
    compiler failure warns once, runs ``fn`` eagerly and makes "auto" eager from then on."""
    with torch.no_grad():
        try:
            return compiled(fn)(*args)
        except Exception as e:  # noqa: BLE001  (no compiler, unsupported backend, ...)
            if requested != "auto":
                raise
            compile_failed(_state, e, "kanzoo basis kernel", "basis", _ENV, stacklevel=5)
            return fn(*args)


def compile_failed(state: Dict[str, object], error: Exception, who: str, what: str, env: str,
                   stacklevel: int) -> None:
    """Records a compiler failure in ``state`` (so that "auto" stays eager from now on) and warns once."""
    msg = str(error).strip()
    state["compile_failed"] = f"{type(error).__name__}: {msg.splitlines()[0] if msg else ''}"
    warnings.warn(f"{who}: torch.compile failed ({state['compile_failed']}); using the eager {what} from now on "
                  f"(slower). Set {env}=eager to silence this, or install a C++ compiler (CPU) / triton (GPU) for "
                  f"the fast kernel.", RuntimeWarning, stacklevel=stacklevel)


class BasisKernel:
    """A basis evaluated by compiled kernels, from two plain functions of x flattened to (N, C, S):
    ``values(x, *consts) -> (N, C, F, S)`` and ``grad_input(x, grad, *consts) -> (N, C, S)``, the sum over j of
    grad_j · dB_j/dx. The prefix variant (a first slot holding ``prefix``, see :func:`~.base.cat_basis`) and the
    autograd function, which saves only x and calls ``grad_input`` in backward, are shared by every basis."""

    def __init__(self, values: Callable, grad_input: Callable):
        self.values = values
        self.grad_input = grad_input

        def values_with_prefix(x: torch.Tensor, prefix: torch.Tensor, *consts):
            return torch.cat([prefix.unsqueeze(2), values(x, *consts)], dim=2)

        self.values_with_prefix = values_with_prefix

    def evaluate(self, x: torch.Tensor, prefix: Optional[torch.Tensor], consts: tuple, num_basis: int,
                 kernel: str) -> torch.Tensor:
        """The basis (with the prefix slot first when given) of any-rank x, without autograd."""
        out_shape = list(x.shape)
        out_shape.insert(2, num_basis + (0 if prefix is None else 1))
        if prefix is None:
            y = run(self.values, kernel, flat(x), *consts)
        else:
            y = run(self.values_with_prefix, kernel, flat(x), flat(prefix), *consts)
        return y.view(out_shape)

    def __call__(self, x: torch.Tensor, prefix: Optional[torch.Tensor], consts: tuple, num_basis: int,
                 kernel: str) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or (prefix is not None and prefix.requires_grad)):
            return _BasisKernelFunction.apply(x, prefix, self, consts, num_basis, kernel)
        return self.evaluate(x, prefix, consts, num_basis, kernel)


class _BasisKernelFunction(torch.autograd.Function):
    """A :class:`BasisKernel` under autograd: saves only x; backward reruns the basis with its derivative."""

    @staticmethod
    def forward(ctx, x, prefix, spec: BasisKernel, consts: tuple, num_basis: int, kernel: str):
        ctx.save_for_backward(x)
        ctx.spec, ctx.consts, ctx.kernel = spec, consts, kernel
        ctx.has_prefix = prefix is not None
        return spec.evaluate(x, prefix, consts, num_basis, kernel)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            off = 1 if ctx.has_prefix else 0
            g = grad.narrow(2, off, grad.shape[2] - off)
            g = g.reshape(g.shape[0], g.shape[1], g.shape[2], -1)
            static(g, dims=(2,))
            grad_x = run(ctx.spec.grad_input, ctx.kernel, flat(x), g.detach(), *ctx.consts).view(x.shape)
        grad_prefix = grad.select(2, 0) if ctx.has_prefix and ctx.needs_input_grad[1] else None
        return grad_x, grad_prefix, None, None, None, None


def static(*tensors: torch.Tensor, dims: Optional[Sequence[int]] = None) -> None:
    """Marks the basis-axis sizes (every dim of the small constant tensors, or ``dims``) static for the compiled
    kernels: the basis loop is then unrolled and vectorised for its actual size, while the token and channel
    counts stay dynamic."""
    for t in tensors:
        for d in (range(t.dim()) if dims is None else dims):
            torch._dynamo.mark_static(t, d)


def flat(t: torch.Tensor) -> torch.Tensor:
    """(N, C, *spatial) -> (N, C, S), detached: the kernels see one rank."""
    return t.detach().reshape(t.shape[0], t.shape[1], -1)
