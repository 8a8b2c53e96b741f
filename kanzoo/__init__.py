"""kanzoo: Kolmogorov-Arnold networks for computer vision."""
__version__ = "0.1.0.dev0"

from . import layers, models
from .models import create_model, list_models, list_pretrained

__all__ = ["layers", "models", "create_model", "list_models", "list_pretrained", "__version__"]
