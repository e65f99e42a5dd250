"""Building coverage state on a real PostgreSQL schema for billing tests."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import date

import asyncpg

from services.coverage import ledger, run_postings, service
from services.registration.domain import participant_number
from shared.events import WorkerEnrolled
from shared.outbox import enqueue_events, waiting_records
from tests.factories import worker_enrolled

KECAMATAN = ("35.75.01", "35.75.02", "35.75.03", "35.75.04")
OCCUPATIONS = ("pedagang", "pemilik warung kopi", "marbot masjid", "tukang kayu", "buruh tani")
CITY = "KOTA-PASURUAN-DBHCHT"


def enrolments(count: int, enrolled_on: date, *, first: int = 1) -> list[WorkerEnrolled]:
    """``count`` enrolled workers, spread over the four kecamatan and five occupations."""
    return [
        worker_enrolled(
            event_id=uuid.uuid4(),
            worker_id=uuid.uuid4(),
            participant_number=participant_number(n),
            kecamatan_code=KECAMATAN[n % len(KECAMATAN)],
            occupation=OCCUPATIONS[n % len(OCCUPATIONS)],
            enrolled_on=enrolled_on,
        )
        for n in range(first, first + count)
    ]


async def enrol(
    pool: asyncpg.Pool, count: int, enrolled_on: date, *, today: date | None = None, first: int = 1
) -> list[WorkerEnrolled]:
    """Open policies the way the WorkerEnrolled consumer does (first month posted, its
    events in the outbox)."""
    batch = enrolments(count, enrolled_on, first=first)
    async with pool.acquire() as conn, conn.transaction():
        for start in range(0, count, 5_000):
            events = await service.activate(
                conn, batch[start : start + 5_000], today or enrolled_on
            )
            await enqueue_events(conn, events)
    return batch


async def set_ceiling(pool: asyncpg.Pool, ceiling: int | None, code: str = CITY) -> None:
    await pool.execute(
        "UPDATE funding_agreements SET budget_ceiling = $2 WHERE code = $1", code, ceiling
    )


async def outbox_counts(pool: asyncpg.Pool) -> Counter[str]:
    """Records waiting in the outbox by topic, counting each record a billing run's
    outbox row stands for."""
    async with pool.acquire() as conn:
        records = await waiting_records(conn, run_postings.SOURCES)
    return Counter(record.topic for record in records)


async def assert_ledger_holds(pool: asyncpg.Pool) -> None:
    """Every ledger invariant (services.coverage.ledger) holds."""
    async with pool.acquire() as conn:
        report = await ledger.check(conn)
    assert report["ok"], report["violations"]
