"""Notifications' use cases for incoming events: store a half of a confirmation, and
queue the messages of every confirmation that became complete."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from services.notifications import domain, store
from shared.events import PolicyActivated, WorkerDetailsChanged, WorkerEnrolled


async def contacts_received(
    conn: asyncpg.Connection, enrolled: Sequence[WorkerEnrolled], help_line: str
) -> int:
    # Sorted by worker so the two consumers take row locks in the same order.
    ordered = sorted(enrolled, key=lambda e: e.worker_id)
    return await _queue(conn, await store.add_contacts(conn, ordered), help_line)


async def policies_received(
    conn: asyncpg.Connection, activated: Sequence[PolicyActivated], help_line: str
) -> int:
    ordered = sorted(activated, key=lambda e: e.worker_id)
    return await _queue(conn, await store.add_policies(conn, ordered), help_line)


async def details_changed(
    conn: asyncpg.Connection, changed: Sequence[WorkerDetailsChanged]
) -> None:
    """Messages from now on go to the worker's new contact."""
    await store.change_contacts(conn, sorted(changed, key=lambda e: e.worker_id))


async def _queue(
    conn: asyncpg.Connection, complete: Sequence[domain.Confirmation], help_line: str
) -> int:
    messages = [m for c in complete for m in domain.confirmation_messages(c, help_line)]
    return await store.queue(conn, messages)
