"""What coverage's use cases refuse, for the API (a problem response) and the commands
(one line on stderr) to tell the person why."""

from __future__ import annotations


class NotFound(LookupError):
    """The policy, invoice or agreement named does not exist."""


class Refused(ValueError):
    """The request is well formed but the current state forbids it (409)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
