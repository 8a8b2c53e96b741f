"""Training recipes of kanzoo's pretrained tags, kept as data.

Each pretrained tag ``<arch>.<tag>`` has a file ``<arch>.<tag>.yaml`` beside this module. Its keys are the
argument names (argparse ``dest``) of timm's ``train.py``, so the file works as ``train.py --config FILE``
(timm reads it with ``parser.set_defaults(**yaml)``). Three kinds of extra key ride along and are ignored
by timm: ``kanzoo_world_size`` (how many processes the authors trained with), ``kanzoo_sources`` (where
each value comes from: ``owner/repo@commit:path`` or ``"kanzoo choice: <why>"``) and any other
``kanzoo_*`` key for facts timm has no argument for (segmentation loss, per-layer learning rates...).

>>> from kanzoo.recipes import list_recipes, load_recipe
>>> r = load_recipe("kat_tiny_patch16_224.in1k")
>>> r.settings["lr"], r.world_size, r.global_batch_size
(0.001, 8, 1024)
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

import yaml

from kanzoo.errors import KanzooError

__all__ = ["Recipe", "UnknownRecipeError", "RecipeFormatError", "list_recipes", "load_recipe", "recipe_dir",
           "TIMM_TRAIN_ARGS", "TIMM_TRAIN_SOURCE", "PREFIX"]

#: extra keys start with this; timm's train.py has no argument of that name
PREFIX = "kanzoo_"

#: where :data:`TIMM_TRAIN_ARGS` was read from (timm's v1.0.28 release)
TIMM_TRAIN_SOURCE = "huggingface/pytorch-image-models@8ef73809f622e0031bd7f4940265734aef8b9978:train.py"

# Every argparse dest of timm's train.py at TIMM_TRAIN_SOURCE, with the kind of value it takes: "str", "int",
# "float", "flag" (store_true), "int+"/"float+"/"str+" (a list, nargs), "kwargs" (key=value pairs).
_ARGS_BY_KIND = {
    "str": """config data_dir dataset train_split val_split class_map input_img_mode input_key target_key model
        pretrained_path initial_checkpoint resume gp interpolation fuser torchcompile_mode torchcompile device
        amp_dtype model_dtype opt clip_mode sched lr_base_scale remode mixup_mode train_interpolation dist_bn
        worker_seeding output experiment eval_metric wandb_project wandb_resume_id naflex_loss_scale
        kd_model_name kd_distill_type kd_loss_type kd_token_distill_type train_crop_mode aa data""",
    "int": """train_num_samples val_num_samples num_classes img_size in_chans batch_size validation_batch_size
        grad_accum_steps local_rank lr_base_size lr_cycle_limit epochs start_epoch warmup_epochs cooldown_epochs
        patience_epochs aug_splits recount mixup_off_epoch seed log_interval val_interval recovery_interval
        checkpoint_hist workers tta naflex_max_seq_len kd_student_feature_dim kd_teacher_feature_dim""",
    "float": """crop_pct head_init_scale head_init_bias opt_eps momentum weight_decay clip_grad layer_decay
        layer_decay_min_scale layer_decay_no_opt_scale lr lr_base lr_noise_pct lr_noise_std lr_cycle_mul
        lr_cycle_decay lr_k_decay warmup_lr min_lr epoch_repeats decay_epochs decay_rate hflip vflip color_jitter
        color_jitter_prob grayscale_prob gaussian_blur_prob aug_repeats bce_target_thresh bce_pos_weight reprob
        mixup cutmix mixup_prob mixup_switch_prob smoothing drop drop_connect drop_path drop_block bn_momentum
        bn_eps model_ema_decay distill_loss_weight task_loss_weight kd_temperature""",
    "flag": """dataset_download dataset_trust_remote_code pretrained no_resume_opt channels_last grad_checkpointing
        fast_norm torchscript amp no_ddp_bb synchronize_step sched_on_updates no_aug jsd_loss bce_loss bce_sum
        resplit sync_bn split_bn model_ema model_ema_force_cpu model_ema_warmup save_images pin_mem
        no_prefetcher use_multi_epochs_loader log_wandb naflex_loader naflex_patchify_channels_first
        warmup_prefix""",
    "int+": "input_size decay_milestones naflex_train_seq_lens naflex_patch_sizes",
    "float+": "mean std opt_betas lr_noise scale ratio cutmix_minmax naflex_patch_size_probs",
    "str+": "device_modules wandb_tags",
    "kwargs": "model_kwargs opt_kwargs",
}
#: timm train.py argument name -> kind of value (see _ARGS_BY_KIND)
TIMM_TRAIN_ARGS: Dict[str, str] = {name: kind for kind, names in _ARGS_BY_KIND.items() for name in names.split()}

_HERE = Path(__file__).parent
_SUFFIX = ".yaml"


class UnknownRecipeError(KanzooError, ValueError):
    """No recipe for the requested tag."""


class RecipeFormatError(KanzooError, ValueError):
    """A recipe file that breaks the format (not flat, a key timm does not know, a value without a source...)."""


@dataclass(frozen=True)
class Recipe:
    """One pretrained tag's training recipe, as its authors ran it.

    ``settings`` holds timm ``train.py`` argument names and values (no ``kanzoo_*`` key); ``extras`` holds the
    ``kanzoo_*`` facts other than the world size and the sources; ``sources`` maps every key of the file
    (both kinds) to its citation.
    """
    tag: str
    model: str
    settings: Dict[str, Any]
    world_size: int
    sources: Dict[str, str]
    path: Path

    @property
    def global_batch_size(self) -> int:
        """Images per optimizer step: per-process batch × processes × gradient-accumulation steps."""
        return int(self.settings["batch_size"]) * self.world_size * int(self.settings.get("grad_accum_steps", 1))

    @property
    def task(self) -> str:
        """What the recipe trains: ``kanzoo_task`` (``'segmentation'`` for U-KAN), else ``'classification'``."""
        return str(self.extras.get("kanzoo_task", "classification"))

    @property
    def extras(self) -> Dict[str, Any]:
        """The file's ``kanzoo_*`` facts (without ``kanzoo_world_size`` and ``kanzoo_sources``)."""
        raw = read_raw(self.path)
        return {k: v for k, v in raw.items()
                if k.startswith(PREFIX) and k not in ("kanzoo_world_size", "kanzoo_sources")}


def recipe_dir() -> Path:
    """The folder that holds the recipe files."""
    return _HERE


def list_recipes() -> List[str]:
    """Every tag with a recipe, sorted (``'kat_tiny_patch16_224.in1k'``, ...)."""
    return sorted(p.name[: -len(_SUFFIX)] for p in _HERE.glob(f"*{_SUFFIX}"))


def _resolve(tag: str) -> str:
    known = list_recipes()
    if tag in known:
        return tag
    by_arch = [t for t in known if t.split(".", 1)[0] == tag]
    if len(by_arch) == 1:
        return by_arch[0]
    if by_arch:
        raise UnknownRecipeError(f"'{tag}' has {len(by_arch)} recipes, pick one tag: {', '.join(by_arch)}")
    close = difflib.get_close_matches(tag, known, n=4, cutoff=0.6)
    hint = f"closest: {', '.join(close)}; " if close else ""
    raise UnknownRecipeError(f"no training recipe for '{tag}'; {hint}kanzoo.recipes.list_recipes() lists all "
                             f"{len(known)}")


def read_raw(path: Path) -> Dict[str, Any]:
    """A recipe file's top-level mapping, as timm's train.py would read it (``yaml.safe_load``)."""
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict):
        raise RecipeFormatError(f"{path}: a recipe is one top-level mapping, found {type(raw).__name__}")
    return raw


def _check(path: Path, raw: Dict[str, Any]) -> None:
    name = path.name[: -len(_SUFFIX)]
    unknown = [k for k in raw if not k.startswith(PREFIX) and k not in TIMM_TRAIN_ARGS]
    if unknown:
        raise RecipeFormatError(f"{path.name}: {', '.join(unknown)} is neither a timm train.py argument "
                                f"({TIMM_TRAIN_SOURCE}) nor a {PREFIX}* key")
    if raw.get("model") != name.split(".", 1)[0]:
        raise RecipeFormatError(f"{path.name}: model is {raw.get('model')!r}, the file name says "
                                f"{name.split('.', 1)[0]!r}")
    ws = raw.get("kanzoo_world_size")
    if not isinstance(ws, int) or isinstance(ws, bool) or ws < 1:
        raise RecipeFormatError(f"{path.name}: kanzoo_world_size must be a positive integer, got {ws!r}")
    sources = raw.get("kanzoo_sources")
    if not isinstance(sources, dict):
        raise RecipeFormatError(f"{path.name}: kanzoo_sources must map each key to its citation")
    missing = [k for k in raw if k != "kanzoo_sources" and not str(sources.get(k) or "").strip()]
    if missing:
        raise RecipeFormatError(f"{path.name}: no source for {', '.join(missing)} (cite owner/repo@commit:path or "
                                f"write 'kanzoo choice: <why>')")
    stray = [k for k in sources if k not in raw]
    if stray:
        raise RecipeFormatError(f"{path.name}: kanzoo_sources cites {', '.join(stray)}, which the file does not set")


def load_recipe(tag: str) -> Recipe:
    """The recipe of ``tag`` (``'arch.tag'``; a bare architecture name with exactly one recipe also works).

    Raises :class:`UnknownRecipeError` (a ``ValueError``) for a tag without a recipe, and
    :class:`RecipeFormatError` for a file that breaks the format.
    """
    name = _resolve(tag)
    path = _HERE / f"{name}{_SUFFIX}"
    raw = read_raw(path)
    _check(path, raw)
    settings = {k: v for k, v in raw.items() if not k.startswith(PREFIX)}
    return Recipe(tag=name, model=str(raw["model"]), settings=settings, world_size=int(raw["kanzoo_world_size"]),
                  sources={str(k): str(v) for k, v in raw["kanzoo_sources"].items()}, path=path)
