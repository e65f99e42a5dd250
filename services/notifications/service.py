"""Notifications' use cases for incoming events: store a half of a confirmation, and
queue the messages of every confirmation that became complete."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar
from uuid import UUID

import asyncpg

from services.notifications import domain, store
from shared.events import PolicyActivated, WorkerDetailsChanged, WorkerEnrolled


async def contacts_received(
    conn: asyncpg.Connection, enrolled: Sequence[WorkerEnrolled], help_line: str
) -> int:
    # Sorted by worker so the two consumers take row locks in the same order.
    ordered = _newest(enrolled, lambda e: (e.membership, e.revision))
    return await _queue(conn, await store.add_contacts(conn, ordered), help_line)


async def policies_received(
    conn: asyncpg.Connection, activated: Sequence[PolicyActivated], help_line: str
) -> int:
    ordered = _newest(activated, lambda e: (e.membership,))
    return await _queue(conn, await store.add_policies(conn, ordered), help_line)


async def details_changed(
    conn: asyncpg.Connection, changed: Sequence[WorkerDetailsChanged]
) -> None:
    """Messages from now on go to the worker's new contact."""
    await store.change_contacts(conn, _newest(changed, lambda e: (e.revision,)))


W = TypeVar("W", WorkerEnrolled, PolicyActivated, WorkerDetailsChanged)


def _newest(events: Sequence[W], rank: Callable[[W], tuple[int, ...]]) -> list[W]:
    """One event per worker, the newest by ``rank``, in worker order: one upsert may
    not touch a row twice, and a batch can hold a worker's membership 1 and 2, or two
    of their changes."""
    newest: dict[UUID, W] = {}
    for event in events:
        kept = newest.get(event.worker_id)
        if kept is None or rank(event) > rank(kept):
            newest[event.worker_id] = event
    return [newest[worker] for worker in sorted(newest)]


async def _queue(
    conn: asyncpg.Connection, complete: Sequence[domain.Confirmation], help_line: str
) -> int:
    messages = [m for c in complete for m in domain.confirmation_messages(c, help_line)]
    return await store.queue(conn, messages)
