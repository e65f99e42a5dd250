"""Errors a person must read: bad settings, unreachable servers. Each one is a single
line that says what is wrong and where, printed instead of a traceback."""


class StartupError(Exception):
    """The service cannot start; ``str(error)`` is the one line shown to the operator."""
