"""The transactional outbox: what a transaction decides to publish is written to the
``outbox`` table inside that transaction. The relay (``shared.relay``) publishes it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
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
