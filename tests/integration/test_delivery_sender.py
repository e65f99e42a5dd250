"""The notifications delivery loop on real PostgreSQL: leases, fencing, retries and the
events it records. Channels here are in-process fakes (named so); the real channels
against the stand-ins are in test_channels.py and the end-to-end tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

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
from tests.conftest import ServicePool

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(service_pool: ServicePool) -> asyncpg.Pool:
    return await service_pool(SPEC)


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


async def test_fake_channel_slower_than_the_round_is_recorded_as_unfinished(
    pool: asyncpg.Pool,
) -> None:
    """A round may not outlast its lease (past it another sender may claim the same
    deliveries). What has not finished by then is recorded as a transient failure and
    retried later, counted against max_attempts; what finished is recorded as usual."""
    slow_email, quick_sms = message("email"), message("sms")
    await queue(pool, slow_email, quick_sms)

    async def fake_email(batch: Sequence[ClaimedDelivery]) -> list[SendResult]:
        await asyncio.sleep(5)
        return [SendResult(ok=True) for _ in batch]

    async def fake_sms(batch: Sequence[ClaimedDelivery]) -> list[SendResult]:
        return [SendResult(ok=True, provider_message_id="m") for _ in batch]

    sender = DeliverySender(
        pool, {"email": fake_email, "sms": fake_sms}, RetryPolicy(), lease_s=0.5
    )
    assert await sender.send_batch() == 2  # returns after 0.8 x lease
    email = await delivery_row(pool, slow_email.delivery_id)
    assert (email["status"], email["attempts"]) == ("retrying", 1)
    assert email["last_error"] == "send did not finish within the round"
    assert (await delivery_row(pool, quick_sms.delivery_id))["status"] == "sent"
    assert await outbox_topics(pool) == ["notification.sent.v1"]


async def test_a_delivery_whose_sender_died_on_every_attempt_fails_with_its_event(
    pool: asyncpg.Pool,
) -> None:
    queued = message("sms")
    await queue(pool, queued)
    policy = RetryPolicy(max_attempts=2, base_s=0.01, max_s=0.01)
    for _ in range(policy.max_attempts):  # each time the sender "dies" holding it
        async with pool.acquire() as conn:
            assert len(await store.claim_due(conn, 10, 0.05, policy.max_attempts)) == 1
        await asyncio.sleep(0.1)

    async def fake_sms_never_called(batch: Sequence[ClaimedDelivery]) -> list[SendResult]:
        raise AssertionError("an abandoned delivery must not be sent again")

    sender = DeliverySender(pool, {"sms": fake_sms_never_called}, policy)
    assert await sender.send_batch() == 0
    row = await delivery_row(pool, queued.delivery_id)
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert await outbox_topics(pool) == ["notification.failed.v1"]
