"""S-KAN basis selection in training: the three phases as a training callback (:class:`SelectionSchedule`)
and the trainer's policy around it (which phases a run gets, resuming them, recording what pruning kept).

A model with selectable KAN layers (:mod:`kanzoo.layers.selectable`, e.g. ``s_convkan_*``) trains every
candidate basis until ``--select-epoch``, then each channel's top-k (the mixing weights frozen) until
``--prune-epoch``, then the pruned model. Options not given come from the model's pretrained cfg
``selection`` (:func:`selection_schedule`); docs/selectable.md has the details.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from timm.models import get_pretrained_cfg
from torch import nn

from ..errors import WorkflowError
from ..layers.selectable import prune_masks, prune_model, select_model, selectable_layers, selection_summary
from .train_config import TrainConfig

__all__ = [
    "SelectionSchedule", "describe_schedule", "freeze_alphas", "record_pruned", "resumed_schedule",
    "schedule_for_run", "selection_event", "selection_schedule",
]


class SelectionSchedule:
    """The three S-KAN phases as a training callback (epochs count from 0).

    ========================================  =================================================
    epochs                                    phase
    ========================================  =================================================
    ``[0, full_epochs)``                      ``'full'``: every candidate basis trains
    ``[full_epochs, full_epochs+select_epochs)``  ``'select'``: each channel keeps its top-k
    ``full_epochs + select_epochs`` onwards   ``'pruned'`` (with ``prune=True``)
    ========================================  =================================================

    The training loop calls, once per epoch::

        event = schedule.on_epoch_start(epoch, model)   # None, 'select' or 'prune'
        if event == "prune":            # the model's parameters were replaced
            optimizer = make_optimizer(model)            # and re-create any EMA copy / lr scheduler state
        ...train one epoch...
        schedule.on_epoch_end(epoch, model, metrics)    # records the per-layer basis counts

    ``on_epoch_start`` applies every transition due by ``epoch`` that has not happened yet, so resuming at
    any epoch works: restore ``load_state_dict`` first (it carries the selection masks), call
    ``on_epoch_start(start_epoch - 1, model)`` on the freshly built model (it re-applies the saved selection and
    prunes if the checkpoint was pruned), then load the checkpoint's weights and build the optimizer; the loop's
    ``on_epoch_start(start_epoch, model)`` then applies what is due at ``start_epoch``.

    Args:
        full_epochs: epochs of phase 1 (>= 1: the selection reads α, which must have trained).
        select_epochs: epochs of phase 2 (0: prune right after selecting).
        top_k: members each channel keeps in phase 2 (and after pruning).
        prune: prune at the end of phase 2 (False: stay in phase 2).
    """

    PHASES = ("full", "select", "pruned")

    def __init__(self, full_epochs: int, select_epochs: int, top_k: int = 1, prune: bool = True):
        for name, v, lo in (("full_epochs", full_epochs, 1), ("select_epochs", select_epochs, 0), ("top_k", top_k, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        self.full_epochs, self.select_epochs, self.top_k, self.prune = full_epochs, select_epochs, top_k, bool(prune)
        self.state = "full"                   # what has been applied to the model
        self.masks: Dict[str, List[List[bool]]] = {}
        self.history: List[Dict[str, Any]] = []

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> "SelectionSchedule":
        """From a mapping with ``full_epochs``, ``select_epochs`` and optionally ``top_k`` and ``prune``
        (the ``selection`` entry of an ``s_convkan`` pretrained cfg)."""
        known = {"full_epochs", "select_epochs", "top_k", "prune"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"unknown selection settings {unknown}; known: {sorted(known)}")
        return cls(**dict(cfg))

    def to_dict(self) -> Dict[str, Any]:
        return dict(full_epochs=self.full_epochs, select_epochs=self.select_epochs, top_k=self.top_k,
                    prune=self.prune)

    def phase(self, epoch: int) -> str:
        """The phase that ``epoch`` belongs to."""
        if epoch < self.full_epochs:
            return "full"
        if epoch < self.full_epochs + self.select_epochs or not self.prune:
            return "select"
        return "pruned"

    def on_epoch_start(self, epoch: int, model: nn.Module) -> Optional[str]:
        """Applies the transitions due at ``epoch``; returns ``'prune'`` when the model's parameters were
        replaced (rebuild the optimizer), ``'select'`` when the selection was frozen, else None."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        target = self.phase(epoch)
        event = None
        if self.PHASES.index(target) >= 1 and self.state == "full":
            if self.masks and target == "pruned" and not selectable_layers(model):
                pass  # resuming into the pruned phase with a model rebuilt in its pruned form: nothing to select
            elif self.masks:  # resuming: restore the recorded selection instead of re-reading α
                select_model(model, masks=self.masks)
            else:
                select_model(model, self.top_k)
                self.masks = {n: m.selected.cpu().tolist() for n, m in selectable_layers(model)}
            self.state, event = "select", "select"
        if target == "pruned" and self.state == "select":
            if selectable_layers(model):
                if not any(layer.is_selected for _, layer in selectable_layers(model)):
                    select_model(model, masks=self.masks)
                # what pruning keeps (differs from the selection only where select narrowed nothing, e.g.
                # top_k = pool size: then each channel's top-1), so a resumed run rebuilds the same structure
                self.masks = {n: m.tolist() for n, m in prune_masks(model).items()}
                prune_model(model)
            self.state, event = "pruned", "prune"
        return event

    def on_epoch_end(self, epoch: int, model: nn.Module, metrics: Optional[Mapping[str, float]] = None) -> None:
        """Records the phase and the per-layer basis counts (each channel's top-k while all bases train)."""
        top_k = self.top_k if self.state == "full" else None
        self.history.append(dict(epoch=epoch, phase=self.state, metrics=dict(metrics or {}),
                                 selection=selection_summary(model, top_k)))

    def state_dict(self) -> Dict[str, Any]:
        return dict(self.to_dict(), state=self.state, masks=self.masks, history=self.history)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` saved. The model is brought to the saved phase by the next
        :meth:`on_epoch_start` (it must be a freshly built, unpruned model; or, when the saved phase is
        ``'pruned'``, one already rebuilt in its pruned form, e.g. from :func:`masks_to_spec` of :attr:`masks`)."""
        settings = {k: state[k] for k in ("full_epochs", "select_epochs", "top_k", "prune") if k in state}
        if settings != self.to_dict():
            raise ValueError(f"the saved schedule {settings} differs from this one {self.to_dict()}; build the "
                             f"SelectionSchedule with the saved settings to resume")
        self.masks = {k: [list(r) for r in v] for k, v in dict(state.get("masks", {})).items()}
        self.history = list(state.get("history", []))
        self.state = "full"  # the fresh model is unpruned; on_epoch_start replays the transitions

    def __repr__(self) -> str:
        return (f"SelectionSchedule(full_epochs={self.full_epochs}, select_epochs={self.select_epochs}, "
                f"top_k={self.top_k}, prune={self.prune})")


def selection_schedule(name: str) -> SelectionSchedule:
    """The :class:`SelectionSchedule` of a registered ``s_convkan_*`` model (``name`` may carry a tag), from
    its pretrained cfg's ``selection``."""
    cfg = get_pretrained_cfg(name)
    sel = getattr(cfg, "selection", None) if cfg is not None else None
    if not sel:
        raise ValueError(f"{name!r} has no selection settings in its pretrained cfg; build a SelectionSchedule "
                         f"by hand: SelectionSchedule(full_epochs=..., select_epochs=...)")
    return SelectionSchedule.from_cfg(sel)


# ---------------------------------------------------------------------------------------------- in the trainer
def schedule_for_run(cfg: TrainConfig, arch: str,
                     base: nn.Module) -> Tuple[Optional[SelectionSchedule], Optional[str]]:
    """The schedule of a fresh run, and when there is none for a model that has selectable layers, why (the
    trainer prints it). The options are completed from the model's pretrained cfg ``selection``; there is no
    schedule for a model without selectable layers, nor with --no-selection or --peft. Raises before
    training starts when the settings do not fit the model or --epochs."""
    given = cfg.selection_flags()
    layers = selectable_layers(base)
    if not layers:
        if given:
            raise WorkflowError(f"{', '.join(given)}: {arch} has no selectable KAN layers to select and "
                                f"prune (S-KAN models: kanzoo list s_convkan); drop these options")
        return None, None
    if cfg.no_selection:
        return None, "off (--no-selection): every basis trains throughout; the model is not pruned"
    if cfg.peft is not None:
        return None, "off: adapters (--peft) cannot be pruned; train and prune first, then adapt the pruned run"
    pcfg = get_pretrained_cfg(arch)
    saved = dict(getattr(pcfg, "selection", None) or {}) if pcfg is not None else {}
    where = f"{arch}'s pretrained cfg"
    select = cfg.select_epoch if cfg.select_epoch is not None else saved.get("full_epochs")
    if select is None:
        if given:
            raise WorkflowError(f"give --select-epoch N too: {where} has no selection settings to complete "
                                f"{', '.join(given)}")
        return None, (f"off: {where} has no selection settings; give --select-epoch N [--prune-epoch M] to "
                      f"select and prune")
    if select > cfg.epochs:
        raise WorkflowError(f"{where} selects after {select} epochs, past --epochs {cfg.epochs}; give "
                            f"--select-epoch N --prune-epoch M (1 <= N <= M <= {cfg.epochs}), or --no-selection")
    prune = cfg.prune_epoch
    if prune is None:
        if not saved:
            prune = cfg.epochs  # no recipe: prune after the last epoch
        elif saved.get("prune", True):
            prune = min(select + int(saved.get("select_epochs", 0)), cfg.epochs)
    if prune is not None and prune < select:
        raise WorkflowError(f"--prune-epoch {prune} comes before the selection after {select} epochs ({where}'s "
                            f"default; set --select-epoch)")
    top_k = cfg.select_top_k if cfg.select_top_k is not None else int(saved.get("top_k", 1))
    pool = min(layer.num_members for _, layer in layers)
    if top_k > pool:
        raise WorkflowError(f"--select-top-k {top_k} is more than the {pool} candidate bases of {arch}'s "
                            f"layers; give 1 to {pool}")
    schedule = SelectionSchedule(full_epochs=select, select_epochs=(prune - select) if prune is not None else 0,
                                 top_k=top_k, prune=prune is not None)
    return schedule, None


def resumed_schedule(ckpt: Mapping[str, Any], cfg: TrainConfig, arch: str, base: nn.Module,
                     source: Path) -> Optional[SelectionSchedule]:
    """The schedule saved in the resume checkpoint ``ckpt`` (read from ``source``), with ``base`` brought to
    the checkpoint's phase (the selection masks re-applied; a pruned run's model is already rebuilt pruned
    from its model args, or is pruned here), so that the checkpoint's weights fit."""
    saved = ckpt.get("selection")
    cfg_saved = ckpt.get("config") or {}
    changed = [f"--{k.replace('_', '-')}" for k in ("select_epoch", "prune_epoch", "select_top_k", "no_selection")
               if k in cfg_saved and cfg_saved[k] != getattr(cfg, k)]
    if changed:
        raise WorkflowError(f"{', '.join(changed)} cannot change when resuming: the run's basis selection is "
                            f"fixed when it starts; resume with the run's own settings")
    if not saved:
        return None
    try:
        sched = SelectionSchedule(**{k: saved[k] for k in ("full_epochs", "select_epochs", "top_k", "prune")})
        sched.load_state_dict(saved)
        done = int(ckpt["epoch"])
        if done >= 1:
            sched.on_epoch_start(done - 1, base)
    except (KeyError, TypeError, ValueError) as e:
        raise WorkflowError(f"the basis selection saved in {str(source)!r} does not fit the rebuilt "
                            f"{arch} ({e})") from None
    if sched.state != saved.get("state", sched.state):
        raise WorkflowError(f"the basis selection saved in {str(source)!r} is in phase "
                            f"{saved.get('state')!r}, the replay reached {sched.state!r}")
    return sched


def describe_schedule(schedule: SelectionSchedule, epochs: int) -> str:
    """The phases of a run of ``epochs`` epochs, and the options that give them, in one line."""
    sel, prune = schedule.full_epochs, schedule.full_epochs + schedule.select_epochs
    pruned = (f"pruned after epoch {prune}" + (" (the last)" if prune == epochs else "")
              if schedule.prune else "not pruned")
    return (f"every basis for epochs 1-{sel}, then each channel's top-{schedule.top_k} (mixing weights frozen); "
            f"{pruned} (--select-epoch {sel}{f' --prune-epoch {prune}' if schedule.prune else ''} "
            f"--select-top-k {schedule.top_k})")


def freeze_alphas(schedule: Optional[SelectionSchedule], model: nn.Module) -> None:
    """From the selective phase on, the mixing weights stop training (the optimizer skips them)."""
    if schedule is not None and schedule.state != "full":
        for _, layer in selectable_layers(model):
            layer.alpha.requires_grad_(False)


def record_pruned(model: nn.Module, masks: Mapping[str, Any], model_args: Dict[str, Any]) -> None:
    """Puts the pruned selection ``masks`` into ``model_args`` (config.json, the checkpoint's model_args) when
    the model can be built pruned from them (it has ``record_pruned``, e.g. SConvKAN)."""
    record = getattr(model, "record_pruned", None)
    if callable(record):
        model_args["pruned_selection"] = record(masks)


def selection_event(schedule: SelectionSchedule, model: nn.Module, event: str, epoch: int, step: int,
                    params_before: int) -> Tuple[Dict[str, Any], str]:
    """The log record (``"kind": "selection"``) and the printed line of ``event`` (``'select'`` or
    ``'prune'``), applied before ``epoch`` (0-based) at optimizer step ``step``."""
    after = sum(p.numel() for p in model.parameters())
    summary = selection_summary(model)
    totals, shares = _percent_line(summary)
    k = schedule.top_k
    rec = {"kind": "selection", "event": event, "epoch": epoch + 1, "after_epoch": epoch,
           "step": step, "top_k": k, "params_before": params_before, "params": after,
           "bases": totals, "layers": summary}
    if event == "prune":
        what = f"pruned: {params_before:,} -> {after:,} parameters; bases chosen: {shares}"
    else:
        what = f"kept each channel's top-{k} {'basis' if k == 1 else 'bases'} (mixing weights frozen): {shares}"
    return rec, f"after epoch {epoch}: {what}"


def _percent_line(summary: Dict[str, Dict[str, int]]) -> Tuple[Dict[str, int], str]:
    """Channel counts per basis over all layers of a :func:`~kanzoo.layers.selection_summary`, and
    ``'bspline 40%, gram 35%, ...'``."""
    totals: Dict[str, int] = {}
    for counts in summary.values():
        for basis, n in counts.items():
            totals[basis] = totals.get(basis, 0) + int(n)
    total = max(sum(totals.values()), 1)
    ranked = sorted(((n, b) for b, n in totals.items() if n), key=lambda t: (-t[0], t[1]))
    return dict(sorted(totals.items())), ", ".join(f"{b} {100 * n / total:.0f}%" for n, b in ranked)
