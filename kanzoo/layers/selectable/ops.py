"""Operations on a whole model with selectable KAN layers: find them, freeze their selection, prune them,
record and restore what pruning kept, summarise the chosen bases, and refuse to export an unpruned model.

The phases of training that call these are driven by :class:`kanzoo.workflows.selection.SelectionSchedule`.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from ...errors import NotPrunedError
from .modules import SELECTABLE_LAYERS, _out_size, _PrunedBase

__all__ = [
    "check_exportable", "masks_from_spec", "masks_to_spec", "prune_masks", "prune_model", "select_model",
    "selectable_layers", "selection_summary",
]


def selectable_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, layer)`` for every unpruned selectable layer in ``model`` (``''`` for the model itself)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SELECTABLE_LAYERS)]


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def select_model(model: nn.Module, top_k: int = 1,
                 masks: Optional[Mapping[str, Any]] = None) -> Dict[str, Dict[str, int]]:
    """Calls ``select(top_k)`` on every selectable layer (or restores ``masks``: layer name -> bool (out, M)
    tensor or nested list, as :attr:`kanzoo.workflows.selection.SelectionSchedule.masks` records them).
    Returns :func:`selection_summary`."""
    layers = selectable_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no selectable KAN layers to select in")
    if masks is not None:
        missing = sorted(set(n for n, _ in layers) - set(masks))
        if missing:
            raise ValueError(f"masks has no entry for the selectable layers {missing}")
    for name, layer in layers:
        if masks is not None:
            layer.select(mask=torch.as_tensor(masks[name], dtype=torch.bool, device=layer.selected.device))
        else:
            layer.select(top_k)
    return selection_summary(model)


def prune_model(model: nn.Module, top_k: Optional[int] = None) -> nn.Module:
    """Replaces every selectable layer of ``model`` by its :meth:`prune` result, in place, and returns the
    model (the pruned layer itself when ``model`` is a selectable layer). The parameters change: rebuild the
    optimizer (and any EMA copy) afterwards."""
    if isinstance(model, SELECTABLE_LAYERS):
        return model.prune(top_k)
    layers = selectable_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no selectable KAN layers to prune")
    for name, layer in layers:
        _replace(model, name, layer.prune(top_k))
    return model


def prune_masks(model: nn.Module, top_k: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """Per selectable layer of ``model``, the bool (out, M) mask of the members :func:`prune_model` (with the
    same ``top_k``) keeps: the current selection, or each channel's top-1 in a layer that :meth:`select` never
    narrowed. Changes nothing."""
    return {name: layer._prune_mask(top_k).cpu() for name, layer in selectable_layers(model)}


def masks_to_spec(masks: Mapping[str, Any]) -> Dict[str, str]:
    """A compact, JSON-friendly form of per-layer selection masks (layer name -> bool (out, M) tensor or nested
    list): per layer one string, with per output channel the indices of its kept members joined by ``+``, the
    channels separated by ``,`` (``'2,0,0+3'``: channel 0 keeps member 2, channel 2 members 0 and 3).
    :func:`masks_from_spec` reads it back."""
    out: Dict[str, str] = {}
    for name, mask in masks.items():
        rows = torch.as_tensor(mask, dtype=torch.bool).cpu().tolist()
        out[name] = ",".join("+".join(str(i) for i, keep in enumerate(row) if keep) for row in rows)
    return out


def masks_from_spec(spec: Mapping[str, str], model: nn.Module) -> Dict[str, torch.Tensor]:
    """The bool (out, M) masks that :func:`masks_to_spec` wrote, checked against the selectable layers of
    ``model`` (every layer named, one entry per output channel, member indices in range)."""
    layers = dict(selectable_layers(model))
    if set(spec) != set(layers):
        raise ValueError(f"the pruned selection names layers {sorted(spec)}, but the model's selectable layers are "
                         f"{sorted(layers)}; it was saved for other model arguments")
    masks: Dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        n_out, m = layer.selected.shape
        tokens = str(spec[name]).split(",")
        if len(tokens) != n_out:
            raise ValueError(f"the pruned selection of {name!r} has {len(tokens)} channels, the layer {n_out}")
        mask = torch.zeros(n_out, m, dtype=torch.bool)
        for o, token in enumerate(tokens):
            try:
                idx = [int(i) for i in token.split("+")]
            except ValueError:
                raise ValueError(f"the pruned selection of {name!r} has the entry {token!r}; expected member "
                                 f"indices joined by '+'") from None
            if not idx or any(not 0 <= i < m for i in idx):
                raise ValueError(f"the pruned selection of {name!r} has the entry {token!r}; member indices are "
                                 f"0 to {m - 1} (pool {layer.labels})")
            mask[o, idx] = True
        if m > 1 and bool(mask.all()):
            raise ValueError(f"the pruned selection of {name!r} keeps every member of every channel: that is "
                             f"not a pruned layer")
        masks[name] = mask
    return masks


def selection_summary(model: nn.Module, top_k: Optional[int] = None) -> Dict[str, Dict[str, int]]:
    """Per layer, how many output channels use each basis: for a selectable layer its current selection
    (``top_k``: its top-k by α), for a pruned layer what it kept. Keys are module names."""
    out: Dict[str, Dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, SELECTABLE_LAYERS):
            out[name] = m.selection_counts(top_k)
        elif isinstance(m, _PrunedBase):
            out[name] = m.counts()
        elif isinstance(getattr(m, "selected_basis", None), str):  # pruned to a plain layer of one basis
            out[name] = {m.selected_basis: int(_out_size(m))}
    return out


def check_exportable(model: nn.Module) -> None:
    """Raises :class:`NotPrunedError` naming every unpruned selectable layer of ``model``; exporters call
    this before tracing. A model without selectable layers passes."""
    layers = selectable_layers(model)
    if layers:
        names = ", ".join(repr(n or "<model>") for n, _ in layers[:8]) + (" ..." if len(layers) > 8 else "")
        raise NotPrunedError(
            f"{type(model).__name__} has {len(layers)} unpruned selectable KAN layer(s) ({names}): they run every "
            f"candidate basis and their selection is not final, so they are not exported. Prune first: "
            f"model = kanzoo.layers.prune_model(model) (after training with SelectionSchedule, or select_model "
            f"then prune_model).")
