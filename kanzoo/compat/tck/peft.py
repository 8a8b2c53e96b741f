"""torch-conv-kan PEFT adapters (``kan_peft``: ``PEFTKAGNConvNDLayer``, ``PEFTVGGKAGN``) -> kanzoo.peft.

The reference wraps a KAGN conv of degree D with, per layer, ``poly_weights_delta`` (G, Cog, Cig·|T|, k..)
and ``beta_weights_delta`` (|T|) for the trainable degrees T, ``poly_weights_extra`` (G, Cog, Cig·E, k..)
and ``beta_weights_extra`` (E) for E extra degrees, plus an int32 ``delta_indices``. Its forward builds
P_{n+1} with β'_n, where (golden README section 6.1)

* β'_n = β_n + δ[T.index(n+1)] if n+1 ∈ T  (kanzoo: ``beta_delta`` of degree n+1, the same meaning);
* otherwise β'_n = extra[n-D-1] for n ≥ D, so P_{D+1} reads extra[-1], the **last** entry, and
  P_{D+1+j} reads extra[j-1] (kanzoo: ``beta_extra[j]`` builds P_{D+1+j}; so kanzoo = roll(reference, 1)).

The coefficient tensors are degree-major inside each group (index t·Cig + c); kanzoo's are channel-major
(O, Cig, n, k..) with the trainable degrees in increasing order. A beta delta of degree 0 or 1 is dead in
the reference (no β enters P_0 or P_1) and has no kanzoo counterpart; it is dropped. With this mapping the
kanzoo adapter reproduces the reference's adapted output, and kanzoo's merge reproduces it too (the
reference's own merge does not; see docs/compat.md, deviation 14).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch

from ...peft import BasisAdapterConfig
from ...peft.layers import BasisAdapterLayer
from ...peft.model import KEY_PREFIX
from ._state import StateReader, degree_major_to_channel

__all__ = ["reference_peft_config", "convert_peft_adapter_state"]


def reference_peft_config(peft_kwargs: Dict[str, Any]) -> BasisAdapterConfig:
    """The kanzoo config for a reference ``wrap_layer``/``PEFTVGGKAGN`` call (``trainable_degrees``,
    ``extra_degrees``, ``finetune_base``)."""
    kw = dict(peft_kwargs)
    degrees = kw.pop("trainable_degrees", None)
    extra = kw.pop("extra_degrees", 0)
    base = kw.pop("finetune_base", False)
    if kw:
        raise ValueError(f"reference PEFT arguments kanzoo does not understand: {sorted(kw)}")
    return BasisAdapterConfig(trainable_degrees=list(degrees or []), extra_degrees=int(extra), train_base=bool(base))


def _coefficients(w: torch.Tensor, cig: int, n: int) -> torch.Tensor:
    """(G, Cog, Cig·n, k..) degree-major -> (G·Cog, Cig, n, k..)."""
    return degree_major_to_channel(w.reshape((-1,) + tuple(w.shape[2:])), cig, n)


def _convert_layer(reader: StateReader, layer: BasisAdapterLayer, name: str,
                   reference_degrees: List[int]) -> Dict[str, torch.Tensor]:
    if layer.rule.name != "gram" or layer.rank is not None:
        raise ValueError(f"layer {name!r}: the reference adapts KAGN (Gram) layers with full deltas only, got "
                         f"basis {layer.rule.name!r}, rank {layer.rank}")
    base = layer.base_layer
    cig = base.basis_weight.shape[1]
    out: Dict[str, torch.Tensor] = {}
    prefix = KEY_PREFIX + (name + "." if name else "")
    if reference_degrees:
        if sorted(reference_degrees) != layer.trainable_degrees:
            raise ValueError(f"layer {name!r}: reference trainable degrees {reference_degrees} do not match the "
                             f"adapter's {layer.trainable_degrees}")
        want = torch.tensor([cig * d + c for d in reference_degrees for c in range(cig)], dtype=torch.long)
        got = reader.take_optional("delta_indices")  # not stored in the VGG case
        if got is not None and not torch.equal(got.long().flatten(), want):
            raise ValueError(f"layer {name!r}: delta_indices {got.flatten().tolist()} are not the basis channels "
                             f"of degrees {reference_degrees} (expected {want.tolist()})")
        order = [reference_degrees.index(d) for d in layer.trainable_degrees]
        delta = _coefficients(reader.take("poly_weights_delta"), cig, len(reference_degrees))
        out[prefix + "basis_delta"] = delta[:, :, order].contiguous()
        beta = reader.take("beta_weights_delta").flatten()
        if layer.beta_degrees:
            out[prefix + "beta_delta"] = beta[[reference_degrees.index(d) for d in layer.beta_degrees]].clone()
    elif reader.has("delta_indices"):
        raise ValueError(f"layer {name!r}: the reference adapter has trainable-degree deltas, the kanzoo one none")
    if layer.extra_degrees:
        out[prefix + "basis_extra"] = _coefficients(reader.take("poly_weights_extra"), cig, layer.extra_degrees)
        out[prefix + "beta_extra"] = torch.roll(reader.take("beta_weights_extra").flatten(), 1).clone()
    return out


def convert_peft_adapter_state(reference_state: Dict[str, torch.Tensor], peft_model,
                               trainable_degrees: Optional[List[int]] = None) -> Dict[str, torch.Tensor]:
    """Maps reference adapter tensors (``features.0.poly_weights_delta``, ... or, for a wrapped single
    layer, ``poly_weights_delta``, ...) onto ``peft_model``'s adapters, keyed as in
    :meth:`~kanzoo.peft.PeftModel.adapter_state_dict` (load them with ``load_adapter_state_dict``).

    ``trainable_degrees`` is the reference's list in its own order (the slot order of its deltas).
    Strict: every reference tensor must be used.
    """
    reader = StateReader(dict(reference_state))
    out: Dict[str, torch.Tensor] = {}
    degrees = list(trainable_degrees or [])
    for name, layer in peft_model.adapter_layers().items():
        out.update(_convert_layer(reader.sub(name + "." if name else ""), layer, name, degrees))
    reader.finish()
    return out
