"""Crash points for fault-injection tests.

A test starts a service with ``PERISAI_CRASH_AT=<point>``; when the code reaches that
point the process dies at once (``os._exit``: no cleanup, no offset commit), exactly
like a ``kill -9`` at the worst moment. Unset, a crash point costs one dict lookup.
"""

import os

CRASH_EXIT_CODE = 86


def crash_point(name: str) -> None:
    if os.environ.get("PERISAI_CRASH_AT") == name:
        os._exit(CRASH_EXIT_CODE)
