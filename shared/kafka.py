"""Kafka plumbing every service shares: the one way to make a producer, the broker
check at start-up, topic creation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from shared.errors import StartupError
from shared.topics import DEFAULT_PARTITIONS

TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code


def new_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    """An idempotent producer waiting for all in-sync replicas: aiokafka's defaults
    (acks=1, no idempotence) can lose or duplicate records on a broker failover."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=512 * 1024,
        request_timeout_ms=15_000,
    )


async def _admin(bootstrap: str, wait_s: float) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), timeout=wait_s)
    except (KafkaError, OSError, TimeoutError) as error:
        await admin.close()
        reason = str(error) or type(error).__name__
        raise StartupError(f"cannot reach the Kafka broker at {bootstrap}: {reason}") from None
    return admin


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    *,
    partitions: int = DEFAULT_PARTITIONS,
    wait_s: float = 15.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Also the
    start-up check that the broker answers (StartupError, one line, when it does not)."""
    admin = await _admin(bootstrap, wait_s)
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in dict.fromkeys(names) if name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in missing]
        )
        for name, code, *_ in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise StartupError(f"cannot create Kafka topic {name}: error code {code}")
        return missing
    finally:
        await admin.close()
