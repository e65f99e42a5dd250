"""The transactional outbox and the inbox against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date

import asyncpg
import pytest

from services.registration.domain import participant_number
from shared import inbox
from shared.events import PolicyActivated, WorkerEnrolled
from shared.inbox import Entry, content_hash
from shared.outbox import OutboxRecord, decode_headers, enqueue, enqueue_events
from tests.factories import worker_enrolled

pytestmark = pytest.mark.integration


def enrolled(worker_id: uuid.UUID | None = None, n: int = 1) -> WorkerEnrolled:
    """A valid WorkerEnrolled with ids of its own."""
    return worker_enrolled(
        event_id=uuid.uuid4(),
        correlation_id=f"corr-{uuid.uuid4().hex[:8]}",
        worker_id=worker_id or uuid.uuid4(),
        participant_number=participant_number(n),
        request_id=f"req-{uuid.uuid4().hex[:8]}",
    )


def activated(worker_id: uuid.UUID) -> PolicyActivated:
    return PolicyActivated(
        event_id=uuid.uuid4(),
        correlation_id="corr-x",
        policy_id=uuid.uuid4(),
        worker_id=worker_id,
        participant_number=participant_number(7),
        agreement_code="KOTA-PASURUAN-DBHCHT",
        payer="Pemerintah Kota Pasuruan",
        funding_source="DBHCHT",
        programmes=("JKK", "JKM"),
        coverage_start=date(2026, 1, 5),
        monthly_premium=16_800,
    )


async def outbox_rows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT event_id, topic, key, value, headers::text AS headers FROM outbox ORDER BY id"
    )


async def test_enqueue_events_writes_rows_in_the_callers_transaction(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    worker = uuid.uuid4()
    events = [enrolled(worker), activated(worker)]
    async with shared_schema_pool.acquire() as conn:
        async with conn.transaction():
            await enqueue_events(conn, events)
            # Visible inside the transaction ...
            assert len(await outbox_rows(conn)) == 2
            # ... and not outside it until the commit.
            async with shared_schema_pool.acquire() as other:
                assert await outbox_rows(other) == []
        rows = await outbox_rows(conn)

    assert [row["topic"] for row in rows] == ["worker.enrolled.v1", "policy.activated.v1"]
    for row, event in zip(rows, events, strict=True):
        assert row["event_id"] == event.event_id
        assert row["key"] == str(worker).encode()
        assert type(event).model_validate_json(row["value"]) == event
        headers = dict(decode_headers(row["headers"]))
        assert headers == {
            "content-type": b"application/json",
            "event_type": event.event_type.encode(),  # type: ignore[attr-defined]
            "schema_version": b"1",
            "correlation_id": event.correlation_id.encode(),
        }


async def test_rolled_back_transaction_leaves_no_outbox_row(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    class Boom(Exception):
        pass

    async with shared_schema_pool.acquire() as conn:
        with pytest.raises(Boom):
            async with conn.transaction():
                await enqueue_events(conn, [enrolled()])
                raise Boom
        assert await outbox_rows(conn) == []
        await enqueue_events(conn, [])  # nothing to do, no statement
        assert await outbox_rows(conn) == []


async def test_raw_records_keep_null_key_and_arbitrary_header_bytes(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    record = OutboxRecord(
        topic="worker.enrolled.v1.dlq",
        value=b"\x00not json\xff",
        key=None,
        headers=[("dlq.reason", b"bad"), ("binary", b"\x00\x01\xfe"), ("dup", b"1"), ("dup", b"2")],
    )
    async with shared_schema_pool.acquire() as conn:
        await enqueue(conn, [record])
        [row] = await outbox_rows(conn)
    assert row["event_id"] is None
    assert row["key"] is None
    assert row["value"] == b"\x00not json\xff"
    assert decode_headers(row["headers"]) == list(record.headers)
    assert json.loads(row["headers"])[1] == [b"binary".hex(), "0001fe"]


async def test_outbox_insert_notifies_the_schema_channel(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    received: list[str] = []
    async with shared_schema_pool.acquire() as listener, shared_schema_pool.acquire() as writer:
        got = asyncio.Event()

        def on_notify(_conn: object, _pid: int, channel: str, _payload: str) -> None:
            received.append(channel)
            got.set()

        await listener.add_listener("outbox_testsvc", on_notify)
        try:
            await enqueue_events(writer, [enrolled(), enrolled()])
            await asyncio.wait_for(got.wait(), 5)
        finally:
            await listener.remove_listener("outbox_testsvc", on_notify)
    # One statement, one notification (a statement-level trigger).
    assert received == ["outbox_testsvc"]


def entries(*ids: uuid.UUID, content: bytes = b"same", origin: str = "t/0/1") -> list[Entry]:
    return [Entry(i, content_hash(content), origin) for i in ids]


async def claim(conn: asyncpg.Connection, consumer: str, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    fresh, conflicts = await inbox.claim(conn, consumer, entries(*ids))
    assert conflicts == []
    return fresh


async def test_claim_returns_only_new_ids(shared_schema_pool: asyncpg.Pool) -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with shared_schema_pool.acquire() as conn:
        assert await claim(conn, "svc.consumer", [a, b]) == {a, b}
        assert await claim(conn, "svc.consumer", [a, b]) == set()
        assert await claim(conn, "svc.consumer", [b, c]) == {c}
        assert await claim(conn, "svc.consumer", []) == set()
        count = await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = 'svc.consumer'")
    assert count == 3


async def test_claim_consumers_are_independent(shared_schema_pool: asyncpg.Pool) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    async with shared_schema_pool.acquire() as conn:
        assert await claim(conn, "one", ids) == set(ids)
        assert await claim(conn, "two", ids) == set(ids)
        assert await claim(conn, "one", ids) == set()
        assert await claim(conn, "two", ids) == set()


async def test_claim_handles_duplicates_within_one_call(shared_schema_pool: asyncpg.Pool) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    async with shared_schema_pool.acquire() as conn:
        assert await claim(conn, "dups", [a, a, b, a, b]) == {a, b}
        assert await claim(conn, "dups", [a, b]) == set()


async def test_claim_rolled_back_with_its_transaction(shared_schema_pool: asyncpg.Pool) -> None:
    """A batch whose transaction fails leaves its ids unclaimed, so the retry handles it."""
    a = uuid.uuid4()
    async with shared_schema_pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        assert await claim(conn, "rb", [a]) == {a}
        await tx.rollback()
        assert await claim(conn, "rb", [a]) == {a}


async def test_the_same_id_with_other_content_is_a_conflict_kept_with_both_origins(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    async with shared_schema_pool.acquire() as conn:
        await inbox.claim(conn, "c", entries(a, b, content=b"first", origin="t/0/5"))
        fresh, conflicts = await inbox.claim(
            conn,
            "c",
            [
                *entries(a, content=b"first", origin="t/0/9"),  # a redelivery: no conflict
                *entries(b, content=b"forged", origin="t/2/7"),
            ],
        )
        assert fresh == set()
        assert conflicts == [inbox.Conflict(b, "t/0/5", "t/2/7")]
        rows = await conn.fetch("SELECT event_id, first_origin, origin FROM inbox_conflicts")
    assert [tuple(r) for r in rows] == [(b, "t/0/5", "t/2/7")]


async def test_a_repeat_with_other_content_within_one_call_is_a_conflict(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    a = uuid.uuid4()
    async with shared_schema_pool.acquire() as conn:
        fresh, conflicts = await inbox.claim(
            conn,
            "c",
            [
                *entries(a, content=b"one", origin="t/1/1"),
                *entries(a, content=b"two", origin="t/1/2"),
            ],
        )
    assert fresh == {a}
    assert conflicts == [inbox.Conflict(a, "t/1/1", "t/1/2")]


async def wait_until_blocked(pool: asyncpg.Pool, timeout_s: float = 5.0) -> None:
    """Until some session of this database waits on a lock (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        waiting = await pool.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND wait_event_type = 'Lock'"""
        )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no session blocked on a lock within {timeout_s} s")


async def test_concurrent_claims_of_the_same_id_admit_exactly_one(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    """Two transactions claiming the same id: the second waits for the first and, once it
    commits, finds the id taken."""
    a = uuid.uuid4()
    async with shared_schema_pool.acquire() as first, shared_schema_pool.acquire() as second:
        tx1 = first.transaction()
        await tx1.start()
        assert await claim(first, "race", [a]) == {a}
        async with second.transaction():
            pending = asyncio.create_task(claim(second, "race", [a]))
            await wait_until_blocked(shared_schema_pool)
            assert not pending.done(), "the second claim should wait for the first transaction"
            await tx1.commit()
            assert await asyncio.wait_for(pending, 5) == set()


async def test_a_redelivered_conflict_is_recorded_and_reported_once(
    shared_schema_pool: asyncpg.Pool,
) -> None:
    a = uuid.uuid4()
    async with shared_schema_pool.acquire() as conn:
        await inbox.claim(conn, "c", entries(a, content=b"first", origin="t/0/5"))
        forged = entries(a, content=b"forged", origin="t/0/6")
        _, first_time = await inbox.claim(conn, "c", forged)
        _, redelivered = await inbox.claim(conn, "c", forged)
        count = await conn.fetchval("SELECT count(*) FROM inbox_conflicts")
    assert (len(first_time), redelivered, count) == (1, [], 1)


def test_the_content_hash_is_of_what_was_received_not_of_a_model() -> None:
    """Key order and occurred_at do not matter; a field's value does."""
    one = b'{"event_id": "x", "occurred_at": "2026-01-01T00:00:00Z", "a": 1, "b": [1, 2]}'
    same = b'{"b":[1,2],"a":1,"event_id":"x","occurred_at":"2026-12-01T00:00:00Z"}'
    other = b'{"b":[1,2],"a":2,"event_id":"x"}'
    assert inbox.event_hash(one) == inbox.event_hash(same) != inbox.event_hash(other)
