"""Coverage's use case for new enrolments and pending policies: decide with the domain,
store what is new, return the events for what was actually stored (a redelivered
enrolment stores nothing and so emits nothing)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from uuid import UUID

import asyncpg

from services.coverage import domain, store
from shared.events import Event, PolicyActivated, PremiumPosted, WorkerEnrolled

StorePolicies = Callable[[asyncpg.Connection, Sequence[domain.Policy]], Awaitable[set[UUID]]]
"""Writes the policies the domain decided; returns the ids of those now active."""


async def activate(
    conn: asyncpg.Connection, enrolments: Sequence[WorkerEnrolled], today: date
) -> list[Event]:
    known = await store.workers_with_policies(conn, [e.worker_id for e in enrolments])
    # Sorted by worker so concurrent batches take row locks in the same order.
    ordered = sorted(
        (e for e in enrolments if (e.worker_id, e.membership) not in known),
        key=lambda e: e.worker_id,
    )
    candidates = [domain.Candidate.enrolled(e) for e in ordered]
    return await admit(conn, candidates, today, store.insert_policies)


async def admit(
    conn: asyncpg.Connection,
    candidates: Sequence[domain.Candidate],
    today: date,
    store_policies: StorePolicies,
) -> list[Event]:
    """Cover the candidates under the agreements in force, within their budgets: the
    agreements' rows are locked first, so the ceiling check and the commitment are
    atomic with the postings."""
    if not candidates:
        return []
    agreements = await store.agreements(conn)
    chosen = (domain.agreement_for(c, agreements, today) for c in candidates)
    budgets = await store.lock_budgets(conn, {a.code for a in chosen if a is not None})
    activation = domain.activate(candidates, agreements, today, budgets)
    active = await store_policies(conn, activation.policies)
    entries = [e for e in activation.entries if e.policy_id in active]
    posted = await store.post_premiums(conn, entries)
    committed: Counter[str] = Counter()
    for entry in entries:
        if entry.entry_id in posted:
            committed[entry.agreement_code] += entry.premium.total
    await store.commit_amounts(conn, committed)

    def stored(event: Event) -> bool:
        if isinstance(event, PremiumPosted):
            return event.entry_id in posted
        if isinstance(event, PolicyActivated):
            return event.policy_id in active
        return True  # CoverageRefused: the refusal happened whatever was stored

    return [event for event in activation.events if stored(event)]
