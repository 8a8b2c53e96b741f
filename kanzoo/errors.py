"""kanzoo's error types, in one place below everything else.

Each one is raised with a message that says what was wrong, the value, and what to do; the command line
prints that message as one line. Callers decide on the type, never on the text. Every type derives from
:class:`KanzooError` and from the built-in error a caller would expect (``ValueError`` for bad input,
``FileNotFoundError`` for a missing file, ...), so both ``except KanzooError`` and the usual built-in
``except`` clauses work.
"""
from __future__ import annotations

from typing import List, Sequence

__all__ = [
    "KanzooError", "UnknownModelError", "PretrainedWeightsError", "WeightsNotFoundError", "NoPretrainedWeightsError",
    "WeightsFileError", "WeightsOfflineError", "WeightsIntegrityError", "WeightsMismatchError", "WorkflowError",
    "ExportError", "ExportVerificationError", "NotPrunedError", "OutputShapeError", "first_line",
]


class KanzooError(Exception):
    """Base of every error kanzoo raises on purpose."""


class UnknownModelError(KanzooError, RuntimeError, ValueError):
    """An unknown model name or tag. A RuntimeError like timm's, and a ValueError for kanzoo's callers."""


class PretrainedWeightsError(KanzooError, RuntimeError):
    """Pretrained weights could not be found, fetched, verified or read."""


class WeightsNotFoundError(PretrainedWeightsError, FileNotFoundError):
    """The repo, revision or weight file does not exist (or is private and no token was given)."""


class NoPretrainedWeightsError(WeightsNotFoundError):
    """``pretrained=True`` for a model or tag that has no published weights."""


class WeightsFileError(PretrainedWeightsError, ValueError):
    """A weight file that cannot be read safely: damaged, of an unknown type, or a pickle holding more than
    tensors and plain containers."""


class WeightsOfflineError(PretrainedWeightsError, ConnectionError):
    """The weights are not in the local cache and the Hub cannot be reached (or offline mode is on)."""


class WeightsIntegrityError(PretrainedWeightsError, ValueError):
    """A downloaded file's hash differs from the recorded sha256 or the Hub's content hash."""


class WeightsMismatchError(PretrainedWeightsError, ValueError):
    """A state dict does not fit a model: keys missing or unexpected, or shapes that differ.

    ``missing``, ``unexpected`` and ``shapes`` hold the details (``shapes``: ``"key (file) vs (model)"``).
    """

    def __init__(self, message: str, missing: Sequence[str] = (), unexpected: Sequence[str] = (),
                 shapes: Sequence[str] = ()):
        super().__init__(message)
        self.missing: List[str] = list(missing)
        self.unexpected: List[str] = list(unexpected)
        self.shapes: List[str] = list(shapes)


class WorkflowError(KanzooError, ValueError):
    """Bad input to a workflow (a missing folder, a batch size of 0, a run folder that does not fit...)."""


class ExportError(KanzooError, RuntimeError):
    """An export that could not be produced (the exporter failed, or the model cannot be exported as is)."""


class ExportVerificationError(ExportError):
    """An exported artifact that disagrees with PyTorch eager; nothing was written."""


class OutputShapeError(KanzooError, ValueError):
    """A model output of the wrong shape for the task (class logits where per-pixel logits are needed)."""


class NotPrunedError(KanzooError, RuntimeError):
    """An operation that needs a pruned model (export) met a selectable layer that was not pruned."""


def first_line(e: BaseException, with_type: bool = False) -> str:
    """The first line of an exception's message (its type name when it has none); ``with_type`` prefixes
    ``"TypeName: "``. Keeps one-line errors one line when they quote a library's multi-line message."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else ""
    if with_type:
        return f"{type(e).__name__}: {line}" if line else type(e).__name__
    return line or type(e).__name__
