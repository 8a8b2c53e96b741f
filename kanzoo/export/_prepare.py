"""What every exporter does before and around tracing: check the model, pick and check the input size, put
the model in eval mode, make data-dependent layers exportable, build verification inputs, stage files."""
from __future__ import annotations

import contextlib
import os
import uuid
import warnings
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .. import errors
from ..io import file_mode
from ..layers.selectable import check_exportable
from .metadata import model_name, model_task
from .moe import make_moe_exportable
from .verify import ExportError

InputSize = Union[int, Sequence[int], None]

#: a named verification input: (what it checks, tensor)
CheckInput = Tuple[str, torch.Tensor]


def check_model(model: nn.Module) -> None:
    """Raises a clear error for what the exporters cannot take: a non-module, parameters off the CPU or not
    float32, unpruned selectable KAN layers."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.device.type != "cpu":
            raise ValueError(f"{model_name(model)}: tensor {name!r} is on {t.device}; exports are traced and "
                             f"verified on the CPU, call model.cpu() first")
        if t.is_floating_point() and t.dtype != torch.float32:
            raise ValueError(f"{model_name(model)}: tensor {name!r} is {t.dtype}; export a float32 model "
                             f"(model.float()); int8 comes from quantize='dynamic'|'static'")
    check_exportable(model)


@contextlib.contextmanager
def export_mode(model: nn.Module) -> Iterator[Tuple[nn.Module, List[str]]]:
    """Yields ``(model_to_trace, notes)`` with ``model`` in eval mode.

    A model with any module in training mode is switched to eval with a warning and every module's mode is
    restored on exit. Mixture-of-experts convolutions are replaced, in a copy, by their dense-routing form
    (:mod:`kanzoo.export.moe`).
    """
    check_model(model)
    modes = [(m, m.training) for m in model.modules()]
    if any(mode for _, mode in modes):
        warnings.warn(
            f"{model_name(model)} is in training mode; exporting it in eval mode (dropout off, BatchNorm with its "
            f"running statistics) and restoring its mode afterwards. Call model.eval() before exporting to silence "
            f"this warning.", UserWarning, stacklevel=4)
    model.eval()
    notes: List[str] = []
    try:
        traced, n_moe = make_moe_exportable(model)
        if n_moe:
            notes.append(f"{n_moe} mixture-of-experts layer(s) exported with dense routing: every expert runs and "
                         f"is weighted by the top-k gates (same outputs as sparse dispatch, more compute)")
        yield traced.eval(), notes
    finally:
        for m, mode in modes:
            m.training = mode


def spatial_reduction(model: nn.Module) -> int:
    """The model's total stride as its cfg implies it (input_size / pool_size), 1 without a pool_size."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    pool, size = cfg.get("pool_size"), cfg.get("input_size")
    if not pool or not size:
        return 1
    return max(1, max(size[1] // max(pool[0], 1), size[2] // max(pool[1], 1)))


def resolve_input_size(model: nn.Module, input_size: InputSize = None) -> Tuple[int, int, int]:
    """(C, H, W) to export at: ``input_size`` (an int side, (H, W) or (C, H, W)) or the pretrained cfg's.

    Raises ValueError when the size is malformed, has the wrong channel count, differs from a fixed-size
    model's, or is smaller than the model's ``min_input_size`` or its total stride.
    """
    name = model_name(model)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    in_chans = getattr(model, "in_chans", None)
    if input_size is None:
        if not cfg.get("input_size"):
            raise ValueError(f"{name} has no input_size in its pretrained cfg; pass input_size=(C, H, W)")
        c, h, w = cfg["input_size"]
        size = (int(in_chans or c), int(h), int(w))
    else:
        if isinstance(input_size, int) and not isinstance(input_size, bool):
            input_size = (input_size, input_size)
        try:
            dims = [int(s) for s in input_size]  # type: ignore[union-attr]
            if any(isinstance(s, bool) or int(s) != s for s in input_size):  # type: ignore[union-attr]
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"input_size must be an int, (H, W) or (C, H, W) of ints, got {input_size!r}") from None
        if len(dims) == 2:
            dims = [int(in_chans or (cfg.get("input_size") or (3,))[0])] + dims
        if len(dims) != 3 or any(d < 1 for d in dims):
            raise ValueError(f"input_size must be an int, (H, W) or (C, H, W) of positive ints, got {input_size!r}")
        size = (dims[0], dims[1], dims[2])
    if in_chans is not None and size[0] != in_chans:
        raise ValueError(f"input_size {size} has {size[0]} channels but {name} takes in_chans={in_chans}")
    if cfg.get("fixed_input_size") and cfg.get("input_size") and tuple(size[1:]) != tuple(cfg["input_size"][1:]):
        raise ValueError(f"{name} takes only {tuple(cfg['input_size'][1:])} inputs (fixed_input_size in its cfg), "
                         f"got input_size {size}")
    lo = cfg.get("min_input_size")
    if lo and (size[1] < lo[1] or size[2] < lo[2]):
        raise ValueError(
            f"input size {size[1]}x{size[2]} is too small for {name}: its min_input_size is {lo[1]}x{lo[2]} "
            f"(total stride {spatial_reduction(model)}); use input_size=({size[0]}, {lo[1]}, {lo[2]}) or larger")
    r = spatial_reduction(model)
    if model_task(model) == "classification" and (size[1] < r or size[2] < r):
        raise ValueError(
            f"input size {size[1]}x{size[2]} is too small for {name}: it downsamples by {r}, so each side needs at "
            f"least {r} pixels; use input_size=({size[0]}, {r}, {r}) or larger")
    return size


def can_vary_spatial(model: nn.Module) -> bool:
    """False for models whose cfg fixes the input size (ViT position embeddings ...)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return not cfg.get("fixed_input_size")


def spatial_options(model: nn.Module, dynamic_spatial: Optional[bool]) -> List[bool]:
    """The dynamic-spatial settings to try in order: None (auto) tries dynamic height/width first and falls
    back to a fixed size, unless the model's cfg fixes its input size."""
    if dynamic_spatial is None:
        return [True, False] if can_vary_spatial(model) else [False]
    if dynamic_spatial and not can_vary_spatial(model):
        raise ValueError(f"{model_name(model)} has a fixed input size (fixed_input_size in its cfg); it cannot be "
                         f"exported with dynamic height/width")
    return [bool(dynamic_spatial)]


def other_spatial_size(model: nn.Module, input_size: Sequence[int]) -> Tuple[int, int]:
    """A second (H, W) for checking dynamic spatial axes: larger than the export size by one stride and then
    some, different in H and W, and not a multiple of the stride (so padding and ceil/floor paths run)."""
    r = max(spatial_reduction(model), 8)
    return int(input_size[1]) + r + 1, int(input_size[2]) + 2 * r + 3


def resolve_batch(batch_size: Optional[int], dynamic_batch: bool) -> int:
    """The trace batch: 2 for a dynamic batch (a trace at batch 1 can bake the batch into the graph, and
    torch.export specialises size-1 dims), 1 for a fixed one, unless given."""
    if batch_size is None:
        return 2 if dynamic_batch else 1
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if dynamic_batch and batch_size < 2:
        raise ValueError("batch_size must be >= 2 with a dynamic batch (a trace at batch 1 can fix the batch in the "
                         "graph); use dynamic_batch=False for a batch-1 model")
    return batch_size


def check_inputs(model: nn.Module, input_size: Sequence[int], batch_size: int, spatial: bool,
                 seed: int = 0) -> List[CheckInput]:
    """Verification inputs: the export batch, a batch of 1 and, when ``spatial``, one at another size.
    Standard normal values from a seeded generator."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    g = torch.Generator().manual_seed(seed)
    c, h, w = (int(s) for s in input_size)
    out = [("export", torch.randn(batch_size, c, h, w, generator=g))]
    if batch_size != 1:
        out.append(("batch", torch.randn(1, c, h, w, generator=g)))
    if spatial:
        h2, w2 = other_spatial_size(model, input_size)
        out.append(("spatial", torch.randn(1, c, h2, w2, generator=g)))
    return out


class TraceSetup(NamedTuple):
    """What an exporter with optional dynamic batch and spatial axes traces with and verifies against."""

    size: Tuple[int, int, int]
    spatial_options: List[bool]
    batch_size: int
    inputs: List[CheckInput]
    expected: Dict[str, torch.Tensor]
    num_classes: int


def trace_setup(model: nn.Module, input_size: InputSize, dynamic_spatial: Optional[bool],
                batch_size: Optional[int], dynamic_batch: bool, seed: int) -> TraceSetup:
    """The export size, the dynamic-spatial settings to try (:func:`spatial_options`), the trace batch
    (:func:`resolve_batch`), the verification inputs (:func:`check_inputs`; no batch-1 check when the batch
    is fixed), the eager outputs for them and the class count (dim 1 of the output). Run it in
    :func:`export_mode`."""
    size = resolve_input_size(model, input_size)
    options = spatial_options(model, dynamic_spatial)
    batch_size = resolve_batch(batch_size, dynamic_batch)
    inputs = check_inputs(model, size, batch_size, spatial=True in options, seed=seed)
    if not dynamic_batch:
        inputs = [(w, x) for w, x in inputs if w != "batch"]
    expected = eager_outputs(model, inputs)
    return TraceSetup(size, options, batch_size, inputs, expected, int(expected["export"].shape[1]))


def eager_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` without grad, with a clear error when the model cannot take ``x``."""
    try:
        with torch.no_grad():
            out = model(x)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{model_name(model)} cannot run on an input of shape {tuple(x.shape)}: "
                         f"{errors.first_line(e)}. Use a larger input_size (or the pretrained cfg's "
                         f"{model_input_hint(model)})") from e
    if isinstance(out, (list, tuple)):
        raise ExportError(f"{model_name(model)} returns {len(out)} outputs; kanzoo exports single-output models")
    return out


def model_input_hint(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(tuple(cfg["input_size"])) if cfg.get("input_size") else "input_size"


def eager_outputs(model: nn.Module, inputs: Sequence[CheckInput]) -> Dict[str, torch.Tensor]:
    return {what: eager_forward(model, x) for what, x in inputs}


def explain_instability(model: nn.Module, x: torch.Tensor, rtol: float, rel: float = 1e-6) -> str:
    """A sentence for a failed verification when eager itself is discontinuous at the tolerance: its output
    moves by more than ``rtol`` × its scale when ``x`` is perturbed by ``rel`` × its range (hard top-k routing
    near ties does this). Empty when eager is stable, i.e. the exporter is to blame."""
    with torch.no_grad():
        ref = model(x)
        step = rel * max(float(x.abs().max()), 1.0)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)) * step
        moved = float((model(x + noise) - ref).abs().max())
    scale = float(ref.abs().max())
    if moved <= rtol * scale:
        return ""
    return (f". PyTorch eager is itself unstable at this tolerance: perturbing the input by {rel:g} x its range moves "
            f"its output by {moved:.2e} (> {rtol * scale:.2e}), as hard top-k routing does near ties, so no export can "
            f"match it to rtol {rtol:g} on these inputs; pass a larger rtol (CLI: --rtol) if you accept that")


def check_parent(path: Union[str, os.PathLike]) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a file path to export to")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder {path.parent} does not exist; create it first")
    return path


class StagedFiles:
    """Temporary files next to their final paths: :meth:`commit` renames them all into place
    (``os.replace``, atomic per file); leaving the ``with`` block removes whatever was not committed."""

    def __init__(self) -> None:
        self._pairs: List[Tuple[Path, Path]] = []

    def stage(self, final: Union[str, os.PathLike]) -> Path:
        final = Path(final)
        # the suffix is kept: torch.export.save/load insist on ".pt2"
        tmp = final.with_name(f".{final.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{final.suffix}")
        self._pairs.append((tmp, final))
        return tmp

    def commit(self) -> None:
        for tmp, final in self._pairs:
            os.chmod(tmp, file_mode())
            os.replace(tmp, final)
        self._pairs = []

    def discard(self) -> None:
        for tmp, _ in self._pairs:
            for p in (tmp, Path(str(tmp) + ".data")):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        self._pairs = []

    def __enter__(self) -> "StagedFiles":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def first_line(e: BaseException) -> str:
    """``"TypeName: first line of the message"`` (:func:`kanzoo.errors.first_line`)."""
    return errors.first_line(e, with_type=True)


@contextlib.contextmanager
def quiet_export_warnings() -> Iterator[None]:
    """Silences the warnings that tracing is known to raise for kanzoo's layers and that verification
    covers: TracerWarnings from the layers' Python shape checks, and the deprecation notices of torch.jit and
    of the TorchScript-based ONNX exporter."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+.* is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*is deprecated.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*TorchScript type system doesn't support instance-level.*")
        yield
