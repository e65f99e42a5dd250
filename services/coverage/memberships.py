"""A worker's memberships as coverage sees them: WorkerDeregistered ends the policy of
that membership on its date; a worker enrolling again (membership 2, 3, ...) gets a new
policy. The two topics are read by separate consumers, so either fact may arrive first:
a deregistration is recorded, and applied as soon as its policy exists."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from itertools import groupby
from uuid import UUID

import asyncpg
import structlog

from services.coverage import policies, service, store
from services.coverage.errors import NotFound, Refused
from shared.events import Event, PolicyActivated, WorkerDeregistered, WorkerEnrolled

log = structlog.get_logger("coverage.memberships")


def _reason(event_reason: str) -> str:
    return f"deregistered: {event_reason}"


async def enrolled(
    conn: asyncpg.Connection, enrolments: Sequence[WorkerEnrolled], today: date
) -> list[Event]:
    """Policies for new memberships, lowest membership first (a batch may hold a
    worker's membership 1 and 2). A later membership whose earlier policy is still open
    (its WorkerDeregistered not read yet) ends that policy first: on the recorded
    deregistration date if there is one, else the day before the new membership. A
    membership already deregistered when its enrolment arrives gets its policy ended at
    once, and no PolicyActivated: nobody is told they are covered after they left."""
    events: list[Event] = []
    ordered = sorted(enrolments, key=lambda e: e.membership)
    for membership, group in groupby(ordered, key=lambda e: e.membership):
        batch = list(group)
        if membership > 1:
            for enrolment in sorted(batch, key=lambda e: e.worker_id):
                events += await _close_earlier(conn, enrolment)
        keys = [(e.worker_id, e.membership) for e in batch]
        gone = await store.deregistrations_of(conn, keys)
        activated = await service.activate(conn, batch, today)
        events += [
            e
            for e in activated
            if not (isinstance(e, PolicyActivated) and (e.worker_id, e.membership) in gone)
        ]
        events += await _apply_recorded(conn, keys)
    return events


async def _close_earlier(conn: asyncpg.Connection, enrolment: WorkerEnrolled) -> list[Event]:
    events: list[Event] = []
    for policy_id, membership, start in await store.open_policies_before(
        conn, enrolment.worker_id, enrolment.membership
    ):
        key = (enrolment.worker_id, membership)
        recorded = (await store.deregistrations_of(conn, [key])).get(key)
        if recorded is not None:
            on, reason = recorded[0], _reason(recorded[1])
        else:
            on = enrolment.enrolled_on - timedelta(days=1)
            reason = f"membership {enrolment.membership} of the worker began"
        events += await _end(conn, policy_id, max(on, start), reason)
    return events


async def deregistered(
    conn: asyncpg.Connection, deregistrations: Sequence[WorkerDeregistered]
) -> list[Event]:
    for event in sorted(deregistrations, key=lambda e: (e.worker_id, e.membership)):
        await store.record_deregistration(
            conn,
            event.worker_id,
            event.membership,
            event.effective_date,
            event.reason,
            event.event_id,
        )
    return await _apply_recorded(conn, [(e.worker_id, e.membership) for e in deregistrations])


async def _apply_recorded(
    conn: asyncpg.Connection, memberships: Sequence[tuple[UUID, int]]
) -> list[Event]:
    """End the policies of these memberships that a recorded deregistration ends. A
    date before the policy's cover began (cover that started late, e.g. when no
    agreement was in force) ends it on its first day: it is never left open."""
    events: list[Event] = []
    recorded = await store.deregistrations_of(conn, list(memberships))
    for (worker_id, membership), (on, why) in sorted(recorded.items()):
        found = await store.policy_of_membership(conn, worker_id, membership)
        if found is None:
            log.info(
                "deregistration recorded; the enrolment has not reached coverage yet",
                worker_id=str(worker_id),
                membership=membership,
            )
            continue
        policy_id, status, start = found
        if status == "ended":
            continue
        events += await _end(conn, policy_id, max(on, start), _reason(why))
    return events


async def _end(conn: asyncpg.Connection, policy_id: UUID, on: date, reason: str) -> list[Event]:
    try:
        event, _ = await policies.end(conn, policy_id=policy_id, on=on, reason=reason)
    except NotFound:
        return []
    except Refused as error:
        if error.code == "TRANSITION_FORBIDDEN":  # ended meanwhile: nothing left to do
            return []
        raise
    return [event]
