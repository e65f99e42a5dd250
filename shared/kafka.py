"""Kafka plumbing every service shares: the one way to make a producer, the broker
check at start-up, topic creation. Every client takes the service's KafkaSecurity."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from faststream.kafka.publisher.usecase import LogicPublisher
from faststream.kafka.subscriber.usecase import LogicSubscriber

from shared.errors import StartupError
from shared.kafka_security import PLAINTEXT, KafkaSecurity
from shared.topics import DEFAULT_PARTITIONS

# Kafka protocol error codes
TOPIC_AUTHORIZATION_FAILED = 29
CLUSTER_AUTHORIZATION_FAILED = 31
TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class BrokerTopics:
    """The topics a service's broker reads (its subscribers) and writes (its documented
    publishers, which the relay publishes to), and its consumer groups."""

    reads: tuple[str, ...]
    writes: tuple[str, ...]
    groups: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(sorted({*self.reads, *self.writes}))


def topics_of(broker: KafkaBroker) -> BrokerTopics:
    subscribers = [s for s in broker.subscribers if isinstance(s, LogicSubscriber)]
    publishers = [p for p in broker.publishers if isinstance(p, LogicPublisher)]
    if len(subscribers) != len(broker.subscribers) or len(publishers) != len(broker.publishers):
        raise TypeError("a subscriber or publisher that is not FastStream's Kafka one")
    reads = {name for sub in subscribers for name in sub.topic_names}
    groups = {sub.group_id for sub in subscribers if sub.group_id}
    writes = {pub.topic for pub in publishers}
    return BrokerTopics(tuple(sorted(reads)), tuple(sorted(writes)), tuple(sorted(groups)))


def new_producer(
    bootstrap: str, client_id: str, security: KafkaSecurity = PLAINTEXT
) -> AIOKafkaProducer:
    """An idempotent producer waiting for all in-sync replicas: aiokafka's defaults
    (acks=1, no idempotence) can lose or duplicate records on a broker failover."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        **security.client_options(),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=512 * 1024,
        request_timeout_ms=15_000,
    )


async def _admin(bootstrap: str, wait_s: float, security: KafkaSecurity) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, **security.client_options()
    )
    causes = _ClientErrors()
    logging.getLogger("aiokafka").addHandler(causes)
    try:
        await asyncio.wait_for(admin.start(), timeout=wait_s)
    except (KafkaError, OSError, TimeoutError) as error:
        await admin.close()
        reason = str(error) or type(error).__name__
        if causes.last:  # aiokafka's own error ("Unable to bootstrap") hides the cause
            reason = f"{reason} ({causes.last})"
        raise StartupError(
            f"cannot reach the Kafka broker at {bootstrap} over {security.describe()}: {reason}"
        ) from None
    finally:
        logging.getLogger("aiokafka").removeHandler(causes)
    return admin


class _ClientErrors(logging.Handler):
    """Keeps the last reason aiokafka logged for a failed connection: a refused
    password or an untrusted certificate, which its exception does not name."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        _, separator, reason = message.partition('": ')
        self.last = reason if separator else message


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    *,
    partitions: int = DEFAULT_PARTITIONS,
    wait_s: float = 15.0,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Also the
    start-up check that the broker answers (StartupError, one line, when it does not).

    Under ACLs a client sees only the topics it may describe, and creating one needs
    the cluster's CREATE right: a topic missing for such a client is an operator's
    task, and the error says so."""
    admin = await _admin(bootstrap, wait_s, security)
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in dict.fromkeys(names) if name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in missing]
        )
        refused = []
        for name, code, *_ in response.topic_errors:
            if code in (TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED):
                refused.append(name)
            elif code not in (0, TOPIC_ALREADY_EXISTS):
                raise StartupError(f"cannot create Kafka topic {name}: error code {code}")
        if refused:
            raise StartupError(
                f"Kafka topics missing or not visible to {security.describe()}: "
                f"{', '.join(sorted(refused))}; an operator creates them and grants this "
                "user their ACLs (python -m shared.kafka_acls prints them)"
            )
        return missing
    finally:
        await admin.close()
