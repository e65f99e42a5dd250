"""The notifications delivery loop on real PostgreSQL: leases, fencing, retries and the
events it records. Channels here are in-process fakes (named so); the real channels
against the stand-ins are in test_channels.py and the end-to-end tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import asyncpg
import httpx
import pytest

import infra
from devtools.serving import serve_app
from devtools.sms_gateway import create_app
from services.notifications import store
from services.notifications.app import SPEC
from services.notifications.channels import SmsGateway
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
        """SELECT status, attempts, last_error, uncertain_sends FROM deliveries
           WHERE delivery_id = $1""",
        delivery_id,
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


async def test_fake_channel_slower_than_the_round_is_recorded_as_unknown(
    pool: asyncpg.Pool,
) -> None:
    """A round's sends may not outlast its lease (past it another sender may claim the
    same deliveries). A send without an answer by then may have been taken: it is
    recorded as an uncertain attempt and retried later with the same key, counted
    against max_attempts; what finished is recorded as usual."""
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
    assert (email["status"], email["attempts"], email["uncertain_sends"]) == ("retrying", 1, 1)
    assert email["last_error"] == (
        "outcome unknown, will retry with the same key: no answer within the round"
    )
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


async def test_each_chunk_is_recorded_as_soon_as_it_returns(pool: asyncpg.Pool) -> None:
    """Results are not held until the whole round ends: a slow chunk does not keep a
    quick one's results (and so the knowledge that it was sent) waiting."""
    slow_email, quick_sms = message("email"), message("sms")
    await queue(pool, slow_email, quick_sms)
    release = asyncio.Event()

    async def fake_email(batch: Sequence[ClaimedDelivery]) -> list[SendResult]:
        await release.wait()
        return [SendResult(ok=True) for _ in batch]

    async def fake_sms(batch: Sequence[ClaimedDelivery]) -> list[SendResult]:
        return [SendResult(ok=True, provider_message_id="m") for _ in batch]

    sender = DeliverySender(pool, {"email": fake_email, "sms": fake_sms}, RetryPolicy())
    round_ = asyncio.create_task(sender.send_batch())
    for _ in range(100):
        if (await delivery_row(pool, quick_sms.delivery_id))["status"] == "sent":
            break
        await asyncio.sleep(0.02)
    assert (await delivery_row(pool, quick_sms.delivery_id))["status"] == "sent"
    assert (await delivery_row(pool, slow_email.delivery_id))["status"] == "sending"
    release.set()
    assert await round_ == 2
    assert (await delivery_row(pool, slow_email.delivery_id))["status"] == "sent"


async def test_a_delivery_claimed_but_never_sent_is_sent_again_without_doubt(
    pool: asyncpg.Pool,
) -> None:
    """A sender that died holding deliveries: those it never marked 'sending' are known
    not to have left; those it had marked may have (counted as uncertain)."""
    never_sent, maybe_sent = message("sms"), message("sms")
    await queue(pool, never_sent, maybe_sent)
    async with pool.acquire() as conn:
        claimed = await store.claim_due(conn, 10, lease_s=0.2)
        assert len(claimed) == 2
        [marked] = [d for d in claimed if d.delivery_id == maybe_sent.delivery_id]
        assert await store.mark_sending(conn, [marked]) == {maybe_sent.delivery_id}
    await asyncio.sleep(0.3)  # the sender "died": its lease runs out
    async with pool.acquire() as conn:
        again = await store.claim_due(conn, 10, lease_s=60)
    assert {d.delivery_id for d in again} == {never_sent.delivery_id, maybe_sent.delivery_id}
    assert (await delivery_row(pool, never_sent.delivery_id))["uncertain_sends"] == 0
    assert (await delivery_row(pool, maybe_sent.delivery_id))["uncertain_sends"] == 1


async def test_a_stale_attempt_cannot_mark_a_delivery_sending(pool: asyncpg.Pool) -> None:
    queued = message("sms")
    await queue(pool, queued)
    async with pool.acquire() as conn:
        [first] = await store.claim_due(conn, 10, lease_s=0.1)
    await asyncio.sleep(0.2)
    async with pool.acquire() as conn:
        assert await store.mark_sending(conn, [first]) == set(), "its lease ran out"
        [second] = await store.claim_due(conn, 10, lease_s=60)
        assert await store.mark_sending(conn, [first]) == set(), "another attempt holds it"
        assert await store.mark_sending(conn, [second]) == {queued.delivery_id}


async def test_results_are_recorded_after_a_database_outage_and_nothing_is_sent_twice(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """The issue's case: the database goes away while a chunk is at the provider. The
    results are kept and recorded once it is back (within the lease), so the chunk is
    not sent again: the real SMS adapter against the gateway stand-in, which counts
    every repeated idempotency key as a duplicate."""
    messages = [message("sms") for _ in range(5)]
    await queue(pool, *messages)
    database = database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(infra.admin_dsn())

    async def set_outage(on: bool) -> None:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(not on).lower()}')
        if on:
            await admin.execute(
                """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                   WHERE datname = $1 AND pid <> pg_backend_pid()""",
                database,
            )

    restored: list[asyncio.Task[None]] = []
    try:
        async with serve_app(create_app()) as gateway_url:
            gateway = SmsGateway(gateway_url, "PERISAI")

            async def sms_during_an_outage(batch: Sequence[ClaimedDelivery]) -> list[SendResult]:
                await set_outage(True)
                results = await gateway.send_many(batch)

                async def restore_later() -> None:
                    await asyncio.sleep(2)
                    await set_outage(False)

                restored.append(asyncio.create_task(restore_later()))
                return results

            sender = DeliverySender(
                pool,
                {"sms": sms_during_an_outage},
                RetryPolicy(),
                chunk_sizes={"sms": 100},  # one gateway request, as in production
                lease_s=8,
            )
            assert await sender.send_batch() == 5
            await asyncio.gather(*restored)
            rows = [await delivery_row(pool, m.delivery_id) for m in messages]
            assert {(r["status"], r["attempts"]) for r in rows} == {("sent", 1)}

            # Well past the lease: nothing is due again, and the gateway saw each once.
            await asyncio.sleep(1)
            assert (
                await DeliverySender(pool, {"sms": gateway.send_many}, RetryPolicy()).send_batch()
                == 0
            )
            async with httpx.AsyncClient(base_url=gateway_url) as client:
                stats = (await client.get("/v1/stats")).json()
            await gateway.aclose()
        assert stats == {"accepted": 5, "duplicates": 0, "rejected": 0}
    finally:
        await set_outage(False)
        await admin.close()


async def test_odd_provider_answers_are_recorded_with_the_rest_of_the_chunk(
    pool: asyncpg.Pool,
) -> None:
    """Fake channel answering what real providers have sent: a numeric message id, an
    error with a NUL, an SMTP reply that was not UTF-8 (kept as surrogate escapes). None
    of them may cost the chunk its results (and so a second send of all of it)."""
    messages = [message("sms") for _ in range(4)]
    await queue(pool, *messages)
    answers = [
        SendResult(ok=True, provider_message_id=12345),  # type: ignore[arg-type]
        SendResult(ok=False, error="rejected \x00 by carrier", permanent=True),
        SendResult(ok=False, error="452 \udcff\udcfe mailbox busy"),
        SendResult(ok=True, provider_message_id="m-4"),
    ]

    async def fake_sms(batch: Sequence[ClaimedDelivery]) -> list[SendResult]:
        return answers[: len(batch)]

    sender = DeliverySender(pool, {"sms": fake_sms}, RetryPolicy(), chunk_sizes={"sms": 100})
    assert await sender.send_batch() == 4
    statuses = [(await delivery_row(pool, m.delivery_id))["status"] for m in messages]
    assert statuses == ["sent", "failed", "retrying", "sent"]
    errors = [(await delivery_row(pool, m.delivery_id))["last_error"] for m in messages]
    assert errors[1] == "rejected \\x00 by carrier"
    assert errors[2] == "452 \\udcff\\udcfe mailbox busy"
    assert sorted(await outbox_topics(pool)) == [
        "notification.failed.v1",
        "notification.sent.v1",
        "notification.sent.v1",
    ]


async def test_a_chunk_whose_turn_does_not_come_in_the_round_is_given_back(
    pool: asyncpg.Pool,
) -> None:
    """One slot, a slow first chunk: the second never reaches the provider in this
    round, so it is handed back at once, its attempt not counted, instead of waiting
    out a lease."""
    first, second = message("email"), message("email")
    await queue(pool, first, second)
    calls: list[uuid.UUID] = []

    async def fake_slow_email(batch: Sequence[ClaimedDelivery]) -> list[SendResult]:
        calls.extend(d.delivery_id for d in batch)
        await asyncio.sleep(0.6)
        return [SendResult(ok=True) for _ in batch]

    sender = DeliverySender(
        pool, {"email": fake_slow_email}, RetryPolicy(), concurrency={"email": 1}, lease_s=0.5
    )
    assert await sender.send_batch() == 2
    [sent_first] = calls
    other = second if sent_first == first.delivery_id else first
    row = await delivery_row(pool, other.delivery_id)
    assert (row["status"], row["attempts"], row["uncertain_sends"]) == ("queued", 0, 0)
