"""Deprecated alias of :mod:`kanzoo.workflows.masks` (segmentation data, mask prediction and overlays moved
into the workflows); kept for one release."""
import warnings

from .workflows.masks import *  # noqa: F401,F403
from .workflows.masks import __all__  # noqa: F401

warnings.warn("kanzoo.segmentation is deprecated; import from kanzoo.workflows.masks", DeprecationWarning,
              stacklevel=2)
