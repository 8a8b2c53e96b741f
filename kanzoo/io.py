"""Files written whole or not at all, JSON, and ``KEY=VALUE`` options: the small I/O that every part of kanzoo
shares.

Every writer here goes through :func:`atomic_write`: the content is written to a temporary file beside the
target and renamed into place with ``os.replace``, so a reader sees the old file or the new one, never half
of one, and a failure leaves nothing behind.
"""
from __future__ import annotations

import ast
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Union

from .errors import WorkflowError

__all__ = ["PathLike", "file_mode", "atomic_write", "atomic_write_text", "write_json", "read_json", "parse_value",
           "parse_kv"]

PathLike = Union[str, os.PathLike]


def file_mode() -> int:
    """The permissions ``open()`` gives a new file: 0o666 less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Calls ``write(tmp_path)`` on a temporary file beside ``path``, then renames it into place with
    ``os.replace``: readers see the old file or the new one, never half of one. The file gets the ordinary
    permissions of a new file (the umask applies), not the temporary file's private ones."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    """``text`` as UTF-8 with ``\n`` line ends on every platform, written atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    return atomic_write(path, write)


def write_json(path: PathLike, obj: Any) -> Path:
    """``obj`` as indented, key-sorted JSON, written atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: PathLike) -> Any:
    """A JSON file; invalid JSON is a :class:`~kanzoo.errors.WorkflowError` naming the file."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise WorkflowError(f"{os.fspath(path)!r} is not valid JSON ({e}); was it written by kanzoo?") from None


def parse_value(text: str) -> Any:
    """A Python literal (``3``, ``0.5``, ``[2, 3]``, ``True``, ``None``) or, failing that, the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_kv(items: Optional[Iterable[str]], what: str) -> Dict[str, Any]:
    """``['width_scale=0.25', 'basis_kwargs={"degree": 4}']`` -> a dict; values are Python literals."""
    out: Dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise WorkflowError(f"{what} takes KEY=VALUE pairs (e.g. width_scale=0.25), got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out
