"""shared.kafka_records on the real broker: records aiokafka cannot decode (a header
name that is not UTF-8) reach the consumer, with everything around them, in order."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared import kafka_records
from shared.kafka import ensure_topics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Several records in ONE batch (sent before a flush): the pure-Python record builder
# writes header names with name.encode(), which RawName makes return any bytes.
PRODUCE_ONE_BATCH = """
import asyncio, json, sys
from aiokafka import AIOKafkaProducer


class RawName(str):
    def encode(self, *args, **kwargs):
        return bytes.fromhex(self)


async def main():
    producer = AIOKafkaProducer(bootstrap_servers=sys.argv[1], linger_ms=200)
    await producer.start()
    try:
        futures = [
            await producer.send(sys.argv[2], value.encode(), partition=0,
                                headers=[(RawName(name), b"v")] if name else None)
            for value, name in json.loads(sys.argv[3])
        ]
        await producer.flush()
        for future in futures:
            await future
    finally:
        await producer.stop()


asyncio.run(main())
"""


async def produce_one_batch(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    """``records``: (value, raw header name or b"" for none), all in one batch."""
    spec = json.dumps([(value, name.hex()) for value, name in records])
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PRODUCE_ONE_BATCH,
        bootstrap,
        topic,
        spec,
        env={**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode(errors="replace")


READ_WITH_PURE_PYTHON_RECORDS = """
import asyncio, json, sys
from shared import kafka_records
from tests.integration.test_unreadable_records import read_all

kafka_records.install()
records = asyncio.run(read_all(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
print("RESULT", json.dumps([
    [r.offset, r.value.decode(), [[n.encode(errors="surrogateescape").hex(), v.hex()]
                                  for n, v in r.headers]]
    for r in records
]))
"""
RESULT_PREFIX = "RESULT "


async def read_in_pure_python(
    bootstrap: str, topic: str, expected: int, max_records: int
) -> list[tuple[int, bytes, list[tuple[bytes, bytes]]]]:
    """The same read in a child process whose aiokafka uses its pure-Python record
    reader (which reports an undecodable header name differently)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        READ_WITH_PURE_PYTHON_RECORDS,
        bootstrap,
        topic,
        str(expected),
        str(max_records),
        env={**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    output, errors = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, errors.decode(errors="replace")
    [line] = [ln for ln in output.decode().splitlines() if ln.startswith(RESULT_PREFIX)]
    return [
        (offset, value.encode(), [(bytes.fromhex(n), bytes.fromhex(v)) for n, v in headers])
        for offset, value, headers in json.loads(line.removeprefix(RESULT_PREFIX))
    ]


async def read_all(bootstrap: str, topic: str, expected: int, max_records: int) -> list:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        records: list = []
        for _ in range(100):
            batch = await consumer.getmany(timeout_ms=200, max_records=max_records)
            records += [r for part in batch.values() for r in part]
            if len(records) >= expected:
                break
        return records
    finally:
        await consumer.stop()


@pytest.mark.parametrize("max_records", [1, 100], ids=["one-at-a-time", "whole-fetch"])
@pytest.mark.parametrize("reader", ["c", "pure-python"])
async def test_a_header_name_that_is_not_utf8_is_read_with_its_neighbours(
    kafka_bootstrap: str, topic_prefix: str, max_records: int, reader: str
) -> None:
    topic = f"{topic_prefix}unreadable"
    await ensure_topics(kafka_bootstrap, [topic], partitions=1)
    bad_name = b"\xff\xfetrace"
    await produce_one_batch(
        kafka_bootstrap,
        topic,
        [("before", b""), ("bad", bad_name), ("after", b""), ("also-bad", b"\xc3\x28")],
    )
    await produce_one_batch(kafka_bootstrap, topic, [("next-batch", b"")])

    if reader == "c":
        kafka_records.install()
        records = [
            (r.offset, r.value, [(n.encode(errors="surrogateescape"), v) for n, v in r.headers])
            for r in await read_all(kafka_bootstrap, topic, 5, max_records)
        ]
    else:
        records = await read_in_pure_python(kafka_bootstrap, topic, 5, max_records)

    assert [(offset, value) for offset, value, _ in records] == [
        (0, b"before"),
        (1, b"bad"),
        (2, b"after"),
        (3, b"also-bad"),
        (4, b"next-batch"),
    ]
    assert records[1][2] == [(bad_name, b"v")], "the exact bytes are recoverable"
    assert records[3][2] == [(b"\xc3\x28", b"v")]
