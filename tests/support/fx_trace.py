"""torch.fx tracing as timm's model tests do it (timm 1.0.31 ``tests/test_models.py``, ``_create_fx_model``).

timm traces with torchvision's ``NodePathTracer`` (through ``get_graph_node_names`` and
``create_feature_extractor``) and these settings: its registered leaf modules and autowrapped functions, and
constant parameter shapes. :class:`TimmTracer` applies the same settings to a plain ``torch.fx.Tracer``: what
it can trace and the graph it records are the same, without torchvision's node naming, whose cost grows with
the square of the graph size (seconds per trace for a DenseNet-121 or a U²-Net). :func:`timm_fx_model` is
timm's path itself, for the smaller models.
"""
from typing import Any, Dict

import torch
from timm.models import get_notrace_functions, get_notrace_modules
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names


def timm_tracer_kwargs() -> Dict[str, Any]:
    return dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(),
                param_shapes_constant=True)


class TimmTracer(torch.fx.Tracer):
    """``torch.fx.Tracer`` with timm's FX settings (see the module docstring)."""

    def __init__(self):
        kw = timm_tracer_kwargs()
        super().__init__(autowrap_functions=tuple(kw["autowrap_functions"]), param_shapes_constant=True)
        self.leaf_modules = tuple(kw["leaf_modules"])

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.leaf_modules) or super().is_leaf_module(m, module_qualified_name)


def fx_trace(model: nn.Module) -> torch.fx.GraphModule:
    """``model`` traced in its current train/eval mode with :class:`TimmTracer`; the GraphModule shares its
    parameters."""
    return torch.fx.GraphModule(model, TimmTracer().trace(model))


def timm_fx_model(model: nn.Module) -> nn.Module:
    """timm's ``_create_fx_model`` (eval): a torchvision feature extractor that returns the model's output node,
    as a one-entry dict."""
    kw = timm_tracer_kwargs()
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=kw)
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]], eval_return_nodes=[eval_nodes[-1]],
                                    tracer_kwargs=kw)
