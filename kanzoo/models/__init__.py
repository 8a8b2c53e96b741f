"""kanzoo's model zoo. Importing this package registers every architecture in timm's registry.

One file per family (config tables, the model class, registered variants with their pretrained cfgs and the
family's ``checkpoint_filter_fn`` for upstream keys); ``_base`` holds the shared builder and head API.
"""
from ..errors import UnknownModelError
from . import (
           densenet_kan,  # noqa: F401
           kat,  # noqa: F401
           mlp_kan,  # noqa: F401
           resnet_kan,  # noqa: F401
           s_convkan,  # noqa: F401
           simple_conv,  # noqa: F401  (registers models)
           u2kanet,  # noqa: F401
           ukan,  # noqa: F401
           ukanet,  # noqa: F401
           vgg_kan,  # noqa: F401
           vision_kan,  # noqa: F401
)
from ._base import BASIS_TAGS, POLYNOMIAL_BASES, KANPretrainedCfg, build_kan_model
from ._factory import create_model, infer_model_shape, list_models, list_pretrained

__all__ = ["BASIS_TAGS", "POLYNOMIAL_BASES", "KANPretrainedCfg", "UnknownModelError", "build_kan_model",
           "create_model", "infer_model_shape", "list_models", "list_pretrained"]
