"""Progress messages for slow steps (downloads, first-time setup, waiting for servers).

They go to stderr so that stdout carries only the result lines of ``python -m infra``.
"""

from __future__ import annotations

import sys


def progress(message: str) -> None:
    """Tell the user what a slow step is doing right now."""
    print(message, file=sys.stderr, flush=True)
