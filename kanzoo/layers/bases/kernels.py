"""Compiled kernels: the switch and the fallback shared by the compiled bases (every registered basis: the RSWAF
basis of MLP-KAN's FasterKAN experts, the local B-spline basis, the recurrence bases, Bernstein, RBF, ReLU-KAN,
wavelet), the edge-wise wavelet conv (:mod:`kanzoo.layers.wavelet_conv`) and KAT's group-rational activation
(:mod:`kanzoo.layers.rational`).

Each basis kernel is a plain function of torch ops (one elementwise pass for the values, one for the backward)
run through ``torch.compile(fullgraph=True, dynamic=True)``: inductor emits one fused loop, C++ on CPU and
Triton on GPU. The bases wrap them in a custom autograd function that saves only the basis input (and, with
:class:`ParamBasisKernel`, the per-channel parameters, whose gradients the backward kernel also returns).

A :class:`KernelSwitch` is one process-wide choice read from its environment variable unless set in code:
``KANZOO_BASIS_KERNEL`` (:func:`set_basis_kernel`) for the bases, ``KANZOO_RATIONAL_KERNEL``
(:func:`~kanzoo.layers.rational.set_rational_kernel`) for the rationals, each one of

* ``"auto"`` (default): compiled for inputs of at least ``MIN_COMPILED_NUMEL`` (65,536) values, eager below
  (compiling costs seconds; small inputs gain nothing); on the first compiler failure kanzoo warns once and
  that switch runs eagerly from then on;
* ``"compiled"``: compiled wherever it applies; errors propagate;
* ``"eager"``: never compile;

(the rational switch adds ``"formula"``, see its module). TorchScript, tracing, ONNX and ``torch.export``, an
outer ``torch.compile``, the meta device, dispatch modes (FLOP counting) and tensor subclasses always take the
eager formulas (:func:`eager_context`); the bases also do for half precision (:func:`eager_only`).
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Dict, Optional, Sequence

import torch

from ...errors import first_line

__all__ = ["KernelSwitch", "set_basis_kernel", "get_basis_kernel", "MIN_COMPILED_NUMEL"]

#: "auto" evaluates smaller inputs eagerly
MIN_COMPILED_NUMEL = 1 << 16
_COMPILED: Dict[Callable, Callable] = {}


class KernelSwitch:
    """One process-wide kernel choice and its compiler-failure fallback.

    Args:
        env: the environment variable read when no choice was set in code.
        choices: the accepted settings; "auto", "compiled" and "eager" have the meaning of the module docstring.
        who, what: how the fallback warning names the caller and its eager replacement.

    ``state`` holds ``"default"`` (the choice set in code, or None) and ``"compile_failed"`` (the first compiler
    error under "auto", or None).
    """

    def __init__(self, env: str, choices: Sequence[str], who: str, what: str):
        self.env = env
        self.choices = tuple(choices)
        self.who = who
        self.what = what
        self.state: Dict[str, Optional[str]] = {"default": None, "compile_failed": None}

    def check(self, kernel: Optional[str]) -> None:
        """Raises ValueError unless ``kernel`` is one of ``choices`` or None."""
        if kernel is not None and kernel not in self.choices:
            raise ValueError(f"kernel must be one of {self.choices} or None, got {kernel!r}")

    def set(self, kernel: Optional[str]) -> None:
        """Sets the process-wide choice (None: back to ``$env`` or "auto")."""
        self.check(kernel)
        self.state["default"] = kernel

    def get(self) -> str:
        """The process-wide choice: the one set in code, else ``$env``, else "auto"."""
        if self.state["default"] is not None:
            return str(self.state["default"])
        value = os.environ.get(self.env, "auto").strip().lower() or "auto"
        if value not in self.choices:
            raise ValueError(f"${self.env}={value!r} is not one of {self.choices}")
        return value

    def resolve(self, kernel: str, numel: int) -> str:
        """``kernel`` with "auto" made "compiled" or "eager" for an input of ``numel`` values."""
        if kernel == "auto":
            return "eager" if self.state["compile_failed"] or numel < MIN_COMPILED_NUMEL else "compiled"
        return kernel

    def call(self, fast: Callable, fallback: Callable, requested: str, *args, stacklevel: int = 4):
        """``fast(*args)``; when ``requested`` is "auto", a failure of it (the compiler's) warns once, returns
        ``fallback(*args)`` and makes this switch's "auto" eager from then on."""
        try:
            return fast(*args)
        except Exception as e:  # noqa: BLE001  (no compiler, unsupported backend, ...)
            if requested != "auto":
                raise
            self.state["compile_failed"] = first_line(e, with_type=True)
            warnings.warn(f"{self.who}: torch.compile failed ({self.state['compile_failed']}); using the eager "
                          f"{self.what} from now on (slower). Set {self.env}=eager to silence this, or install a C++ "
                          f"compiler (CPU) / triton (GPU) for the fast kernel.", RuntimeWarning, stacklevel=stacklevel)
            return fallback(*args)


BASIS_KERNEL = KernelSwitch("KANZOO_BASIS_KERNEL", ("auto", "compiled", "eager"), "kanzoo basis kernel", "basis")
_state = BASIS_KERNEL.state


def set_basis_kernel(kernel: Optional[str]) -> None:
    """Sets the process-wide kernel of the compiled bases ("auto", "compiled", "eager"; None: back to
    ``$KANZOO_BASIS_KERNEL`` or "auto")."""
    BASIS_KERNEL.set(kernel)


def get_basis_kernel() -> str:
    """The process-wide basis kernel (see :func:`set_basis_kernel`)."""
    return BASIS_KERNEL.get()


def eager_context(x: torch.Tensor) -> bool:
    """True where no compiled kernel may run on ``x``: tracing, export, an outer compile, meta tensors, dispatch
    modes, tensor subclasses."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or x.device.type == "meta":
        return True
    try:
        if torch.onnx.is_in_onnx_export():
            return True
    except AttributeError:  # pragma: no cover
        pass
    return torch._C._len_torch_dispatch_stack() > 0 or type(x) is not torch.Tensor and not isinstance(
        x, torch.nn.Parameter)


def eager_only(x: torch.Tensor) -> bool:
    """True where a compiled basis kernel must not run: :func:`eager_context`, or a dtype other than
    float32/float64."""
    return x.dtype not in (torch.float32, torch.float64) or eager_context(x)


def use_kernel(x: torch.Tensor, numel: int) -> Optional[str]:
    """The basis kernel setting to run with ("auto" or "compiled"), or None where the eager basis must run."""
    kernel = get_basis_kernel()
    if eager_only(x) or BASIS_KERNEL.resolve(kernel, numel) == "eager":
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
    compiler failure runs ``fn`` eagerly (:meth:`KernelSwitch.call`)."""
    with torch.no_grad():
        return BASIS_KERNEL.call(lambda *a: compiled(fn)(*a), fn, requested, *args, stacklevel=6)


def _with_prefix(values: Callable) -> Callable:
    """``values`` with a first slot holding ``prefix`` (a kernel of its own: the cat fuses into the loop)."""
    def values_with_prefix(x: torch.Tensor, prefix: torch.Tensor, *rest):
        return torch.cat([prefix.unsqueeze(2), values(x, *rest)], dim=2)
    return values_with_prefix


class BasisKernel:
    """A basis evaluated by compiled kernels, from two plain functions of x flattened to (N, C, S):
    ``values(x, *consts) -> (N, C, F, S)`` and ``grad_input(x, grad, *consts) -> (N, C, S)``, the sum over j of
    grad_j · dB_j/dx. The prefix variant (a first slot holding ``prefix``, see :func:`~.base.cat_basis`) and the
    autograd function, which saves only x and calls ``grad_input`` in backward, are shared by every basis."""

    def __init__(self, values: Callable, grad_input: Callable):
        self.values = values
        self.grad_input = grad_input
        self.values_with_prefix = _with_prefix(values)

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


class ParamBasisKernel:
    """A basis with per-channel parameters (each (C, F), e.g. the ReLU-KAN phases or the wavelet scales) evaluated
    by compiled kernels, from two plain functions of x flattened to (N, C, S) and the parameters viewed as
    (1, C, F, 1): ``values(x, *params, *consts) -> (N, C, F, S)`` and ``backward(x, grad, *params, *consts) ->
    (grad_x (N, C, S), *grad_params (1, C, F, 1))``. Like :class:`BasisKernel`, training saves only x and the
    parameters and the backward is one compiled pass."""

    def __init__(self, values: Callable, backward: Callable):
        self.values = values
        self.backward = backward
        self.values_with_prefix = _with_prefix(values)

    def evaluate(self, x: torch.Tensor, prefix: Optional[torch.Tensor], params: tuple, consts: tuple,
                 num_basis: int, kernel: str) -> torch.Tensor:
        """The basis (with the prefix slot first when given) of any-rank x, without autograd."""
        out_shape = list(x.shape)
        out_shape.insert(2, num_basis + (0 if prefix is None else 1))
        ps = tuple(param_view(p) for p in params)
        if prefix is None:
            y = run(self.values, kernel, flat(x), *ps, *consts)
        else:
            y = run(self.values_with_prefix, kernel, flat(x), flat(prefix), *ps, *consts)
        return y.view(out_shape)

    def __call__(self, x: torch.Tensor, prefix: Optional[torch.Tensor], params: tuple, consts: tuple,
                 num_basis: int, kernel: str) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or (prefix is not None and prefix.requires_grad)
                                        or any(p.requires_grad for p in params)):
            return _ParamBasisKernelFunction.apply(x, prefix, self, consts, num_basis, kernel, *params)
        return self.evaluate(x, prefix, params, consts, num_basis, kernel)


class _ParamBasisKernelFunction(torch.autograd.Function):
    """A :class:`ParamBasisKernel` under autograd: saves x and the parameters; backward is one compiled pass."""

    @staticmethod
    def forward(ctx, x, prefix, spec: ParamBasisKernel, consts: tuple, num_basis: int, kernel: str, *params):
        ctx.save_for_backward(x, *params)
        ctx.spec, ctx.consts, ctx.kernel = spec, consts, kernel
        ctx.has_prefix = prefix is not None
        return spec.evaluate(x, prefix, params, consts, num_basis, kernel)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, *params = ctx.saved_tensors
        off = 1 if ctx.has_prefix else 0
        g = grad.narrow(2, off, grad.shape[2] - off)
        g = g.reshape(g.shape[0], g.shape[1], g.shape[2], -1)
        static(g, dims=(2,))
        ps = tuple(param_view(p) for p in params)
        grad_x, *grad_params = run(ctx.spec.backward, ctx.kernel, flat(x), g.detach(), *ps, *ctx.consts)
        grad_x = grad_x.view(x.shape) if ctx.needs_input_grad[0] else None
        grad_prefix = grad.select(2, 0) if ctx.has_prefix and ctx.needs_input_grad[1] else None
        grad_params = [gp.view(p.shape) if need else None
                       for gp, p, need in zip(grad_params, params, ctx.needs_input_grad[6:])]
        return (grad_x, grad_prefix, None, None, None, None, *grad_params)


def param_view(p: torch.Tensor) -> torch.Tensor:
    """A (C, F) per-channel parameter as a detached (1, C, F, 1) view, its basis axis static."""
    v = p.detach().view(1, p.shape[0], p.shape[1], 1)
    static(v, dims=(2,))
    return v


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
