"""The pure parts of batch consumption (shared.consumer.BatchConsumer.parse and
dead_letter), of dead letters (shared.dead_letters) and of the outbox (shared.outbox)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.consumer import BatchConsumer, dead_letter
from shared.db import DatabaseUnavailable
from shared.dead_letters import DeadLetterNotice
from shared.events import EnrolmentRequested, WorkerEnrolled, derive_event_id
from shared.failures import Failure, classify
from shared.outbox import OutboxRecord, decode_headers, encode_headers
from shared.topics import ENROLMENT_REQUESTED
from tests.factories import SAMPLES, FakeRecord, enrolment_requested, uid

PREFIX = "t1234."
CONSUMER = "registration.enrolment-requested"


async def no_handler(conn: Any, batch: list[Any]) -> list[Any]:
    raise AssertionError("parse must not call the handler")


def consumer(topic_prefix: str = "") -> BatchConsumer[EnrolmentRequested]:
    return BatchConsumer(
        cast(asyncpg.Pool, None),
        CONSUMER,
        EnrolmentRequested,
        no_handler,
        topic_prefix=topic_prefix,
    )


def record(
    value: bytes | None,
    offset: int = 0,
    *,
    topic: str = ENROLMENT_REQUESTED,
    partition: int = 0,
    key: bytes | None = b"dinsos-2026-000001",
    headers: Sequence[tuple[str, bytes | None]] = (("correlation_id", b"req-1"),),
) -> FakeRecord:
    return FakeRecord(topic, partition, offset, key, value, tuple(headers))


def wire(event: EnrolmentRequested) -> bytes:
    return event.model_dump_json().encode()


def header(headers: Sequence[tuple[str, bytes | None]], name: str) -> bytes:
    values = [value for key, value in headers if key == name]
    assert len(values) == 1, f"{name}: {values}"
    assert values[0] is not None
    return values[0]


# --- parse -------------------------------------------------------------------------


def test_valid_messages_are_parsed() -> None:
    first = enrolment_requested(event_id=uid("a"), request_id="r-a")
    second = enrolment_requested(event_id=uid("b"), request_id="r-b")
    items, dead, _ = consumer().parse([record(wire(first), 0), record(wire(second), 1)])
    assert [event for _, event in items] == [first, second]
    assert dead == []


@pytest.mark.parametrize(
    ("value", "reason_fragment"),
    [
        (b"{not json", "json"),
        (b"\xff\xfe\x00", ""),
        (b'{"event_type": "enrolment.requested"}', "event_id"),
        (b"[]", ""),
        (b"null", ""),
        (b"", "empty message value"),
        (None, "null message value"),
    ],
    ids=["invalid-json", "binary", "schema-invalid", "array", "null", "empty", "none"],
)
def test_unreadable_messages_become_dead_letters(value: bytes | None, reason_fragment: str) -> None:
    bad = record(value, offset=41, partition=2, key=b"k-1")
    items, [letter], _ = consumer().parse([bad])
    assert [event for _, event in items] == []
    assert letter.value == value, "the value as it was, a null one kept null"
    assert letter.key == b"k-1"
    assert list(letter.headers) == [("correlation_id", b"req-1")], "original headers are kept"
    assert (letter.topic, letter.partition, letter.offset) == (ENROLMENT_REQUESTED, 2, 41)
    assert reason_fragment.lower() in letter.reason.lower()

    notice = letter.record()
    assert notice.topic == f"{ENROLMENT_REQUESTED}.dlq"
    assert notice.key == str(letter.letter_id).encode()
    headers = list(notice.headers)
    reason = header(headers, "dlq.reason").decode()
    assert reason
    assert reason_fragment.lower() in reason.lower()
    assert header(headers, "dlq.consumer") == CONSUMER.encode()
    assert header(headers, "dlq.origin.topic") == ENROLMENT_REQUESTED.encode()
    assert header(headers, "dlq.origin.partition") == b"2"
    assert header(headers, "dlq.origin.offset") == b"41"
    assert header(headers, "dlq.failed_at")
    assert header(headers, "dlq.letter_id") == str(letter.letter_id).encode()
    assert [name for name, _ in headers if not name.startswith("dlq.")] == [], (
        "the record's own headers stay with the original"
    )
    assert notice.value is not None
    body = DeadLetterNotice.model_validate_json(notice.value)
    assert body.original.value_bytes == (None if value is None else len(value))
    assert body.original.header_names == ["correlation_id"]
    assert body.original.kept_in == "registration.dead_letters"


def test_a_message_of_another_type_is_a_dead_letter() -> None:
    other = SAMPLES[WorkerEnrolled]()
    items, [letter], _ = consumer().parse([record(other.model_dump_json().encode())])
    assert [event for _, event in items] == []
    reason = header(letter.record().headers, "dlq.reason").decode()
    assert "event_type" in reason or "Extra inputs" in reason


def test_schema_errors_are_described_briefly() -> None:
    data = json.loads(wire(enrolment_requested()))
    for name in ("phone", "gender", "birth_date", "nik", "full_name", "address", "kelurahan"):
        data["worker"][name] = None
    _, [letter], _ = consumer().parse([record(json.dumps(data).encode())])
    reason = header(letter.record().headers, "dlq.reason").decode()
    assert "worker." in reason
    assert "more" in reason  # at most five errors spelled out
    assert "\n" not in reason


def test_the_topic_prefix_is_stripped_from_the_dead_letter_topic() -> None:
    bad = record(b"{", topic=PREFIX + ENROLMENT_REQUESTED)
    _, [letter], _ = consumer(PREFIX).parse([bad])
    notice = letter.record(PREFIX)
    assert notice.topic == f"{ENROLMENT_REQUESTED}.dlq"
    assert header(notice.headers, "dlq.origin.topic") == (PREFIX + ENROLMENT_REQUESTED).encode()


def test_dead_letter_ids_are_deterministic_per_position() -> None:
    bad = record(b"{", offset=7, partition=3)
    _, [first], _ = consumer().parse([bad])
    _, [again], _ = consumer().parse([record(b"also bad", offset=7, partition=3)])
    _, [elsewhere], _ = consumer().parse([record(b"{", offset=8, partition=3)])
    _, [other_partition], _ = consumer().parse([record(b"{", offset=7, partition=4)])
    assert first.letter_id == again.letter_id == first.record().event_id
    assert first.letter_id == derive_event_id("dead-letter", CONSUMER, ENROLMENT_REQUESTED, 3, 7)
    other_consumer = BatchConsumer(
        cast(asyncpg.Pool, None), "notifications.x", EnrolmentRequested, no_handler
    )
    _, [theirs], _ = other_consumer.parse([bad])
    assert theirs.letter_id != first.letter_id, "two consumers of a topic: two letters"
    assert len({first.letter_id, elsewhere.letter_id, other_partition.letter_id}) == 3


def test_duplicates_within_a_batch_are_kept_once() -> None:
    event = enrolment_requested()
    other = enrolment_requested(event_id=uid("other"), request_id="r-2")
    items, dead, _ = consumer().parse(
        [record(wire(event), 0), record(wire(other), 1), record(wire(event), 2)]
    )
    assert [event for _, event in items] == [event, other]
    assert dead == []


def test_good_and_bad_messages_in_one_batch() -> None:
    good = enrolment_requested()
    items, dead, _ = consumer().parse(
        [record(b"", 0), record(wire(good), 1), record(b"{", 2), record(None, 3)]
    )
    assert [event for _, event in items] == [good]
    assert [d.offset for d in dead] == [0, 2, 3]
    assert len({d.letter_id for d in dead}) == 3


def test_dead_letter_keeps_a_missing_key_and_the_notice_is_keyed_by_its_id() -> None:
    letter = dead_letter(record(b"{", key=None, headers=()), CONSUMER, "why")
    assert letter.key is None
    notice = letter.record()
    assert notice.key == str(letter.letter_id).encode()
    assert header(notice.headers, "dlq.reason") == b"why"


def test_a_tombstone_without_a_key_makes_a_notice_kafka_clients_can_send() -> None:
    letter = dead_letter(record(None, key=None, headers=()), CONSUMER, "why")
    assert (letter.key, letter.value) == (None, None)
    notice = letter.record()
    assert notice.key and notice.value


def test_the_notice_shows_no_personal_data_of_the_record_nor_of_the_reason() -> None:
    """An unreadable EnrolmentRequested carries a full NIK, phone and email; the
    handler's error may quote them. The notice names neither."""
    data = json.loads(wire(enrolment_requested()))
    data["worker"]["birth_date"] = "not a date"
    nik, phone = data["worker"]["nik"], data["worker"]["phone"]
    email = "budi.santoso@example.com"
    data["worker"]["email"] = email
    value = json.dumps(data).encode()
    reason = f"handler failed: DataError('value {nik} / {phone} / {email} rejected')"
    letter = dead_letter(
        record(value, key=nik.encode(), headers=[("x-nik", nik.encode())]), CONSUMER, reason
    )
    notice = letter.record()
    shown = b" ".join(
        [notice.key or b"", notice.value or b""] + [v or b"" for _, v in notice.headers]
    )
    for secret in (nik, phone, phone[1:], email, "budi.santoso"):
        assert secret.encode() not in shown, secret
    assert letter.value == value and letter.reason == reason, "the original keeps everything"
    assert b"*" in shown and nik[-3:].encode() in shown, "masked, not removed"


# --- outbox ------------------------------------------------------------------------


def test_outbox_record_of_an_event() -> None:
    event = enrolment_requested()
    stored = OutboxRecord.of(event)
    assert stored.topic == EnrolmentRequested.TOPIC == ENROLMENT_REQUESTED
    assert stored.key == event.request_id.encode()
    assert stored.event_id == event.event_id
    assert list(stored.headers) == event.kafka_headers()
    assert EnrolmentRequested.model_validate_json(stored.value) == event


@pytest.mark.parametrize("event_type", list(SAMPLES), ids=lambda t: t.__name__)
def test_outbox_record_of_every_event_type(event_type: type) -> None:
    event = SAMPLES[event_type]()
    stored = OutboxRecord.of(event)
    assert stored.topic == event.TOPIC
    assert stored.key == event.kafka_key()
    assert stored.event_id == event.event_id
    assert event_type.model_validate_json(stored.value) == event


def test_headers_round_trip_nul_and_arbitrary_bytes() -> None:
    headers = [("a", b"\x00"), ("b", b""), ("c", bytes(range(256))), ("d", "é".encode())]
    stored = encode_headers(headers)
    assert "\x00" not in stored and "\\u0000" not in stored
    assert decode_headers(stored) == headers


def test_no_headers_round_trip() -> None:
    assert decode_headers(encode_headers([])) == []


# Header names as aiokafka hands them: text, or (shared.kafka_records) bytes that are not
# UTF-8 kept with surrogate escapes. Values: any bytes, or null.
header_names = st.one_of(
    st.text(max_size=20),
    st.binary(max_size=20).map(lambda raw: raw.decode(errors="surrogateescape")),
)
header_values = st.one_of(st.none(), st.binary(max_size=64))


@given(st.lists(st.tuples(header_names, header_values), max_size=10))
def test_headers_round_trip_property(headers: list[tuple[str, bytes | None]]) -> None:
    assert decode_headers(encode_headers(headers)) == headers


@given(st.lists(st.tuples(header_names, header_values), max_size=10))
def test_any_record_aiokafka_hands_over_makes_a_sendable_dead_letter(
    headers: list[tuple[str, bytes | None]],
) -> None:
    """Whatever the headers, the original survives storage (as the outbox encodes
    headers) and the notice's headers can be encoded by a Kafka client (aiokafka
    encodes names as strict UTF-8)."""
    letter = dead_letter(record(b"{", key=None, headers=headers), CONSUMER, "why")
    assert decode_headers(encode_headers(letter.headers)) == headers
    notice = letter.record()
    for name, _ in notice.headers:
        name.encode()
    assert notice.value is not None
    names = DeadLetterNotice.model_validate_json(notice.value).original.header_names
    assert len(names) == len(headers)


def test_a_null_header_value_stays_null_in_the_original() -> None:
    letter = dead_letter(record(b'{"a":1}', headers=[("x", None)]), CONSUMER, "why")
    assert ("x", None) in letter.headers
    assert ("x", None) in decode_headers(encode_headers(letter.headers))


def test_a_header_name_that_is_not_utf8_is_kept_exact_and_shown_readable() -> None:
    name = b"\xff\xfeid".decode(errors="surrogateescape")
    letter = dead_letter(record(b"{", headers=[(name, b"v")]), CONSUMER, "why")
    assert (name, b"v") in decode_headers(encode_headers(letter.headers))
    assert letter.record().value is not None
    assert b"id" in (letter.record().value or b"")


def test_an_original_without_its_headers_says_so() -> None:
    letter = dead_letter(record(b"{", headers=[("a", b"1"), ("b", None)]), CONSUMER, "why")
    stripped = letter.without_headers("ValueError('boom')")
    assert stripped.headers == ()
    assert stripped.reason.startswith("why")
    assert "2 original header(s) not kept" in stripped.reason
    assert (stripped.value, stripped.key, stripped.letter_id) == (
        letter.value,
        letter.key,
        letter.letter_id,
    )


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (ConnectionRefusedError(), Failure.UNAVAILABLE),
        (DatabaseUnavailable("not accepting connections"), Failure.UNAVAILABLE),
        (TimeoutError(), Failure.UNAVAILABLE),
        (asyncpg.CannotConnectNowError(), Failure.UNAVAILABLE),
        (asyncpg.ConnectionDoesNotExistError(), Failure.UNAVAILABLE),
        (asyncpg.TooManyConnectionsError(), Failure.UNAVAILABLE),
        (asyncpg.InterfaceError("connection is closed"), Failure.UNAVAILABLE),
        (asyncpg.DeadlockDetectedError(), Failure.TRANSIENT),
        (asyncpg.UniqueViolationError(), Failure.TRANSIENT),
        (asyncpg.DataError(), Failure.DETERMINISTIC),
        (asyncpg.CheckViolationError(), Failure.DETERMINISTIC),
        (asyncpg.UndefinedTableError(), Failure.DETERMINISTIC),
        (AttributeError("'NoneType' object has no attribute 'hex'"), Failure.DETERMINISTIC),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates"), Failure.DETERMINISTIC),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.value,
)
def test_failures_are_classified(error: BaseException, failure: Failure) -> None:
    assert classify(error) is failure


def test_dead_letter_headers_survive_the_outbox_encoding() -> None:
    _, [letter], _ = consumer().parse([record(b"\x00", offset=1)])
    assert decode_headers(encode_headers(letter.headers)) == list(letter.headers)
    notice = letter.record()
    assert decode_headers(encode_headers(notice.headers)) == list(notice.headers)


def test_header_names_with_nul_round_trip_through_the_outbox_encoding() -> None:
    from shared.outbox import decode_headers, encode_headers

    headers = [("trace\x00id", b"v"), ("plain", b"\x00"), ("caf\u00e9", b"")]
    stored = encode_headers(headers)
    assert "\\u0000" not in stored  # jsonb cannot hold NUL
    assert decode_headers(stored) == headers
