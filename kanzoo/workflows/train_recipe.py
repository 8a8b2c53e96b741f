"""``kanzoo train NAME --recipe TAG``: a published recipe (:mod:`kanzoo.recipes`, timm ``train.py`` names) as
the settings of a run. :func:`settings_from_recipe` maps it onto :class:`~kanzoo.workflows.train_config.
TrainConfig`: options given on the command line win, the learning rate follows the global batch when the run's
differs from the recipe's (linear scaling), and every recipe key kanzoo does not apply is listed and kept in
``args.json`` (``recipe_unapplied``), never dropped silently.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Collection, Dict, List, Mapping

from ..errors import WorkflowError
from ..recipes import Recipe
from .initial_weights import TIMM_PREFIX
from .train_config import TrainConfig, current_names

__all__ = ["INIT_KEYS", "NOT_FROM_RECIPES", "RecipeSettings", "settings_from_recipe"]

#: settings that say where the data, the output and the process are, not how to train: a recipe never sets them
NOT_FROM_RECIPES = frozenset({
    "model", "data", "data_dir", "train_split", "val_split", "val_data", "output", "device", "workers", "progress",
    "quiet", "log_interval", "max_skipped_fraction", "pretrained", "checkpoint", "peft", "recipe",
    "recipe_unapplied",
})


#: a fine-tuning recipe's start (a timm tag in ``kanzoo_init_timm_tag``), applied as ``initial_checkpoint``
INIT_KEYS = ("kanzoo_init_checkpoint", "kanzoo_init_argument", "kanzoo_init_timm_tag")


@dataclass
class RecipeSettings:
    """What a recipe contributes to a run: ``values`` (TrainConfig field -> value, command-line options already
    applied), the ``unapplied`` recipe keys, and the lines to print at the start of the run."""

    values: Dict[str, Any]
    unapplied: Dict[str, Any] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)


def _json_value(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def settings_from_recipe(recipe: Recipe, values: Mapping[str, Any], given: Collection[str],
                         world_size: int) -> RecipeSettings:
    """The run's settings: ``values`` (every TrainConfig field, the command's defaults included) with the
    recipe's settings in place of every field not in ``given`` (the options typed on the command line).

    The learning rate: when the run's global batch (``batch_size x world_size x grad_accum_steps``) differs
    from the recipe's (:attr:`Recipe.global_batch_size`) and ``lr`` was not given, the recipe's lr is scaled by
    their ratio, and a note says so."""
    if recipe.task != "classification":
        raise WorkflowError(f"recipe {recipe.tag} trains {recipe.task} and kanzoo train trains image classifiers; "
                            f"its settings are data for the authors' trainer: kanzoo.recipes.load_recipe("
                            f"{recipe.tag!r}), and docs/recipes.md")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    out = dict(values)
    unapplied: Dict[str, Any] = {}
    settings = current_names(recipe.settings)
    arch = str(values.get("model") or recipe.model).split(".")[0]
    if arch != recipe.model:
        raise WorkflowError(f"recipe {recipe.tag} trains {recipe.model}, not {values.get('model')}; give NAME "
                            f"{recipe.model} or leave NAME out")
    out["model"] = values.get("model") or recipe.model
    for key, value in settings.items():
        if key == "model":
            continue
        if key == "model_kwargs" and isinstance(value, Mapping):
            out["model_kwargs"] = {**value, **(values.get("model_kwargs") or {})}
        elif key in fields and key not in NOT_FROM_RECIPES:
            if key not in given:
                out[key] = tuple(value) if isinstance(value, list) else value
        else:
            unapplied[key] = _json_value(value)
    extras = dict(getattr(recipe, "extras", None) or {})
    notes = []
    init_tag = extras.get("kanzoo_init_timm_tag")
    if init_tag and not given & {"initial_checkpoint", "pretrained", "checkpoint"}:
        out["initial_checkpoint"] = f"{TIMM_PREFIX}{init_tag}"
        their_file = str(extras.get("kanzoo_init_checkpoint", "")).rsplit("/", 1)[-1]
        for key in INIT_KEYS:
            extras.pop(key, None)
        notes.append(f"initial checkpoint {TIMM_PREFIX}{init_tag}: the weights the authors started from"
                     f"{f' ({their_file})' if their_file else ''}; --initial-checkpoint, --pretrained or "
                     f"--checkpoint sets another start")
    for key, value in extras.items():
        unapplied[key] = _json_value(value)
    if unapplied:
        notes.append(f"recipe settings kanzoo train does not apply: "
                     f"{', '.join(f'{k}={v!r}' for k, v in sorted(unapplied.items()))}")
    ours = int(out["batch_size"]) * world_size * int(out.get("grad_accum_steps") or 1)
    theirs = recipe.global_batch_size
    if "lr" not in given and "lr" in settings and ours != theirs:
        base = float(settings["lr"])
        out["lr"] = base * ours / theirs
        notes.append(f"lr {out['lr']:.4g} = recipe lr {base:g} x global batch {ours} / recipe global batch {theirs} "
                     f"(linear scaling; --lr sets it directly)")
    out["recipe"] = recipe.tag
    out["recipe_unapplied"] = unapplied
    return RecipeSettings(values=out, unapplied=unapplied, notes=notes)
