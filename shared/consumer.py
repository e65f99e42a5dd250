"""Batch consumption with the handler shape every consumer follows.

For one batch of Kafka records, in ONE database transaction:
1. parse each record; one that is not a valid message of the expected schema becomes a
   dead letter (``<topic>.dlq``, headers say why, from where and when), written to the
   outbox like any event, so it is neither lost nor allowed to block the partition
   (likewise a message whose data the database refuses, when that message alone
   fails: see BatchConsumer._isolate);
2. claim every event id in the inbox; ids already claimed are skipped (redelivery);
3. hand the fresh events to the service's handler, which loads state, decides, saves,
   and returns the events to publish;
4. write those events to the outbox.
The caller acknowledges the Kafka offsets only after this returns, i.e. after the
commit. Any other failure (database unreachable, deadlock) is retried with backoff a
bounded number of times, then propagates so the subscriber nacks (re-seeks) the batch:
never skipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
import stamina
import structlog
from pydantic import ValidationError

from shared import inbox, outbox
from shared.events import Event, derive_event_id
from shared.faults import crash_point
from shared.outbox import OutboxRecord
from shared.topics import dead_letter_topic

log = structlog.get_logger(__name__)


class Record(Protocol):
    """What we read of an aiokafka ``ConsumerRecord``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


BatchHandler = Callable[[asyncpg.Connection, list[Any]], Awaitable[Sequence[Event]]]


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    handled: int
    duplicates: int
    dead_lettered: int

    def __add__(self, other: BatchOutcome) -> BatchOutcome:
        return BatchOutcome(
            self.handled + other.handled,
            self.duplicates + other.duplicates,
            self.dead_lettered + other.dead_lettered,
        )


POISON_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,  # SQLSTATE class 22: the value itself (NUL in text, out of range)
    asyncpg.CardinalityViolationError,  # 21000: e.g. one key twice in one upsert
    ValidationError,  # a value our models refuse
)
"""Failures that come from a message's data: retrying cannot cure them, so the batch is
split to find the message at fault (see BatchConsumer._isolate). Only these: anything
else (the database unreachable or refusing connections, a deadlock, a constraint a
migration added, a bug) is treated as ours, retried, and the batch re-read. When in
doubt, nothing is dead-lettered."""

LONE_POISON_LIMIT = 3
"""One-message batches failing on their data in a row before the consumer suspects
itself and stops dead-lettering them."""


def is_poison(error: BaseException) -> bool:
    # A unique violation is a race with a concurrent transaction: retrying resolves it.
    return isinstance(error, POISON_ERRORS)


def _describe(error: ValidationError) -> str:
    parts = [
        f"{'.'.join(map(str, e['loc'])) or '<message>'}: {e['msg']}" for e in error.errors()[:5]
    ]
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def dead_letter(record: Record, consumer: str, reason: str, topic_prefix: str = "") -> OutboxRecord:
    """The record as it was, on the dead-letter topic, with its origin and the reason.
    The outbox holds topic names without the prefix (the relay adds it)."""
    headers = [
        *record.headers,
        ("dlq.reason", reason.encode()),
        ("dlq.consumer", consumer.encode()),
        ("dlq.origin.topic", record.topic.encode()),
        ("dlq.origin.partition", str(record.partition).encode()),
        ("dlq.origin.offset", str(record.offset).encode()),
        ("dlq.failed_at", datetime.now(UTC).isoformat().encode()),
    ]
    return OutboxRecord(
        topic=dead_letter_topic(record.topic.removeprefix(topic_prefix)),
        key=record.key,
        value=record.value or b"",
        headers=headers,
        event_id=derive_event_id("dead-letter", record.topic, record.partition, record.offset),
    )


E = TypeVar("E", bound=Event)


class BatchConsumer(Generic[E]):
    """Applies batches of ``model`` events through ``handler`` exactly once in effect."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        name: str,
        model: type[E],
        handler: BatchHandler,
        *,
        attempts: int = 5,
        retry_timeout_s: float = 60.0,
        topic_prefix: str = "",
    ) -> None:
        self._topic_prefix = topic_prefix
        self.name = name
        self._pool = pool
        self._model = model
        self._handler = handler
        self._attempts = attempts
        self._retry_timeout_s = retry_timeout_s
        self._lone_poison_streak = 0

    def parse(self, records: Sequence[Record]) -> tuple[list[tuple[Record, E]], list[OutboxRecord]]:
        """Each readable record with its event (the first of any repeated event id),
        and a dead letter for each unreadable one."""
        items: dict[Any, tuple[Record, E]] = {}
        dead: list[OutboxRecord] = []
        for record in records:
            if not record.value:
                dead.append(
                    dead_letter(record, self.name, "empty message value", self._topic_prefix)
                )
                continue
            try:
                event = self._model.model_validate_json(record.value)
            except ValidationError as error:
                dead.append(dead_letter(record, self.name, _describe(error), self._topic_prefix))
                continue
            items.setdefault(event.event_id, (record, event))
        return list(items.values()), dead

    async def __call__(self, records: Sequence[Record]) -> BatchOutcome:
        items, dead = self.parse(records)
        try:
            outcome = await self._with_retries(items, dead)
        except Exception as error:
            if not items or not is_poison(error):
                raise
            outcome = await self._isolate(items, dead, error)
        else:
            self._lone_poison_streak = 0
        crash_point(f"{self.name}_after_commit")
        if outcome.dead_lettered:
            log.warning("dead-lettered messages", consumer=self.name, count=outcome.dead_lettered)
        return outcome

    async def _isolate(
        self, items: list[tuple[Record, E]], dead: list[OutboxRecord], error: BaseException
    ) -> BatchOutcome:
        """The batch failed for a reason that looks like its data. Apply halves on their
        own down to single messages, and dead-letter the messages that fail alone, so
        that one poison message does not stall every partition behind it.

        Only when the fault is isolated: if every message fails on its own, the cause is
        more likely ours (a migration, a constraint, a bug) than theirs, and the batch is
        re-read (raise) instead of dead-lettering the lot. A one-message batch cannot
        show that; after a few such lone failures in a row the consumer stops
        dead-lettering the same way."""
        applied = BatchOutcome(0, 0, 0)
        failed: list[tuple[Record, BaseException]] = []

        async def visit(part: list[tuple[Record, E]]) -> None:
            nonlocal applied
            try:
                applied += await self._with_retries(part, [])
            except Exception as part_error:
                if not is_poison(part_error):
                    raise
                if len(part) == 1:
                    failed.append((part[0][0], part_error))
                    return
                await visit(part[: len(part) // 2])
                await visit(part[len(part) // 2 :])

        await visit(items)
        if len(failed) == len(items):
            if len(items) > 1:
                raise error  # every message fails alone: systemic, not the messages
            self._lone_poison_streak += 1
            if self._lone_poison_streak > LONE_POISON_LIMIT:
                raise error
        else:
            self._lone_poison_streak = 0
        letters = [
            dead_letter(record, self.name, f"handler failed: {cause!r}"[:1000], self._topic_prefix)
            for record, cause in failed
        ]
        for record, cause in failed:
            log.error(
                "message dead-lettered",
                consumer=self.name,
                origin=f"{record.topic}/{record.partition}/{record.offset}",
                error=repr(cause),
            )
        return applied + await self._with_retries([], [*dead, *letters])

    async def _with_retries(
        self, items: list[tuple[Record, E]], dead: list[OutboxRecord]
    ) -> BatchOutcome:
        async for attempt in stamina.retry_context(
            on=lambda error: not is_poison(error),
            attempts=self._attempts,
            timeout=self._retry_timeout_s,
            wait_initial=0.2,
            wait_max=5.0,
        ):
            with attempt:
                outcome = await self._apply([event for _, event in items], dead)
        return outcome

    async def _apply(self, events: list[E], dead: list[OutboxRecord]) -> BatchOutcome:
        async with self._pool.acquire() as conn, conn.transaction():
            ids = [e.event_id for e in events] + [d.event_id for d in dead if d.event_id]
            fresh_ids = await inbox.claim(conn, self.name, ids)
            fresh = [e for e in events if e.event_id in fresh_ids]
            fresh_dead = [d for d in dead if d.event_id in fresh_ids]
            produced = await self._handler(conn, fresh) if fresh else ()
            await outbox.enqueue(conn, [*fresh_dead, *map(OutboxRecord.of, produced)])
        return BatchOutcome(
            handled=len(fresh),
            duplicates=len(events) - len(fresh),
            dead_lettered=len(fresh_dead),
        )
