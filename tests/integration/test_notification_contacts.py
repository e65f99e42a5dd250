"""Notifications and a worker's contact over time, on a real PostgreSQL schema: the
newest revision's phone and email are used from then on, whichever event arrives first;
a worker enrolling again is confirmed again, once that membership's policy is in."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from services.notifications import service
from services.notifications.app import SPEC
from tests.conftest import ServicePool
from tests.factories import policy_activated, worker_details_changed, worker_enrolled

pytestmark = pytest.mark.integration

HELP_LINE = "0343-000000"


@pytest.fixture
async def pool(service_pool: ServicePool) -> asyncpg.Pool:
    return await service_pool(SPEC, max_size=2)


async def recipients(pool: asyncpg.Pool, worker_id: uuid.UUID) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        """SELECT channel, recipient FROM deliveries
           WHERE worker_id = $1 ORDER BY created_at, channel""",
        worker_id,
    )
    return [(r["channel"], r["recipient"]) for r in rows]


async def test_a_new_phone_is_used_for_messages_not_yet_sent_and_later_ones(
    pool: asyncpg.Pool,
) -> None:
    worker = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        enrolment = worker_enrolled(worker_id=worker, email=None)
        await service.contacts_received(conn, [enrolment], HELP_LINE)
        await service.policies_received(conn, [policy_activated(worker_id=worker)], HELP_LINE)
    assert await recipients(pool, worker) == [("sms", "+6281234567890")]

    newer = worker_details_changed(worker_id=worker, phone_e164="+6281311112222", revision=3)
    older = worker_details_changed(
        event_id=uuid.uuid4(), worker_id=worker, phone_e164="+6281300000000", revision=2
    )
    async with pool.acquire() as conn, conn.transaction():
        await service.details_changed(conn, [newer])
    async with pool.acquire() as conn, conn.transaction():
        await service.details_changed(conn, [older])  # read late: it changes nothing
    assert await recipients(pool, worker) == [("sms", "+6281311112222")]
    phone = await pool.fetchval("SELECT phone_e164 FROM confirmations WHERE worker_id = $1", worker)
    assert phone == "+6281311112222"


async def test_a_change_read_before_the_enrolment_wins_over_the_older_contact(
    pool: asyncpg.Pool,
) -> None:
    worker = uuid.uuid4()
    changed = worker_details_changed(
        worker_id=worker, phone_e164="+6281311112222", email="new@example.com", revision=2
    )
    async with pool.acquire() as conn, conn.transaction():
        await service.details_changed(conn, [changed])
        await service.policies_received(conn, [policy_activated(worker_id=worker)], HELP_LINE)
        await service.contacts_received(
            conn, [worker_enrolled(worker_id=worker, email="old@example.com")], HELP_LINE
        )
    assert sorted(await recipients(pool, worker)) == [
        ("email", "new@example.com"),
        ("sms", "+6281311112222"),
    ]


async def test_a_second_membership_is_confirmed_once_its_own_policy_arrives(
    pool: asyncpg.Pool,
) -> None:
    worker = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        first = worker_enrolled(worker_id=worker, email=None)
        await service.contacts_received(conn, [first], HELP_LINE)
        await service.policies_received(conn, [policy_activated(worker_id=worker)], HELP_LINE)
        again = worker_enrolled(
            event_id=uuid.uuid4(),
            worker_id=worker,
            membership=2,
            revision=3,
            phone_e164="+6281399998888",
            email=None,
        )
        queued = await service.contacts_received(conn, [again], HELP_LINE)
        assert queued == 0  # the old policy does not confirm the new membership
        new_policy = policy_activated(
            event_id=uuid.uuid4(), worker_id=worker, policy_id=uuid.uuid4(), membership=2
        )
        assert await service.policies_received(conn, [new_policy], HELP_LINE) == 1
        stale = policy_activated(event_id=uuid.uuid4(), worker_id=worker)  # membership 1
        assert await service.policies_received(conn, [stale], HELP_LINE) == 0
    assert await recipients(pool, worker) == [
        ("sms", "+6281234567890"),
        ("sms", "+6281399998888"),
    ]


async def test_the_policy_half_first_then_the_enrolment_queues_the_confirmation(
    pool: asyncpg.Pool,
) -> None:
    worker = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await service.policies_received(conn, [policy_activated(worker_id=worker)], HELP_LINE)
        enrolment = worker_enrolled(worker_id=worker, email=None)
        assert await service.contacts_received(conn, [enrolment], HELP_LINE) == 1
    assert await recipients(pool, worker) == [("sms", "+6281234567890")]


async def test_one_batch_with_two_changes_and_two_memberships_of_a_worker_applies_the_newest(
    pool: asyncpg.Pool,
) -> None:
    """One upsert may not touch a row twice: the newest of a worker's events in a batch
    is the one applied."""
    worker = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await service.details_changed(
            conn,
            [
                worker_details_changed(worker_id=worker, phone_e164="+6281311110003", revision=3),
                worker_details_changed(
                    event_id=uuid.uuid4(),
                    worker_id=worker,
                    phone_e164="+6281311110002",
                    revision=2,
                ),
            ],
        )
        first = worker_enrolled(worker_id=worker, email=None)
        second = worker_enrolled(
            event_id=uuid.uuid4(),
            worker_id=worker,
            membership=2,
            revision=4,
            email=None,
            phone_e164="+6281311110004",
        )
        await service.contacts_received(conn, [first, second], HELP_LINE)
        policy = policy_activated(worker_id=worker, policy_id=uuid.uuid4(), membership=2)
        old = policy_activated(event_id=uuid.uuid4(), worker_id=worker)
        assert await service.policies_received(conn, [old, policy], HELP_LINE) == 1
    assert await recipients(pool, worker) == [("sms", "+6281311110004")]
