"""The golden vectors' deterministic weight rule (shared/golden/tck/README.md, section 3), written from
its description: each tensor is drawn from a generator seeded by crc32("{salt}/{reference key}")."""
import math
import zlib
from typing import Dict, Iterable, Optional, Sequence

import torch

_STRUCTURAL = {"grid", "mean", "std", "freqs_t_x", "freqs_t_y"}
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "int32": torch.int32}


def rule_value(salt: str, key: str, shape: Sequence[int], dtype: torch.dtype,
               constructed: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
    """The value the rule gives reference key ``key``; ``constructed`` is the freshly built tensor (used for
    integer buffers, structural tensors and ReLU-KAN phases)."""
    name = key.rsplit(".", 1)[-1]
    shape = tuple(shape)
    if name == "num_batches_tracked":
        return torch.full(shape, 1000, dtype=torch.int64)
    if not dtype.is_floating_point or name in _STRUCTURAL:
        return constructed
    g = torch.Generator(device="cpu")
    g.manual_seed(zlib.crc32(f"{salt}/{key}".encode("utf-8")) & 0xFFFFFFFF)
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    s = 2.0 * u - 1.0
    if name == "running_var":
        v = 0.5 + u
    elif name == "running_mean":
        v = 0.5 * s
    elif "beta_weights" in name:
        v = 0.02 * s
    elif name == "scale":
        v = 0.5 + u
    elif name == "translation":
        v = 0.5 * s
    elif name in ("phase_low", "phase_high"):
        v = constructed.double() + 0.05 * s
    elif name == "gamma":
        v = 0.5 + 0.5 * u
    elif "prelu" in key:
        v = 0.1 + 0.3 * u
    elif len(shape) <= 1 and name == "weight":
        v = 1.0 + 0.25 * s
    elif len(shape) <= 1 and name == "bias":
        v = 0.1 * s
    elif len(shape) >= 2:
        fan_in = math.prod(shape[2:]) if name.startswith("poly_weights") else math.prod(shape[1:])
        v = math.sqrt(3.0 / max(fan_in, 1)) * s
    else:
        v = 0.1 * s
    return v.to(dtype)


def rule_state(salt: str, state_keys: Iterable) -> Dict[str, torch.Tensor]:
    """A reference state dict from a manifest ``state_keys`` list of ``[key, shape, dtype]`` (no constructed
    tensors: enough for the hub cases)."""
    return {key: rule_value(salt, key, shape, _DTYPES[dtype]) for key, shape, dtype in state_keys}
