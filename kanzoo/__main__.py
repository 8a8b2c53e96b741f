"""``python -m kanzoo``: the ``kanzoo`` command."""
import sys

from .cli import main

sys.exit(main())
