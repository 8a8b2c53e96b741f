"""Helpers for tests that drive the ``kanzoo`` command in-process (not a test module)."""
from kanzoo.cli import main


def run(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``kanzoo ARGV``."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err, *parts):
    """stderr holds exactly one ``kanzoo: error:`` line (no traceback) containing ``parts``."""
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("kanzoo: warning:")]
    assert len(lines) == 1 and lines[0].startswith("kanzoo: error: "), err
    for p in parts:
        assert p in lines[0], (p, lines[0])
    return lines[0]
