"""What coverage's use cases refuse, for the API (a problem response) and the commands
(one line on stderr) to tell the person why."""

from __future__ import annotations

from shared.errors import Refused


class NotFound(LookupError):
    """The policy, invoice or agreement named does not exist."""


__all__ = ["NotFound", "Refused"]
