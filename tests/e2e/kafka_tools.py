"""Kafka's own command-line tools (console producer, consumer-groups) against the test
broker, the way an operator or an outside system would use them. No fixtures here."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

import infra
from shared.topics import DEFAULT_PARTITIONS

ROOT = Path(__file__).resolve().parents[2]


async def kafka_tool(tool: str, *args: str, stdin: bytes = b"", timeout_s: float = 90) -> str:
    """Run one of Kafka's tools; its standard output, or AssertionError with its output."""
    command = infra.kafka_tool_command(tool, *args)
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(stdin), timeout_s)
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"kafka {tool} {' '.join(args)} failed:\n{text}"
    return text


async def publish(
    bootstrap: str,
    topic: str,
    value: bytes,
    *,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """One record, as any outside system would write it (idempotent producer)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


def key_for_partition(partition: int, partitions: int = DEFAULT_PARTITIONS) -> str:
    """A record key that Kafka's default partitioner (Java's and aiokafka's alike) puts on
    ``partition``."""
    for n in range(10_000):
        key = f"k{n}"
        if DefaultPartitioner()(key.encode(), list(range(partitions)), []) == partition:
            return key
    raise AssertionError(f"no key for partition {partition}")


async def console_produce(topic: str, lines: list[str], *properties: str) -> None:
    """Publish ``lines`` with kafka-console-producer (``--property`` settings given)."""
    args = ["--topic", topic]
    for prop in properties:
        args += ["--property", prop]
    await kafka_tool("console-producer", *args, stdin="".join(f"{ln}\n" for ln in lines).encode())


async def group_lags(group_prefix: str) -> dict[tuple[str, str, int], int | None]:
    """Lag of every partition of every consumer group whose name starts with
    ``group_prefix``, as kafka-consumer-groups reports it (None: nothing committed)."""
    output = await kafka_tool("consumer-groups", "--describe", "--all-groups")
    lags: dict[tuple[str, str, int], int | None] = {}
    for line in output.splitlines():
        cells = line.split()
        if len(cells) < 6 or not cells[0].startswith(group_prefix) or not cells[2].isdigit():
            continue
        group, topic, partition, _current, end, lag = cells[:6]
        lags[(group, topic, int(partition))] = (
            int(lag) if lag.isdigit() else (0 if end == "0" else None)
        )
    return lags


PRODUCE_RAW_HEADER_NAME = """
import asyncio, sys
from aiokafka import AIOKafkaProducer


class RawName(str):
    # The pure-Python record builder writes header names as name.encode(): this one
    # yields bytes that are not UTF-8, as librdkafka-based clients may send.
    def encode(self, *args, **kwargs):
        return bytes.fromhex(sys.argv[3])


async def main():
    producer = AIOKafkaProducer(bootstrap_servers=sys.argv[1])
    await producer.start()
    try:
        await producer.send_and_wait(
            sys.argv[2],
            bytes.fromhex(sys.argv[5]),
            key=sys.argv[4].encode(),
            headers=[(RawName("x"), b"v")],
        )
    finally:
        await producer.stop()


asyncio.run(main())
"""


async def produce_with_raw_header_name(
    bootstrap: str, topic: str, name: bytes, key: str, value: bytes
) -> None:
    """Publish ``value`` with a header whose name is ``name`` (any bytes). Neither
    Kafka's Java tools nor aiokafka's C extension can write such a name, so this uses
    aiokafka's pure-Python record builder in a child process."""
    env = {**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PRODUCE_RAW_HEADER_NAME,
        bootstrap,
        topic,
        name.hex(),
        key,
        value.hex(),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode(errors="replace")
