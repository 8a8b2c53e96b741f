"""Pretrained weights on the Hugging Face Hub: resolution, download and verification, publishing, model cards."""
from .download import (PretrainedWeightsError, WeightsIntegrityError, WeightsNotFoundError, WeightsOfflineError,
                       download_weights, load_state_file, resolve_pretrained_state, verify_file)
from .cards import model_card, stale_model_cards, write_model_cards
from .publish import push_to_hub, save_pretrained

__all__ = [
    "PretrainedWeightsError", "WeightsIntegrityError", "WeightsNotFoundError", "WeightsOfflineError",
    "download_weights", "load_state_file", "resolve_pretrained_state", "verify_file",
    "model_card", "stale_model_cards", "write_model_cards", "push_to_hub", "save_pretrained",
]
