"""The inbox: idempotent consumption.

A consumer claims the event ids of a batch inside the same transaction that applies
them. Ids already claimed by that consumer come back as "seen" and are skipped, so a
redelivered message (crash after commit, before the offset commit) changes nothing.

Each claim keeps a hash of the content and where it came from. An id that comes back
with *different* content is not a redelivery but a producer's mistake (or a forgery):
it is still skipped (the first one stands), but recorded in ``inbox_conflicts`` with
both origins, once per origin, for the caller to count and log.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

HASH_BYTES = 16


def content_hash(content: bytes | None) -> bytes:
    return hashlib.sha256(content or b"").digest()[:HASH_BYTES]


def event_hash(value: bytes) -> bytes:
    """The hash of an event as it was received, whatever the reader's model: canonical
    JSON (keys sorted) without ``occurred_at``, which a producer deriving the same event
    again may stamp anew. A consumer's own model would add its defaults, so upgrading it
    would make unchanged records look changed."""
    data = json.loads(value)
    if isinstance(data, dict):
        data.pop("occurred_at", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return content_hash(canonical.encode(errors="surrogatepass"))


@dataclass(frozen=True, slots=True)
class Entry:
    """One event to claim: its id, a hash of its content, and where it came from."""

    event_id: UUID
    content_hash: bytes
    origin: str


@dataclass(frozen=True, slots=True)
class Conflict:
    """An id seen before with other content."""

    event_id: UUID
    first_origin: str | None
    origin: str


async def claim(
    conn: asyncpg.Connection, consumer: str, entries: Sequence[Entry]
) -> tuple[set[UUID], list[Conflict]]:
    """Record the entries as handled by ``consumer``; return the ids not handled before,
    and the conflicts (also recorded in inbox_conflicts): entries whose id was handled
    before, or appears earlier in ``entries``, with a different content hash. Of an id
    repeated within ``entries`` the first is claimed."""
    firsts: dict[UUID, Entry] = {}
    repeats: list[Entry] = []
    for entry in entries:
        if entry.event_id in firsts:
            repeats.append(entry)
        else:
            firsts[entry.event_id] = entry
    if not firsts:
        return set(), []
    unique = list(firsts.values())
    rows = await conn.fetch(
        """INSERT INTO inbox (consumer, event_id, content_hash, origin)
           SELECT $1, e, h, o FROM unnest($2::uuid[], $3::bytea[], $4::text[]) AS t(e, h, o)
           ON CONFLICT DO NOTHING
           RETURNING event_id""",
        consumer,
        [e.event_id for e in unique],
        [e.content_hash for e in unique],
        [e.origin for e in unique],
    )
    fresh = {row["event_id"] for row in rows}
    differing: list[tuple[Entry, str | None, bytes | None]] = [
        (entry, first.origin, first.content_hash)
        for entry in repeats
        for first in [firsts[entry.event_id]]
        if first.content_hash != entry.content_hash
    ]
    seen = [e for e in unique if e.event_id not in fresh]
    if seen:
        earlier = await conn.fetch(
            """SELECT event_id, content_hash, origin FROM inbox
               WHERE consumer = $1 AND event_id = ANY($2::uuid[])""",
            consumer,
            [e.event_id for e in seen],
        )
        stored = {row["event_id"]: row for row in earlier}
        differing += [
            (entry, row["origin"], row["content_hash"])
            for entry in seen
            for row in [stored[entry.event_id]]
            if row["content_hash"] not in (None, entry.content_hash)
        ]
    new = await record_conflicts(
        conn,
        consumer,
        [(e.event_id, origin, digest, e.origin, e.content_hash) for e, origin, digest in differing],
    )
    return fresh, [
        Conflict(e.event_id, origin, e.origin)
        for e, origin, _ in differing
        if (e.event_id, e.origin) in new
    ]


async def record_conflicts(
    conn: asyncpg.Connection,
    consumer: str,
    rows: Sequence[tuple[UUID, str | None, bytes | None, str, bytes]],
) -> set[tuple[UUID, str]]:
    """(event id, first origin, first hash, origin, hash) of each conflict; returns the
    (event id, origin) pairs not recorded before (a redelivered record is not counted
    twice)."""
    if not rows:
        return set()
    recorded = await conn.fetch(
        """INSERT INTO inbox_conflicts (consumer, event_id, first_origin, first_hash, origin,
                                        content_hash)
           SELECT $1, e, fo, fh, o, h
           FROM unnest($2::uuid[], $3::text[], $4::bytea[], $5::text[], $6::bytea[])
                AS t(e, fo, fh, o, h)
           ON CONFLICT (consumer, event_id, origin) DO NOTHING
           RETURNING event_id, origin""",
        consumer,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
    )
    return {(row["event_id"], row["origin"]) for row in recorded}
