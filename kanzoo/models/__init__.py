"""kanzoo's model zoo. Importing this package registers every architecture in timm's registry."""
from ._factory import UnknownModelError, create_model, list_models, list_pretrained
from . import simple_conv  # noqa: F401  (registers models)
from . import vgg_kan  # noqa: F401
from . import resnet_kan  # noqa: F401
from . import densenet_kan  # noqa: F401
from . import ukanet  # noqa: F401
from . import u2kanet  # noqa: F401
from . import ukan  # noqa: F401
from . import mlp_kan  # noqa: F401
from . import s_convkan  # noqa: F401
from . import kat  # noqa: F401

__all__ = ["UnknownModelError", "create_model", "list_models", "list_pretrained"]
