"""The asyncpg pool, scoped to one service's schema, with a clear error when the
database cannot be reached."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import asyncpg

from shared.errors import StartupError

CONNECT_TIMEOUT_S = 10.0
ACQUIRE_TIMEOUT_S = 10.0
"""Longest wait for a pooled connection (all busy or hung): then DatabaseUnavailable."""


def describe_dsn(dsn: str) -> str:
    """user@host:port/database, without the password, for error messages."""
    parts = urlsplit(dsn)
    return f"{parts.username or ''}@{parts.hostname or ''}:{parts.port or 5432}{parts.path}"


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    connect_timeout: float = 15.0,
) -> asyncpg.Pool:
    """A pool whose connections resolve unqualified names in ``schema`` first, so each
    service's SQL addresses its own tables without repeating the schema name."""
    try:
        pool = await asyncio.wait_for(
            asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                server_settings={"search_path": f"{schema},public", "timezone": "UTC"},
                # Each new connection (the pool re-opens them after an outage) gives up
                # after this long, so a request waiting for one is answered 503 in time.
                timeout=CONNECT_TIMEOUT_S,
            ),
            timeout=connect_timeout,
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
        reason = str(error) or type(error).__name__
        where = describe_dsn(dsn)
        raise StartupError(f"cannot connect to PostgreSQL at {where}: {reason}") from None
    assert pool is not None
    return pool


class DatabaseUnavailable(Exception):
    """No connection to the database could be had (refused, not accepting connections,
    too many connections, timed out...), whatever error the driver gave for it."""


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection from the pool; failing to get one raises DatabaseUnavailable, so
    callers can tell "the database is away" from "the database refused this work"."""
    try:
        conn = await pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
    except Exception as error:
        raise DatabaseUnavailable(f"cannot connect to the database: {error}") from error
    try:
        yield conn
    finally:
        await pool.release(conn)


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection from the pool inside a transaction (see :func:`connection`). A
    failure to begin it is about the connection (e.g. one the server terminated while
    it sat in the pool), never about the caller's work: DatabaseUnavailable too."""
    async with connection(pool) as conn:
        transaction = conn.transaction()
        try:
            await transaction.start()
        except Exception as error:
            raise DatabaseUnavailable(f"cannot begin a transaction: {error!r}") from error
        try:
            yield conn
        except BaseException:
            # On a connection that died this fails too; the caller's error is the news,
            # and the pool discards a connection it cannot reset.
            with contextlib.suppress(Exception):
                await transaction.rollback()
            raise
        await transaction.commit()
