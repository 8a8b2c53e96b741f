"""Helpers shared by kanzoo's tests: the Hub look-alike (``fakehub``), golden vectors (``golden``), in-process CLI
runs (``cli_run``), layer cases, rule-built weights and tiny image datasets. Not test modules."""
from pathlib import Path

#: the repository root (``tests/support/__init__.py`` is two levels below it)
REPO = Path(__file__).resolve().parents[2]
