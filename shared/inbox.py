"""The inbox: idempotent consumption.

A consumer claims the event ids of a batch inside the same transaction that applies
them. Ids already claimed by that consumer come back as "seen" and are skipped, so a
redelivered message (crash after commit, before the offset commit) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

import asyncpg


async def claim(conn: asyncpg.Connection, consumer: str, event_ids: Iterable[UUID]) -> set[UUID]:
    """Record the ids as handled by ``consumer``; return those not handled before."""
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return set()
    rows = await conn.fetch(
        """INSERT INTO inbox (consumer, event_id)
           SELECT $1, id FROM unnest($2::uuid[]) AS t(id)
           ON CONFLICT DO NOTHING
           RETURNING event_id""",
        consumer,
        ids,
    )
    return {row["event_id"] for row in rows}
