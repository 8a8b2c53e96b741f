"""Publishing to the Hugging Face Hub and model cards. Resolution, download and verification of weights live in
:mod:`kanzoo.weights` (re-exported here for existing callers)."""
from ..weights import (
                       PretrainedWeightsError,
                       WeightsIntegrityError,
                       WeightsNotFoundError,
                       WeightsOfflineError,
                       download_weights,
                       load_state_file,
                       resolve_pretrained_state,
                       verify_file,
)
from .cards import model_card, stale_model_cards, write_model_cards
from .publish import push_to_hub, save_pretrained

__all__ = [
    "PretrainedWeightsError", "WeightsIntegrityError", "WeightsNotFoundError", "WeightsOfflineError",
    "download_weights", "load_state_file", "resolve_pretrained_state", "verify_file",
    "model_card", "stale_model_cards", "write_model_cards", "push_to_hub", "save_pretrained",
]
