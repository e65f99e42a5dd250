"""Coverage's use cases that move policies through their lifecycle: activating pending
policies, ending a policy, and the daily sweep that lapses and reinstates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from uuid import UUID

import asyncpg

from services.coverage import domain, lifecycle, service, store
from services.coverage.errors import NotFound, Refused
from shared.events import Event, utc_now, wire_time


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
    # The locks of every agreement of the payer first (any of them, a renewal too, may
    # bill this policy), in code order as everyone takes them: a billing run then either
    # bills before the end is recorded (and its later months are reversed here) or after.
    facts = await store.policy_facts(conn, policy_id=policy_id, worker_id=worker_id)
    if facts is not None:
        await store.lock_budgets(conn, await store.payer_agreements(conn, facts.policy_id))
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
        occurred_at=wire_time(utc_now()),
    )
    await store.commit_amounts(conn, {code: -amount for code, amount in reversed_amounts.items()})
    return lifecycle.ended_event(facts, coverage_end, reason), sum(reversed_amounts.values())


async def reinstate(
    conn: asyncpg.Connection, today: date, invoice_id: UUID | None = None
) -> list[Event]:
    """Reinstate the policies whose overdue invoice (``invoice_id``, or any) is settled."""
    return [
        lifecycle.reinstated_event(facts, lapsed_by, revision, today)
        for facts, lapsed_by, revision in await store.reinstate_settled(conn, today, invoice_id)
    ]


async def settle_lapses(conn: asyncpg.Connection, today: date) -> list[Event]:
    """Reinstate policies whose overdue invoice is settled, then lapse active policies
    on invoices unpaid past grace."""
    events = await reinstate(conn, today)
    events += [
        lifecycle.lapsed_event(
            lapse.policy,
            lapse.invoice_id,
            lapse.invoice_revision,
            lapse.period,
            today,
            lapse.grace_months,
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
