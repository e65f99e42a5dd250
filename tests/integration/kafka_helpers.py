"""Helpers for integration tests against the real broker: bounded polling, reading a
topic from the beginning, committed offsets of a consumer group. No fixtures here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
) -> T:
    """Poll ``probe`` until ``done(result)``; fail with ``what`` and the last result after
    ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = await probe()
        if done(result):
            return result
        if loop.time() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {what}; last: {result!r}"
            )
        await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def topic_reader(bootstrap: str, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A group-less consumer of every partition of ``topic`` from the earliest offset."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await asyncio.wait_for(consumer.start(), 15)
    try:
        partitions = await eventually(
            lambda: _partitions(consumer, topic),
            bool,
            timeout_s=10,
            what=f"partitions of {topic}",
        )
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        yield consumer
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # see new topics promptly
    return consumer.partitions_for_topic(topic) or set()


async def read_topic(
    bootstrap: str, topic: str, *, at_least: int, timeout_s: float = 15.0
) -> list[ConsumerRecord]:
    """Every record on ``topic``: waits (bounded) until at least ``at_least`` arrived, then
    reads up to the partitions' end offsets so that extra records are seen too. Records
    come in offset order per partition."""
    records: list[ConsumerRecord] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with topic_reader(bootstrap, topic) as consumer:
        assigned = list(consumer.assignment())
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            for part in sorted(batch, key=lambda tp: tp.partition):
                records.extend(batch[part])
            if len(records) >= at_least:
                ends = await consumer.end_offsets(assigned)
                positions = {tp: await consumer.position(tp) for tp in assigned}
                if all(positions[tp] >= ends[tp] for tp in assigned):
                    return records
            if loop.time() >= deadline:
                raise AssertionError(
                    f"{topic}: {len(records)} record(s) after {timeout_s} s, "
                    f"expected at least {at_least} and the end of every partition"
                )


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    async with topic_reader(bootstrap, topic) as consumer:
        ends = await consumer.end_offsets(list(consumer.assignment()))
    return {tp.partition: offset for tp, offset in ends.items()}


async def committed_offsets(bootstrap: str, group_id: str, topic: str) -> dict[int, int]:
    """Committed offsets (the next offset to read) of ``group_id`` on ``topic``, by
    partition; partitions with no commit are absent."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(admin.start(), 15)
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset
        for tp, meta in offsets.items()
        if tp.topic == topic and meta.offset >= 0
    }
