"""Errors a person must read: bad settings, unreachable servers. Each one is a single
line that says what is wrong and where, printed instead of a traceback."""


class Refused(ValueError):
    """A well-formed request that the current state forbids (an HTTP 409, a command's
    refusal): ``code`` names the rule (``ALREADY_DEREGISTERED``), ``detail`` explains."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class StartupError(Exception):
    """The service cannot start; ``str(error)`` is the one line shown to the operator."""
