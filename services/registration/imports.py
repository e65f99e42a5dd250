"""Bulk CSV imports, shared by the API (POST /v1/imports) and the command
(``python -m services.registration import FILE``).

A file is first checked whole (``scan``: its SHA-256, UTF-8, the header, every row's
field count) so that a malformed file stores nothing; then its rows are enrolled in
batches, each batch one transaction with its events and its import_rows. A row's
idempotency key is (file digest, row number): the same file uploaded again, after a
crash or by mistake, carries on after the last whole batch and enrols nobody twice.
Memory stays bounded: the file is read a line at a time, twice."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from itertools import islice
from pathlib import Path
from typing import Final

import asyncpg
import stamina

from services.registration import csv_intake, service, store
from services.registration.domain import AgeRule, EnrolmentCommand, read_worker
from shared import db, outbox

IMPORT_NAMESPACE: Final = uuid.UUID("5b0c3c52-7f0e-4d59-9a3c-2f8e64a1c0d7")
DEFAULT_BATCH: Final = 500
RACE_ERRORS: Final = (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError)

Progress = Callable[[int, int], None]
"""Called with (rows done, rows in the file) after every batch."""


class ImportBusy(RuntimeError):
    """Another process is importing the same file right now."""


@dataclass(frozen=True)
class Scan:
    """A file checked whole and found readable."""

    path: Path
    digest: str
    rows_total: int
    ignored_columns: tuple[str, ...]

    @property
    def import_id(self) -> uuid.UUID:
        return import_id_of(self.digest)


def import_id_of(digest: str) -> uuid.UUID:
    return uuid.uuid5(IMPORT_NAMESPACE, digest)


def request_id(digest: str, row: int) -> str:
    """The idempotency key of a file's row."""
    return f"import:{digest}:{row}"


def _lines(path: Path, digest: hashlib._Hash | None = None) -> Iterator[bytes]:
    with path.open("rb") as file:
        for line in file:
            if digest is not None:
                digest.update(line)
            yield line


def scan(path: Path) -> Scan:
    """Check the whole file (FileInvalid names the first bad line) and digest it."""
    digest = hashlib.sha256()
    header, rows = csv_intake.rows(_lines(path, digest))
    total = sum(1 for _ in rows)
    return Scan(path, digest.hexdigest(), total, header.ignored)


async def register(pool: asyncpg.Pool, found: Scan, filename: str | None) -> None:
    async with db.transaction(pool) as conn:
        await store.register_import(
            conn, found.import_id, found.digest, filename, found.rows_total, found.ignored_columns
        )


async def run(
    pool: asyncpg.Pool,
    found: Scan,
    today: Callable[[], date],
    ages: AgeRule,
    *,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> None:
    """Enrol the file's rows not yet stored, a batch per transaction; the import is
    done when every row is. ImportBusy if another process holds it."""
    import_id = found.import_id
    # One connection does it all: it holds the import's lock and runs every batch, so
    # any number of imports take one connection each from the pool, never two.
    async with pool.acquire() as conn:
        key = import_id.int & 0x7FFF_FFFF_FFFF_FFFF
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
            raise ImportBusy(f"import {import_id} is running in another process")
        try:
            done = await store.rows_done(conn, import_id)
            if progress is not None:
                progress(done, found.rows_total)
            _, rows = csv_intake.rows(_lines(found.path))
            remaining = islice(rows, done, None)
            while chunk := list(islice(remaining, batch)):
                await _enrol_batch(conn, found, chunk, today, ages)
                done = chunk[-1].number
                if progress is not None:
                    progress(done, found.rows_total)
            await store.finish_import(conn, import_id)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def _enrol_batch(
    conn: asyncpg.Connection,
    found: Scan,
    chunk: list[csv_intake.Row],
    today: Callable[[], date],
    ages: AgeRule,
) -> None:
    commands = [
        EnrolmentCommand(
            request_id(found.digest, row.number),
            "import",
            read_worker(row.worker),
            f"import:{found.import_id}",
        )
        for row in chunk
    ]
    async for attempt in stamina.retry_context(on=RACE_ERRORS, attempts=3, timeout=30):
        with attempt:
            async with conn.transaction():
                _, events = await service.enrol(conn, commands, today(), ages)
                await outbox.enqueue_events(conn, events)
                await store.record_import_rows(
                    conn,
                    found.import_id,
                    [
                        (row.number, row.line, c.request_id)
                        for row, c in zip(chunk, commands, strict=True)
                    ],
                )
