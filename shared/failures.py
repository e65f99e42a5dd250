"""What kind of failure an error is: the database away, a concurrency conflict, or
something the same input will always do. Consumers and the HTTP API act on it."""

from __future__ import annotations

from enum import Enum

import asyncpg

from shared.db import DatabaseUnavailable


class Failure(Enum):
    UNAVAILABLE = "unavailable"
    """The database cannot be reached or is refusing work: wait for it, never blame a
    record."""
    TRANSIENT = "transient"
    """Concurrency (a deadlock, a race on a unique index, a lock timeout): a retry
    usually succeeds."""
    DETERMINISTIC = "deterministic"
    """The same input fails the same way (a value the database refuses, a record our
    code trips over): retrying cannot cure it."""


UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,  # no connection could be had, whatever the driver's error
    OSError,  # connection refused or reset
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.CannotConnectNowError,  # 57P03: starting up or shutting down
    asyncpg.AdminShutdownError,  # 57P01
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.InterfaceError,  # the client's connection is closed
    # asyncpg's "unexpected" error, seen when the server terminated the connection under
    # it ("cannot switch to state ...; another operation is in progress"). When in doubt,
    # the record is not to blame.
    asyncpg.exceptions._base.InternalClientError,
)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.UniqueViolationError,  # a concurrent transaction inserted the same key first
    asyncpg.LockNotAvailableError,
    asyncpg.QueryCanceledError,  # statement timeout
)


def classify(error: BaseException) -> Failure:
    if isinstance(error, ValueError):  # includes asyncpg's client-side "invalid argument"
        return Failure.DETERMINISTIC
    if isinstance(error, UNAVAILABLE_ERRORS):
        return Failure.UNAVAILABLE
    if isinstance(error, TRANSIENT_ERRORS):
        return Failure.TRANSIENT
    return Failure.DETERMINISTIC


def is_unavailable(error: BaseException) -> bool:
    return classify(error) is Failure.UNAVAILABLE


def is_retryable(error: BaseException) -> bool:
    return classify(error) is not Failure.DETERMINISTIC
