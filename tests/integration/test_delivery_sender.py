"""The notifications delivery loop on real PostgreSQL: leases, fencing, retries and the
events it records. Channels here are in-process fakes (named so); the real channels
against the stand-ins are in test_channels.py and the end-to-end tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from services.notifications import store
from services.notifications.app import SPEC
from services.notifications.domain import (
    ClaimedDelivery,
    DeliveryUpdate,
    Message,
    RetryPolicy,
    SendResult,
)
from services.notifications.sender import DeliverySender
from shared.db import create_pool
from shared.migrations import apply_migrations

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn, SPEC.name, SPEC.migrations)
    finally:
        await conn.close()
    pool = await create_pool(database_url, SPEC.name, min_size=1, max_size=5)
    yield pool
    await pool.close()


def message(channel: str = "email") -> Message:
    return Message(
        delivery_id=uuid.uuid4(),
        worker_id=uuid.uuid4(),
        channel=channel,  # type: ignore[arg-type]
        template="policy_activated",
        recipient="worker@example.com" if channel == "email" else "+6281234567890",
        subject="Perlindungan aktif",
        body="Anda terlindungi.",
        correlation_id="test",
        causation_id=None,
    )


async def queue(pool: asyncpg.Pool, *messages: Message) -> None:
    async with pool.acquire() as conn:
        assert await store.queue(conn, messages) == len(messages)


async def delivery_row(pool: asyncpg.Pool, delivery_id: uuid.UUID) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT status, attempts, last_error FROM deliveries WHERE delivery_id = $1", delivery_id
    )
    assert row is not None
    return row


async def outbox_topics(pool: asyncpg.Pool) -> list[str]:
    return [r["topic"] for r in await pool.fetch("SELECT topic FROM outbox ORDER BY id")]


async def test_a_result_from_an_expired_lease_is_not_recorded(pool: asyncpg.Pool) -> None:
    queued = message()
    await queue(pool, queued)
    async with pool.acquire() as conn:
        [first] = await store.claim_due(conn, 10, lease_s=0.2)
    await asyncio.sleep(0.4)
    async with pool.acquire() as conn:
        [second] = await store.claim_due(conn, 10, lease_s=60)
        assert (first.attempts, second.attempts) == (1, 2)
        stale = DeliveryUpdate(queued.delivery_id, first.attempts, "failed", None, "late", 0)
        assert await store.record(conn, [stale]) == set()
        fresh = DeliveryUpdate(queued.delivery_id, second.attempts, "sent", "id-2", None, 0)
        assert await store.record(conn, [fresh]) == {queued.delivery_id}
    row = await delivery_row(pool, queued.delivery_id)
    assert (row["status"], row["attempts"]) == ("sent", 2)


async def test_fake_channel_transient_failures_retry_then_send_once(pool: asyncpg.Pool) -> None:
    queued = message("sms")
    await queue(pool, queued)
    answers = [SendResult(ok=False, error="503"), SendResult(ok=False, error="503")]

    async def fake_sms(batch: Sequence[ClaimedDelivery]) -> list[SendResult]:
        return [answers.pop(0) if answers else SendResult(ok=True, provider_message_id="m-1")]

    sender = DeliverySender(
        pool, {"sms": fake_sms}, RetryPolicy(max_attempts=5, base_s=0.01, max_s=0.05)
    )
    for _ in range(50):
        await sender.send_batch()
        if (await delivery_row(pool, queued.delivery_id))["status"] == "sent":
            break
        await asyncio.sleep(0.05)
    row = await delivery_row(pool, queued.delivery_id)
    assert (row["status"], row["attempts"]) == ("sent", 3)
    assert await outbox_topics(pool) == ["notification.sent.v1"]


async def test_fake_channel_permanent_failure_fails_at_once(pool: asyncpg.Pool) -> None:
    queued = message("sms")
    await queue(pool, queued)

    async def fake_sms(batch: Sequence[ClaimedDelivery]) -> list[SendResult]:
        return [SendResult(ok=False, error="invalid_number", permanent=True) for _ in batch]

    sender = DeliverySender(pool, {"sms": fake_sms}, RetryPolicy())
    assert await sender.send_batch() == 1
    row = await delivery_row(pool, queued.delivery_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 1, "invalid_number")
    assert await outbox_topics(pool) == ["notification.failed.v1"]


async def test_fake_channel_slower_than_the_lease_gives_up_its_round(pool: asyncpg.Pool) -> None:
    """A round may not outlast its lease: past it another sender may send the same
    delivery, so the slow one stops and records nothing; the delivery is sent once."""
    queued = message()
    await queue(pool, queued)
    sends: list[str] = []

    def channel(name: str, delay_s: float):  # type: ignore[no-untyped-def]
        async def fake_email(batch: Sequence[ClaimedDelivery]) -> list[SendResult]:
            await asyncio.sleep(delay_s)
            sends.append(name)
            return [SendResult(ok=True, provider_message_id=name) for _ in batch]

        return fake_email

    slow = DeliverySender(pool, {"email": channel("slow", 5)}, RetryPolicy(), lease_s=0.5)
    fast = DeliverySender(pool, {"email": channel("fast", 0)}, RetryPolicy(), lease_s=30)
    assert await slow.send_batch() == 1  # gave up after 0.8 x lease, before sending
    await asyncio.sleep(0.3)  # the lease has expired
    assert await fast.send_batch() == 1
    row = await delivery_row(pool, queued.delivery_id)
    assert (row["status"], row["attempts"]) == ("sent", 2)
    assert sends == ["fast"]
    assert await outbox_topics(pool) == ["notification.sent.v1"]
