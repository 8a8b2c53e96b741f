"""kanzoo.export: models to ONNX, TorchScript and ``torch.export`` (.pt2), each artifact verified against
PyTorch eager before it is written, with the preprocessing and labels a deployment needs stored inside.

>>> import kanzoo
>>> from kanzoo.export import to_onnx
>>> model = kanzoo.create_model("simple_conv_kagn", width_scale=0.25).eval()
>>> report = to_onnx(model, "simple_conv_kagn.onnx", verbose=False)   # doctest: +SKIP
>>> report.max_abs_diff <= report.tolerance                         # doctest: +SKIP
True

``export/predict_onnx.py`` (outside the package) runs such a file on images with onnxruntime, numpy and
pillow only; ``export/README.md`` describes deployment.
"""
from .api import FILE_SUFFIXES, FORMATS, build_model, export_model, load_checkpoint_state
from .metadata import build_metadata, resolve_data_config, resolve_labels
from .moe import DenseRoutedMoE, make_moe_exportable
from .onnx import (
    MIN_OPSET,
    default_opset,
    onnx_session,
    onnxruntime_max_opset,
    read_metadata,
    supported_opsets,
    to_onnx,
)
from .pt2 import load_pt2_metadata, to_pt2
from .quantize import QUANTIZE_MODES, quantize_onnx
from .torchscript import TORCHSCRIPT_METHODS, load_torchscript_metadata, to_torchscript
from .verify import ExportError, ExportReport, ExportVerificationError

__all__ = [
    "DenseRoutedMoE", "ExportError", "ExportReport", "ExportVerificationError", "FILE_SUFFIXES", "FORMATS", "MIN_OPSET",
    "QUANTIZE_MODES", "TORCHSCRIPT_METHODS", "build_metadata", "build_model",
    "default_opset", "export_model", "load_checkpoint_state", "load_pt2_metadata", "load_torchscript_metadata",
    "make_moe_exportable", "onnx_session", "onnxruntime_max_opset", "quantize_onnx", "read_metadata",
    "resolve_data_config", "resolve_labels", "supported_opsets", "to_onnx", "to_pt2", "to_torchscript",
]
