"""kanzoo.peft: adapters that train only a KAN's basis coefficients, with an exact merge.

An API shaped like the peft library's (whose tuner registry is closed to new adapter types)::

    from kanzoo.peft import BasisAdapterConfig, get_peft_model, PeftModel

    model = kanzoo.create_model("simple_conv_kagn", pretrained=True)
    peft_model = get_peft_model(model, BasisAdapterConfig(trainable_degrees=[2, 3], extra_degrees=1,
                                                          num_classes=5))
    peft_model.print_trainable_parameters()
    ...                                   # train peft_model
    peft_model.save_pretrained("adapter/")   # adapter_config.json + adapter_model.safetensors
    merged = peft_model.merge_and_unload()   # a plain SimpleConvKAN of degree 4

    peft_model = PeftModel.from_pretrained(kanzoo.create_model("simple_conv_kagn", pretrained=True), "adapter/")

On a KAT the targets are the group-rational activations: ``get_peft_model(kat, BasisAdapterConfig(num_classes=10))``
trains their coefficients and the new head, and merges back into a plain KAT.

See :class:`BasisAdapterConfig` for what is trained and docs/peft.md for the semantics.
"""
from .bases import BasisRule, bernstein_elevate, get_basis_rule, register_basis_rule
from .config import CONFIG_NAME, PEFT_TYPE, WEIGHTS_NAME, BasisAdapterConfig
from .layers import SUPPORTED_LAYERS, BasisAdapterLayer, RationalAdapterLayer
from .model import (
    KEY_PREFIX,
    PeftModel,
    get_peft_model,
    get_peft_model_state_dict,
    load_adapter,
    set_peft_model_state_dict,
)

__all__ = [
    "BasisAdapterConfig", "BasisAdapterLayer", "BasisRule", "CONFIG_NAME", "KEY_PREFIX", "PEFT_TYPE", "PeftModel",
    "RationalAdapterLayer", "SUPPORTED_LAYERS", "WEIGHTS_NAME", "bernstein_elevate", "get_basis_rule", "get_peft_model",
    "get_peft_model_state_dict", "load_adapter", "register_basis_rule", "set_peft_model_state_dict",
]
