"""The outbox relay against a real PostgreSQL and the real Kafka broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from shared.kafka import ensure_topics, new_producer
from shared.outbox import OutboxRecord, enqueue
from shared.relay import OutboxRelay
from tests.integration.kafka_helpers import eventually, read_topic

pytestmark = pytest.mark.integration

SCHEMA = "testsvc"  # the schema of the shared_schema_pool fixture
TOPIC = "relay.test.v1"


def record(key: str, n: int, topic: str = TOPIC) -> OutboxRecord:
    return OutboxRecord(
        topic=topic,
        key=key.encode(),
        value=json.dumps({"key": key, "n": n}).encode(),
        headers=[("n", str(n).encode()), ("key", key.encode())],
        event_id=uuid.uuid4(),
    )


async def outbox_count(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM outbox")  # type: ignore[no-any-return]


async def drained(pool: asyncpg.Pool, relay: OutboxRelay) -> tuple[int, int]:
    """Rows left in the outbox, and what the relay counts as published. A test reads
    the count once both settle: the row leaves the outbox at the commit, the count
    follows a moment later."""
    return await outbox_count(pool), relay.published


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(relay.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


def producer_factory(bootstrap: str) -> Callable[[], AIOKafkaProducer]:
    return lambda: new_producer(bootstrap, "perisai-test-relay")


async def test_publishes_in_order_per_key_and_deletes(
    shared_schema_pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, [topic_prefix + TOPIC], partitions=4)
    keys = [f"worker-{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
    records = [record(key, n) for n in range(6) for key in keys]  # interleaved keys
    async with shared_schema_pool.acquire() as conn:
        await enqueue(conn, records)

    relay = OutboxRelay(
        shared_schema_pool, SCHEMA, producer_factory(kafka_bootstrap), topic_prefix=topic_prefix
    )
    async with running(relay):
        await eventually(
            lambda: drained(shared_schema_pool, relay),
            lambda state: state == (0, len(records)),
            timeout_s=15,
            what="the relay to empty the outbox and count what it published",
        )
    assert relay.published == len(records)

    received = await read_topic(kafka_bootstrap, topic_prefix + TOPIC, at_least=len(records))
    assert len(received) == len(records)
    by_key: dict[bytes, list[int]] = defaultdict(list)
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    expected = {r.value: r for r in records}
    for message in received:
        sent = expected[message.value]
        assert message.key == sent.key
        assert list(message.headers) == list(sent.headers)
        by_key[message.key].append(json.loads(message.value)["n"])
        partitions_of_key[message.key].add(message.partition)
    assert by_key == {key.encode(): list(range(6)) for key in keys}, "order per key broken"
    assert all(len(p) == 1 for p in partitions_of_key.values()), "one key, one partition"


async def wait_for_listener(pool: asyncpg.Pool) -> None:
    """Until the relay's LISTEN connection is registered (bounded)."""
    await eventually(
        lambda: pool.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND query ILIKE 'LISTEN%outbox_testsvc%'"""
        ),
        bool,
        timeout_s=10,
        what="the relay to LISTEN on outbox_testsvc",
    )


async def test_notify_wakes_the_relay_long_before_the_poll_interval(
    shared_schema_pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, [topic_prefix + TOPIC], partitions=1)
    relay = OutboxRelay(
        shared_schema_pool,
        SCHEMA,
        producer_factory(kafka_bootstrap),
        poll_interval_s=30.0,
        topic_prefix=topic_prefix,
    )
    async with running(relay):
        await wait_for_listener(shared_schema_pool)
        # The first round found nothing; the relay now sleeps up to 30 s unless woken.
        await asyncio.sleep(0.2)
        assert relay.published == 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with shared_schema_pool.acquire() as conn:
            await enqueue(conn, [record("late", 1)])
        [message] = await read_topic(kafka_bootstrap, topic_prefix + TOPIC, at_least=1, timeout_s=5)
        elapsed = loop.time() - started
    assert message.key == b"late"
    assert elapsed < 5, f"took {elapsed:.1f} s: the NOTIFY did not wake the relay"


async def test_unreachable_kafka_keeps_rows_then_real_broker_publishes_them(
    shared_schema_pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, [topic_prefix + TOPIC], partitions=2)
    records = [record(f"k{n % 3}", n) for n in range(10)]
    async with shared_schema_pool.acquire() as conn:
        await enqueue(conn, records)

    attempts = 0

    def unreachable() -> AIOKafkaProducer:
        nonlocal attempts
        attempts += 1
        return AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", request_timeout_ms=1000)

    dead_relay = OutboxRelay(
        shared_schema_pool, SCHEMA, unreachable, send_timeout_s=2.0, topic_prefix=topic_prefix
    )
    async with running(dead_relay):

        async def tries() -> int:
            return attempts

        await eventually(tries, lambda n: n >= 2, timeout_s=15, what="two failed relay rounds")
        assert await outbox_count(shared_schema_pool) == len(records), "rows lost"
    assert dead_relay.published == 0
    assert await outbox_count(shared_schema_pool) == len(records)

    relay = OutboxRelay(
        shared_schema_pool, SCHEMA, producer_factory(kafka_bootstrap), topic_prefix=topic_prefix
    )
    async with running(relay):
        await eventually(
            lambda: outbox_count(shared_schema_pool),
            lambda n: n == 0,
            timeout_s=15,
            what="the relay to empty the outbox after the outage",
        )
    received = await read_topic(kafka_bootstrap, topic_prefix + TOPIC, at_least=len(records))
    assert sorted(m.value for m in received) == sorted(r.value for r in records)


async def test_more_rows_than_batch_size_are_fully_drained(
    shared_schema_pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    other = "relay.other.v1"
    await ensure_topics(kafka_bootstrap, [topic_prefix + TOPIC, topic_prefix + other])
    records = [record(f"k{n % 7}", n, TOPIC if n % 4 else other) for n in range(237)]
    async with shared_schema_pool.acquire() as conn:
        await enqueue(conn, records)

    # A long poll interval: only "a full batch means look again at once" can drain it fast.
    relay = OutboxRelay(
        shared_schema_pool,
        SCHEMA,
        producer_factory(kafka_bootstrap),
        batch_size=50,
        poll_interval_s=30.0,
        topic_prefix=topic_prefix,
    )
    async with running(relay):
        await eventually(
            lambda: drained(shared_schema_pool, relay),
            lambda state: state == (0, 237),
            timeout_s=10,
            what="the relay to drain 237 rows in batches of 50",
        )
    assert relay.published == 237
    main = await read_topic(kafka_bootstrap, topic_prefix + TOPIC, at_least=177)
    side = await read_topic(kafka_bootstrap, topic_prefix + other, at_least=60)
    assert sorted(m.value for m in main + side) == sorted(r.value for r in records)


async def test_drain_at_shutdown_publishes_what_is_left(
    shared_schema_pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, [topic_prefix + TOPIC])
    records = [record(f"k{n % 3}", n) for n in range(120)]
    async with shared_schema_pool.acquire() as conn:
        await enqueue(conn, records)
    relay = OutboxRelay(
        shared_schema_pool,
        SCHEMA,
        producer_factory(kafka_bootstrap),
        batch_size=50,
        topic_prefix=topic_prefix,
    )
    await relay.drain(timeout_s=20)  # not running: exactly what a stopping service does
    assert await outbox_count(shared_schema_pool) == 0
    assert relay.published == 120
    published = await read_topic(kafka_bootstrap, topic_prefix + TOPIC, at_least=120)
    assert sorted(m.value for m in published) == sorted(r.value for r in records)


async def test_a_row_kafka_refuses_for_good_is_parked_and_the_rest_published(
    shared_schema_pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, [topic_prefix + TOPIC])
    too_large = OutboxRecord(topic=TOPIC, value=b"x" * 2_000_000, key=b"big")
    records = [record("a", 1), too_large, record("a", 2)]
    async with shared_schema_pool.acquire() as conn:
        await enqueue(conn, records)
    relay = OutboxRelay(
        shared_schema_pool, SCHEMA, producer_factory(kafka_bootstrap), topic_prefix=topic_prefix
    )
    await relay.drain(timeout_s=20)

    assert await outbox_count(shared_schema_pool) == 0
    [parked] = await shared_schema_pool.fetch("SELECT key, reason, value FROM outbox_parked")
    assert parked["key"] == b"big" and "MessageSizeTooLarge" in parked["reason"]
    assert parked["value"] == too_large.value
    published = await read_topic(kafka_bootstrap, topic_prefix + TOPIC, at_least=2)
    assert [m.value for m in published] == [records[0].value, records[2].value]


async def test_a_row_the_client_cannot_even_encode_is_parked_and_the_rest_published(
    shared_schema_pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """aiokafka refuses to send a record with neither key nor value (an assertion, not a
    Kafka error): without parking, that row would fail every round and hold up every
    row behind it."""
    await ensure_topics(kafka_bootstrap, [topic_prefix + TOPIC])
    neither = OutboxRecord(topic=TOPIC, value=None, key=None, headers=[("h", None)])
    records = [record("a", 1), neither, record("a", 2)]
    async with shared_schema_pool.acquire() as conn:
        await enqueue(conn, records)
    relay = OutboxRelay(
        shared_schema_pool, SCHEMA, producer_factory(kafka_bootstrap), topic_prefix=topic_prefix
    )
    await relay.drain(timeout_s=20)

    assert await outbox_count(shared_schema_pool) == 0
    [parked] = await shared_schema_pool.fetch("SELECT key, value, reason FROM outbox_parked")
    assert (parked["key"], parked["value"]) == (None, None)
    assert "key or value" in parked["reason"]
    published = await read_topic(kafka_bootstrap, topic_prefix + TOPIC, at_least=2)
    assert [m.value for m in published] == [records[0].value, records[2].value]


async def test_null_header_values_are_published_as_null(
    shared_schema_pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, [topic_prefix + TOPIC])
    letter = OutboxRecord(topic=TOPIC, value=None, key=b"k", headers=[("x", None), ("y", b"")])
    async with shared_schema_pool.acquire() as conn:
        await enqueue(conn, [letter])
    relay = OutboxRelay(
        shared_schema_pool, SCHEMA, producer_factory(kafka_bootstrap), topic_prefix=topic_prefix
    )
    await relay.drain(timeout_s=20)
    [published] = await read_topic(kafka_bootstrap, topic_prefix + TOPIC, at_least=1)
    assert (published.key, published.value) == (b"k", None)
    assert list(published.headers) == [("x", None), ("y", b"")]
