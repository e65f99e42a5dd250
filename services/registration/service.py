"""The enrolment use case, shared by every intake channel (HTTP, upstream topic):
answered requests return their recorded outcome; new ones are decided by the domain,
stored, and their events returned for the caller's outbox, all in the caller's
transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import asyncpg

from services.registration import domain, store
from services.registration.domain import (
    AgeRule,
    Answer,
    Conflict,
    Enrolled,
    EnrolmentCommand,
    Numbered,
    Outcome,
    Rejected,
    ValidWorker,
)
from shared.events import Event


async def enrol(
    conn: asyncpg.Connection,
    commands: Sequence[EnrolmentCommand],
    today: date,
    ages: AgeRule = domain.DEFAULT_AGE_RULE,
) -> tuple[list[Answer], list[Event]]:
    """Answers in the order of ``commands``, and the events to publish. A request id
    already answered (or first used earlier in ``commands``) for a different request is
    a Conflict: not decided, no event."""
    unique = list({c.request_id: c for c in reversed(commands)}.values())[::-1]
    answered = await store.answered(conn, [c.request_id for c in unique])
    known = {request_id: outcome for request_id, (outcome, _) in answered.items()}
    digests: dict[str, str | None] = {c.request_id: c.digest for c in unique}
    digests.update({request_id: digest for request_id, (_, digest) in answered.items()})

    def answer(command: EnrolmentCommand, outcome: Outcome) -> Answer:
        first = digests[command.request_id]
        if first is not None and first != command.digest:
            return Conflict(command.request_id, outcome)
        return outcome

    new = [c for c in unique if c.request_id not in known]
    if not new:
        return [answer(c, known[c.request_id]) for c in commands], []

    niks = [nik for c in new if (nik := c.nik) is not None and domain.is_nik_shaped(nik)]
    enrolled_niks, returning = await store.holders_by_nik(conn, niks)
    decision = domain.decide(new, enrolled_niks, today, ages)
    first_time = [(c, w) for c, w in decision.to_store if w.nik not in returning]
    sequence = await store.next_participant_sequence(conn, len(first_time))
    numbered = [
        Numbered(command, worker, domain.participant_number(value))
        for (command, worker), value in zip(first_time, sequence, strict=True)
    ]
    inserted = await store.insert_workers(conn, numbered, today)
    stored = [entry for entry in numbered if entry.worker.nik in inserted]
    again = [(c, w) for c, w in decision.to_store if w.nik in returning]
    stored += await store.reenrol_workers(conn, again, today)
    rejected = decision.rejected + await _lost_races(conn, decision.to_store, stored)
    await store.record_history(conn, stored)

    outcomes: dict[str, Outcome] = dict(known)
    for entry in stored:
        request_id = entry.command.request_id
        outcomes[request_id] = Enrolled(
            request_id, entry.worker.worker_id, entry.participant_number
        )
    for command, rejection in rejected:
        outcomes[command.request_id] = rejection
    await store.record_outcomes(conn, [(c, outcomes[c.request_id]) for c in new])
    answers = [answer(c, outcomes[c.request_id]) for c in commands]
    return answers, domain.events_for(stored, rejected, today)


async def _lost_races(
    conn: asyncpg.Connection,
    attempted: list[tuple[EnrolmentCommand, ValidWorker]],
    stored: list[Numbered],
) -> list[tuple[EnrolmentCommand, Rejected]]:
    """Requests whose NIK a concurrent transaction enrolled first: duplicates too."""
    done = {entry.worker.nik for entry in stored}
    lost = [(command, worker) for command, worker in attempted if worker.nik not in done]
    if not lost:
        return []
    winners = await store.participants_by_nik(conn, [worker.nik for _, worker in lost])
    return [
        (command, domain.duplicate(command, winners.get(worker.nik))) for command, worker in lost
    ]
