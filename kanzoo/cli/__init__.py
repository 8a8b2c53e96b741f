"""The ``kanzoo`` command: :func:`build_parser` assembles the subcommands of the modules beside this one (each
parses its arguments, calls kanzoo and prints), and :func:`main` runs one and reports its errors.

Commands raise; only :func:`main` catches. Every error kanzoo raises on purpose (a
:class:`~kanzoo.errors.KanzooError`, whose message says what to do) and the ``OSError``/``ValueError`` of
file access and argument checks is printed as one line, ``kanzoo: error: MESSAGE``, without a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from .._version import __version__
from ..errors import KanzooError, UnknownModelError
from . import convert, export, hub, models, workflows
from ._args import ErrorReport, apply_resume_defaults, check_ranges

__all__ = ["build_parser", "main"]

#: errors reported as one line by every command (see :class:`~kanzoo.cli._args.ErrorReport` for more)
REPORTED = (KanzooError, OSError, ValueError)


def build_parser() -> argparse.ArgumentParser:
    """The ``kanzoo`` parser with every subcommand; each sets ``func``, the function that runs it."""
    p = argparse.ArgumentParser(prog="kanzoo", description="Kolmogorov-Arnold networks for computer vision.")
    p.add_argument("--version", action="version", version=f"kanzoo {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    models.add_parsers(sub)
    hub.add_download_parser(sub)
    convert.add_parser(sub)
    hub.add_publish_parsers(sub)
    workflows.add_parsers(sub)
    export.add_parser(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Runs ``kanzoo ARGV`` (default: ``sys.argv[1:]``) and returns its exit status: 0 on success, 1 for an
    error, 2 for a usage error (argparse exits with 2 itself), 130 on Ctrl-C."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    report: ErrorReport = getattr(args, "errors", ErrorReport())
    try:
        if getattr(args, "resume", None):
            args = apply_resume_defaults(parser, argv, args)
        check_ranges(parser, args)
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kanzoo list | head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except REPORTED + report.also as e:
        print(f"kanzoo: error: {str(e).strip() or type(e).__name__}", file=sys.stderr)
        return report.unknown_model_status if isinstance(e, UnknownModelError) else 1


if __name__ == "__main__":
    sys.exit(main())
