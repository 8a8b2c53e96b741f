"""Files of small kanzoo Hub repos for the tests that publish to the Hub look-alike."""
from typing import Dict, Tuple

import torch
from safetensors.torch import save as save_safetensors
from torch import nn

import kanzoo


def tiny_repo_files(seed: int = 0, arch: str = "simple_conv_kagn", **kwargs) -> Tuple[nn.Module, Dict[str, bytes]]:
    """A seeded ``arch`` model in eval mode and ``{"model.safetensors": bytes}`` holding its weights."""
    torch.manual_seed(seed)
    model = kanzoo.create_model(arch, **kwargs).eval()
    return model, {"model.safetensors": save_safetensors({k: v.contiguous() for k, v in model.state_dict().items()})}
