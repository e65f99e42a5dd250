"""Coverage and a worker's memberships, on a real PostgreSQL schema: WorkerDeregistered
ends the policy on its date (later months reversed, none billed), whichever of the two
topics is read first; a worker enrolling again gets a new policy."""

from __future__ import annotations

import uuid
from datetime import date

import asyncpg
import pytest

from services.coverage import billing, memberships
from services.coverage.app import SPEC
from shared.events import Event, WorkerDeregistered, WorkerEnrolled
from shared.outbox import enqueue_events
from tests.conftest import ServicePool
from tests.factories import worker_deregistered, worker_enrolled
from tests.integration.coverage_helpers import assert_ledger_holds

pytestmark = pytest.mark.integration

TODAY = date(2026, 9, 15)


@pytest.fixture
async def pool(service_pool: ServicePool) -> asyncpg.Pool:
    pool = await service_pool(SPEC, max_size=3)
    yield pool
    await assert_ledger_holds(pool)


async def enrolled(pool: asyncpg.Pool, event: WorkerEnrolled) -> list[Event]:
    async with pool.acquire() as conn, conn.transaction():
        events = await memberships.enrolled(conn, [event], TODAY)
        await enqueue_events(conn, events)
    return events


async def deregistered(pool: asyncpg.Pool, event: WorkerDeregistered) -> list[Event]:
    async with pool.acquire() as conn, conn.transaction():
        events = await memberships.deregistered(conn, [event])
        await enqueue_events(conn, events)
    return events


async def policies(pool: asyncpg.Pool, worker_id: uuid.UUID) -> list[tuple[int, str, date | None]]:
    rows = await pool.fetch(
        """SELECT membership, status, coverage_end FROM policies
           WHERE worker_id = $1 ORDER BY membership""",
        worker_id,
    )
    return [(r["membership"], r["status"], r["coverage_end"]) for r in rows]


async def net_billed_months(pool: asyncpg.Pool, worker_id: uuid.UUID) -> list[str]:
    rows = await pool.fetch(
        """SELECT to_char(period, 'YYYY-MM') AS month,
                  sum(CASE WHEN entry_type = 'premium' THEN 1 ELSE -1 END) AS n
           FROM premium_ledger WHERE worker_id = $1 GROUP BY 1 ORDER BY 1""",
        worker_id,
    )
    return [r["month"] for r in rows if r["n"] > 0]


async def test_a_deregistration_ends_the_policy_and_reverses_months_after_it(
    pool: asyncpg.Pool,
) -> None:
    worker = uuid.uuid4()
    await enrolled(pool, worker_enrolled(worker_id=worker, enrolled_on=date(2026, 6, 10)))
    for month in (date(2026, 7, 1), date(2026, 8, 1), date(2026, 9, 1)):
        await billing.run(pool, month, trigger="command")
    died = worker_deregistered(
        worker_id=worker, reason="DIED", effective_date=date(2026, 7, 20), event_id=uuid.uuid4()
    )

    [ended] = await deregistered(pool, died)
    again = await deregistered(pool, died)  # redelivered past the inbox: nothing more

    assert ended.event_type == "policy.ended"
    assert ended.coverage_end == date(2026, 7, 20)  # type: ignore[attr-defined]
    assert "DIED" in ended.reason  # type: ignore[attr-defined]
    assert again == []
    assert await policies(pool, worker) == [(1, "ended", date(2026, 7, 20))]
    assert await net_billed_months(pool, worker) == ["2026-06", "2026-07"]
    await billing.run(pool, date(2026, 10, 1), trigger="command")
    assert await net_billed_months(pool, worker) == ["2026-06", "2026-07"]


async def test_a_deregistration_read_before_its_enrolment_ends_the_policy_once_it_exists(
    pool: asyncpg.Pool,
) -> None:
    worker = uuid.uuid4()
    early = worker_deregistered(
        worker_id=worker, reason="DUPLICATE", effective_date=date(2026, 6, 10)
    )
    assert await deregistered(pool, early) == []
    events = await enrolled(pool, worker_enrolled(worker_id=worker, enrolled_on=date(2026, 6, 10)))
    assert [e.event_type for e in events][-1] == "policy.ended"
    assert "policy.activated" not in [e.event_type for e in events]  # nobody told "covered"
    assert await policies(pool, worker) == [(1, "ended", date(2026, 6, 10))]


async def test_a_deregistration_dated_before_cover_began_ends_the_policy_on_its_first_day(
    pool: asyncpg.Pool,
) -> None:
    worker = uuid.uuid4()
    await enrolled(pool, worker_enrolled(worker_id=worker, enrolled_on=date(2026, 6, 10)))
    await pool.execute(  # cover that began later than the enrolment (a late agreement)
        "UPDATE policies SET coverage_start = '2026-07-01' WHERE worker_id = $1", worker
    )
    died = worker_deregistered(worker_id=worker, reason="DIED", effective_date=date(2026, 6, 20))
    [ended] = await deregistered(pool, died)
    assert ended.coverage_end == date(2026, 7, 1)  # type: ignore[attr-defined]
    assert (await policies(pool, worker))[0][1] == "ended"


async def test_two_memberships_of_a_worker_in_one_batch_open_one_policy_after_the_other(
    pool: asyncpg.Pool,
) -> None:
    worker = uuid.uuid4()
    first = worker_enrolled(worker_id=worker, enrolled_on=date(2026, 6, 10))
    second = worker_enrolled(
        event_id=uuid.uuid4(), worker_id=worker, enrolled_on=date(2026, 9, 1), membership=2
    )
    async with pool.acquire() as conn, conn.transaction():
        events = await memberships.enrolled(conn, [second, first], TODAY)
        await enqueue_events(conn, events)
    assert await policies(pool, worker) == [(1, "ended", date(2026, 8, 31)), (2, "active", None)]


async def test_enrolling_again_opens_a_new_policy_under_the_same_worker(
    pool: asyncpg.Pool,
) -> None:
    worker = uuid.uuid4()
    first = worker_enrolled(worker_id=worker, enrolled_on=date(2026, 6, 10))
    await enrolled(pool, first)
    await deregistered(
        pool,
        worker_deregistered(worker_id=worker, reason="MOVED_OUT", effective_date=date(2026, 6, 30)),
    )
    again = worker_enrolled(
        event_id=uuid.uuid4(),
        worker_id=worker,
        enrolled_on=date(2026, 9, 1),
        membership=2,
        revision=3,
    )
    events = await enrolled(pool, again)
    assert await enrolled(pool, again) == []  # replayed: nothing new

    activated = [e for e in events if e.event_type == "policy.activated"]
    assert [e.membership for e in activated] == [2]  # type: ignore[attr-defined]
    assert await policies(pool, worker) == [(1, "ended", date(2026, 6, 30)), (2, "active", None)]
    assert await net_billed_months(pool, worker) == ["2026-06", "2026-09"]


async def test_enrolling_again_before_the_deregistration_is_read_closes_the_old_policy(
    pool: asyncpg.Pool,
) -> None:
    worker = uuid.uuid4()
    await enrolled(pool, worker_enrolled(worker_id=worker, enrolled_on=date(2026, 6, 10)))
    again = worker_enrolled(
        event_id=uuid.uuid4(),
        worker_id=worker,
        enrolled_on=date(2026, 9, 1),
        membership=2,
        revision=3,
    )
    await enrolled(pool, again)
    late = worker_deregistered(
        worker_id=worker, reason="MOVED_OUT", effective_date=date(2026, 8, 1)
    )
    assert await deregistered(pool, late) == []  # the old policy is already ended
    assert await policies(pool, worker) == [(1, "ended", date(2026, 8, 31)), (2, "active", None)]
