"""What operators may read of an error. Exception texts quote the data that caused
them: pydantic's ValidationError shows each input value, asyncpg quotes query
arguments, PostgreSQL quotes the value it could not parse, a KeyError its key. Logs,
dead-letter notices and health reports show an error's kind and structure, with
quoted literals, email addresses and long digit runs masked; the full text stays only
where personal data may be (a service's own dead_letters table)."""

from __future__ import annotations

import re

import asyncpg
from pydantic import ValidationError

from shared.redact import redact

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
MAX_VALIDATION_ERRORS = 5


def without_literals(text: str) -> str:
    """``text`` with every quoted literal replaced by an ellipsis."""
    return _QUOTED.sub(lambda m: f"{m.group(0)[0]}…{m.group(0)[0]}", text)


def describe_validation(error: ValidationError) -> str:
    """Each failed field's location and pydantic's message, never the input."""
    parts = [
        f"{'.'.join(map(str, e['loc'])) or '<message>'}: {e['msg']}"
        for e in error.errors()[:MAX_VALIDATION_ERRORS]
    ]
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def describe(error: BaseException) -> str:
    """The error's kind and what of its text may be shown to anyone."""
    kind = type(error).__name__
    if isinstance(error, ValidationError):
        return f"{kind}: {describe_validation(error)}"
    if isinstance(error, asyncpg.PostgresError):
        where = [f"SQLSTATE {error.sqlstate}"]
        for label in ("table", "column", "constraint"):
            if name := getattr(error, f"{label}_name", None):
                where.append(f"{label} {name}")
        message = without_literals(redact(getattr(error, "message", None) or str(error)))
        return f"{kind}: {message} ({', '.join(where)})"
    return f"{kind}: {without_literals(redact(str(error)))}".rstrip(": ")
