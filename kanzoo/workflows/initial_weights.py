"""``--initial-checkpoint``: start a run from another model's weights wherever they fit.

This is timm ``train.py``'s option of the same name. KAT's ``.vitft`` runs use it to start a KAT from a ViT:
the two share every tensor but the rational activations (``mlp.act1`` / ``mlp.act2``), which keep their
initialisation. The source is a weight file (safetensors, or a torch file read with ``weights_only=True``) or
``timm:NAME``, a timm pretrained tag fetched and verified through :mod:`kanzoo.weights`.

The rule: every tensor of the source must have a tensor of the same name and shape in the model, except the
classifier, which is dropped when its class count differs (the run's head keeps its initialisation). Tensors
of the model that the source lacks keep their initialisation. What loaded, what kept its init and what was
dropped is returned, and the run prints it in one line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

import torch
from timm.models import get_pretrained_cfg
from torch import nn

from ..errors import WeightsOfflineError, WorkflowError
from ..weights import load_state_file, resolve_pretrained_state, unwrap_checkpoint

__all__ = ["TIMM_PREFIX", "InitialWeights", "load_initial_weights", "read_initial_state"]

#: the prefix of a timm pretrained tag given as ``--initial-checkpoint``
TIMM_PREFIX = "timm:"


@dataclass
class InitialWeights:
    """What :func:`load_initial_weights` did: the model tensors ``loaded`` from the source, those ``kept`` at
    their initialisation (the source lacks them) and the source's classifier tensors ``dropped``."""

    source: str
    loaded: List[str] = field(default_factory=list)
    kept: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the start of the run."""
        line = f"initial weights from {self.source}: {len(self.loaded)} tensors loaded"
        if self.kept:
            line += f", {len(self.kept)} keep their initialisation ({_few(self.kept)})"
        if self.dropped:
            line += f"; its classifier ({_few(self.dropped)}) has other classes and was dropped"
        return line


def _few(keys: Sequence[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def read_initial_state(source: str) -> Dict[str, torch.Tensor]:
    """The state dict of ``source``: ``timm:NAME`` (a timm pretrained tag, downloaded and verified) or a weight
    file (a training checkpoint is unwrapped)."""
    if source.startswith(TIMM_PREFIX):
        name = source[len(TIMM_PREFIX):]
        try:
            cfg = get_pretrained_cfg(name) if "." in name else None
        except RuntimeError:  # an architecture timm knows, with another tag
            cfg = None
        if cfg is None:
            raise WorkflowError(f"--initial-checkpoint {source!r}: {name!r} is not a timm pretrained tag; give "
                                f"ARCH.TAG as timm.list_pretrained() lists them, e.g. "
                                f"timm:vit_tiny_patch16_224.augreg_in21k_ft_in1k")
        try:
            state = resolve_pretrained_state(cfg, model_name=name)
        except WeightsOfflineError:
            raise WorkflowError(f"--initial-checkpoint {source!r}: the weights of {name} ({cfg.hf_hub_id}) are not "
                                f"in the local Hugging Face cache and the Hub cannot be reached (or "
                                f"HF_HUB_OFFLINE=1); connect to the network or set HF_ENDPOINT to a mirror, or fetch "
                                f"{cfg.hf_hub_id}'s model.safetensors on a connected machine and pass it as "
                                f"--initial-checkpoint FILE") from None
        if state is None:
            raise WorkflowError(f"--initial-checkpoint {source!r}: timm fetches {name} from a url "
                                f"({cfg.url}), which kanzoo does not download; download it and pass the file")
        return unwrap_checkpoint(state)
    path = Path(source)
    if path.suffix == ".npz":
        raise WorkflowError(f"--initial-checkpoint {source!r}: .npz files (Google's ViT layout) are read by timm, "
                            f"not here; pass the same weights as timm:ARCH.TAG (the recipes name it in "
                            f"kanzoo_init_timm_tag), or save the timm model's state_dict as .safetensors")
    return unwrap_checkpoint(load_state_file(path))


def load_initial_weights(model: nn.Module, state: Dict[str, torch.Tensor], source: str,
                         classifier: Sequence[str] = ()) -> InitialWeights:
    """Copies the tensors of ``state`` into ``model`` by name (see the module doc for the rule) and returns
    what it did. ``classifier``: the model's classifier module names (its pretrained cfg's ``classifier``).
    A tensor that fits nowhere is a :class:`~kanzoo.errors.WorkflowError` naming it; the model is then left as
    it was."""
    own = model.state_dict()
    heads = tuple(f"{c}." for c in classifier)
    report = InitialWeights(source=source)
    misfits = []
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        target = own.get(key)
        if target is not None and target.shape == value.shape:
            report.loaded.append(key)
        elif key.startswith(heads):
            report.dropped.append(key)
        elif target is None:
            misfits.append(f"{key} (not in the model)")
        else:
            misfits.append(f"{key} {list(value.shape)} (the model's is {list(target.shape)})")
    if misfits:
        raise WorkflowError(f"--initial-checkpoint {source}: {len(misfits)} tensor(s) fit nowhere in "
                            f"{type(model).__name__}: {_few(misfits)}; it is not a checkpoint this model can "
                            f"start from")
    if not report.loaded:
        raise WorkflowError(f"--initial-checkpoint {source}: no tensor of it fits {type(model).__name__}")
    # the model's classifier keeps its init when the source's head was dropped, even where a bias would fit
    dropped_heads = {k.rsplit(".", 1)[0] for k in report.dropped}
    report.loaded = [k for k in report.loaded if k.rsplit(".", 1)[0] not in dropped_heads]
    report.dropped += [k for k in state if k.rsplit(".", 1)[0] in dropped_heads and k not in report.dropped]
    loaded = set(report.loaded)
    report.kept = [k for k in own if k not in loaded]
    with torch.no_grad():
        for key in report.loaded:
            own[key].copy_(state[key])
    return report
