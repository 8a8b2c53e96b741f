"""Argument pieces several ``kanzoo`` commands share: ``KEY=VALUE`` options, the weight-source options, the
range checks every command gets, ``--resume`` defaults, and how :func:`kanzoo.cli.main` reports a command's
errors."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple, Type

from ..errors import WorkflowError
from ..io import parse_kv
from ..workflows.train import saved_config

#: options that must be >= 1 when a command has them
POSITIVE = ("batch", "batch_size", "channels", "size", "threads", "topk", "epochs", "iters", "img_size",
            "log_interval", "adapt_epochs")


class KeyValues(argparse.Action):
    """``--opt KEY=VALUE ...`` -> a dict (values are Python literals, else strings); no pairs -> ``{}``."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            setattr(namespace, self.dest, parse_kv(values, option_string or self.dest))
        except WorkflowError as e:
            parser.error(str(e))


def add_source_args(p: argparse.ArgumentParser, adapter: bool = True) -> None:
    """--pretrained / --checkpoint / --adapter / --model-kwargs / --device: which weights a command uses."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pretrained", action="store_true", help="the registry's weights for NAME (name.tag)")
    src.add_argument("--checkpoint", metavar="PATH",
                     help="a weight file (.safetensors, .pth), a training checkpoint, or a run folder")
    if adapter:
        p.add_argument("--adapter", metavar="DIR", help="merge this basis adapter (a `kanzoo finetune --peft` run "
                                                        "folder) into the model")
    p.add_argument("--model-kwargs", nargs="+", action=KeyValues, default={}, metavar="KEY=VALUE",
                   help="model arguments, e.g. width_scale=0.25 (a run folder records its own)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")


#: where each option a command line gave is recorded on the namespace (:func:`track_given`)
GIVEN = "_given_options"
_TRACKING: Dict[type, type] = {}


def _tracking(cls: type) -> type:
    """``cls`` (an argparse Action class) that also records its ``dest`` as given when the option is parsed."""
    if cls not in _TRACKING:
        def __call__(self, parser, namespace, values, option_string=None):
            given = getattr(namespace, GIVEN, None)
            if given is None:
                given = set()
                setattr(namespace, GIVEN, given)
            given.add(self.dest)
            cls.__call__(self, parser, namespace, values, option_string)

        _TRACKING[cls] = type(f"Tracking{cls.__name__}", (cls,), {"__call__": __call__})
    return _TRACKING[cls]


def track_given(parser: argparse.ArgumentParser) -> None:
    """Makes every option of ``parser`` record, when the command line gives it, its ``dest`` (read back with
    :func:`given_options`): what was typed can then win over defaults that come from elsewhere (a recipe)."""
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            action.__class__ = _tracking(type(action))


def given_options(args: argparse.Namespace) -> Set[str]:
    """The ``dest`` of every option the command line gave (for a parser set up with :func:`track_given`)."""
    return set(getattr(args, GIVEN, None) or ())


def check_ranges(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A usage error (exit 2) for a count below 1 (:data:`POSITIVE`) or a negative ``--workers``."""
    for name in POSITIVE:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if getattr(args, "workers", 0) < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")


def apply_resume_defaults(parser: argparse.ArgumentParser, argv: Optional[List[str]],
                          args: argparse.Namespace) -> argparse.Namespace:
    """For ``train/finetune --resume RUN``: the run's saved settings become the defaults of the command's
    parser (``args.command_parser``), so only the options given again on the command line change."""
    saved = saved_config(args.resume)
    args.command_parser.set_defaults(**{k: v for k, v in saved.items() if k != "output"})
    return parser.parse_args(argv)


@dataclass(frozen=True)
class ErrorReport:
    """How :func:`kanzoo.cli.main` reports a command's errors: as the one line ``kanzoo: error: MESSAGE``, for
    kanzoo's own errors, ``OSError`` and ``ValueError`` plus the types in ``also``; exit status 1, or
    ``unknown_model_status`` for a model name that is not registered."""

    also: Tuple[Type[BaseException], ...] = ()
    unknown_model_status: int = 2  # a misspelt name is a usage error
