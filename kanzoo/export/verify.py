"""What every exporter reports, and the check that decides whether an artifact is written.

An artifact passes when, on every verification input, the runtime that will serve it (onnxruntime, the
reloaded TorchScript module, the reloaded ``torch.export`` program) agrees with PyTorch eager:

.. math:: \\max_i |y^{\\mathrm{artifact}}_i - y^{\\mathrm{eager}}_i| \\le r_{tol} \\cdot \\max_i |y^{\\mathrm{eager}}_i|

with ``rtol = 1e-4`` by default, the maximum taken over all outputs of all verification inputs (the "output
scale" on the right is the largest eager output magnitude). Shapes must match exactly and every value must
be finite.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ExportError, ExportVerificationError, first_line

__all__ = ["ExportError", "ExportVerificationError", "ExportReport", "Comparison", "verify_with_fallback"]




@dataclasses.dataclass
class Comparison:
    """The running result of comparing artifact outputs with eager outputs over several inputs."""

    max_abs_diff: float = 0.0
    output_scale: float = 0.0
    inputs: List[Tuple[int, ...]] = dataclasses.field(default_factory=list)
    top1_agree: int = 0
    top1_total: int = 0

    def add(self, what: str, got: Any, expected: Any, input_shape: Sequence[int]) -> None:
        """Adds one input's outputs (arrays or tensors). Raises :class:`ExportVerificationError` on a shape
        mismatch or a non-finite value in either output."""
        got, expected = _as_array(got), _as_array(expected)
        shape = tuple(int(s) for s in input_shape)
        if got.shape != expected.shape:
            raise ExportVerificationError(
                f"{what}: output shape {got.shape} for input {shape}, PyTorch eager gives {expected.shape}")
        if not np.isfinite(expected).all():
            raise ExportVerificationError(
                f"PyTorch eager output for input {shape} has {int((~np.isfinite(expected)).sum())} non-finite values; "
                f"the model cannot be verified (check its weights)")
        if not np.isfinite(got).all():
            raise ExportVerificationError(
                f"{what}: {int((~np.isfinite(got)).sum())} non-finite outputs for input {shape} where eager is finite")
        diff = float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max()) if got.size else 0.0
        self.max_abs_diff = max(self.max_abs_diff, diff)
        self.output_scale = max(self.output_scale, float(np.abs(expected).max()) if expected.size else 0.0)
        self.inputs.append(shape)
        if expected.ndim == 2 and expected.shape[1] > 1:  # classification logits: top-1 agreement
            self.top1_agree += int((got.argmax(1) == expected.argmax(1)).sum())
            self.top1_total += expected.shape[0]

    def tolerance(self, rtol: float) -> float:
        return rtol * self.output_scale

    def passed(self, rtol: float) -> bool:
        return self.max_abs_diff <= self.tolerance(rtol)


def _as_array(t: Any) -> np.ndarray:
    if isinstance(t, (list, tuple)):
        if len(t) != 1:
            raise ExportVerificationError(f"expected one output tensor, got {len(t)}")
        t = t[0]
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.asarray(t)


def _fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


def _fmt_bytes(n: int) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


@dataclasses.dataclass
class ExportReport:
    """One written (and verified) artifact.

    Attributes:
        format: ``'onnx'``, ``'onnx-int8-dynamic'``, ``'onnx-int8-static'``, ``'torchscript'`` or ``'pt2'``.
        path: where the artifact is.
        runtime: what ran it for the check (``'onnxruntime 1.22.0'``, ``'torch.jit.load'``, ``'torch.export.load'``).
        max_abs_diff: max |artifact - eager| over all verification inputs.
        output_scale: max |eager| over the same outputs.
        tolerance: the bound max_abs_diff had to meet (``rtol × output_scale``); None for int8 artifacts, which
            are compared and reported but not held to the float bound.
        inputs: the verification input shapes.
        dynamic_dims: the input dims the artifact accepts at any size (``'batch'``, ``'height'``, ``'width'``).
        size_bytes, seconds: file size; export + verification wall time.
        notes: decisions the exporter made (a fallback to fixed spatial size, MoE routing made dense, ...).
        extra: format specifics (opset, method, top-1 agreement, the float model's size for int8 ...).
        quantized: the int8 model written next to an ONNX export with ``quantize=...``, if any.
    """

    format: str
    path: str
    runtime: str
    max_abs_diff: float
    output_scale: float
    tolerance: Optional[float]
    inputs: List[Tuple[int, ...]]
    dynamic_dims: List[str]
    size_bytes: int
    seconds: float
    notes: List[str] = dataclasses.field(default_factory=list)
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)
    quantized: Optional["ExportReport"] = None

    @property
    def passed(self) -> bool:
        return self.tolerance is None or self.max_abs_diff <= self.tolerance

    def summary(self, include_quantized: bool = True) -> str:
        """One line (plus notes): format, max difference against eager, the bound, file and size; then the int8
        model's summary, if any and ``include_quantized``."""
        shapes = ", ".join(_fmt_shape(s) for s in self.inputs)
        if self.tolerance is None:
            bound = "int8, not held to the float tolerance"
        else:
            bound = f"tolerance {self.tolerance:.1e}: {'OK' if self.passed else 'FAILED'}"
        agree = self.extra.get("top1_agreement")
        agree_s = f", top-1 agrees on {agree}" if agree else ""
        dyn = ",".join(self.dynamic_dims) if self.dynamic_dims else "none"
        line = (f"{self.format}: max |{self.runtime} - eager| = {self.max_abs_diff:.2e} over inputs {shapes} "
                f"(output scale {self.output_scale:.3g}, {bound}{agree_s}); dynamic dims: {dyn} "
                f"-> {self.path} ({_fmt_bytes(self.size_bytes)}, {self.seconds:.1f} s)")
        lines = [line] + [f"  note: {n}" for n in self.notes]
        if self.quantized is not None and include_quantized:
            lines.append(self.quantized.summary())
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["passed"] = self.passed
        d["inputs"] = [list(s) for s in self.inputs]
        return d


def check_rtol(rtol: float) -> float:
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not (0 < rtol < 1) or math.isnan(rtol):
        raise ValueError(f"rtol must be a number in (0, 1), got {rtol!r}")
    return float(rtol)


def _run_checked(fmt: str, run: Callable[[Any], Any], x: Any, expected: Any, cmp: Comparison) -> None:
    shape = tuple(int(s) for s in x.shape)
    try:
        got = run(x)
    except Exception as e:  # noqa: BLE001  (any runtime failure is a verification failure)
        raise ExportVerificationError(f"{fmt}: running the exported model on an input of shape {shape} failed: "
                                      f"{first_line(e)}") from e
    cmp.add(fmt, got, expected, shape)


def _require(fmt: str, cmp: Comparison, rtol: float) -> None:
    if not cmp.passed(rtol):
        raise ExportVerificationError(
            f"{fmt}: max |exported - eager| = {cmp.max_abs_diff:.3e} over inputs {cmp.inputs} exceeds the tolerance "
            f"{cmp.tolerance(rtol):.3e} (rtol {rtol:g} x output scale {cmp.output_scale:.4g})")


def verify_with_fallback(fmt: str, build: Callable[[bool], Callable[[Any], Any]],
                         inputs: Sequence[Tuple[str, Any]], expected: Dict[str, Any], spatial_options: Sequence[bool],
                         rtol: float, notes: List[str]) -> Tuple[Comparison, bool]:
    """Exports with each spatial option in turn until one verifies.

    ``build(dynamic_spatial)`` writes the artifact and returns a function running it on one input.
    ``inputs`` are ``(what, tensor)`` pairs as :func:`kanzoo.export._prepare.check_inputs` makes them and
    ``expected`` their eager outputs by ``what``. The ``'spatial'`` input is checked only for a dynamic-spatial
    export. When an option fails (export error or verification failure) and another one remains, the failure
    is recorded in ``notes`` and the next option is tried; otherwise the error propagates. Returns the
    passing comparison and the spatial option that produced it.
    """
    for i, spatial in enumerate(spatial_options):
        last = i + 1 == len(spatial_options)
        try:
            run = build(spatial)
        except ExportError as e:
            if last or not spatial:
                raise
            notes.append(f"export with dynamic height/width failed ({e}); exported with a fixed spatial size")
            continue
        cmp = Comparison()
        for what, x in inputs:
            if what != "spatial":
                _run_checked(fmt, run, x, expected[what], cmp)
        _require(fmt, cmp, rtol)
        if spatial:
            trial = dataclasses.replace(cmp, inputs=list(cmp.inputs))
            try:
                for what, x in inputs:
                    if what == "spatial":
                        _run_checked(fmt, run, x, expected[what], trial)
                _require(fmt, trial, rtol)
            except ExportVerificationError as e:
                if last:
                    raise
                notes.append(f"dynamic height/width did not verify ({e}); exported with a fixed spatial size")
                continue
            cmp = trial
        return cmp, spatial
    raise ExportError(f"{fmt}: no spatial option to export with")  # only for an empty spatial_options
