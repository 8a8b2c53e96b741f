"""kanzoo: Kolmogorov-Arnold networks for computer vision."""
__version__ = "0.1.0.dev0"

from . import layers

__all__ = ["layers", "__version__"]
