"""Export with ``torch.export`` to a ``.pt2`` archive, verified by reloading it with ``torch.export.load``.

The archive holds an :class:`~torch.export.ExportedProgram`: an ATen-level graph plus weights, loadable
without kanzoo (``torch.export.load(path).module()(x)``) and the input to AOTInductor or ExecuTorch. The
batch dim is exported as ``Dim('batch', min=1)``; height and width as ``Dim.AUTO`` (dynamic unless the model
pins them; the ranges the model allows are recorded in the report's ``extra['ranges']``).
kanzoo's metadata is the extra file ``kanzoo.json``.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
from torch import nn
from torch.export import Dim

from ._prepare import (
    InputSize,
    StagedFiles,
    check_parent,
    explain_instability,
    export_mode,
    first_line,
    quiet_export_warnings,
    trace_setup,
)
from .metadata import build_metadata, model_name, model_task
from .verify import ExportError, ExportReport, ExportVerificationError, check_rtol, verify_with_fallback

__all__ = ["to_pt2", "load_pt2_metadata"]

METADATA_FILE = "kanzoo.json"
_DIM_NAMES = {0: "batch", 2: "height", 3: "width"}


def load_pt2_metadata(path: Union[str, os.PathLike]) -> dict:
    """kanzoo's metadata dict of a ``.pt2`` file written by :func:`to_pt2` (empty if absent)."""
    files = {METADATA_FILE: ""}
    torch.export.load(str(path), extra_files=files)
    return json.loads(files[METADATA_FILE]) if files[METADATA_FILE] else {}


def _input_dims(ep: "torch.export.ExportedProgram") -> Dict[str, str]:
    """Which input dims stayed symbolic, with the range the program accepts (``'batch': '[1, inf]'``)."""
    user_input = ep.graph_signature.user_inputs[0]
    node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == user_input)
    out = {}
    for i, d in enumerate(node.meta["val"].shape):
        if isinstance(d, torch.SymInt) and i in _DIM_NAMES:
            vr = ep.range_constraints.get(d.node.expr)
            out[_DIM_NAMES[i]] = f"[{vr.lower}, {vr.upper}]" if vr is not None else "dynamic"
    return out


def to_pt2(
    model: nn.Module,
    path: Union[str, os.PathLike],
    input_size: InputSize = None,
    batch_size: Optional[int] = None,
    dynamic_batch: bool = True,
    dynamic_spatial: Optional[bool] = None,
    label_names: Optional[Sequence[str]] = None,
    data_config: Optional[Mapping[str, Any]] = None,
    rtol: float = 1e-4,
    seed: int = 0,
    verbose: bool = True,
) -> ExportReport:
    """Exports ``model`` with ``torch.export`` to a ``.pt2`` file at ``path``, verified before it is written.

    The program is saved under a temporary name, loaded back with ``torch.export.load`` and run on the
    export batch, a batch of 1 and (dynamic height/width) a second size; max |loaded - eager| must be at most
    ``rtol`` × max |eager|. With ``dynamic_spatial=None`` a program that does not verify at the second size
    (for example one whose guards only admit multiples of the model's stride) is re-exported at the fixed
    export size, with a note. Other arguments are those of :func:`kanzoo.export.to_onnx`.
    """
    t0 = time.perf_counter()
    path = check_parent(path)
    rtol = check_rtol(rtol)
    name = model_name(model)
    with export_mode(model) as (traced, notes), StagedFiles() as staged:
        size, options, batch_size, inputs, expected, num_classes = trace_setup(
            model, input_size, dynamic_spatial, batch_size, dynamic_batch, seed)
        tmp = staged.stage(path)
        found: Dict[str, Any] = {}

        def build(spatial: bool):
            shapes: Dict[int, Any] = {}
            if dynamic_batch:
                shapes[0] = Dim("batch", min=1)
            if spatial:
                shapes[2] = shapes[3] = Dim.AUTO
            try:
                with torch.no_grad(), quiet_export_warnings():
                    ep = torch.export.export(traced, (inputs[0][1],), dynamic_shapes=(shapes,) if shapes else None)
            except Exception as e:  # noqa: BLE001  (torch.export raises many types)
                raise ExportError(f"torch.export failed for {name}: {first_line(e)}") from e
            ranges = _input_dims(ep)
            if spatial:
                # guards that reject other sizes show here already; skip the costly save/load then
                try:
                    with torch.no_grad():
                        ep.module()(next(x for what, x in inputs if what == "spatial"))
                except Exception as e:  # noqa: BLE001
                    raise ExportError(f"the program rejects another input size: {first_line(e)}") from e
            dims = [d for d in ("batch", "height", "width") if d in ranges]
            meta = build_metadata(model, size, num_classes, dims, label_names, data_config, batch_size=batch_size)
            found.update(dims=dims, ranges=ranges)
            try:
                torch.export.save(ep, str(tmp), extra_files={METADATA_FILE: json.dumps(meta)})
                program = torch.export.load(str(tmp)).module()
            except Exception as e:  # noqa: BLE001
                raise ExportVerificationError(f"the .pt2 program of {name} does not save and reload: "
                                              f"{first_line(e)}") from e

            def run(x: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    return program(x)

            return run

        try:
            cmp, spatial = verify_with_fallback("pt2", build, inputs, expected, options, rtol, notes)
        except ExportVerificationError as e:
            why = explain_instability(model, inputs[0][1], rtol)
            raise ExportVerificationError(f"{name}: {e}{why}; nothing was written to {path}") from e
        report = ExportReport(
            format="pt2", path=str(path), runtime="torch.export.load", max_abs_diff=cmp.max_abs_diff,
            output_scale=cmp.output_scale, tolerance=cmp.tolerance(rtol), inputs=cmp.inputs,
            dynamic_dims=list(found["dims"]), size_bytes=tmp.stat().st_size, seconds=0.0, notes=notes,
            extra={"ranges": found["ranges"], "architecture": name, "task": model_task(model),
                   "input_size": list(size)})
        staged.commit()
    report.seconds = time.perf_counter() - t0
    if verbose:
        print(report.summary())
    return report

