"""Whole-model ``torch.compile``: ``create_model(..., compile=...)`` and :func:`compile_model`.

The model is compiled **in place** with :meth:`torch.nn.Module.compile`: its class, attributes and
``state_dict`` keys stay as they are (``torch.compile(model)`` would return an ``OptimizedModule`` whose keys
carry an ``_orig_mod.`` prefix), so saving, loading, ``pretrained_cfg`` and the head API work unchanged.
Calling the model (``model(x)``) runs the compiled forward; other methods (``forward_features``...) stay eager.
"""
import inspect
from collections.abc import Mapping
from typing import Any, Dict, Optional

import torch
from torch import nn

__all__ = ["compile_model", "compile_options"]

#: the keyword arguments ``torch.compile`` takes besides the model
COMPILE_ARGS = tuple(p for p in inspect.signature(torch.compile).parameters if p != "model")


def compile_options(compile: Any) -> Optional[Dict[str, Any]]:
    """The ``torch.compile`` keyword arguments that ``compile`` asks for: None for ``False``/``None`` (no
    compilation), ``{}`` for ``True`` (torch's defaults: inductor), a copy of a dict after checking its keys."""
    if compile is None or compile is False:
        return None
    if compile is True:
        return {}
    if not isinstance(compile, Mapping):
        raise TypeError(f"compile must be True, False or a dict of torch.compile arguments, got "
                        f"{type(compile).__name__} {compile!r}")
    unknown = sorted(str(k) for k in compile if k not in COMPILE_ARGS)
    if unknown:
        raise ValueError(f"compile has unknown torch.compile arguments {unknown}; it takes {list(COMPILE_ARGS)}")
    return dict(compile)


def compile_model(model: nn.Module, compile: Any = True) -> nn.Module:
    """Compiles ``model`` in place (``model.compile(**options)``) and returns it; ``compile`` is ``True``
    (torch's defaults), a dict of ``torch.compile`` arguments (``dict(mode="reduce-overhead")``,
    ``dict(backend="aot_eager", fullgraph=True)``...) or ``False``/``None`` (returned as is)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"compile_model needs an nn.Module, got {type(model).__name__}")
    options = compile_options(compile)
    if options is not None:
        model.compile(**options)
    return model
