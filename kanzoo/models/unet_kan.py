"""Deprecated alias: the two segmentation families now have a file each, :mod:`kanzoo.models.ukanet` and
:mod:`kanzoo.models.u2kanet`; kept for one release."""
import warnings

from .u2kanet import U2KANet
from .ukanet import UKANet

__all__ = ["UKANet", "U2KANet"]

warnings.warn("kanzoo.models.unet_kan is deprecated; import from kanzoo.models.ukanet or kanzoo.models.u2kanet",
              DeprecationWarning, stacklevel=2)
