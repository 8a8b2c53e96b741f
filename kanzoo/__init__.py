"""kanzoo: Kolmogorov-Arnold networks for computer vision."""
__version__ = "0.1.0.dev0"

from . import layers, models
from .hub import push_to_hub, save_pretrained
from .models import create_model, list_models, list_pretrained

__all__ = [
    "layers", "models", "create_model", "list_models", "list_pretrained", "push_to_hub", "save_pretrained",
    "__version__",
]
