"""The one exception type the infra package raises for problems a user can act on."""

from __future__ import annotations


class InfraError(Exception):
    """A failure explained in one line, optionally with supporting detail (e.g. a log tail).

    ``python -m infra`` prints ``details`` first and then the one-line message on stderr,
    and exits with status 1 instead of showing a traceback.
    """

    def __init__(self, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
