"""All of registration's SQL. Every function takes a connection and so joins the
caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date

import asyncpg

from services.registration.domain import (
    Enrolled,
    EnrolmentCommand,
    Outcome,
    Rejected,
    RequestStatus,
    ValidWorker,
)
from shared.events import RejectionReason


async def answered(
    conn: asyncpg.Connection, request_ids: Sequence[str]
) -> dict[str, tuple[Outcome, str | None]]:
    """Outcomes already recorded for these idempotency keys, each with the digest of
    the request it answered (None for requests recorded before digests were kept)."""
    rows = await conn.fetch(
        f"""SELECT {REQUEST_COLUMNS} FROM enrolment_requests
            WHERE request_id = ANY($1::text[])""",
        list(request_ids),
    )
    return {row["request_id"]: (_outcome(row), row["request_digest"]) for row in rows}


REQUEST_COLUMNS = """request_id, source, outcome, worker_id, participant_number,
    reasons::text AS reasons, request_digest, received_at"""


def _outcome(row: asyncpg.Record) -> Outcome:
    if row["outcome"] == "enrolled":
        return Enrolled(row["request_id"], row["worker_id"], row["participant_number"])
    reasons = tuple(RejectionReason(**r) for r in json.loads(row["reasons"]))
    return Rejected(row["request_id"], reasons)


async def request_status(conn: asyncpg.Connection, request_id: str) -> RequestStatus | None:
    row = await conn.fetchrow(
        f"SELECT {REQUEST_COLUMNS} FROM enrolment_requests WHERE request_id = $1", request_id
    )
    if row is None:
        return None
    return RequestStatus(_outcome(row), row["source"], row["received_at"])


async def participants_by_nik(conn: asyncpg.Connection, niks: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT nik, participant_number FROM workers WHERE nik = ANY($1::text[])", list(niks)
    )
    return {row["nik"]: row["participant_number"] for row in rows}


async def next_participant_sequence(conn: asyncpg.Connection, count: int) -> list[int]:
    if count == 0:
        return []
    rows = await conn.fetch(
        "SELECT nextval('participant_number_seq') AS n FROM generate_series(1, $1)", count
    )
    return [row["n"] for row in rows]


async def insert_workers(
    conn: asyncpg.Connection,
    workers: Sequence[tuple[EnrolmentCommand, ValidWorker, str]],
    enrolled_on: date,
) -> set[str]:
    """Insert workers; return the NIKs inserted. A NIK another transaction enrolled
    first is skipped (the unique NIK index decides the race)."""
    if not workers:
        return set()
    rows = await conn.fetch(
        """INSERT INTO workers (worker_id, participant_number, nik, full_name, birth_date,
                                gender, address, kelurahan, kecamatan_code, phone_e164,
                                email, occupation, declared_income, preferred_language,
                                request_id, kelurahan_code, enrolled_on)
           SELECT *, $17::date FROM unnest(
               $1::uuid[], $2::text[], $3::text[], $4::text[], $5::date[], $6::text[],
               $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
               $13::bigint[], $14::text[], $15::text[], $16::text[])
           ON CONFLICT (nik) DO NOTHING
           RETURNING nik""",
        [w.worker_id for _, w, _ in workers],
        [number for _, _, number in workers],
        [w.nik for _, w, _ in workers],
        [w.request.full_name.strip() for _, w, _ in workers],
        [w.request.birth_date for _, w, _ in workers],
        [w.request.gender for _, w, _ in workers],
        [w.request.address.strip() for _, w, _ in workers],
        [w.domicile.kelurahan.name for _, w, _ in workers],
        [w.domicile.kecamatan_code for _, w, _ in workers],
        [w.phone_e164 for _, w, _ in workers],
        [w.email for _, w, _ in workers],
        [w.request.occupation for _, w, _ in workers],
        [w.request.declared_income for _, w, _ in workers],
        [w.request.preferred_language for _, w, _ in workers],
        [c.request_id for c, _, _ in workers],
        [w.domicile.kelurahan.code for _, w, _ in workers],
        enrolled_on,
    )
    return {row["nik"] for row in rows}


async def record_outcomes(
    conn: asyncpg.Connection, outcomes: Sequence[tuple[EnrolmentCommand, Outcome]]
) -> None:
    """Record each request's answer. A plain INSERT: the same request_id answered
    concurrently by another transaction raises UniqueViolation, and the retried
    transaction then finds and returns that answer."""
    if not outcomes:
        return
    await conn.execute(
        """INSERT INTO enrolment_requests
               (request_id, source, outcome, worker_id, participant_number, reasons,
                request_digest)
           SELECT r, s, o, w, p, x::jsonb, d FROM unnest(
               $1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[],
               $7::text[]) AS t(r, s, o, w, p, x, d)""",
        [c.request_id for c, _ in outcomes],
        [c.source for c, _ in outcomes],
        [o.outcome for _, o in outcomes],
        [o.worker_id if isinstance(o, Enrolled) else None for _, o in outcomes],
        [o.participant_number if isinstance(o, Enrolled) else None for _, o in outcomes],
        [
            json.dumps([r.model_dump() for r in o.reasons]) if isinstance(o, Rejected) else "[]"
            for _, o in outcomes
        ],
        [c.digest for c, _ in outcomes],
    )


async def worker_summary(conn: asyncpg.Connection, participant_number: str) -> dict | None:
    row = await conn.fetchrow(
        """SELECT worker_id, participant_number, nik, full_name, kecamatan_code, kelurahan,
                  kelurahan_code, occupation, enrolled_on
           FROM workers WHERE participant_number = $1""",
        participant_number,
    )
    return dict(row) if row else None


async def counts(conn: asyncpg.Connection) -> dict[str, object]:
    """Enrolled and rejected totals, rejections by reason code."""
    totals = await conn.fetch(
        "SELECT outcome, count(*) AS n FROM enrolment_requests GROUP BY outcome"
    )
    by_reason = await conn.fetch(
        """SELECT r->>'code' AS code, count(*) AS n
           FROM enrolment_requests, jsonb_array_elements(reasons) AS r
           WHERE outcome = 'rejected' GROUP BY 1 ORDER BY 2 DESC, 1"""
    )
    by_outcome = {row["outcome"]: row["n"] for row in totals}
    return {
        "enrolled": by_outcome.get("enrolled", 0),
        "rejected": by_outcome.get("rejected", 0),
        "rejected_by_reason": {row["code"]: row["n"] for row in by_reason},
        "workers": await conn.fetchval("SELECT count(*) FROM workers"),
    }
