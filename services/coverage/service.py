"""Coverage's use case for new enrolments: decide with the domain, store what is new,
return the events for what was actually stored (a redelivered enrolment stores
nothing and so emits nothing)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import asyncpg

from services.coverage import domain, store
from shared.events import Event, PolicyActivated, PremiumPosted, WorkerEnrolled


async def activate(
    conn: asyncpg.Connection, enrolments: Sequence[WorkerEnrolled], today: date
) -> list[Event]:
    # Sorted by worker so concurrent batches take row locks in the same order.
    ordered = sorted(enrolments, key=lambda e: e.worker_id)
    activation = domain.activate(ordered, await store.agreements(conn), today)
    new_policies = await store.insert_policies(conn, activation.policies)
    entries = [e for e in activation.entries if e.policy_id in new_policies]
    posted = await store.post_premiums(conn, entries)

    def stored(event: Event) -> bool:
        if isinstance(event, PremiumPosted):
            return event.entry_id in posted
        assert isinstance(event, PolicyActivated)
        return event.policy_id in new_policies

    return [event for event in activation.events if stored(event)]
