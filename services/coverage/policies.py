"""Coverage's use cases that move policies through their lifecycle: activating pending
policies, ending a policy, and the daily sweep that lapses and reinstates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from uuid import UUID

import asyncpg

from services.coverage import domain, lifecycle, service, store
from services.coverage.errors import NotFound, Refused
from shared.events import Event


async def activate_pending(
    conn: asyncpg.Connection, today: date, reasons: Sequence[str]
) -> list[Event]:
    """Pending policies waiting for one of ``reasons`` become active under the agreement
    in force (budget permitting), with their first month posted. Run when an agreement
    is added (all reasons) and daily (NO_AGREEMENT: an agreement may have come into
    force)."""
    pending = await store.pending_policies(conn, reasons)
    candidates = [domain.Candidate.pending(p) for p in pending]
    return await service.admit(conn, candidates, today, store.activate_pending)


async def end(
    conn: asyncpg.Connection,
    *,
    policy_id: UUID | None = None,
    worker_id: UUID | None = None,
    on: date,
    reason: str,
) -> tuple[Event, int]:
    """End a policy from ``on`` with a reason: nothing is billed for the months after
    it, and postings already made for them are reversed. Returns the PolicyEnded event
    and the Rupiah reversed."""
    # The agreement's lock first, as billing runs take it: a run then either bills
    # before the end is recorded (and its later months are reversed here) or after.
    facts = await store.policy_facts(conn, policy_id=policy_id, worker_id=worker_id)
    if facts is not None and facts.agreement_code:
        await store.lock_budgets(conn, [facts.agreement_code])
    facts = await store.policy_facts(conn, policy_id=policy_id, worker_id=worker_id, lock=True)
    if facts is None:
        subject = f"policy {policy_id}" if policy_id else f"worker {worker_id}"
        raise NotFound(f"no policy for {subject}")
    try:
        coverage_end = lifecycle.end_date(facts, on)
    except lifecycle.ForbiddenTransition as error:
        raise Refused("TRANSITION_FORBIDDEN", str(error)) from None
    except ValueError as error:
        raise Refused("END_BEFORE_START", str(error)) from None
    await store.end_policy(conn, facts.policy_id, coverage_end, reason)
    reversed_amounts = await store.reverse_entries(
        conn,
        "after_end",
        [facts.policy_id, domain.month_of(coverage_end)],
        reason=f"policy ended {coverage_end}: {reason}",
        correlation_id=f"policy:{facts.policy_id}",
        occurred_at=datetime.now(UTC).isoformat(),
    )
    await store.commit_amounts(conn, {code: -amount for code, amount in reversed_amounts.items()})
    return lifecycle.ended_event(facts, coverage_end, reason), sum(reversed_amounts.values())


async def settle_lapses(conn: asyncpg.Connection, today: date) -> list[Event]:
    """Reinstate policies whose overdue invoice is settled, then lapse active policies
    on invoices unpaid past grace."""
    events: list[Event] = [
        lifecycle.reinstated_event(facts, lapsed_by, today)
        for facts, lapsed_by in await store.reinstate_settled(conn, today)
    ]
    events += [
        lifecycle.lapsed_event(
            lapse.policy, lapse.invoice_id, lapse.period, today, lapse.grace_months
        )
        for lapse in await store.lapse_overdue(conn, today)
    ]
    return events


async def daily_sweep(conn: asyncpg.Connection, today: date) -> list[Event]:
    """What the scheduler does each day besides billing: pending policies whose
    agreement has come into force start; overdue months lapse; settled ones reinstate."""
    return await activate_pending(conn, today, [domain.NO_AGREEMENT]) + await settle_lapses(
        conn, today
    )
