"""All of registration's SQL. Every function takes a connection and so joins the
caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date
from uuid import UUID

import asyncpg

from services.registration.changes import WorkerDetails, WorkerState
from services.registration.domain import (
    Enrolled,
    EnrolmentCommand,
    Numbered,
    Outcome,
    Rejected,
    RequestStatus,
    ValidWorker,
)
from services.registration.search import ByName, ByNikTailAndBirthDate, Query, name_key
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
    """Participant numbers of the members (not the deregistered) holding these NIKs."""
    rows = await conn.fetch(
        """SELECT nik, participant_number FROM workers
           WHERE nik = ANY($1::text[]) AND status = 'active'""",
        list(niks),
    )
    return {row["nik"]: row["participant_number"] for row in rows}


async def holders_by_nik(
    conn: asyncpg.Connection, niks: Sequence[str]
) -> tuple[dict[str, str], set[str]]:
    """In one lookup: the participant numbers of the members holding these NIKs, and
    which of the NIKs belong to deregistered workers (who may enrol again)."""
    rows = await conn.fetch(
        "SELECT nik, participant_number, status FROM workers WHERE nik = ANY($1::text[])",
        list(niks),
    )
    members = {r["nik"]: r["participant_number"] for r in rows if r["status"] == "active"}
    return members, {r["nik"] for r in rows if r["status"] == "deregistered"}


async def next_participant_sequence(conn: asyncpg.Connection, count: int) -> list[int]:
    if count == 0:
        return []
    rows = await conn.fetch(
        "SELECT nextval('participant_number_seq') AS n FROM generate_series(1, $1)", count
    )
    return [row["n"] for row in rows]


async def insert_workers(
    conn: asyncpg.Connection, numbered: Sequence[Numbered], enrolled_on: date
) -> set[str]:
    """Insert workers; return the NIKs inserted. A NIK another transaction enrolled
    first is skipped (the unique NIK index decides the race)."""
    if not numbered:
        return set()
    workers = [(n.command, n.worker, n.participant_number) for n in numbered]
    rows = await conn.fetch(
        """INSERT INTO workers (worker_id, participant_number, nik, full_name, birth_date,
                                gender, address, kelurahan, kecamatan_code, phone_e164,
                                email, occupation, declared_income, preferred_language,
                                request_id, kelurahan_code, name_key, enrolled_on)
           SELECT *, $18::date FROM unnest(
               $1::uuid[], $2::text[], $3::text[], $4::text[], $5::date[], $6::text[],
               $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
               $13::bigint[], $14::text[], $15::text[], $16::text[], $17::text[])
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
        [name_key(w.request.full_name) for _, w, _ in workers],
        enrolled_on,
    )
    return {row["nik"] for row in rows}


async def reenrol_workers(
    conn: asyncpg.Connection,
    workers: Sequence[tuple[EnrolmentCommand, ValidWorker]],
    enrolled_on: date,
) -> list[Numbered]:
    """Start a new membership for deregistered workers enrolling again: the record takes
    the new request's details, keeps its worker id and participant number. A NIK another
    transaction re-enrolled first is skipped (the row lock and status decide the race)."""
    if not workers:
        return []
    before = {
        row["nik"]: dict(row)
        for row in await conn.fetch(
            f"""SELECT nik, {", ".join(_REENROLLED)} FROM workers
                WHERE nik = ANY($1::text[]) AND status = 'deregistered'
                ORDER BY nik FOR UPDATE""",
            [w.nik for _, w in workers],
        )
    }
    rows = await conn.fetch(
        """UPDATE workers w SET
               status = 'active', membership = w.membership + 1, revision = w.revision + 1,
               deregistered_on = NULL, deregistration_reason = NULL,
               full_name = u.full_name, address = u.address, kelurahan = u.kelurahan,
               kelurahan_code = u.kelurahan_code, kecamatan_code = u.kecamatan_code,
               phone_e164 = u.phone_e164, email = u.email, occupation = u.occupation,
               declared_income = u.declared_income, preferred_language = u.preferred_language,
               request_id = u.request_id, name_key = u.name_key, enrolled_on = $14
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                       $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[],
                       $11::text[], $12::text[], $13::text[])
                AS u(nik, full_name, address, kelurahan, kelurahan_code, kecamatan_code,
                     phone_e164, email, occupation, declared_income, preferred_language,
                     request_id, name_key)
           WHERE w.nik = u.nik AND w.status = 'deregistered'
           RETURNING w.nik, w.worker_id, w.participant_number, w.membership, w.revision,
                     w.full_name, w.address, w.kelurahan, w.kelurahan_code, w.kecamatan_code,
                     w.phone_e164, w.email, w.occupation, w.declared_income,
                     w.preferred_language""",
        [w.nik for _, w in workers],
        [w.request.full_name.strip() for _, w in workers],
        [w.request.address.strip() for _, w in workers],
        [w.domicile.kelurahan.name for _, w in workers],
        [w.domicile.kelurahan.code for _, w in workers],
        [w.domicile.kecamatan_code for _, w in workers],
        [w.phone_e164 for _, w in workers],
        [w.email for _, w in workers],
        [w.request.occupation for _, w in workers],
        [w.request.declared_income for _, w in workers],
        [w.request.preferred_language for _, w in workers],
        [c.request_id for c, _ in workers],
        [name_key(w.request.full_name) for _, w in workers],
        enrolled_on,
    )
    by_nik = {row["nik"]: row for row in rows}
    return [
        Numbered(
            command,
            replace(worker, worker_id=row["worker_id"]),
            row["participant_number"],
            row["membership"],
            row["revision"],
            {
                name: {"from": before[worker.nik][name], "to": row[name]}
                for name in _REENROLLED
                if worker.nik in before and before[worker.nik][name] != row[name]
            },
        )
        for command, worker in workers
        if (row := by_nik.get(worker.nik)) is not None
    ]


_REENROLLED = (
    "full_name",
    "address",
    "kelurahan",
    "kelurahan_code",
    "kecamatan_code",
    "phone_e164",
    "email",
    "occupation",
    "declared_income",
    "preferred_language",
)
"""What enrolling again may change on the record (kept in its history row)."""


async def record_history(conn: asyncpg.Connection, stored: Sequence[Numbered]) -> None:
    """The history row of each enrolment (a first one, or a membership again)."""
    if not stored:
        return
    await conn.execute(
        """INSERT INTO worker_history (worker_id, revision, change, actor, request_id, changes)
           SELECT w, r, CASE WHEN m = 1 THEN 'enrolled' ELSE 're_enrolled' END, a, q, c::jsonb
           FROM unnest($1::uuid[], $2::int[], $3::int[], $4::text[], $5::text[], $6::text[])
                AS t(w, r, m, a, q, c)""",
        [entry.worker.worker_id for entry in stored],
        [entry.revision for entry in stored],
        [entry.membership for entry in stored],
        [entry.command.source for entry in stored],
        [entry.command.request_id for entry in stored],
        [json.dumps(entry.changes or {}, default=str) for entry in stored],
    )


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


_STATE_COLUMNS = """worker_id, participant_number, status, membership, revision, enrolled_on,
    deregistered_on, deregistration_reason, phone_e164, email, address, kecamatan_code,
    kelurahan, kelurahan_code, preferred_language, declared_income"""


async def lock_worker(conn: asyncpg.Connection, participant_number: str) -> WorkerState | None:
    """The worker's state, its row locked until the transaction ends (changes to one
    worker happen one after another)."""
    row = await conn.fetchrow(
        f"SELECT {_STATE_COLUMNS} FROM workers WHERE participant_number = $1 FOR UPDATE",
        participant_number,
    )
    if row is None:
        return None
    details = WorkerDetails(
        **{name: row[name] for name in WorkerDetails.__dataclass_fields__}  # type: ignore[arg-type]
    )
    state = {name: row[name] for name in WorkerState.__dataclass_fields__ if name != "details"}
    return WorkerState(**state, details=details)  # type: ignore[arg-type]


async def update_details(
    conn: asyncpg.Connection, worker_id: UUID, details: WorkerDetails, revision: int
) -> None:
    await conn.execute(
        """UPDATE workers SET phone_e164 = $2, email = $3, address = $4, kecamatan_code = $5,
                              kelurahan = $6, kelurahan_code = $7, preferred_language = $8,
                              declared_income = $9, revision = $10
           WHERE worker_id = $1""",
        worker_id,
        details.phone_e164,
        details.email,
        details.address,
        details.kecamatan_code,
        details.kelurahan,
        details.kelurahan_code,
        details.preferred_language,
        details.declared_income,
        revision,
    )


async def deregister(
    conn: asyncpg.Connection, worker_id: UUID, reason: str, on: date, revision: int
) -> None:
    await conn.execute(
        """UPDATE workers SET status = 'deregistered', deregistered_on = $3,
                              deregistration_reason = $2, revision = $4
           WHERE worker_id = $1""",
        worker_id,
        reason,
        on,
        revision,
    )


async def append_history(
    conn: asyncpg.Connection,
    worker_id: UUID,
    revision: int,
    change: str,
    changes: Mapping[str, object],
    actor: str,
    *,
    effective_date: date | None = None,
    reason: str | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO worker_history (worker_id, revision, change, changes, actor,
                                       effective_date, reason)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)""",
        worker_id,
        revision,
        change,
        json.dumps(changes, default=str),
        actor,
        effective_date,
        reason,
    )


async def history(conn: asyncpg.Connection, participant_number: str) -> list[dict[str, object]]:
    rows = await conn.fetch(
        """SELECT h.revision, h.change, h.changes::text AS changes, h.actor, h.request_id,
                  h.effective_date, h.reason, h.recorded_at
           FROM worker_history h JOIN workers w USING (worker_id)
           WHERE w.participant_number = $1
           ORDER BY h.revision""",
        participant_number,
    )
    return [{**dict(row), "changes": json.loads(row["changes"])} for row in rows]


async def worker_summary(conn: asyncpg.Connection, participant_number: str) -> dict | None:
    row = await conn.fetchrow(
        """SELECT worker_id, participant_number, nik, full_name, kecamatan_code, kelurahan,
                  kelurahan_code, occupation, enrolled_on, status, membership, revision,
                  deregistered_on, deregistration_reason
           FROM workers WHERE participant_number = $1""",
        participant_number,
    )
    return dict(row) if row else None


_FOUND_COLUMNS = """worker_id, participant_number, nik, full_name, birth_date, gender,
    kecamatan_code, kelurahan, status, name_key"""


async def search(
    conn: asyncpg.Connection, query: Query, limit: int, after: tuple[str, str] | None
) -> list[dict[str, object]]:
    """Workers matching the query, ordered by (name_key, participant_number), from just
    after ``after`` (the last row of the previous page)."""
    values: list[object]
    if isinstance(query, ByName):
        where = 'name_key COLLATE "C" >= $1 AND name_key COLLATE "C" < $2'
        values = [query.prefix, query.prefix + "\U0010ffff"]
    elif isinstance(query, ByNikTailAndBirthDate):
        where, values = "birth_date = $1 AND right(nik, 4) = $2", [query.birth_date, query.nik_tail]
    else:
        where, values = "phone_e164 = $1", [query.phone_e164]
    page = ""
    if after is not None:
        n = len(values)
        page = f'AND (name_key COLLATE "C", participant_number) > (${n + 1}, ${n + 2})'
        values += list(after)
    rows = await conn.fetch(
        f"""SELECT {_FOUND_COLUMNS} FROM workers WHERE {where} {page}
            ORDER BY name_key COLLATE "C", participant_number LIMIT {int(limit)}""",
        *values,
    )
    return [dict(row) for row in rows]


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


# --- imports ----------------------------------------------------------------------------


async def register_import(
    conn: asyncpg.Connection,
    import_id: UUID,
    digest: str,
    filename: str | None,
    rows_total: int,
    ignored: Sequence[str],
) -> None:
    """Record an upload of a file: a new import, or one more upload of a known one."""
    await conn.execute(
        """INSERT INTO imports (import_id, file_digest, filename, rows_total, ignored_columns)
           VALUES ($1, $2, $3, $4, $5::jsonb)
           ON CONFLICT (import_id) DO UPDATE SET uploads = imports.uploads + 1""",
        import_id,
        digest,
        filename,
        rows_total,
        json.dumps(list(ignored)),
    )


async def rows_done(conn: asyncpg.Connection, import_id: UUID) -> int:
    """The last row stored: batches commit whole and in order, so every row up to it is."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT coalesce(max(row_number), 0) FROM import_rows WHERE import_id = $1", import_id
    )


async def record_import_rows(
    conn: asyncpg.Connection, import_id: UUID, rows: Sequence[tuple[int, int, str]]
) -> None:
    """(row number, line, request id) of rows just answered."""
    await conn.execute(
        """INSERT INTO import_rows (import_id, row_number, line, request_id)
           SELECT $1, n, l, r FROM unnest($2::int[], $3::int[], $4::text[]) AS t(n, l, r)
           ON CONFLICT DO NOTHING""",
        import_id,
        [n for n, _, _ in rows],
        [line for _, line, _ in rows],
        [r for _, _, r in rows],
    )


async def unfinished_imports(conn: asyncpg.Connection) -> list[tuple[UUID, str]]:
    rows = await conn.fetch(
        "SELECT import_id, file_digest FROM imports WHERE status = 'running' ORDER BY created_at"
    )
    return [(row["import_id"], row["file_digest"]) for row in rows]


async def finish_import(conn: asyncpg.Connection, import_id: UUID) -> None:
    await conn.execute(
        """UPDATE imports SET status = 'done', finished_at = coalesce(finished_at, now())
           WHERE import_id = $1""",
        import_id,
    )


async def import_exists(conn: asyncpg.Connection, import_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM imports WHERE import_id = $1", import_id))


async def import_status(conn: asyncpg.Connection, import_id: UUID) -> dict[str, object] | None:
    row = await conn.fetchrow(
        """SELECT import_id, file_digest, filename, rows_total, ignored_columns::text AS ignored,
                  status, uploads, created_at, finished_at
           FROM imports WHERE import_id = $1""",
        import_id,
    )
    if row is None:
        return None
    outcomes = await conn.fetch(
        """SELECT r.outcome, count(*) AS n FROM import_rows i
           JOIN enrolment_requests r USING (request_id)
           WHERE i.import_id = $1 GROUP BY 1""",
        import_id,
    )
    by_reason = await conn.fetch(
        """SELECT x->>'code' AS code, count(*) AS n FROM import_rows i
           JOIN enrolment_requests r USING (request_id), jsonb_array_elements(r.reasons) AS x
           WHERE i.import_id = $1 AND r.outcome = 'rejected' GROUP BY 1 ORDER BY 2 DESC, 1""",
        import_id,
    )
    counted = {r["outcome"]: r["n"] for r in outcomes}
    status = {k: v for k, v in dict(row).items() if k != "ignored"}
    return {
        **status,
        "ignored_columns": json.loads(row["ignored"]),
        "rows_done": sum(counted.values()),
        "enrolled": counted.get("enrolled", 0),
        "rejected": counted.get("rejected", 0),
        "rejected_by_reason": {r["code"]: r["n"] for r in by_reason},
    }


async def import_rows_page(
    conn: asyncpg.Connection, import_id: UUID, after: int, limit: int
) -> list[dict[str, object]]:
    """Rows after row number ``after``, each with its request's outcome."""
    rows = await conn.fetch(
        """SELECT i.row_number, i.line, i.request_id, r.outcome, r.participant_number,
                  r.reasons::text AS reasons
           FROM import_rows i JOIN enrolment_requests r USING (request_id)
           WHERE i.import_id = $1 AND i.row_number > $2
           ORDER BY i.row_number LIMIT $3""",
        import_id,
        after,
        limit,
    )
    return [{**dict(row), "reasons": json.loads(row["reasons"])} for row in rows]
