"""Export to ONNX, verified with onnxruntime against PyTorch eager.

The graph is traced by torch's TorchScript-based ONNX exporter (``torch.onnx.export(..., dynamo=False)``),
which needs no package beyond torch and onnx. Its input is ``'input'`` (N, C, H, W), float32; its output
``'logits'`` ((N, K) for classifiers, (N, K, H, W) for segmentation models). The batch axis is dynamic, and
so are height and width where the model verifies at a second size (see :func:`to_onnx`). kanzoo's metadata
(preprocessing, labels; :mod:`kanzoo.export.metadata`) is stored in ``metadata_props``.
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

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
from .metadata import build_metadata, from_onnx_props, model_name, model_task, to_onnx_props
from .quantize import check_quantize_args, quantize_onnx
from .verify import Comparison, ExportError, ExportReport, ExportVerificationError, check_rtol, verify_with_fallback

__all__ = ["MIN_OPSET", "to_onnx", "default_opset", "supported_opsets", "onnxruntime_max_opset",
           "exporter_max_opset", "onnx_session", "read_metadata"]

#: the oldest opset kanzoo exports to (per-axis QuantizeLinear for int8 needs 13)
MIN_OPSET = 13
INPUT_NAME, OUTPUT_NAME = "input", "logits"


def exporter_max_opset() -> int:
    """The newest opset torch's TorchScript-based ONNX exporter writes."""
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 17))


@functools.lru_cache(maxsize=None)
def onnxruntime_max_opset() -> int:
    """The newest default-domain opset the installed onnxruntime loads (probed with a one-node model)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    value = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "opset_probe", value[:1], value[1:])
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    for version in range(onnx.defs.onnx_opset_version(), MIN_OPSET - 1, -1):
        opsets = [helper.make_opsetid("", version)]
        model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
        try:
            ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001  (this onnxruntime does not know the opset)
            continue
        return version
    raise ExportError(f"the installed onnxruntime {ort.__version__} loads no opset >= {MIN_OPSET}; upgrade it")


def supported_opsets() -> range:
    """Opsets :func:`to_onnx` takes: from :data:`MIN_OPSET` to the newest that both the exporter writes and
    the installed onnxruntime runs."""
    return range(MIN_OPSET, min(exporter_max_opset(), onnxruntime_max_opset()) + 1)


def default_opset() -> int:
    """The newest opset in :func:`supported_opsets`."""
    return supported_opsets()[-1]


def check_opset(opset: Optional[int]) -> int:
    if opset is None:
        return default_opset()
    ok = supported_opsets()
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in ok:
        import onnxruntime as ort

        raise ValueError(
            f"unsupported ONNX opset {opset!r}: kanzoo exports opsets {ok[0]}..{ok[-1]} (torch's exporter writes up to "
            f"{exporter_max_opset()}, onnxruntime {ort.__version__} runs up to {onnxruntime_max_opset()}); "
            f"omit opset for the newest ({ok[-1]})")
    return opset


def onnx_session(path: Union[str, os.PathLike], threads: Optional[int] = None):
    """An onnxruntime CPU session for ``path`` (warnings below error level silenced)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def read_metadata(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """kanzoo's metadata dict of an exported ONNX file (empty for other ONNX files)."""
    import onnx


    model = onnx.load(str(path), load_external_data=False)
    return from_onnx_props({p.key: p.value for p in model.metadata_props})


def _dynamic_axes(task: str, dims: Sequence[str]) -> Dict[str, Dict[int, str]]:
    axis = {"batch": 0, "height": 2, "width": 3}
    inp = {axis[d]: d for d in dims}
    out = {0: "batch"} if "batch" in dims else {}
    if task == "segmentation":
        out.update({axis[d]: d for d in dims if d != "batch"})
    return {INPUT_NAME: inp, OUTPUT_NAME: out}


def _write_onnx(traced: nn.Module, x: torch.Tensor, path: Path, opset: int, meta: Dict[str, Any], name: str) -> None:
    """Traces ``traced`` on ``x`` into ``path``, adds the metadata and runs the ONNX checker."""
    import onnx

    axes = _dynamic_axes(meta["task"], meta["dynamic_dims"])
    try:
        with torch.no_grad(), quiet_export_warnings():
            torch.onnx.export(traced, (x,), str(path), dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True)
    except Exception as e:  # noqa: BLE001  (the exporter raises many types)
        hint = (f"; an operator may need a newer opset (kanzoo takes up to {supported_opsets()[-1]})"
                if opset < supported_opsets()[-1] else "")
        raise ExportError(f"ONNX export of {name} at opset {opset} failed: {first_line(e)}{hint}") from e
    model = onnx.load(str(path))
    for key, value in to_onnx_props(meta).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"{name} exported by kanzoo {meta['kanzoo_version']}"
    onnx.save(model, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # noqa: BLE001  (onnx.checker.ValidationError and shape-inference errors)
        raise ExportVerificationError(f"onnx.checker rejects the exported {name}: {first_line(e)}") from e


def to_onnx(
    model: nn.Module,
    path: Union[str, os.PathLike],
    input_size: InputSize = None,
    opset: Optional[int] = None,
    batch_size: Optional[int] = None,
    dynamic_batch: bool = True,
    dynamic_spatial: Optional[bool] = None,
    label_names: Optional[Sequence[str]] = None,
    data_config: Optional[Mapping[str, Any]] = None,
    quantize: Optional[str] = None,
    calibration_dir: Optional[Union[str, os.PathLike]] = None,
    quantized_path: Optional[Union[str, os.PathLike]] = None,
    rtol: float = 1e-4,
    seed: int = 0,
    verbose: bool = True,
) -> ExportReport:
    """Exports ``model`` to an ONNX file at ``path``, verified before it is written.

    The model is traced in eval mode (a model in training mode is switched, with a warning, and restored
    afterwards) on a ``batch_size`` batch of standard-normal inputs at ``input_size``. The file is written to a
    temporary name, checked with ``onnx.checker`` (full check), run with onnxruntime on the export batch, a
    batch of 1 and (dynamic height/width only) a second size, and compared with the eager model's outputs on
    the same inputs: max |onnxruntime - eager| must be at most ``rtol`` × max |eager| (the "output scale").
    Only then is it renamed to ``path``; on any failure no file is left and an error says why.

    Args:
        model: the model (kanzoo or any timm-style model with one tensor output), on the CPU in float32.
        path: the .onnx file to write (its folder must exist).
        input_size: an int side, (H, W) or (C, H, W); default the pretrained cfg's ``input_size`` (with the
            model's ``in_chans``). Checked against the cfg's ``min_input_size`` and fixed sizes.
        opset: ONNX opset, default the newest that the exporter writes and the installed onnxruntime runs
            (:func:`default_opset`); see :func:`supported_opsets`.
        batch_size: batch of the trace input (2: a trace at batch 1 could bake the batch into the graph).
        dynamic_batch: make the batch axis dynamic.
        dynamic_spatial: True/False forces dynamic/fixed height and width; None (default) tries dynamic and
            falls back to the export size, with a note, if the model does not verify at another size.
        label_names: class names to store (default: the cfg's, or ImageNet-1k's for 1000-class classifiers).
        data_config: overrides of the stored preprocessing (``mean``, ``std``, ``crop_pct``, ``interpolation``,
            ``crop_mode``).
        quantize: ``'dynamic'`` or ``'static'``: also write an int8 model (:func:`kanzoo.export.quantize_onnx`)
            to ``quantized_path`` (default ``<stem>.int8-<mode>.onnx``); ``'static'`` calibrates on the images
            in ``calibration_dir``. The int8 model is verified to run and compared with eager (reported in
            ``report.quantized``), but not held to ``rtol``.
        rtol: the relative tolerance of the check.
        seed: seed of the verification inputs.
        verbose: print the report line (max difference, tolerance, file).

    Returns:
        An :class:`~kanzoo.export.ExportReport`.

    Raises:
        ValueError: bad arguments (unsupported opset, input too small, wrong channel count ...).
        ExportError: the exporter failed. ExportVerificationError: the file does not match eager.
    """
    t0 = time.perf_counter()
    path = check_parent(path)
    opset = check_opset(opset)
    rtol = check_rtol(rtol)
    q_images = None
    if quantize is not None:

        q_images = check_quantize_args(quantize, calibration_dir)
        quantized_path = check_parent(quantized_path or path.with_name(f"{path.stem}.int8-{quantize}.onnx"))
        if Path(quantized_path).resolve() == path.resolve():
            raise ValueError(f"quantized_path must differ from path ({path})")
    name = model_name(model)
    with export_mode(model) as (traced, notes), StagedFiles() as staged:
        size, options, batch_size, inputs, expected, num_classes = trace_setup(
            model, input_size, dynamic_spatial, batch_size, dynamic_batch, seed)
        tmp = staged.stage(path)
        metas: Dict[bool, Dict[str, Any]] = {}

        def build(spatial: bool):
            dims = (["batch"] if dynamic_batch else []) + (["height", "width"] if spatial else [])
            metas[spatial] = build_metadata(model, size, num_classes, dims, label_names, data_config,
                                            INPUT_NAME, OUTPUT_NAME, batch_size)
            _write_onnx(traced, inputs[0][1], tmp, opset, metas[spatial], name)
            try:
                session = onnx_session(tmp)
            except Exception as e:  # noqa: BLE001
                raise ExportVerificationError(f"onnxruntime cannot load the exported {name}: {first_line(e)}") from e
            return lambda x: session.run(None, {INPUT_NAME: x.numpy()})[0]

        import onnxruntime as ort

        runtime = f"onnxruntime {ort.__version__}"
        try:
            cmp, spatial = verify_with_fallback("onnx", build, inputs, expected, options, rtol, notes)
        except ExportVerificationError as e:
            why = explain_instability(model, inputs[0][1], rtol)
            raise ExportVerificationError(f"{name}: {e}{why}; nothing was written to {path}") from e
        report = ExportReport(
            format="onnx", path=str(path), runtime=runtime, max_abs_diff=cmp.max_abs_diff,
            output_scale=cmp.output_scale, tolerance=cmp.tolerance(rtol), inputs=cmp.inputs,
            dynamic_dims=metas[spatial]["dynamic_dims"], size_bytes=tmp.stat().st_size, seconds=0.0, notes=notes,
            extra={"opset": opset, "architecture": name, "task": model_task(model), "input_size": list(size)})
        if quantize is not None:

            q_tmp = staged.stage(quantized_path)
            tq = time.perf_counter()
            info = quantize_onnx(tmp, q_tmp, quantize, images=q_images)
            report.quantized = _verify_quantized(q_tmp, quantized_path, quantize, inputs, expected, report.dynamic_dims,
                                                 tmp, info, name)
            report.quantized.seconds = time.perf_counter() - tq
        staged.commit()
    report.seconds = time.perf_counter() - t0
    if verbose:
        print(report.summary())
    return report


def _verify_quantized(tmp: Path, final: Path, mode: str, inputs, expected, dims: List[str], float_path: Path,
                      info: Dict[str, Any], name: str) -> ExportReport:
    """Checks that an int8 model loads, passes the checker and runs, and measures it against eager."""
    import onnx


    try:
        onnx.checker.check_model(str(tmp), full_check=True)
        session = onnx_session(tmp)
    except Exception as e:  # noqa: BLE001
        raise ExportVerificationError(f"the {mode}-quantized {name} does not load: {first_line(e)}") from e
    cmp = Comparison()
    for what, x in inputs:
        if what == "spatial" and "height" not in dims:
            continue
        try:
            got = session.run(None, {INPUT_NAME: x.numpy()})[0]
        except Exception as e:  # noqa: BLE001
            raise ExportVerificationError(f"the {mode}-quantized {name} fails on input {tuple(x.shape)}: "
                                          f"{first_line(e)}") from e
        cmp.add(f"onnx-int8-{mode}", got, expected[what], x.shape)
    size, float_size = tmp.stat().st_size, float_path.stat().st_size
    extra = dict(info, float_size_bytes=float_size, size_ratio=size / float_size)
    if cmp.top1_total:
        extra["top1_agreement"] = f"{cmp.top1_agree}/{cmp.top1_total}"
    notes: List[str] = [f"{size / float_size:.2f}x the float model's size ({float_size:,} -> {size:,} bytes)"]
    import onnxruntime as ort

    return ExportReport(format=f"onnx-int8-{mode}", path=str(final), runtime=f"onnxruntime {ort.__version__}",
                        max_abs_diff=cmp.max_abs_diff, output_scale=cmp.output_scale, tolerance=None,
                        inputs=cmp.inputs, dynamic_dims=list(dims), size_bytes=size, seconds=0.0, notes=notes,
                        extra=extra)
