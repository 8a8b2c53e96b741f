"""A state dict into a model: unwrap the checkpoint, adapt the input conv, check every key, load strictly.

:func:`fit_state_dict` is the one place where kanzoo decides whether weights fit a model. Every key must be
present with the model's shape, except the classifier when the caller asked for another head
(``replace_head``): then the file's classifier is used where its shape fits and left at the model's
initialisation where it does not, and one log line says so. Anything else that does not fit raises one
:class:`~kanzoo.errors.WeightsMismatchError` that lists it.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import torch
from timm.models import adapt_input_conv
from torch import nn

from ..errors import WeightsMismatchError

__all__ = ["unwrap_checkpoint", "state_mismatch", "describe_mismatch", "fit_state_dict", "load_state_strict"]

_logger = logging.getLogger("kanzoo")

#: where training checkpoints keep the model weights, in order of preference
_CHECKPOINT_KEYS = ("state_dict_ema", "state_dict", "model")
#: prefixes that wrappers put on every key (DataParallel/DDP, torch.compile)
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def unwrap_checkpoint(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """The model weights of a checkpoint, as a new dict: a training checkpoint's ``state_dict_ema`` >
    ``state_dict`` > ``model`` entry, with a ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (torch.compile)
    prefix that every key carries removed. A plain state dict is copied."""
    for key in _CHECKPOINT_KEYS:
        if key in state_dict and isinstance(state_dict[key], dict):
            state_dict = state_dict[key]
            break
    state = dict(state_dict)
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _names(value: Union[None, str, Sequence[str]]) -> List[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def state_mismatch(model: nn.Module, state: Mapping[str, Any]) -> Tuple[List[str], List[str], List[str]]:
    """``(missing, unexpected, shapes)``: model keys absent from ``state``, ``state`` keys the model lacks, and
    ``"key (file shape) vs (model shape)"`` for keys whose shapes differ."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and (not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != tuple(v.shape))]
    return missing, unexpected, shapes


def _few(keys: Sequence[str], n: int = 3, sep: str = ", ") -> str:
    return sep.join(keys[:n]) + (f"{sep}..." if len(keys) > n else "")


def describe_mismatch(model: nn.Module, state: Mapping[str, Any], source: str, name: str, hint: str = ""
                      ) -> WeightsMismatchError:
    """The one error for weights that do not fit: what is missing, what has no place, which shapes differ."""
    missing, unexpected, shapes = state_mismatch(model, state)
    total = len(model.state_dict())
    parts = []
    if missing:
        parts.append(f"{len(missing)} of {name}'s {total} tensors are missing from it ({_few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} of its tensors have no place in {name} ({_few(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} shapes differ ({_few(shapes, 2, '; ')})")
    what = "; ".join(parts) or "torch refused it"
    return WeightsMismatchError(
        f"checkpoint {source!r} does not fit {name}: {what}. It was saved for another architecture or other model "
        f"arguments{hint}; give the matching model name and arguments (CLI: --model-kwargs), or the run folder",
        missing, unexpected, shapes)


def _adapt_input_convs(state: Dict[str, Any], own: Mapping[str, torch.Tensor], first_conv: Sequence[str]) -> None:
    """timm's input-conv adaptation (sum for 1 channel, repeat and rescale otherwise) for plain 4-d convs whose
    input channels differ; KAN stems are adapted by their family's filter."""
    for conv in first_conv:
        key = f"{conv}.weight"
        w, target = state.get(key), own.get(key)
        if not (isinstance(w, torch.Tensor) and target is not None and w.dim() == 4 == target.dim()):
            continue
        if w.shape[1] != target.shape[1] and w.shape[0] == target.shape[0]:
            try:
                state[key] = adapt_input_conv(int(target.shape[1]), w)
            except (NotImplementedError, AssertionError):
                pass  # left as is: reported as a shape mismatch


Names = Union[None, str, Sequence[str]]


def fit_state_dict(model: nn.Module, state: Mapping[str, Any], *, source: str, name: str, classifier: Names = None,
                   first_conv: Names = None, replace_head: bool = False, hint: str = "") -> Dict[str, Any]:
    """``state`` made to fit ``model`` exactly, or a :class:`~kanzoo.errors.WeightsMismatchError`.

    Args:
        state: an already unwrapped and converted state dict (the model's key layout).
        source, name: where the weights come from and the architecture, for messages.
        classifier: the classifier module name(s) (the pretrained cfg's ``classifier``).
        first_conv: input conv name(s) adapted to the model's input channels (the cfg's ``first_conv``).
        replace_head: the caller asked for a head other than the file's (``num_classes`` differs from the
            cfg's). Classifier tensors whose shape fits are still loaded; the others keep the model's
            initialisation and one log line names them. Without it the classifier is loaded strictly too.

    Returns:
        A state dict with exactly the model's keys and shapes (replaced head tensors taken from the model).
    """
    own = model.state_dict()
    state = dict(state)
    _adapt_input_convs(state, own, _names(first_conv))
    replaced: List[str] = []
    if replace_head:
        for head in _names(classifier):
            head_keys = {k for k in set(own) | set(state) if k == head or k.startswith(head + ".")}
            for k in sorted(head_keys):
                fits = k in own and isinstance(state.get(k), torch.Tensor) and state[k].shape == own[k].shape
                if not fits:
                    state.pop(k, None)
                    if k in own:
                        state[k] = own[k]
                    replaced.append(k)
    missing, unexpected, shapes = state_mismatch(model, state)
    if missing or unexpected or shapes:
        raise describe_mismatch(model, state, source, name, hint)
    if replaced:
        kept = [k for k in replaced if k in own]
        _logger.warning(f"{name}: the classifier of {source!r} was not loaded ({_few(replaced)}): "
                        + (f"{len(kept)} tensor(s) start from random initialisation for the new head"
                           if kept else "the model has no such head"))
    return state


def load_state_strict(model: nn.Module, state: Mapping[str, Any], source: str, name: str, hint: str = "") -> None:
    """``model.load_state_dict(state)`` strictly; a mismatch raises one :class:`~kanzoo.errors.WeightsMismatchError`
    that lists it (never torch's multi-line report)."""
    state = fit_state_dict(model, state, source=source, name=name, hint=hint)
    model.load_state_dict(state, strict=True)
