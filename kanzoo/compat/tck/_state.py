"""Strict key bookkeeping for converting torch-conv-kan state dicts."""
from __future__ import annotations

import re
from typing import Dict, List, Optional

import torch
from torch import nn


class StateReader:
    """Hands out reference tensors by key and remembers which were used.

    ``finish()`` raises when a reference key was never consumed, so a conversion can't silently drop
    weights. Missing keys raise at ``take`` with the key and the keys that do exist under its prefix.
    """

    def __init__(self, state: Dict[str, torch.Tensor], prefix: str = ""):
        self.state = state
        self.prefix = prefix
        self.used: set = set()

    def sub(self, prefix: str) -> "StateReader":
        child = StateReader(self.state, self.prefix + prefix)
        child.used = self.used
        return child

    def has(self, key: str) -> bool:
        return (self.prefix + key) in self.state

    def take(self, key: str) -> torch.Tensor:
        full = self.prefix + key
        if full not in self.state:
            near = sorted(k for k in self.state if k.startswith(self.prefix))[:12]
            raise KeyError(f"reference state has no key {full!r}; keys under {self.prefix!r}: {near}")
        self.used.add(full)
        return self.state[full]

    def take_optional(self, key: str) -> Optional[torch.Tensor]:
        return self.take(key) if self.has(key) else None

    def take_groups(self, key_fmt: str, groups: int) -> List[torch.Tensor]:
        """Takes ``key_fmt.format(g)`` for every group."""
        return [self.take(key_fmt.format(g)) for g in range(groups)]

    def count_indexed(self, head: str) -> int:
        """How many ``head.{i}.`` entries exist (i = 0, 1, ...)."""
        pat = re.compile(re.escape(self.prefix + head) + r"\.(\d+)\.")
        idx = {int(m.group(1)) for k in self.state for m in [pat.match(k)] if m}
        return len(idx)

    def finish(self) -> None:
        left = sorted(set(self.state) - self.used)
        if left:
            raise KeyError(f"{len(left)} reference keys were not consumed by the conversion: {left[:20]}")


def load_strict(module: nn.Module, mapped: Dict[str, torch.Tensor]) -> nn.Module:
    """Loads ``mapped`` into ``module`` strictly, with shapes checked and an error that lists the keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    if missing or unexpected:
        raise KeyError(f"conversion produced a state that does not fit the kanzoo module: "
                       f"missing {missing[:20]}, unexpected {unexpected[:20]}")
    for k, v in mapped.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise ValueError(f"shape mismatch for {k!r}: kanzoo {tuple(own[k].shape)} vs converted {tuple(v.shape)}")
    module.load_state_dict(mapped, strict=True)
    return module


def norm_state(reader: StateReader, ref_prefix_fmt: str, groups: int, dst: str,
               out: Dict[str, torch.Tensor]) -> None:
    """Concatenates per-group norm tensors (``layer_norm.{g}.weight`` ...) into one norm over all channels."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        keys = [ref_prefix_fmt.format(g) + "." + name for g in range(groups)]
        if reader.has(keys[0]):
            out[f"{dst}.{name}"] = torch.cat([reader.take(k) for k in keys])
    nbt = [ref_prefix_fmt.format(g) + ".num_batches_tracked" for g in range(groups)]
    if reader.has(nbt[0]):
        out[f"{dst}.num_batches_tracked"] = reader.take(nbt[0])
        for k in nbt[1:]:
            reader.take(k)


def degree_major_to_channel(w: torch.Tensor, cig: int, num_basis: int) -> torch.Tensor:
    """(C_out, F·C_ig, *k) with index f·C_ig + c -> kanzoo's (C_out, C_ig, F, *k)."""
    return w.reshape((w.shape[0], num_basis, cig) + tuple(w.shape[2:])).transpose(1, 2).contiguous()


def channel_major_to_channel(w: torch.Tensor, cig: int, num_basis: int) -> torch.Tensor:
    """(C_out, C_ig·F, *k) with index c·F + f -> (C_out, C_ig, F, *k)."""
    return w.reshape((w.shape[0], cig, num_basis) + tuple(w.shape[2:])).contiguous()
