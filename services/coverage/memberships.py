"""A worker's memberships as coverage sees them: WorkerDeregistered ends the policy of
that membership on its date; a worker enrolling again (membership 2, 3, ...) gets a new
policy. The two topics are read by separate consumers, so either fact may arrive first:
a deregistration is recorded, and applied as soon as its policy exists."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from uuid import UUID

import asyncpg
import structlog

from services.coverage import policies, service, store
from services.coverage.errors import NotFound, Refused
from shared.events import Event, WorkerDeregistered, WorkerEnrolled

log = structlog.get_logger("coverage.memberships")


def _reason(event_reason: str) -> str:
    return f"deregistered: {event_reason}"


async def enrolled(
    conn: asyncpg.Connection, enrolments: Sequence[WorkerEnrolled], today: date
) -> list[Event]:
    """Policies for new memberships. A later membership whose earlier policy is still
    open (its WorkerDeregistered not read yet) ends that policy first: on the recorded
    deregistration date if there is one, else the day before the new membership."""
    events: list[Event] = []
    for enrolment in sorted(enrolments, key=lambda e: e.worker_id):
        if enrolment.membership == 1:
            continue
        for policy_id, membership in await store.open_policies_before(
            conn, enrolment.worker_id, enrolment.membership
        ):
            recorded = await store.deregistrations_of(conn, [(enrolment.worker_id, membership)])
            on, why = recorded.get(
                (enrolment.worker_id, membership),
                (
                    enrolment.enrolled_on - timedelta(days=1),
                    f"membership {enrolment.membership} began",
                ),
            )
            events += await _end(conn, policy_id, on, _reason(why))
    events += await service.activate(conn, enrolments, today)
    events += await _apply_recorded(conn, [(e.worker_id, e.membership) for e in enrolments])
    return events


async def deregistered(
    conn: asyncpg.Connection, deregistrations: Sequence[WorkerDeregistered]
) -> list[Event]:
    events: list[Event] = []
    for event in sorted(deregistrations, key=lambda e: e.worker_id):
        await store.record_deregistration(
            conn,
            event.worker_id,
            event.membership,
            event.effective_date,
            event.reason,
            event.event_id,
        )
    events += await _apply_recorded(conn, [(e.worker_id, e.membership) for e in deregistrations])
    return events


async def _apply_recorded(conn: asyncpg.Connection, memberships: Sequence[tuple]) -> list[Event]:
    """End the policies of these memberships that a recorded deregistration ends."""
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
        policy_id, status = found
        if status == "ended":
            continue
        events += await _end(conn, policy_id, on, _reason(why))
    return events


async def _end(conn: asyncpg.Connection, policy_id: UUID, on: date, reason: str) -> list[Event]:
    try:
        event, _ = await policies.end(conn, policy_id=policy_id, on=on, reason=reason)
    except (NotFound, Refused) as error:
        log.warning("policy not ended", policy_id=str(policy_id), reason=reason, error=str(error))
        return []
    return [event]
