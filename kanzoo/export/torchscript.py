"""Export to TorchScript, verified by reloading the file with ``torch.jit.load`` and comparing with eager.

TorchScript is deprecated in recent torch releases (``torch.jit.script``/``trace`` warn) but still runs
wherever libtorch does, without Python; ``torch.export`` (:mod:`kanzoo.export.pt2`) and ONNX are the
maintained paths. The saved module needs neither kanzoo nor timm to load: it holds its code and weights.
kanzoo's metadata is stored as the extra file ``kanzoo.json``.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ._prepare import (
    InputSize,
    StagedFiles,
    can_vary_spatial,
    check_inputs,
    check_parent,
    eager_outputs,
    explain_instability,
    export_mode,
    first_line,
    quiet_export_warnings,
    resolve_input_size,
)
from .metadata import build_metadata, model_name, model_task
from .verify import ExportError, ExportReport, ExportVerificationError, check_rtol, verify_with_fallback

__all__ = ["TORCHSCRIPT_METHODS", "to_torchscript", "load_torchscript_metadata"]

TORCHSCRIPT_METHODS = ("script", "trace", "auto")
METADATA_FILE = "kanzoo.json"


def load_torchscript_metadata(path: Union[str, os.PathLike]) -> dict:
    """kanzoo's metadata dict of a TorchScript file written by :func:`to_torchscript` (empty if absent)."""
    files = {METADATA_FILE: ""}
    with quiet_export_warnings():
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return json.loads(files[METADATA_FILE]) if files[METADATA_FILE] else {}


def _compile(traced: nn.Module, method: str, x: torch.Tensor, name: str) -> torch.jit.ScriptModule:
    try:
        with torch.no_grad(), quiet_export_warnings():
            if method == "script":
                return torch.jit.script(traced)
            return torch.jit.trace(traced, x, check_trace=False)
    except Exception as e:  # noqa: BLE001  (TorchScript frontend errors come in many types)
        hint = "; try method='trace'" if method == "script" else ""
        raise ExportError(f"torch.jit.{method} failed for {name}: {first_line(e)}{hint}") from e


def to_torchscript(
    model: nn.Module,
    path: Union[str, os.PathLike],
    method: str = "script",
    input_size: InputSize = None,
    batch_size: int = 2,
    label_names: Optional[Sequence[str]] = None,
    data_config: Optional[Mapping[str, Any]] = None,
    rtol: float = 1e-4,
    seed: int = 0,
    verbose: bool = True,
) -> ExportReport:
    """Exports ``model`` as a TorchScript file at ``path``, verified before it is written.

    ``method='script'`` compiles the model's Python code (every input shape works, control flow is kept);
    ``'trace'`` records the operations run on one input; ``'auto'`` scripts and falls back to tracing (with a
    note) when the model is not scriptable. The file is saved under a temporary name, loaded
    back with ``torch.jit.load`` and run on the export batch, a batch of 1 and, where the model's input size
    is not fixed, a second spatial size; each output is compared with eager: max |loaded - eager| must be at
    most ``rtol`` × max |eager|. A scripted module must pass at every size checked; a traced one that does not
    reproduce eager at the second size is recorded as fixed-size (metadata ``dynamic_dims``) with a note.

    Other arguments are those of :func:`kanzoo.export.to_onnx`. Mixture-of-experts layers are exported in
    their dense-routing form (:mod:`kanzoo.export.moe`), so both methods keep per-input routing.
    """
    t0 = time.perf_counter()
    if method not in TORCHSCRIPT_METHODS:
        raise ValueError(f"method must be one of {list(TORCHSCRIPT_METHODS)}, got {method!r}")
    path = check_parent(path)
    rtol = check_rtol(rtol)
    name = model_name(model)
    with export_mode(model) as (traced, notes), StagedFiles() as staged:
        size = resolve_input_size(model, input_size)
        vary = can_vary_spatial(model)
        inputs = check_inputs(model, size, batch_size, spatial=vary, seed=seed)
        expected = eager_outputs(model, inputs)
        num_classes = int(expected["export"].shape[1])
        if method == "auto":
            try:
                compiled, method = _compile(traced, "script", inputs[0][1], name), "script"
            except ExportError as e:
                notes.append(f"not scriptable ({e}); traced instead")
                compiled, method = _compile(traced, "trace", inputs[0][1], name), "trace"
        else:
            compiled = _compile(traced, method, inputs[0][1], name)
        tmp = staged.stage(path)
        dims_used = {}

        def build(spatial: bool):
            dims = ["batch"] + (["height", "width"] if spatial else [])
            meta = build_metadata(model, size, num_classes, dims, label_names, data_config)
            dims_used["dims"] = dims
            try:
                with quiet_export_warnings():
                    torch.jit.save(compiled, str(tmp), _extra_files={METADATA_FILE: json.dumps(meta)})
                    loaded = torch.jit.load(str(tmp), map_location="cpu")
            except Exception as e:  # noqa: BLE001
                raise ExportVerificationError(f"the TorchScript file of {name} does not save and reload: "
                                              f"{first_line(e)}") from e
            loaded.eval()

            def run(x: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    return loaded(x)

            return run

        # a scripted module is shape-generic by construction: a failure at the second size is a real failure
        options = [True] if vary and method == "script" else ([True, False] if vary else [False])
        try:
            cmp, spatial = verify_with_fallback("torchscript", build, inputs, expected, options, rtol, notes)
        except ExportVerificationError as e:
            why = explain_instability(model, inputs[0][1], rtol)
            raise ExportVerificationError(f"{name}: {e}{why}; nothing was written to {path}") from e
        if vary and not spatial:
            notes.append(f"the traced module reproduces eager only at {size[1]}x{size[2]}; feed it that size")
        report = ExportReport(
            format="torchscript", path=str(path), runtime="torch.jit.load", max_abs_diff=cmp.max_abs_diff,
            output_scale=cmp.output_scale, tolerance=cmp.tolerance(rtol), inputs=cmp.inputs,
            dynamic_dims=dims_used["dims"], size_bytes=tmp.stat().st_size, seconds=0.0, notes=notes,
            extra={"method": method, "architecture": name, "task": model_task(model), "input_size": list(size)})
        staged.commit()
    report.seconds = time.perf_counter() - t0
    if verbose:
        print(report.summary())
    return report
