"""The outbox relay: publishes outbox rows to Kafka in batches, then deletes them.

One round: in a transaction, claim up to ``batch_size`` of the oldest rows with
``FOR UPDATE SKIP LOCKED`` (a row naming a record source gives its next records, see
``shared.outbox``), send them all, wait (bounded) until Kafka acknowledged every
one, delete them, commit. A row Kafka refuses for good (too large, invalid topic) is
moved to ``outbox_parked`` with the reason, so it cannot hold up the rows behind it.
A crash or a Kafka outage anywhere before the commit leaves the rows in place for the
next round: a record may be published twice, never lost;
consumers deduplicate by ``event_id``. The relay wakes on the outbox trigger's NOTIFY
and also polls, because a LISTEN connection dies silently on a PostgreSQL restart.

The producer is recreated after any failed round: with idempotence on, aiokafka's
producer can wait forever while the broker is down (aiokafka#1101) or be stuck after
``OutOfOrderSequenceNumber`` (aiokafka#1017).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)

from shared.outbox import (
    OutboxRecord,
    RecordSource,
    decode_headers,
    encode_headers,
    read_source,
)

log = structlog.get_logger(__name__)

UNSENDABLE: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    UnsupportedForMessageFormatError,
)
"""Kafka's answers that no retry changes: the row is parked (outbox_parked) instead."""


def refused_for_good(error: BaseException) -> bool:
    """Kafka refused the record itself, or the client could not even encode it (any
    error from send() that is not a Kafka error: the record never left): no retry of
    the round can change that, and retrying it would hold up every row behind it."""
    return isinstance(error, UNSENDABLE) or not isinstance(error, KafkaError | TimeoutError)


MAX_BACKOFF_S = 10.0

MAX_BIGINT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class _Pending:
    record: OutboxRecord
    outbox_id: int | None = None
    """Its outbox row; None for a record read from a source."""
    source_row: int | None = None
    """The outbox_sources row it was read from."""


_Parked = tuple[_Pending, BaseException]
"""A record Kafka refused for good, and Kafka's answer."""


def _reason(pending: _Pending, error: BaseException) -> str:
    reason = repr(error)[:1000]
    if pending.source_row is not None:
        reason += f" (a record of outbox source row {pending.source_row})"
    return reason


@dataclass
class _Round:
    records: list[_Pending] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    """Outbox rows in this round: deleted when it commits."""
    source_done: int | None = None
    """A source row whose last records are in this round: deleted when it commits."""
    source_place: tuple[int, str | None] | None = None
    """A source row with records left after this round, and its new cursor."""


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        producer_factory: Callable[[], AIOKafkaProducer],
        *,
        batch_size: int = 2000,
        poll_interval_s: float = 0.5,
        send_timeout_s: float = 30.0,
        topic_prefix: str = "",
        sources: Mapping[str, RecordSource] | None = None,
    ) -> None:
        self._topic_prefix = topic_prefix
        self._sources: Mapping[str, RecordSource] = sources or {}
        self._pool = pool
        self._channel = f"outbox_{schema}"
        digest = hashlib.sha256(f"outbox-relay:{schema}".encode()).digest()
        self._lock_key = int.from_bytes(digest[:8], "big", signed=True)
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._send_timeout_s = send_timeout_s
        self._wake = asyncio.Event()
        self.published = 0

    async def run(self) -> None:
        """Publish until cancelled."""
        listener = asyncio.create_task(self._listen(), name=f"{self._channel}-listen")
        backoff = 0.0
        try:
            while True:
                try:
                    sent = await self.publish_batch()
                    backoff = 0.0
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    backoff = min(MAX_BACKOFF_S, max(0.2, backoff * 2))
                    log.warning("outbox relay round failed", error=repr(error), retry_in_s=backoff)
                    await self._discard_producer()
                    await asyncio.sleep(backoff)
                    continue
                if sent < self._batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
                    self._wake.clear()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await self._discard_producer()

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Publish what is left (at shutdown, after the consumers stopped), bounded."""
        try:
            async with asyncio.timeout(timeout_s):
                while await self.publish_batch():
                    continue
        except Exception as error:
            log.warning("outbox not fully drained; the rest goes at next start", error=repr(error))
        finally:
            await self._discard_producer()

    async def publish_batch(self) -> int:
        """One round; returns how many records were published (or parked). A round that
        only retired an exhausted source row is followed at once by another, so 0 means
        that nothing is waiting."""
        while True:
            sent, retired_source = await self._round()
            if sent or not retired_source:
                return sent

    async def _round(self) -> tuple[int, bool]:
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                # One relay per schema publishes at a time: two claiming disjoint batches
                # could publish one key's events out of order.
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", self._lock_key):
                    return 0, False
                batch = await self._claim(conn)
                parked = await self._send(batch.records)
                if parked:
                    await self._park(conn, parked)
                if batch.rows:
                    await conn.execute(
                        "DELETE FROM outbox WHERE id = ANY($1::bigint[])", batch.rows
                    )
                if batch.source_done is not None:
                    await conn.execute(
                        "DELETE FROM outbox_sources WHERE id = $1", batch.source_done
                    )
                elif batch.source_place is not None:
                    await conn.execute(
                        "UPDATE outbox_sources SET source_cursor = $2 WHERE id = $1",
                        *batch.source_place,
                    )
            # Counted as soon as the commit returns, before the connection goes back
            # to the pool: a task cancelled there (a stopping service) keeps its count.
            self.published += len(batch.records) - len(parked)
        return len(batch.records), batch.source_done is not None

    async def _claim(self, conn: asyncpg.Connection) -> _Round:
        """The round's records in outbox order, up to the batch size: the rows before the
        first source row, then that source's records after its cursor. If the source has
        more than fit, it keeps its new place and the rows behind it wait, so nothing
        overtakes its records."""
        head = await conn.fetchrow(
            """SELECT id, source, args::text AS args, source_cursor FROM outbox_sources
               ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"""
        )
        rows = await conn.fetch(
            """SELECT id, topic, key, value, headers::text AS headers, event_id
               FROM outbox WHERE id < $2 ORDER BY id
               LIMIT $1 FOR UPDATE SKIP LOCKED""",
            self._batch_size,
            head["id"] if head else MAX_BIGINT,
        )
        batch = _Round(
            records=[
                _Pending(
                    OutboxRecord(
                        row["topic"],
                        row["value"],
                        row["key"],
                        decode_headers(row["headers"]),
                        row["event_id"],
                    ),
                    outbox_id=row["id"],
                )
                for row in rows
            ],
            rows=[row["id"] for row in rows],
        )
        room = self._batch_size - len(rows)
        if head is None or room <= 0:
            return batch
        page = await read_source(
            conn, self._sources, head["source"], head["args"], head["source_cursor"], room
        )
        batch.records += [_Pending(record, source_row=head["id"]) for record in page.records]
        if len(page.records) < room:
            batch.source_done = head["id"]
        else:
            batch.source_place = (head["id"], page.cursor)
        return batch

    async def _send(self, records: list[_Pending]) -> list[_Parked]:
        """Send every record and wait (bounded) for Kafka's acknowledgements. Returns the
        records Kafka refused for good; raises on anything a retry may cure."""
        parked: list[_Parked] = []
        if not records:
            return parked
        producer = await self._ensure_producer()
        async with asyncio.timeout(self._send_timeout_s):
            sending = []
            for pending in records:
                record = pending.record
                try:
                    delivery = await producer.send(
                        self._topic_prefix + record.topic,
                        record.value,
                        key=record.key,
                        headers=list(record.headers),
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    if not refused_for_good(error):
                        raise
                    parked.append((pending, error))  # refused before it left
                else:
                    sending.append((pending, delivery))
            results = await asyncio.gather(*(d for _, d in sending), return_exceptions=True)
        for (pending, _), result in zip(sending, results, strict=True):
            if isinstance(result, UNSENDABLE):
                parked.append((pending, result))
            elif isinstance(result, BaseException):
                raise result  # anything else: roll back, retry the whole round
        return parked

    async def _park(self, conn: asyncpg.Connection, parked: list[_Parked]) -> None:
        """Records Kafka will never take move aside with the reason, instead of failing
        every round and holding up everything behind them. A record read from a source
        has no row of its own: it is parked under a new id, its reason naming the source
        row it came from."""
        await conn.execute(
            """INSERT INTO outbox_parked (id, event_id, topic, key, value, headers, created_at,
                                          reason)
               SELECT coalesce(r.id, nextval(pg_get_serial_sequence('outbox', 'id'))),
                      r.event_id, r.topic, r.key, r.value, r.headers::jsonb,
                      coalesce(o.created_at, s.created_at, now()), r.reason
               FROM unnest($1::bigint[], $2::bigint[], $3::uuid[], $4::text[], $5::bytea[],
                           $6::bytea[], $7::text[], $8::text[])
                    AS r(id, source_row, event_id, topic, key, value, headers, reason)
               LEFT JOIN outbox o ON o.id = r.id
               LEFT JOIN outbox_sources s ON s.id = r.source_row""",
            [pending.outbox_id for pending, _ in parked],
            [pending.source_row for pending, _ in parked],
            [pending.record.event_id for pending, _ in parked],
            [pending.record.topic for pending, _ in parked],
            [pending.record.key for pending, _ in parked],
            [pending.record.value for pending, _ in parked],
            [encode_headers(pending.record.headers) for pending, _ in parked],
            [_reason(pending, error) for pending, error in parked],
        )
        for pending, error in parked:
            record = pending.record
            log.error(
                "outbox record parked",
                outbox_id=pending.outbox_id,
                source_row=pending.source_row,
                event_id=str(record.event_id) if record.event_id else None,
                topic=record.topic,
                error=repr(error),
            )

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._producer_factory()
            try:
                async with asyncio.timeout(self._send_timeout_s):
                    await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await producer.stop()

    async def _listen(self) -> None:
        """Hold a LISTEN connection; re-open it when it dies. A missed NOTIFY only delays
        publication until the next poll."""

        def wake(*_: object) -> None:
            self._wake.set()

        while True:
            try:
                async with self._pool.acquire() as conn:
                    await conn.add_listener(self._channel, wake)
                    try:
                        while not conn.is_closed():
                            await asyncio.sleep(5)
                            await conn.execute("SELECT 1")
                    finally:
                        with contextlib.suppress(Exception):
                            await conn.remove_listener(self._channel, wake)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.info("outbox listener reconnecting", error=repr(error))
                await asyncio.sleep(1)
