"""BatchConsumer's poison isolation on real PostgreSQL: a message whose data the
database refuses is dead-lettered only when it fails alone; when every message fails,
the fault is taken to be ours and nothing is dead-lettered. The handler here is a fake
(named so) that makes PostgreSQL refuse the data of chosen messages; the real services'
handlers are exercised by tests/integration/test_consumer_redelivery.py."""

from __future__ import annotations

import itertools
import uuid

import asyncpg
import pytest

from shared.consumer import LONE_POISON_LIMIT, BatchConsumer
from shared.events import EnrolmentRequested, Event
from shared.outbox import decode_headers
from tests.factories import FakeRecord, enrolment_requested

pytestmark = pytest.mark.integration

TOPIC = "enrolment.requested.v1"


_offsets = itertools.count()


def records(*poisoned: bool) -> list[FakeRecord]:
    """One record per flag, at fresh offsets (as a partition would deliver them)."""
    out = []
    for poison in poisoned:
        offset = next(_offsets)
        event = enrolment_requested(
            event_id=uuid.uuid4(),
            request_id=f"{'poison' if poison else 'ok'}-{uuid.uuid4().hex[:8]}",
        )
        out.append(FakeRecord(TOPIC, 0, offset, b"k", event.model_dump_json().encode()))
    return out


async def fake_handler_refusing_poison(
    conn: asyncpg.Connection, batch: list[EnrolmentRequested]
) -> list[Event]:
    for event in batch:
        if event.request_id.startswith("poison"):
            await conn.fetchval("SELECT $1::text", "NUL \x00 refused")  # raises DataError
    return []


def consumer(pool: asyncpg.Pool) -> BatchConsumer[EnrolmentRequested]:
    return BatchConsumer(
        pool, "test.poison", EnrolmentRequested, fake_handler_refusing_poison, attempts=2
    )


async def dead_letter_offsets(pool: asyncpg.Pool) -> list[int]:
    rows = await pool.fetch(
        "SELECT headers::text AS h FROM outbox WHERE topic = $1", TOPIC + ".dlq"
    )

    return sorted(int(dict(decode_headers(r["h"]))["dlq.origin.offset"]) for r in rows)


async def handled(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM inbox WHERE consumer = 'test.poison'"))


async def test_one_poison_message_among_good_ones_is_dead_lettered_alone(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    batch = records(False, True, False, False, False)
    outcome = await consumer(shared_schema_pool)(batch)
    assert (outcome.handled, outcome.dead_lettered) == (4, 1)
    assert await dead_letter_offsets(shared_schema_pool) == [batch[1].offset]
    assert await handled(shared_schema_pool) == 4 + 1  # the dead letter's own id is claimed


async def test_when_every_message_fails_nothing_is_dead_lettered(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    with pytest.raises(asyncpg.DataError):
        await consumer(shared_schema_pool)(records(True, True, True))
    assert await dead_letter_offsets(shared_schema_pool) == []
    assert await handled(shared_schema_pool) == 0


async def test_lone_failures_in_a_row_trip_the_breaker(shared_schema_pool: asyncpg.Pool) -> None:
    consume = consumer(shared_schema_pool)
    for _ in range(LONE_POISON_LIMIT):
        assert (await consume(records(True))).dead_lettered == 1
    with pytest.raises(asyncpg.DataError):
        await consume(records(True))
    # A message that goes through shows the consumer itself is fine: the streak resets.
    assert (await consume(records(False))).handled == 1
    assert (await consume(records(True))).dead_lettered == 1
