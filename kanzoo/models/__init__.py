"""kanzoo's model zoo. Importing this package registers every architecture in timm's registry."""
from ._factory import UnknownModelError, create_model, list_models, list_pretrained
from . import simple_conv  # noqa: F401  (registers models)

__all__ = ["UnknownModelError", "create_model", "list_models", "list_pretrained"]
