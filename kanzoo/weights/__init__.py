"""Weights, below the models: read a file safely, download and verify it, unwrap a checkpoint and load it
strictly with one mismatch report.

Every "architecture + weights" load in kanzoo goes through here: ``create_model``'s pretrained path (through
:func:`kanzoo.models.build_kan_model`), ``--checkpoint`` files, export and conversion.

1. :func:`weight_source` picks the source of a pretrained cfg in timm's order (``hf-hub:`` name, ``local-dir:``,
   in-memory ``state_dict``, ``file``, ``hf_hub_id``, ``url``);
2. :func:`download_weights` fetches a Hub file with ``huggingface_hub`` and verifies it against the recorded
   sha256 or the Hub's content hash (a bad file is evicted from the cache);
3. :func:`load_state_file` reads safetensors, or a torch file with ``torch.load(weights_only=True)`` only;
4. :func:`unwrap_checkpoint` takes the weights out of a training checkpoint and drops wrapper prefixes;
5. :func:`fit_state_dict` / :func:`load_state_strict` check every key and shape and raise one
   :class:`~kanzoo.errors.WeightsMismatchError` listing what does not fit.
"""
from ..errors import (
                      NoPretrainedWeightsError,
                      PretrainedWeightsError,
                      WeightsFileError,
                      WeightsIntegrityError,
                      WeightsMismatchError,
                      WeightsNotFoundError,
                      WeightsOfflineError,
)
from .checkpoint import describe_mismatch, fit_state_dict, load_state_strict, state_mismatch, unwrap_checkpoint
from .download import WEIGHT_FILES, download_weights, fetch_file, offline_message, split_hub_id, verify_file
from .files import LOCAL_FILES, file_sha256, git_blob_sha1, load_state_file
from .provenance import HOSTS, Upstream, is_full_commit
from .resolve import resolve_pretrained_state, weight_source

__all__ = [
    "HOSTS", "NoPretrainedWeightsError", "PretrainedWeightsError", "WeightsFileError", "WeightsIntegrityError",
    "WeightsMismatchError", "WeightsNotFoundError", "WeightsOfflineError", "LOCAL_FILES", "WEIGHT_FILES",
    "describe_mismatch", "download_weights", "fetch_file", "file_sha256", "fit_state_dict", "git_blob_sha1",
    "is_full_commit", "load_state_file", "load_state_strict", "offline_message", "resolve_pretrained_state",
    "split_hub_id", "state_mismatch", "unwrap_checkpoint", "Upstream", "verify_file", "weight_source",
]
