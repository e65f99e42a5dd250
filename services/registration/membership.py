"""Use cases on an enrolled worker, in the caller's transaction: change details,
deregister. Each locks the worker's row, decides with the pure rules (changes.py),
writes the record and its history, and returns the event for the caller's outbox."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from services.registration import changes, store
from services.registration.changes import WorkerState
from shared.errors import Refused
from shared.events import DeregistrationReason, Event, RejectionReason


class WorkerNotFound(LookupError):
    """No worker has this participant number."""


class ChangeInvalid(ValueError):
    """The change breaks the rules (422), with every reason."""

    def __init__(self, reasons: list[RejectionReason]) -> None:
        super().__init__("; ".join(f"{r.code} ({r.field}): {r.message}" for r in reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class Changed:
    """What a change did: the details that changed (none: nothing to do, no event)."""

    changed: list[str]
    event: Event | None


async def _worker(conn: asyncpg.Connection, participant_number: str) -> WorkerState:
    worker = await store.lock_worker(conn, participant_number)
    if worker is None:
        raise WorkerNotFound(f"no worker with participant number {participant_number}")
    return worker


async def change_details(
    conn: asyncpg.Connection,
    participant_number: str,
    requested: Mapping[str, Any],
    actor: str,
    correlation_id: str,
) -> Changed:
    worker = await _worker(conn, participant_number)
    if worker.status != "active":
        raise Refused(
            "WORKER_DEREGISTERED",
            f"participant {participant_number} was deregistered on {worker.deregistered_on} "
            f"({worker.deregistration_reason}); enrol again to change their details",
        )
    after = changes.apply_changes(worker.details, requested)
    if isinstance(after, list):
        raise ChangeInvalid(after)
    diff = changes.differences(worker.details, after)
    if not diff:
        return Changed([], None)
    event = changes.details_changed_event(worker, after, list(diff), correlation_id)
    await store.update_details(conn, worker.worker_id, after, event.revision)
    await store.append_history(
        conn, worker.worker_id, event.revision, "details_changed", diff, actor
    )
    return Changed(list(diff), event)


async def deregister(
    conn: asyncpg.Connection,
    participant_number: str,
    why: DeregistrationReason,
    effective_date: date,
    actor: str,
    correlation_id: str,
    today: date,
) -> Event | None:
    """The WorkerDeregistered event; None if this very deregistration was already
    recorded (the same request again changes nothing)."""
    worker = await _worker(conn, participant_number)
    if worker.status == "deregistered":
        if (worker.deregistration_reason, worker.deregistered_on) == (why, effective_date):
            return None
        raise Refused(
            "ALREADY_DEREGISTERED",
            f"participant {participant_number} was already deregistered on "
            f"{worker.deregistered_on} ({worker.deregistration_reason})",
        )
    reasons = changes.check_deregistration(worker, why, effective_date, today)
    if reasons:
        raise ChangeInvalid(reasons)
    event = changes.deregistered_event(worker, why, effective_date, correlation_id)
    await store.deregister(conn, worker.worker_id, why, effective_date, event.revision)
    await store.append_history(
        conn,
        worker.worker_id,
        event.revision,
        "deregistered",
        {"status": {"from": "active", "to": "deregistered"}},
        actor,
        effective_date=effective_date,
        reason=why,
    )
    return event
