"""The transactional outbox: what a transaction decides to publish is written to the
``outbox`` table inside that transaction. The relay (``shared.relay``) publishes it.

A row holds one record. A row of ``outbox_sources`` (same id sequence, one order) names
a record source instead: many records the transaction wrote elsewhere (a billing run's
ledger postings), read and published by the relay page by page, so that a statement
posting a million rows does not write a million more."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from shared.events import Event

Headers = Sequence[tuple[str, bytes | None]]
"""Kafka record headers: a header's value may be null (aiokafka hands it over as None)."""


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One Kafka record waiting to be published."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Headers = ()
    event_id: UUID | None = None

    @classmethod
    def of(cls, event: Event) -> OutboxRecord:
        return cls(
            topic=event.TOPIC,
            value=event.model_dump_json().encode(),
            key=event.kafka_key(),
            headers=event.kafka_headers(),
            event_id=event.event_id,
        )


def encode_headers(headers: Headers) -> str:
    """Hex keeps header names and values exact (jsonb cannot hold NUL, and a record
    being dead-lettered may carry anything); a null value stays null."""
    return json.dumps(
        [
            [name.encode(errors="surrogateescape").hex(), None if value is None else value.hex()]
            for name, value in headers
        ]
    )


def decode_headers(stored: str) -> list[tuple[str, bytes | None]]:
    return [
        (
            bytes.fromhex(name).decode(errors="surrogateescape"),
            None if value is None else bytes.fromhex(value),
        )
        for name, value in json.loads(stored)
    ]


async def enqueue(conn: asyncpg.Connection, records: Sequence[OutboxRecord]) -> None:
    """Add records to the outbox, in the caller's transaction, in one statement."""
    if not records:
        return
    await conn.execute(
        """INSERT INTO outbox (event_id, topic, key, value, headers)
           SELECT e, t, k, v, h::jsonb
           FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::bytea[], $5::text[])
                AS r(e, t, k, v, h)""",
        [r.event_id for r in records],
        [r.topic for r in records],
        [r.key for r in records],
        [r.value for r in records],
        [encode_headers(r.headers) for r in records],
    )


async def enqueue_events(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
    await enqueue(conn, [OutboxRecord.of(event) for event in events])


@dataclass(frozen=True, slots=True)
class SourcePage:
    """Records read from a source, in its order, and the place after the last of them."""

    records: Sequence[OutboxRecord]
    cursor: str | None
    """Where the next page starts (None when no record was read)."""


class RecordSource(Protocol):
    """Records that an outbox row stands for. ``read`` returns up to ``limit`` records
    after ``cursor`` (None: from the start), always in the same order; fewer than
    ``limit`` means the source is exhausted. It runs in the relay's transaction."""

    async def read(
        self, conn: asyncpg.Connection, args: Mapping[str, Any], cursor: str | None, limit: int
    ) -> SourcePage: ...


async def enqueue_source(
    conn: asyncpg.Connection, source: str, topic: str, args: Mapping[str, Any]
) -> None:
    """Add a row standing for the records ``source`` reads with ``args`` (JSON), in the
    caller's transaction, so they are published in the outbox's order like any row."""
    await conn.execute(
        "INSERT INTO outbox_sources (topic, source, args) VALUES ($1, $2, $3::jsonb)",
        topic,
        source,
        json.dumps(args),
    )


class UnknownSource(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"outbox row names record source {name!r}, which this relay does not have: "
            "deploy the service version that wrote it"
        )


async def read_source(
    conn: asyncpg.Connection,
    sources: Mapping[str, RecordSource],
    name: str,
    args_json: str,
    cursor: str | None,
    limit: int,
) -> SourcePage:
    source = sources.get(name)
    if source is None:
        raise UnknownSource(name)
    page = await source.read(conn, json.loads(args_json), cursor, limit)
    if len(page.records) > limit or (page.records and page.cursor is None):
        # Either would publish records twice or out of turn, round after round.
        raise RuntimeError(
            f"record source {name!r} returned {len(page.records)} records for a page of "
            f"{limit}, cursor {page.cursor!r}"
        )
    return page


async def waiting_records(
    conn: asyncpg.Connection, sources: Mapping[str, RecordSource] | None = None, page: int = 10_000
) -> list[OutboxRecord]:
    """Every record the outbox holds or stands for, in publication order (for tools and
    tests: it reads all of them)."""
    found: list[tuple[int, list[OutboxRecord]]] = []
    for row in await conn.fetch(
        "SELECT id, topic, key, value, headers::text AS headers, event_id FROM outbox"
    ):
        record = OutboxRecord(
            row["topic"], row["value"], row["key"], decode_headers(row["headers"]), row["event_id"]
        )
        found.append((row["id"], [record]))
    for row in await conn.fetch(
        "SELECT id, source, args::text AS args, source_cursor FROM outbox_sources"
    ):
        records: list[OutboxRecord] = []
        cursor = row["source_cursor"]
        while True:
            read = await read_source(conn, sources or {}, row["source"], row["args"], cursor, page)
            records.extend(read.records)
            if len(read.records) < page:
                break
            cursor = read.cursor
        found.append((row["id"], records))
    return [record for _, records in sorted(found, key=lambda f: f[0]) for record in records]
