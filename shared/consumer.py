"""Batch consumption with the handler shape every consumer follows.

For one batch of Kafka records, in ONE database transaction:
1. parse each record; one that is not a valid message of the expected schema becomes a
   dead letter: the record as received kept in the service's ``dead_letters`` table, and
   a notice without its content (why, from where, when) on ``<topic>.dlq`` through the
   outbox (``shared.dead_letters``), so it is neither lost, nor allowed to block the
   partition, nor shown to everyone who reads the dead-letter topic;
2. claim every event id in the inbox; ids already claimed are skipped (redelivery);
3. hand the fresh events to the service's handler, which loads state, decides, saves,
   and returns the events to publish;
4. write those events to the outbox.
The caller acknowledges the Kafka offsets only after this returns, i.e. after the
commit.

When the batch fails, what happens depends on the failure (see ``classify``):
- the database is unavailable: retried with backoff, then the batch is re-read (the
  subscriber nacks it), as often as it takes; never skipped, never dead-lettered;
- anything else that a few retries do not cure (the database refusing a value, a
  record our code trips over, a dead letter that cannot be written): the batch is split
  to find the record at fault, which is dead-lettered when it fails alone while the
  others go through. If every record fails alone, the fault is ours, not the data's:
  nothing is dead-lettered and the batch is re-read.
A batch that keeps failing is never retried silently: each failed round is logged,
and from ``STALLED_AFTER_ROUNDS`` on the consumer reports itself stalled (an ERROR log
line per round, and ``/health/ready`` answers 503 naming it) until a batch goes
through. Failed rounds are spaced with a growing pause.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import asyncpg
import stamina
import structlog
from pydantic import ValidationError

from shared import dead_letters, inbox, metrics, outbox
from shared.db import transaction
from shared.dead_letters import MAX_REASON_LENGTH, DeadLetter
from shared.error_text import describe, describe_validation
from shared.events import Event, derive_event_id
from shared.failures import classify, is_retryable, is_unavailable
from shared.faults import crash_point
from shared.outbox import OutboxRecord

log = structlog.get_logger(__name__)


class Record(Protocol):
    """What we read of an aiokafka ``ConsumerRecord``. Keys, values and header values
    may be null; a header name may carry surrogate escapes (shared.kafka_records)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]


BatchHandler = Callable[[asyncpg.Connection, list[Any]], Awaitable[Sequence[Event]]]


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    handled: int = 0
    duplicates: int = 0
    dead_lettered: int = 0

    def __add__(self, other: BatchOutcome) -> BatchOutcome:
        return BatchOutcome(
            self.handled + other.handled,
            self.duplicates + other.duplicates,
            self.dead_lettered + other.dead_lettered,
        )


LONE_RECORD_ROUNDS = 3
"""Rounds a record that fails alone in a batch of its own is re-read before it is
dead-lettered."""
LONE_POISON_LIMIT = 3
"""Records dead-lettered from batches of their own in a row (nothing going through in
between) before the consumer suspects itself and stops dead-lettering them."""
STALLED_AFTER_ROUNDS = 3
"""Failed rounds of one consumer in a row before it reports itself stalled."""
ISOLATION_ATTEMPTS = 2
"""Tries of each part while a failed batch is split (the batch had its full share)."""


def dead_letter(
    record: Record, consumer: str, reason: str, shown_reason: str | None = None
) -> DeadLetter:
    """The record as it was (key, value and headers, nulls kept), its origin and the
    reason (``shown_reason``, when given, is what the notice may show of it); the same
    letter id for every redelivery of the same origin record to the same consumer."""
    return DeadLetter(
        letter_id=derive_event_id(
            "dead-letter", consumer, record.topic, record.partition, record.offset
        ),
        consumer=consumer,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
        reason=reason,
        shown_reason=reason if shown_reason is None else shown_reason,
        failed_at=datetime.now(UTC),
    )


def describe_batch(records: Sequence[Record]) -> str:
    """topic[partition]@first-last for each partition in the batch."""
    spans: dict[tuple[str, int], list[int]] = {}
    for record in records:
        span = spans.setdefault((record.topic, record.partition), [record.offset, record.offset])
        span[0] = min(span[0], record.offset)
        span[1] = max(span[1], record.offset)
    return ", ".join(f"{t}[{p}]@{lo}-{hi}" for (t, p), (lo, hi) in sorted(spans.items()))


@dataclass
class ConsumerHealth:
    """Whether a consumer is keeping up, for logs and the readiness check."""

    consumer: str
    failed_rounds: int = 0
    failing_since: datetime | None = None
    last_error: str | None = None
    batch: str | None = None
    dead_lettered: int = 0
    inbox_conflicts: int = 0
    recovered_at: datetime | None = field(default=None, repr=False)

    @property
    def stalled(self) -> bool:
        return self.failed_rounds >= STALLED_AFTER_ROUNDS

    def failed(self, records: Sequence[Record], error: BaseException) -> None:
        self.failed_rounds += 1
        self.failing_since = self.failing_since or datetime.now(UTC)
        self.last_error = describe(error)[:MAX_REASON_LENGTH]
        self.batch = describe_batch(records)
        fields = {
            "consumer": self.consumer,
            "batch": self.batch,
            "failed_rounds": self.failed_rounds,
            "failing_since": self.failing_since.isoformat(),
            "failure": classify(error).value,
            "error": self.last_error,
        }
        if self.stalled:
            log.error("consumer stalled: a batch keeps failing and is re-read", **fields)
        else:
            log.warning("batch failed; it will be re-read", **fields)

    def succeeded(self) -> None:
        if self.failed_rounds:
            log.info(
                "consumer recovered",
                consumer=self.consumer,
                after_failed_rounds=self.failed_rounds,
                failing_since=self.failing_since.isoformat() if self.failing_since else None,
            )
            self.recovered_at = datetime.now(UTC)
        self.failed_rounds = 0
        self.failing_since = None
        self.last_error = None
        self.batch = None

    def as_dict(self) -> dict[str, object]:
        return {
            "stalled": self.stalled,
            "failed_rounds": self.failed_rounds,
            "failing_since": self.failing_since.isoformat() if self.failing_since else None,
            "batch": self.batch,
            "last_error": self.last_error,
            "dead_lettered": self.dead_lettered,
            "inbox_conflicts": self.inbox_conflicts,
        }


E = TypeVar("E", bound=Event)


class Parsed(NamedTuple, Generic[E]):
    items: list[tuple[Record, E]]
    dead: list[DeadLetter]
    repeats: list[tuple[Record, E]]


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
        round_backoff_s: float = 1.0,
        max_round_backoff_s: float = 30.0,
        topic_prefix: str = "",
    ) -> None:
        self._topic_prefix = topic_prefix
        self.name = name
        self._pool = pool
        self._model = model
        self._handler = handler
        self._attempts = attempts
        self._retry_timeout_s = retry_timeout_s
        self._round_backoff_s = round_backoff_s
        self._max_round_backoff_s = max_round_backoff_s
        self._lone_failures = 0
        self._lone_origin: tuple[str, int, int] | None = None
        self._lone_rounds = 0
        self.health = ConsumerHealth(name)

    def parse(self, records: Sequence[Record]) -> Parsed[E]:
        """Each readable record with its event (the first of any repeated event id), a
        dead letter for each unreadable one, and the repeats (checked against the first,
        never handled)."""
        items: dict[Any, tuple[Record, E]] = {}
        repeats: list[tuple[Record, E]] = []
        dead: list[DeadLetter] = []
        for record in records:
            if not record.value:
                reason = "null message value" if record.value is None else "empty message value"
                dead.append(dead_letter(record, self.name, reason))
                continue
            try:
                event = self._model.model_validate_json(record.value)
            except ValidationError as error:
                dead.append(dead_letter(record, self.name, describe_validation(error)))
                continue
            if event.event_id in items:
                repeats.append((record, event))
            else:
                items[event.event_id] = (record, event)
        return Parsed(list(items.values()), dead, repeats)

    async def __call__(self, records: Sequence[Record]) -> BatchOutcome:
        try:
            outcome = await self._consume(records)
        except Exception as error:
            self.health.failed(records, error)
            metrics.FAILED_ROUNDS.labels(self.name).inc()
            metrics.STALLED.labels(self.name).set(int(self.health.stalled))
            # Space the re-reads of a batch that keeps failing (the nack re-seeks at once).
            pause = self._round_backoff_s * 2 ** (self.health.failed_rounds - 1)
            await asyncio.sleep(min(pause, self._max_round_backoff_s))
            raise
        self.health.succeeded()
        metrics.STALLED.labels(self.name).set(0)
        for outcome_name, count in (
            ("handled", outcome.handled),
            ("duplicate", outcome.duplicates),
            ("dead_lettered", outcome.dead_lettered),
        ):
            if count:
                metrics.CONSUMED.labels(self.name, outcome_name).inc(count)
        crash_point(f"{self.name}_after_commit")
        if outcome.dead_lettered:
            self.health.dead_lettered += outcome.dead_lettered
            log.warning("dead-lettered messages", consumer=self.name, count=outcome.dead_lettered)
        return outcome

    async def _consume(self, records: Sequence[Record]) -> BatchOutcome:
        items, dead, repeats = self.parse(records)
        try:
            outcome = await self._with_retries(items, dead, repeats)
        except Exception as error:
            if is_unavailable(error):
                raise
            return await self._isolate(items, dead, error)
        if items:
            self._lone_failures = 0
        return outcome

    async def _isolate(
        self, items: list[tuple[Record, E]], dead: list[DeadLetter], error: BaseException
    ) -> BatchOutcome:
        """The batch failed, and not because the database is away. Apply halves on their
        own down to single messages, and dead-letter the messages that fail alone, so
        that one record does not stall every partition behind it.

        Only when the fault is isolated: if every message fails on its own, the cause is
        more likely ours (a migration, a constraint, a bug) than theirs, and the batch is
        re-read (raise) instead of dead-lettering the lot. A one-message batch cannot
        show that (see _judge_lone_failure). The dead letters found while parsing are
        written last, on their own (see _write_dead_letters): they cannot hold up the
        rest."""
        applied = BatchOutcome()
        failed: list[tuple[Record, BaseException]] = []

        async def visit(part: list[tuple[Record, E]]) -> None:
            nonlocal applied
            try:
                # Fewer retries per part: the whole batch has had its share, and a long
                # bisection must not outlast the consumer's poll interval.
                applied += await self._with_retries(part, [], attempts=ISOLATION_ATTEMPTS)
            except Exception as part_error:
                if is_unavailable(part_error):
                    raise
                if len(part) == 1:
                    failed.append((part[0][0], part_error))
                    return
                await visit(part[: len(part) // 2])
                await visit(part[len(part) // 2 :])

        if items:
            await visit(items)
            if len(failed) == len(items):
                if len(items) > 1:
                    raise error  # every message fails alone: systemic, not the messages
                self._judge_lone_failure(items[0][0], error)
            else:
                self._lone_failures = 0
        letters = [
            dead_letter(
                record,
                self.name,
                f"handler failed: {cause!r}",
                f"handler failed: {describe(cause)}",
            )
            for record, cause in failed
        ]
        written = await self._write_dead_letters([*dead, *letters])
        for record, cause in failed:
            log.error(
                "message dead-lettered",
                consumer=self.name,
                origin=f"{record.topic}/{record.partition}/{record.offset}",
                error=describe(cause),
            )
        return applied + written

    def _judge_lone_failure(self, record: Record, error: BaseException) -> None:
        """A batch of one record failed: there is nothing to compare it with. It is
        re-read a few times first (raise), so that a fault of ours shows in the records
        that arrive meanwhile; then dead-lettered, unless lone failures keep coming, in
        which case the consumer suspects itself and stops dead-lettering."""
        origin = (record.topic, record.partition, record.offset)
        self._lone_rounds = self._lone_rounds + 1 if origin == self._lone_origin else 1
        self._lone_origin = origin
        if self._lone_rounds < LONE_RECORD_ROUNDS:
            raise error
        self._lone_failures += 1
        if self._lone_failures > LONE_POISON_LIMIT:
            raise error

    async def _write_dead_letters(self, letters: list[DeadLetter]) -> BatchOutcome:
        """Dead letters must always be writable, or the record behind them would be
        retried forever: each original that cannot be stored as it is goes without its
        headers. Only when even that fails (or the database is away) does the batch
        fail."""
        if not letters:
            return BatchOutcome()
        try:
            return await self._with_retries([], letters)
        except Exception as error:
            if is_unavailable(error):
                raise
        outcome = BatchOutcome()
        for letter in letters:
            try:
                outcome += await self._with_retries([], [letter])
            except Exception as error:
                if is_unavailable(error):
                    raise
                log.error(
                    "dead letter not writable as received; writing it without its headers",
                    consumer=self.name,
                    origin=letter.origin,
                    error=describe(error),
                )
                outcome += await self._with_retries([], [letter.without_headers(repr(error))])
        return outcome

    async def _with_retries(
        self,
        items: list[tuple[Record, E]],
        dead: list[DeadLetter],
        repeats: Sequence[tuple[Record, E]] = (),
        *,
        attempts: int | None = None,
    ) -> BatchOutcome:
        async for attempt in stamina.retry_context(
            on=is_retryable,
            attempts=attempts or self._attempts,
            timeout=self._retry_timeout_s,
            wait_initial=0.2,
            wait_max=5.0,
        ):
            with attempt:
                outcome = await self._apply(items, dead, repeats)
        return outcome

    async def _apply(
        self,
        items: list[tuple[Record, E]],
        dead: list[DeadLetter],
        repeats: Sequence[tuple[Record, E]],
    ) -> BatchOutcome:
        entries = [self._entry(record, event) for record, event in [*items, *repeats]]
        entries += [inbox.Entry(d.letter_id, inbox.content_hash(d.value), d.origin) for d in dead]
        async with transaction(self._pool) as conn:
            fresh_ids, conflicts = await inbox.claim(conn, self.name, entries)
            fresh = [e for _, e in items if e.event_id in fresh_ids]
            fresh_dead = [d for d in dead if d.letter_id in fresh_ids]
            produced = await self._handler(conn, fresh) if fresh else ()
            await dead_letters.keep(conn, fresh_dead)
            notices = [d.record(self._topic_prefix) for d in fresh_dead]
            await outbox.enqueue(conn, [*notices, *map(OutboxRecord.of, produced)])
        self._report_conflicts(conflicts)
        return BatchOutcome(
            handled=len(fresh),
            duplicates=len(items) + len(repeats) - len(fresh),
            dead_lettered=len(fresh_dead),
        )

    @staticmethod
    def _entry(record: Record, event: E) -> inbox.Entry:
        assert record.value is not None  # parse() made a dead letter of a null one
        return inbox.Entry(event.event_id, inbox.event_hash(record.value), origin_of(record))

    def _report_conflicts(self, conflicts: Sequence[inbox.Conflict]) -> None:
        for conflict in conflicts:
            log.warning(
                "same event id, different content: the first one stands",
                consumer=self.name,
                event_id=str(conflict.event_id),
                first_origin=conflict.first_origin,
                origin=conflict.origin,
            )
        if conflicts:
            self.health.inbox_conflicts += len(conflicts)
            metrics.INBOX_CONFLICTS.labels(self.name).inc(len(conflicts))


def origin_of(record: Record) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"
