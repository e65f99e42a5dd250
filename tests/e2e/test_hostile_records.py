"""Records that anyone who can write a topic can send, fed to the running services with
Kafka's own console producer: none of them may stall a partition. After them, fresh
enrolments over HTTP must all reach a policy and an SMS, every consumer group's lag
must return to 0 (as kafka-consumer-groups reports it), and each bad record must be on
the dead-letter topic (a notice with its reason) and in the consumer's dead_letters table."""

from __future__ import annotations

import time
import uuid

import asyncpg
import httpx
import pytest

import infra
from devtools.cohort import generate_cohort
from devtools.feeder import feed, mismatches
from devtools.pipeline import Expected, wait_until_delivered
from devtools.stack import LocalStack
from services.registration.domain import participant_number
from shared.dead_letters import DeadLetter, DeadLetterNotice, find
from shared.topics import DEFAULT_PARTITIONS, WORKER_ENROLLED, dead_letter_topic
from tests.e2e.kafka_tools import (
    console_produce,
    group_lags,
    key_for_partition,
    produce_with_raw_header_name,
)
from tests.factories import worker_enrolled
from tests.integration.kafka_helpers import end_offsets, eventually, read_topic

pytestmark = pytest.mark.e2e

FRESH_ENROLMENTS = 20
CONSUMERS_OF_WORKER_ENROLLED = {"coverage.worker-enrolled", "notifications.worker-enrolled"}
PARTITION_KEYS = [key_for_partition(p) for p in range(DEFAULT_PARTITIONS)]


async def enrol_fresh_workers(stack: LocalStack, seed: int) -> Expected:
    entries = generate_cohort(FRESH_ENROLMENTS, invalid=0, seed=seed)
    results = await feed(stack.config.registration_url, entries, api_key=stack.feeder_key)
    assert mismatches(entries, results) == []
    return Expected.from_results(entries, results)


async def assert_all_groups_caught_up(stack: LocalStack) -> None:
    lags = await eventually(
        lambda: group_lags(stack.config.topic_prefix),
        lambda found: bool(found) and all(lag == 0 for lag in found.values()),
        timeout_s=60,
        interval_s=1,
        what="every consumer group's lag to return to 0",
    )
    groups = {group for group, _, _ in lags}
    assert {stack.config.topic_prefix + c for c in CONSUMERS_OF_WORKER_ENROLLED} <= groups, lags


async def assert_ready(stack: LocalStack) -> None:
    async with httpx.AsyncClient(auth=stack.auth) as client:
        for url in (stack.config.coverage_url, stack.config.notifications_url):
            response = await client.get(f"{url}/health/ready")
            assert response.status_code == 200, response.text
            assert not any(c["stalled"] for c in response.json()["consumers"].values())


async def dead_letters(
    stack: LocalStack, at_least: int
) -> list[tuple[dict[str, bytes | None], DeadLetterNotice]]:
    """The notices on the dead-letter topic (headers, and the value read as a notice)."""
    topic = stack.config.topic_prefix + dead_letter_topic(WORKER_ENROLLED)
    records = await read_topic(stack.config.kafka_bootstrap, topic, at_least=at_least, timeout_s=60)
    return [
        (dict(r.headers), DeadLetterNotice.model_validate_json(r.value or b"")) for r in records
    ]


async def originals(stack: LocalStack) -> list[DeadLetter]:
    """The records as received, from the dead_letters tables of both consumers."""
    conn = await asyncpg.connect(stack.config.database_url)
    try:
        found = []
        for schema in ("coverage", "notifications"):
            await conn.execute(f"SET search_path TO {schema}")
            ids = [r["letter_id"] for r in await conn.fetch("SELECT letter_id FROM dead_letters")]
            found += [letter for i in ids if (letter := await find(conn, i)) is not None]
        return found
    finally:
        await conn.close()


async def test_a_null_header_value_on_every_partition_stalls_nothing(
    fresh_stack: LocalStack,
) -> None:
    """The issue's reproduction: {"a":1} with header x = null (the console producer's
    null.marker), here once on every partition of worker.enrolled.v1."""
    topic = fresh_stack.config.topic_prefix + WORKER_ENROLLED
    await console_produce(
        topic,
        [f'x:NULL\t{key}\t{{"a":1}}' for key in PARTITION_KEYS],
        "parse.headers=true",
        "parse.key=true",
        "null.marker=NULL",
    )
    expected = await enrol_fresh_workers(fresh_stack, seed=101)

    summary = await wait_until_delivered(fresh_stack, expected, timeout_s=120)
    assert summary["coverage"]["policies"] == {"active": FRESH_ENROLMENTS}
    assert summary["notifications"]["deliveries"]["sms"] == {"sent": FRESH_ENROLMENTS}
    assert summary["sms_gateway"]["accepted"] == FRESH_ENROLMENTS
    assert summary["sms_gateway"]["duplicates"] == 0
    await assert_all_groups_caught_up(fresh_stack)
    await assert_ready(fresh_stack)

    letters = await dead_letters(fresh_stack, at_least=2 * DEFAULT_PARTITIONS)
    assert len(letters) == 2 * DEFAULT_PARTITIONS, letters
    assert {h["dlq.consumer"] for h, _ in letters} == {
        c.encode() for c in CONSUMERS_OF_WORKER_ENROLLED
    }
    assert {h["dlq.origin.partition"] for h, _ in letters} == {
        str(p).encode() for p in range(DEFAULT_PARTITIONS)
    }
    for headers, notice in letters:
        assert "x" not in headers, "the record's own headers stay with the original"
        reason = (headers["dlq.reason"] or b"").decode()
        assert "event_id" in reason and "Field required" in reason, reason
        assert notice.reason == reason and notice.original.header_names == ["x"]
    kept = await originals(fresh_stack)
    assert {letter.letter_id for letter in kept} == {n.letter_id for _, n in letters}
    for letter in kept:
        assert letter.value == b'{"a":1}'
        assert list(letter.headers) == [("x", None)], "the null header value is kept as it was"


async def test_null_values_and_header_names_that_are_not_utf8_stall_nothing(
    fresh_stack: LocalStack,
) -> None:
    """On every partition: a record whose key and value are both null (a tombstone),
    and a record whose header name is not UTF-8 (aiokafka cannot decode it; a
    librdkafka client can send it). And one valid WorkerEnrolled carrying such a header,
    which must be handled like any other, not dead-lettered."""
    config = fresh_stack.config
    topic = config.topic_prefix + WORKER_ENROLLED
    await console_produce(
        topic, ["NULL\tNULL"] * 3, "parse.key=true", "null.marker=NULL"
    )  # null key: the console producer spreads them over the partitions
    for key in PARTITION_KEYS:
        await produce_with_raw_header_name(
            config.kafka_bootstrap, topic, b"\xff\xfetrace", key, b'{"a":1}'
        )
    valid = worker_enrolled(
        event_id=uuid.uuid4(),
        worker_id=uuid.uuid4(),
        participant_number=participant_number(9_000_001),
        request_id=f"raw-{uuid.uuid4()}",
        phone_e164="+6281399990001",
        email=None,
    )
    await produce_with_raw_header_name(
        config.kafka_bootstrap,
        topic,
        b"\xc3\x28",
        str(valid.worker_id),
        valid.model_dump_json().encode(),
    )
    expected = await enrol_fresh_workers(fresh_stack, seed=202)
    with_valid = Expected(expected.enrolled + 1, expected.sms + 1, expected.emails)

    summary = await wait_until_delivered(fresh_stack, with_valid, timeout_s=120)
    assert summary["coverage"]["policies"] == {"active": FRESH_ENROLMENTS + 1}
    assert summary["notifications"]["deliveries"]["sms"] == {"sent": FRESH_ENROLMENTS + 1}
    assert summary["sms_gateway"]["duplicates"] == 0
    await assert_all_groups_caught_up(fresh_stack)
    await assert_ready(fresh_stack)

    bad_records = 3 + DEFAULT_PARTITIONS
    letters = await dead_letters(fresh_stack, at_least=2 * bad_records)
    assert len(letters) == 2 * bad_records, [h for h, _ in letters]
    notices = [n for _, n in letters]
    assert sum(n.original.value_bytes is None for n in notices) == 2 * 3
    assert sum(h["dlq.reason"] == b"null message value" for h, _ in letters) == 2 * 3
    kept = await originals(fresh_stack)
    assert {letter.letter_id for letter in kept} == {n.letter_id for n in notices}
    tombstones = [letter for letter in kept if letter.value is None]
    assert len(tombstones) == 2 * 3, "a tombstone is kept as one"
    assert all(letter.key is None for letter in tombstones)
    escaped = [letter for letter in kept if letter.value == b'{"a":1}']
    assert len(escaped) == 2 * DEFAULT_PARTITIONS
    for letter in escaped:
        [(name, value)] = letter.headers
        assert (name.encode(errors="surrogateescape"), value) == (b"\xff\xfetrace", b"v"), (
            "the header name is kept byte for byte"
        )
    async with httpx.AsyncClient(auth=fresh_stack.auth) as client:
        policy = await client.get(f"{config.coverage_url}/v1/workers/{valid.worker_id}/policy")
        assert policy.status_code == 200, policy.text


async def test_the_stall_report_names_the_consumer_while_a_batch_keeps_failing(
    fresh_stack: LocalStack,
) -> None:
    """A batch that fails for a reason no record explains (here: coverage's table made
    unwritable under it) is re-read, never skipped, and the consumer says so: readiness
    503 naming the consumer and its batch. Once the cause is gone it catches up."""
    config = fresh_stack.config
    database = config.database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(infra.admin_dsn(database))
    try:
        await admin.execute(
            """CREATE FUNCTION coverage.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'refused for the test'; END $$;
               CREATE TRIGGER refuse BEFORE INSERT ON coverage.policies
               FOR EACH ROW EXECUTE FUNCTION coverage.refuse();"""
        )
        expected = await enrol_fresh_workers(fresh_stack, seed=303)

        async def readiness() -> tuple[int, dict]:
            async with httpx.AsyncClient(auth=fresh_stack.auth) as client:
                response = await client.get(f"{config.coverage_url}/health/ready")
            return response.status_code, response.json()

        _, body = await eventually(
            readiness,
            lambda answer: answer[0] == 503,
            timeout_s=90,
            interval_s=1,
            what="coverage to report its consumer stalled",
        )
        stalled = body["consumers"]["coverage.worker-enrolled"]
        assert stalled["stalled"] and "refused for the test" in stalled["last_error"], body
        assert WORKER_ENROLLED in stalled["batch"], body
        log = (config.log_dir / "coverage.log").read_text()
        assert "consumer stalled" in log
        await admin.execute("DROP TRIGGER refuse ON coverage.policies")
    finally:
        await admin.close()

    deadline = time.monotonic() + 120
    summary = await wait_until_delivered(fresh_stack, expected, timeout_s=120)
    assert time.monotonic() < deadline
    assert summary["coverage"]["policies"] == {"active": FRESH_ENROLMENTS}
    await assert_all_groups_caught_up(fresh_stack)
    await assert_ready(fresh_stack)
    dlq = config.topic_prefix + dead_letter_topic(WORKER_ENROLLED)
    ends = await end_offsets(config.kafka_bootstrap, dlq)
    assert sum(ends.values()) == 0, f"nothing is dead-lettered for a fault of ours: {ends}"
