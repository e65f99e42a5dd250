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
from pydantic import TypeAdapter

from shared.consumer import LONE_POISON_LIMIT, LONE_RECORD_ROUNDS, BatchConsumer
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
        pool,
        "test.poison",
        EnrolmentRequested,
        fake_handler_refusing_poison,
        attempts=2,
        round_backoff_s=0,
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


async def dead_letter_alone(consume: BatchConsumer[EnrolmentRequested], batch: list) -> int:
    """A record failing in a batch of its own is re-read (the batch fails) a few times
    before it is dead-lettered."""
    for _ in range(LONE_RECORD_ROUNDS - 1):
        with pytest.raises(asyncpg.DataError):
            await consume(batch)
    return (await consume(batch)).dead_lettered


async def test_a_lone_failing_record_is_re_read_before_it_is_dead_lettered(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    consume = consumer(shared_schema_pool)
    lone = records(True)
    assert await dead_letter_alone(consume, lone) == 1
    assert await dead_letter_offsets(shared_schema_pool) == [lone[0].offset]


async def test_a_lone_failure_that_others_share_on_re_reading_is_systemic(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    """The re-read batch has grown meanwhile and every record in it fails: a fault of
    ours, not the first record's; nothing is dead-lettered."""
    consume = consumer(shared_schema_pool)
    first = records(True)
    with pytest.raises(asyncpg.DataError):
        await consume(first)
    with pytest.raises(asyncpg.DataError):
        await consume(first + records(True, True))
    assert await dead_letter_offsets(shared_schema_pool) == []
    assert consume.health.failed_rounds == 2


async def test_lone_failures_in_a_row_trip_the_breaker(shared_schema_pool: asyncpg.Pool) -> None:
    consume = consumer(shared_schema_pool)
    for _ in range(LONE_POISON_LIMIT):
        assert await dead_letter_alone(consume, records(True)) == 1
    lone = records(True)
    for _ in range(LONE_RECORD_ROUNDS + 2):
        with pytest.raises(asyncpg.DataError):
            await consume(lone)
    assert consume.health.stalled
    # A message that goes through shows the consumer itself is fine: the streak resets.
    assert (await consume(records(False))).handled == 1
    assert not consume.health.stalled
    assert await dead_letter_alone(consume, records(True)) == 1


async def fake_handler_tripping_over_poison(
    conn: asyncpg.Connection, batch: list[EnrolmentRequested]
) -> list[Event]:
    """A bug that only some records trigger (no database error involved)."""
    for event in batch:
        if event.request_id.startswith("poison"):
            raise AttributeError("'NoneType' object has no attribute 'hex'")
    return []


async def test_a_record_our_code_trips_over_is_dead_lettered_alone(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    consume = BatchConsumer(
        shared_schema_pool,
        "test.poison",
        EnrolmentRequested,
        fake_handler_tripping_over_poison,
        round_backoff_s=0,
    )
    batch = records(False, False, True, False)
    outcome = await consume(batch)
    assert (outcome.handled, outcome.dead_lettered) == (3, 1)
    rows = await shared_schema_pool.fetch("SELECT headers::text AS h FROM outbox")
    [reason] = [dict(decode_headers(r["h"]))["dlq.reason"] for r in rows]
    assert reason is not None and b"AttributeError" in reason


async def test_a_dead_letter_that_cannot_be_stored_as_received_goes_without_its_headers(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    """Fake record: a header value of a type aiokafka never hands over makes the
    original unstorable. The real shapes (null values, names that are not UTF-8) are
    kept whole: tests/e2e/test_hostile_records.py."""
    good = records(False)[0]
    unreadable = FakeRecord(TOPIC, 0, next(_offsets), b"k", b"{", (("x", "text"),))  # type: ignore[arg-type]
    outcome = await consumer(shared_schema_pool)([good, unreadable])
    assert (outcome.handled, outcome.dead_lettered) == (1, 1)
    original = await shared_schema_pool.fetchrow(
        "SELECT value, key, headers::text AS h, reason FROM dead_letters"
    )
    assert original is not None and (original["value"], original["key"]) == (b"{", b"k")
    assert decode_headers(original["h"]) == []
    assert "1 original header(s) not kept" in original["reason"]
    notice = await shared_schema_pool.fetchrow("SELECT value, headers::text AS h FROM outbox")
    assert notice is not None
    assert dict(decode_headers(notice["h"]))["dlq.origin.offset"] == str(unreadable.offset).encode()


async def fake_handler_quoting_the_worker(
    conn: asyncpg.Connection, batch: list[EnrolmentRequested]
) -> list[Event]:
    """Fake failure that quotes the record, as pydantic does when a handler validates
    its values: the error's text holds the name, the address, the birth date, the NIK."""
    for event in batch:
        if event.request_id.startswith("poison"):
            worker = event.worker
            TypeAdapter(dict[str, int]).validate_python(
                {"full_name": worker.full_name, "address": worker.address,
                 "birth_date": str(worker.birth_date), "nik": worker.nik + "x"}
            )  # fmt: skip
    return []


async def test_a_handler_error_quoting_the_record_shows_none_of_it_in_the_notice(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    consume = BatchConsumer(
        shared_schema_pool,
        "test.poison",
        EnrolmentRequested,
        fake_handler_quoting_the_worker,
        round_backoff_s=0,
    )
    batch = records(False, True, False)
    poisoned = EnrolmentRequested.model_validate_json(batch[1].value or b"")
    outcome = await consume(batch)
    assert (outcome.handled, outcome.dead_lettered) == (2, 1)
    worker = poisoned.worker
    secrets = [worker.full_name, worker.address, str(worker.birth_date), worker.nik]
    notice = await shared_schema_pool.fetchrow("SELECT key, value, headers::text AS h FROM outbox")
    assert notice is not None
    shown = notice["value"].decode() + repr(decode_headers(notice["h"]))
    assert "ValidationError" in shown and "full_name: Input should be a valid integer" in shown
    for secret in secrets:
        assert secret not in shown, secret
    original = await shared_schema_pool.fetchval("SELECT reason FROM dead_letters")
    assert all(secret in original for secret in secrets), "the full reason stays at home"
