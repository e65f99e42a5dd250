"""Outbox rows that stand for many records (a record source), published by the relay
against a real PostgreSQL and the real Kafka broker."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError

from shared.kafka import ensure_topics, new_producer
from shared.outbox import (
    OutboxRecord,
    RecordSource,
    SourcePage,
    UnknownSource,
    enqueue,
    enqueue_source,
    waiting_records,
)
from shared.relay import OutboxRelay
from tests.integration.kafka_helpers import read_topic

pytestmark = pytest.mark.integration

SCHEMA = "testsvc"  # the schema of the shared_schema_pool fixture
TOPIC = "relay.sources.v1"
SOURCE = "test.numbers"


class Numbers:
    """Records 0..count-1 of a key, computed from the row's arguments; the cursor is the
    last number read. ``oversized`` numbers get a value Kafka refuses."""

    def __init__(self) -> None:
        self.reads = 0

    async def read(
        self, conn: asyncpg.Connection, args: Mapping[str, Any], cursor: str | None, limit: int
    ) -> SourcePage:
        self.reads += 1
        start = 0 if cursor is None else int(cursor) + 1
        numbers = range(start, min(args["count"], start + limit))
        records = [
            OutboxRecord(
                topic=TOPIC,
                key=args["key"].encode(),
                value=(
                    b"x" * 2_000_000
                    if n in args.get("oversized", [])
                    else json.dumps({"key": args["key"], "n": n}).encode()
                ),
                headers=[("n", str(n).encode())],
                event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{args['key']}:{n}"),
            )
            for n in numbers
        ]
        return SourcePage(records, str(numbers[-1]) if numbers else None)


async def waiting(pool: asyncpg.Pool) -> int:
    """Rows of both outbox tables."""
    return await pool.fetchval(  # type: ignore[no-any-return]
        "SELECT (SELECT count(*) FROM outbox) + (SELECT count(*) FROM outbox_sources)"
    )


def plain(key: str, n: int) -> OutboxRecord:
    return OutboxRecord(
        topic=TOPIC, key=key.encode(), value=json.dumps({"key": key, "n": n}).encode()
    )


def relay_of(
    pool: asyncpg.Pool,
    factory: Callable[[], AIOKafkaProducer],
    sources: Mapping[str, RecordSource],
    prefix: str,
) -> OutboxRelay:
    return OutboxRelay(pool, SCHEMA, factory, batch_size=50, topic_prefix=prefix, sources=sources)


def numbers_of(messages: list[Any], key: str) -> list[int]:
    return [json.loads(m.value)["n"] for m in messages if m.key == key.encode()]


async def test_a_source_row_publishes_its_records_in_place_in_pages(
    shared_schema_pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, [topic_prefix + TOPIC], partitions=2)
    key = f"k-{uuid.uuid4().hex[:8]}"
    numbers = Numbers()
    async with shared_schema_pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [plain(key, -1)])
        await enqueue_source(conn, SOURCE, TOPIC, {"key": key, "count": 237})
        await enqueue(conn, [plain(key, 1000)])

    async with shared_schema_pool.acquire() as conn:
        listed = await waiting_records(conn, {SOURCE: numbers})
    assert [json.loads(r.value or b"")["n"] for r in listed] == [-1, *range(237), 1000]

    relay = relay_of(
        shared_schema_pool,
        lambda: new_producer(kafka_bootstrap, "perisai-test-relay"),
        {SOURCE: numbers},
        topic_prefix,
    )
    numbers.reads = 0
    await relay.drain(timeout_s=30)

    assert await waiting(shared_schema_pool) == 0
    assert relay.published == 239
    assert numbers.reads == 5, "237 records after one row, in pages of the batch size (50)"
    received = await read_topic(kafka_bootstrap, topic_prefix + TOPIC, at_least=239)
    assert numbers_of(received, key) == [-1, *range(237), 1000]
    first = next(m for m in received if m.key == key.encode() and m.headers)
    assert list(first.headers) == [("n", b"0")]


async def test_a_failed_round_resumes_from_the_last_committed_page(
    shared_schema_pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Kafka fails in the third page: the pages before it stay published (the row keeps
    its place), the third is sent again whole, nothing is lost and nothing is out of order
    for the key apart from the repeated records of the failed page."""
    await ensure_topics(kafka_bootstrap, [topic_prefix + TOPIC], partitions=1)
    key = f"k-{uuid.uuid4().hex[:8]}"
    async with shared_schema_pool.acquire() as conn:
        await enqueue_source(conn, SOURCE, TOPIC, {"key": key, "count": 180})
    producers = 0

    class FailsAtSend120:
        def __init__(self, inner: AIOKafkaProducer) -> None:
            self.inner, self.sent = inner, 0

        async def start(self) -> None:
            await self.inner.start()

        async def stop(self) -> None:
            await self.inner.stop()

        async def send(self, *args: Any, **kwargs: Any) -> Any:
            self.sent += 1
            if self.sent == 120:
                raise KafkaTimeoutError("injected")
            return await self.inner.send(*args, **kwargs)

    def factory() -> AIOKafkaProducer:
        nonlocal producers
        producers += 1
        producer = new_producer(kafka_bootstrap, "perisai-test-relay")
        return cast(AIOKafkaProducer, FailsAtSend120(producer)) if producers == 1 else producer

    relay = relay_of(shared_schema_pool, factory, {SOURCE: Numbers()}, topic_prefix)
    assert await relay.publish_batch() == 50
    assert await relay.publish_batch() == 50
    with pytest.raises(KafkaTimeoutError):
        await relay.publish_batch()
    cursor = await shared_schema_pool.fetchval("SELECT source_cursor FROM outbox_sources")
    assert cursor == "99", "the failed page left the row's place where it was"
    await relay.drain(timeout_s=30)

    assert await waiting(shared_schema_pool) == 0
    received = numbers_of(
        await read_topic(kafka_bootstrap, topic_prefix + TOPIC, at_least=199), key
    )
    assert received == [*range(100), *range(100, 119), *range(100, 180)]


async def test_a_row_naming_a_source_the_relay_lacks_stays_and_says_why(
    shared_schema_pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, [topic_prefix + TOPIC])
    async with shared_schema_pool.acquire() as conn:
        await enqueue_source(conn, SOURCE, TOPIC, {"key": "k", "count": 3})
    factory = lambda: new_producer(kafka_bootstrap, "perisai-test-relay")  # noqa: E731
    without = relay_of(shared_schema_pool, factory, {}, topic_prefix)
    with pytest.raises(UnknownSource, match=r"'test\.numbers'.*deploy the service version"):
        await without.publish_batch()
    assert await waiting(shared_schema_pool) == 1

    with_it = relay_of(shared_schema_pool, factory, {SOURCE: Numbers()}, topic_prefix)
    await with_it.drain(timeout_s=20)
    assert with_it.published == 3
    assert await waiting(shared_schema_pool) == 0


async def test_a_source_record_kafka_refuses_for_good_is_parked_with_its_content(
    shared_schema_pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, [topic_prefix + TOPIC])
    key = f"k-{uuid.uuid4().hex[:8]}"
    async with shared_schema_pool.acquire() as conn:
        await enqueue(conn, [plain(key, -1)])
        await enqueue_source(conn, SOURCE, TOPIC, {"key": key, "count": 4, "oversized": [2]})
    relay = relay_of(
        shared_schema_pool,
        lambda: new_producer(kafka_bootstrap, "perisai-test-relay"),
        {SOURCE: Numbers()},
        topic_prefix,
    )
    await relay.drain(timeout_s=20)

    assert relay.published == 4
    [parked] = await shared_schema_pool.fetch(
        "SELECT id, event_id, key, value, headers::text AS headers, reason FROM outbox_parked"
    )
    assert (parked["key"], len(parked["value"])) == (key.encode(), 2_000_000)
    assert parked["event_id"] == uuid.uuid5(uuid.NAMESPACE_URL, f"{key}:2")
    assert json.loads(parked["headers"]) == [["6e", b"2".hex()]]
    assert "MessageSizeTooLarge" in parked["reason"]
    assert "a record of outbox source row" in parked["reason"]
    ids = await shared_schema_pool.fetchval("SELECT last_value FROM outbox_id_seq")
    assert parked["id"] == ids, "parked under a new id from the outbox's own sequence"
    received = await read_topic(kafka_bootstrap, topic_prefix + TOPIC, at_least=4)
    assert numbers_of(received, key) == [-1, 0, 1, 3]


async def test_rows_that_fill_the_batch_hold_the_source_back_until_their_turn(
    shared_schema_pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, [topic_prefix + TOPIC], partitions=1)
    key = f"k-{uuid.uuid4().hex[:8]}"
    numbers = Numbers()
    async with shared_schema_pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [plain(key, -n) for n in range(60, 0, -1)])  # more than a batch
        await enqueue_source(conn, SOURCE, TOPIC, {"key": key, "count": 50})
        await enqueue(conn, [plain(key, 1000)])
    relay = relay_of(
        shared_schema_pool,
        lambda: new_producer(kafka_bootstrap, "perisai-test-relay"),
        {SOURCE: numbers},
        topic_prefix,
    )

    assert await relay.publish_batch() == 50
    assert numbers.reads == 0, "no room left: the source is not read"
    assert await relay.publish_batch() == 50  # the last 10 rows, then 40 of the source
    assert await shared_schema_pool.fetchval("SELECT source_cursor FROM outbox_sources") == "39"
    assert await relay.publish_batch() == 10  # its last 10 records: the row is retired
    assert await relay.publish_batch() == 1
    assert await relay.publish_batch() == 0
    assert await waiting(shared_schema_pool) == 0
    received = await read_topic(kafka_bootstrap, topic_prefix + TOPIC, at_least=111)
    assert numbers_of(received, key) == [*range(-60, 0), *range(50), 1000]


async def test_a_source_ending_on_a_page_boundary_does_not_stop_a_drain(
    shared_schema_pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, [topic_prefix + TOPIC], partitions=1)
    key = f"k-{uuid.uuid4().hex[:8]}"
    async with shared_schema_pool.acquire() as conn, conn.transaction():
        await enqueue_source(conn, SOURCE, TOPIC, {"key": key, "count": 100})
        await enqueue_source(conn, SOURCE, TOPIC, {"key": key, "count": 0})
        await enqueue(conn, [plain(key, 1000)])
    relay = relay_of(
        shared_schema_pool,
        lambda: new_producer(kafka_bootstrap, "perisai-test-relay"),
        {SOURCE: Numbers()},
        topic_prefix,
    )
    await relay.drain(timeout_s=30)

    assert await waiting(shared_schema_pool) == 0
    assert relay.published == 101
    received = await read_topic(kafka_bootstrap, topic_prefix + TOPIC, at_least=101)
    assert numbers_of(received, key) == [*range(100), 1000]
