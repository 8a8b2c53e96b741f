"""kanzoo: Kolmogorov-Arnold networks for computer vision."""
from . import layers, models
from ._version import __version__
from .hub import push_to_hub, save_pretrained
from .models import create_model, list_models, list_pretrained
from .models._compile import compile_model

__all__ = [
    "layers", "models", "compile_model", "create_model", "list_models", "list_pretrained", "push_to_hub",
    "save_pretrained", "__version__",
]
