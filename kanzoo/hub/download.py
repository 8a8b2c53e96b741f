"""Deprecated alias of :mod:`kanzoo.weights` (resolution, download, verification and safe reading of weights
moved there, below the models); kept for one release."""
import warnings

from ..weights import *  # noqa: F401,F403
from ..weights import __all__  # noqa: F401

warnings.warn("kanzoo.hub.download is deprecated; import from kanzoo.weights", DeprecationWarning, stacklevel=2)
