"""Coverage's subscriber wiring through FastStream's in-memory TestKafkaBroker, with
the real handler and a real PostgreSQL schema. (Consuming, committing and redelivery on
the real broker are proven in tests/integration/test_consumer_redelivery.py.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import cast

import asyncpg
import pytest
from faststream.kafka import TestKafkaBroker

from services.coverage.app import SPEC, create_app
from services.coverage.settings import CoverageSettings
from services.registration.domain import participant_number
from shared.relay import OutboxRelay
from shared.service import Resources
from shared.topics import WORKER_ENROLLED
from tests.conftest import ServicePool
from tests.factories import worker_enrolled
from tests.integration.coverage_helpers import assert_ledger_holds

pytestmark = pytest.mark.integration


@pytest.fixture
async def coverage_pool(service_pool: ServicePool) -> AsyncIterator[asyncpg.Pool]:
    pool = await service_pool(SPEC, max_size=3)
    yield pool
    await assert_ledger_holds(pool)


def resources(pool: asyncpg.Pool, prefix: str) -> Resources:
    settings = CoverageSettings.model_construct(topic_prefix=prefix)  # defaults, no env
    # The relay is not started in this tier: the broker is in memory.
    return Resources(SPEC, settings, pool, cast(OutboxRelay, None))


async def test_worker_enrolled_batch_through_the_in_memory_broker_opens_policies(
    coverage_pool: asyncpg.Pool, topic_prefix: str
) -> None:
    app = create_app(resources(coverage_pool, topic_prefix))
    events = [
        worker_enrolled(
            event_id=uuid.uuid4(), worker_id=uuid.uuid4(), participant_number=participant_number(n)
        )
        for n in range(1, 6)
    ]
    async with TestKafkaBroker(app.state.broker) as broker:
        await broker.publish_batch(
            *[e.model_dump(mode="json") for e in events], topic=topic_prefix + WORKER_ENROLLED
        )
        # The same batch again: the inbox makes it change nothing.
        await broker.publish_batch(
            *[e.model_dump(mode="json") for e in events], topic=topic_prefix + WORKER_ENROLLED
        )

    async with coverage_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM policies WHERE status = 'active'") == 5
        assert await conn.fetchval("SELECT count(*) FROM premium_ledger") == 5
        topics = await conn.fetch("SELECT topic, count(*) AS n FROM outbox GROUP BY topic")
    assert {row["topic"]: row["n"] for row in topics} == {
        "policy.activated.v1": 5,
        "premium.posted.v1": 5,
    }
