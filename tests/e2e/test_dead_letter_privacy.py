"""Dead letters keep personal data where it was. Records that carry a full NIK, a phone
number and an email address, and that no consumer can read, are sent to the running
services: every dead-letter topic and every log line must be free of them, and each
record must be in the consuming service's own ``dead_letters`` table, byte for byte."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from devtools.stack import LocalStack
from shared import dead_letters
from shared.dead_letters import DeadLetter
from shared.topics import (
    DEAD_LETTER_SUFFIX,
    ENROLMENT_REJECTED,
    ENROLMENT_REQUESTED,
    WORKER_ENROLLED,
)
from tests.e2e.kafka_tools import publish
from tests.e2e.leaks import Findings, PersonalData, log_lines, topic_records
from tests.e2e.test_single_enrolment import eventually, unique_worker
from tests.integration.kafka_helpers import read_topic

pytestmark = pytest.mark.e2e


def requests_full_of_personal_data() -> tuple[list[bytes], list[bytes], PersonalData]:
    """Records of enrolment.requested.v1 full of personal data: one registration can
    read but must reject (its birth date is not a date: the answer is an
    EnrolmentRejected), and two it cannot read at all (no event id; not JSON, quoting a
    NIK, a phone and an email): dead letters."""
    workers = [unique_worker(email=f"w{uuid.uuid4().hex[:8]}@example.com") for _ in range(3)]
    envelope = {
        "event_type": "enrolment.requested",
        "schema_version": 1,
        "correlation_id": "dlq-privacy",
        "occurred_at": "2026-12-02T00:00:00Z",
    }
    bad_date = workers[0].model_dump(mode="json") | {"birth_date": "15-05-1990"}
    rejected = json.dumps(
        envelope
        | {"event_id": str(uuid.uuid4()), "request_id": f"dlq-{uuid.uuid4()}", "worker": bad_date}
    ).encode()
    no_event_id = envelope | {"worker": workers[1].model_dump(mode="json")}
    third = workers[2]
    unreadable = [
        json.dumps(no_event_id).encode(),
        f"NIK={third.nik};HP={third.phone};EMAIL={third.email}".encode(),
    ]
    data = PersonalData(
        niks=frozenset(w.nik for w in workers),
        phones=frozenset(w.phone.removeprefix("0") for w in workers),
        emails=frozenset(str(w.email).lower() for w in workers),
    )
    return [rejected], unreadable, data


async def kept(stack: LocalStack, schema: str) -> list[DeadLetter]:
    conn = await asyncpg.connect(stack.config.database_url)
    try:
        await conn.execute(f"SET search_path TO {schema}")
        ids = [r["letter_id"] for r in await conn.fetch("SELECT letter_id FROM dead_letters")]
        return [letter for i in ids if (letter := await dead_letters.find(conn, i)) is not None]
    finally:
        await conn.close()


async def test_dead_letters_show_no_personal_data_and_keep_the_records_at_home(
    fresh_stack: LocalStack,
) -> None:
    config = fresh_stack.config
    rejected, unreadable, data = requests_full_of_personal_data()
    for value in [*rejected, *unreadable]:
        await publish(
            config.kafka_bootstrap,
            config.topic_prefix + ENROLMENT_REQUESTED,
            value,
            key=b"dinsos-1",
        )
    contact = unique_worker(email="siti.aminah@example.com")
    enrolled_without_id = {
        "event_type": "worker.enrolled",
        "phone_e164": "+62" + contact.phone[1:],
        "email": contact.email,
    }
    await publish(
        config.kafka_bootstrap,
        config.topic_prefix + WORKER_ENROLLED,
        json.dumps(enrolled_without_id).encode(),
        key=contact.phone.encode(),
    )
    data = PersonalData(
        niks=data.niks,
        phones=data.phones | {contact.phone.removeprefix("0")},
        emails=data.emails | {"siti.aminah@example.com"},
    )

    async def kept_by(schema: str, count: int) -> list[DeadLetter] | None:
        found = await kept(fresh_stack, schema)
        return found if len(found) >= count else None

    registration = await eventually(lambda: kept_by("registration", 2), "registration's letters")
    assert sorted(letter.value or b"" for letter in registration) == sorted(unreadable)
    assert {letter.key for letter in registration} == {b"dinsos-1"}
    for schema in ("coverage", "notifications"):
        [letter] = await eventually(lambda s=schema: kept_by(s, 1), f"{schema}'s dead letter")
        assert letter.value == json.dumps(enrolled_without_id).encode()
        assert letter.key == contact.phone.encode()
    rejections = config.topic_prefix + ENROLMENT_REJECTED
    await read_topic(config.kafka_bootstrap, rejections, at_least=1, timeout_s=30)

    findings = Findings()
    letters = 0
    for place, text in await topic_records(config.kafka_bootstrap, config.topic_prefix):
        topic = place.split("[", 1)[0].removeprefix(config.topic_prefix)
        letters += topic.endswith(DEAD_LETTER_SUFFIX)
        if topic in (ENROLMENT_REQUESTED, WORKER_ENROLLED):
            continue  # what this test itself wrote, as an upstream would
        findings.scan(place, text, data, set())
    assert letters == len(unreadable) + 2, "registration's two, coverage's and notifications'"
    for place, line in log_lines(config.log_dir):
        findings.scan(place, line, data, set())
    assert findings.scanned > letters
    assert findings.places == {}, findings.places
