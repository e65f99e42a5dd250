"""Dead letters that keep personal data where it was.

A record a consumer cannot read or apply may carry a full NIK, a birth date, an address
and a phone number (an unreadable ``EnrolmentRequested`` does). The record as it was
received (key, value, headers, byte for byte) is kept in the consuming service's own
``dead_letters`` table, which only that service's roles can read; the dead-letter topic,
which every operator reads, gets a notice: where the record came from, why it failed
(masked), its size, and the letter id that finds the original. Both are
written in the consumer's transaction, so neither exists without the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from shared.outbox import Headers, OutboxRecord, decode_headers, encode_headers
from shared.redact import redact
from shared.topics import dead_letter_topic

MAX_REASON_LENGTH = 1000
"""The reason on the topic (header and notice) is cut to this many characters."""
MAX_STORED_REASON_LENGTH = 10_000
DLQ_HEADER_PREFIX = "dlq."
NOTICE_VERSION = 1


class DeadLetterOrigin(BaseModel):
    model_config = ConfigDict(frozen=True)

    topic: str = Field(description="The topic the record was read from.")
    partition: int = Field(description="Its partition.")
    offset: int = Field(description="Its offset.")


class OriginalRecord(BaseModel):
    """What can be said of the original without showing it. (No digest of the value: a
    short value, a bare NIK say, could be found again from its hash.)"""

    model_config = ConfigDict(frozen=True)

    kept_in: str = Field(
        description="The table that holds the record as received, readable only by the "
        "consuming service's roles: <schema>.dead_letters, row letter_id."
    )
    key_bytes: int | None = Field(description="Length of its key; null for a null key.")
    value_bytes: int | None = Field(description="Length of its value; null for a null value.")
    header_names: list[str] = Field(description="Names of its headers, masked.")


class DeadLetterNotice(BaseModel):
    """The value of a record on a ``.dlq`` topic (JSON): a record that a consumer could
    not read or apply, described without its content."""

    model_config = ConfigDict(frozen=True)

    notice_version: int = Field(
        default=NOTICE_VERSION, description="Version of this notice's layout."
    )
    letter_id: UUID = Field(
        description="The dead letter's id (also the record key): the same for every "
        "redelivery of the same origin record to the same consumer."
    )
    consumer: str = Field(description="The consumer that gave up: <service>.<consumer>.")
    reason: str = Field(
        description="Why, with email addresses and runs of 9 or more digits masked; cut "
        f"to {MAX_REASON_LENGTH} characters."
    )
    origin: DeadLetterOrigin = Field(description="Where the record was read.")
    failed_at: datetime = Field(description="When it was dead-lettered (UTC).")
    original: OriginalRecord = Field(
        description="The record's sizes and header names; the record itself stays "
        "in the consuming service's dead_letters table."
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record given up on: the original, as received, and why."""

    letter_id: UUID
    consumer: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    reason: str
    """Why, in full (it may quote the record): kept with the original only."""
    shown_reason: str
    """What the notice may show of the reason (it is masked again on the way out)."""
    failed_at: datetime

    @property
    def origin(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def service(self) -> str:
        return self.consumer.partition(".")[0]

    def masked_reason(self) -> str:
        return redact(_storable(self.shown_reason))[:MAX_REASON_LENGTH]

    def notice(self) -> DeadLetterNotice:
        return DeadLetterNotice(
            letter_id=self.letter_id,
            consumer=self.consumer,
            reason=self.masked_reason(),
            origin=DeadLetterOrigin(topic=self.topic, partition=self.partition, offset=self.offset),
            failed_at=self.failed_at,
            original=OriginalRecord(
                kept_in=f"{self.service}.dead_letters",
                key_bytes=None if self.key is None else len(self.key),
                value_bytes=None if self.value is None else len(self.value),
                header_names=[
                    redact(name.encode(errors="surrogateescape").decode(errors="replace"))
                    for name, _ in self.headers
                ],
            ),
        )

    def record(self, topic_prefix: str = "") -> OutboxRecord:
        """The notice for the dead-letter topic (the outbox holds topic names without
        the prefix; the relay adds it), keyed by the letter id, with the dlq.* headers
        that tools filter on."""
        notice = self.notice()
        headers = [
            ("dlq.reason", notice.reason.encode(errors="backslashreplace")),
            ("dlq.consumer", self.consumer.encode()),
            ("dlq.origin.topic", self.topic.encode()),
            ("dlq.origin.partition", str(self.partition).encode()),
            ("dlq.origin.offset", str(self.offset).encode()),
            ("dlq.failed_at", self.failed_at.isoformat().encode()),
            ("dlq.letter_id", str(self.letter_id).encode()),
        ]
        return OutboxRecord(
            topic=dead_letter_topic(self.topic.removeprefix(topic_prefix)),
            key=str(self.letter_id).encode(),
            value=notice.model_dump_json().encode(),
            headers=headers,
            event_id=self.letter_id,
        )

    def without_headers(self, why: str) -> DeadLetter:
        """The last resort for an original that cannot be stored as it is."""
        note = f"; {len(self.headers)} original header(s) not kept: {why}"
        shown = f"; {len(self.headers)} original header(s) not kept"
        return replace(
            self, headers=(), reason=self.reason + note, shown_reason=self.shown_reason + shown
        )


async def keep(conn: asyncpg.Connection, letters: Sequence[DeadLetter]) -> None:
    """Store the originals, in the caller's transaction (a redelivered one is kept once)."""
    if not letters:
        return
    await conn.execute(
        """INSERT INTO dead_letters (letter_id, consumer, origin_topic, origin_partition,
                                     origin_offset, key, value, headers, reason, failed_at)
           SELECT i, c, t, p, o, k, v, h::jsonb, r, f
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::bigint[],
                       $6::bytea[], $7::bytea[], $8::text[], $9::text[], $10::timestamptz[])
                AS d(i, c, t, p, o, k, v, h, r, f)
           ON CONFLICT (letter_id) DO NOTHING""",
        [d.letter_id for d in letters],
        [d.consumer for d in letters],
        [d.topic for d in letters],
        [d.partition for d in letters],
        [d.offset for d in letters],
        [d.key for d in letters],
        [d.value for d in letters],
        [encode_headers(d.headers) for d in letters],
        [_storable(d.reason)[:MAX_STORED_REASON_LENGTH] for d in letters],
        [d.failed_at for d in letters],
    )


def _storable(text: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates; a reason may quote both."""
    return text.replace("\x00", "\\x00").encode(errors="backslashreplace").decode()


async def find(conn: asyncpg.Connection, letter_id: UUID) -> DeadLetter | None:
    row = await conn.fetchrow(
        """SELECT letter_id, consumer, origin_topic, origin_partition, origin_offset,
                  key, value, headers::text AS headers, reason, failed_at
           FROM dead_letters WHERE letter_id = $1""",
        letter_id,
    )
    if row is None:
        return None
    return DeadLetter(
        letter_id=row["letter_id"],
        consumer=row["consumer"],
        topic=row["origin_topic"],
        partition=row["origin_partition"],
        offset=row["origin_offset"],
        key=row["key"],
        value=row["value"],
        headers=decode_headers(row["headers"]),
        reason=row["reason"],
        shown_reason=row["reason"],
        failed_at=row["failed_at"],
    )
