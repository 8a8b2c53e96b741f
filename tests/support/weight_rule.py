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


# ------------------------------------------------------------------------------------------------ KAT (golden/kat)
def kat_rule_value(salt: str, key: str, shape: Sequence[int], dtype: torch.dtype,
                   constructed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The KAT golden rule (shared/golden/kat/README.md, section 3): the tck rule plus two branches, rational
    coefficients = their constructed (init) value + 0.02·U[-1, 1), and cls/pos/reg tokens = 0.5·U[-1, 1)."""
    name = key.rsplit(".", 1)[-1]
    if name not in ("weight_numerator", "weight_denominator", "cls_token", "pos_embed", "reg_token"):
        return rule_value(salt, key, shape, dtype, constructed)
    g = torch.Generator(device="cpu")
    g.manual_seed(zlib.crc32(f"{salt}/{key}".encode("utf-8")) & 0xFFFFFFFF)
    s = 2.0 * torch.rand(tuple(shape), generator=g, dtype=torch.float64) - 1.0
    if name.startswith("weight_"):
        return (constructed.to(torch.float32).double() + 0.02 * s).to(dtype)
    return (0.5 * s).to(dtype)


def kat_rule_state(salt: str, state_keys: Iterable, init_of) -> Dict[str, torch.Tensor]:
    """A KAT reference state dict from manifest ``state_keys``; ``init_of(key)`` gives the constructed value of a
    rational coefficient (the float32 init fit of its mode)."""
    out = {}
    for key, shape, dtype in state_keys:
        name = key.rsplit(".", 1)[-1]
        constructed = init_of(key) if name.startswith("weight_n") or name.startswith("weight_d") else None
        out[key] = kat_rule_value(salt, key, shape, _DTYPES[dtype], constructed)
    return out


#: parameters the KAT and MLP-KAN golden rules draw as 0.5·s (their README, section 3: the one branch they add)
TOKEN_PARAMS = {"cls_token", "pos_embed", "reg_token"}


def rule_state_constructed(salt: str, state_keys: Iterable, constructed: Optional[Dict[str, torch.Tensor]] = None,
                           token_params: bool = False) -> Dict[str, torch.Tensor]:
    """``rule_state`` with the constructed tensors of structural keys (``grid`` ...) taken from ``constructed``
    (reference key -> tensor) and, with ``token_params``, the token branch of the KAT/MLP-KAN rule."""
    constructed = constructed or {}
    out: Dict[str, torch.Tensor] = {}
    for key, shape, dtype in state_keys:
        dt = _DTYPES[dtype]
        name = key.rsplit(".", 1)[-1]
        if token_params and name in TOKEN_PARAMS and dt.is_floating_point:
            g = torch.Generator(device="cpu")
            g.manual_seed(zlib.crc32(f"{salt}/{key}".encode("utf-8")) & 0xFFFFFFFF)
            out[key] = (0.5 * (2.0 * torch.rand(tuple(shape), generator=g, dtype=torch.float64) - 1.0)).to(dt)
            continue
        value = rule_value(salt, key, shape, dt, constructed.get(key))
        if value is None:
            raise KeyError(f"the rule keeps the constructed value of {key!r}: pass it in `constructed`")
        out[key] = value
    return out


def check_rule_checksums(state: Dict[str, torch.Tensor], checksums: Dict[str, dict]) -> None:
    """Asserts that every tensor matches the manifest's ``rule_checksums`` (shape, dtype, first 4 values, sums)."""
    import pytest

    for key, ref in checksums.items():
        v = state[key]
        assert list(v.shape) == ref["shape"] and str(v.dtype) == f"torch.{ref['dtype']}", key
        assert v.flatten()[:4].tolist() == ref["first"], key
        assert v.double().sum().item() == pytest.approx(ref["sum"], rel=1e-12, abs=1e-9), key
        if "abs_sum" in ref:
            assert v.double().abs().sum().item() == pytest.approx(ref["abs_sum"], rel=1e-12), key


def kat_case_state(case: dict, init_modes: dict) -> Dict[str, torch.Tensor]:
    """The reference state of a golden/kat case by the rule; ``init_modes`` is the manifest's ``init_json_modes``
    (act1 starts as ``identity``, act2 as the case's ``act_init``, a lone activation as its ``mode``)."""
    shapes = {k: s for k, s, _ in case["state_keys"]}

    def init_of(key):
        if case["family"] == "KAT_Group":
            mode = case["ctor_kwargs"]["mode"]
        elif f".{key}".find(".act1.") >= 0:
            mode = "identity"
        else:
            mode = case.get("act_init") or case["ctor_kwargs"]["act_init"]
        fit = init_modes[mode]
        if key.endswith("weight_numerator"):
            return torch.tensor([fit["numerator"]], dtype=torch.float32)
        return torch.tensor([fit["denominator"]], dtype=torch.float32).expand(*shapes[key])
    return kat_rule_state(case["weight_salt"], case["state_keys"], init_of)
