"""Fixtures shared by every test tier.

Integration and end-to-end tests run against the real Kafka broker and PostgreSQL that
``python -m infra`` manages: the session starts them if they are not running and stops
at the end only what it started. Every test gets its own database and its own topic
prefix, so tests never see each other's rows or messages and no cleanup order matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

import infra
from shared import security_store
from shared.api_keys import Scope
from shared.db import create_pool
from shared.migrations import apply_migrations
from shared.service import ServiceSpec

TEST_TOPICS = re.compile(r"^(t|e2e)[0-9a-f]{10}\.")
"""Topics made under a test's prefix (topic_prefix here, the e2e stacks' own)."""


async def delete_test_topics(bootstrap: str) -> int:
    """Delete the topics tests made: a broker that outlives many runs would otherwise
    keep thousands of partitions, and their open files, for nothing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if TEST_TOPICS.match(t)]
        for start in range(0, len(names), 200):
            await admin.delete_topics(names[start : start + 200], timeout_ms=60_000)
        return len(names)
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def stack() -> Iterator[None]:
    started = infra.up()
    yield
    with contextlib.suppress(Exception):  # tidying up must not fail the session
        asyncio.run(delete_test_topics(infra.kafka_bootstrap()))
    infra.down(kafka=started.get("kafka", False), postgres=started.get("postgres", False))


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: None) -> str:
    return infra.kafka_bootstrap()


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
async def database_url(stack: None) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = await infra.create_database_async(name)
    yield dsn
    await infra.drop_database_async(name)


ServicePool = Callable[..., Awaitable[asyncpg.Pool]]


@pytest.fixture
async def service_pool(database_url: str) -> AsyncIterator[ServicePool]:
    """Makes a pool on a service's schema, migrated, in this test's database."""
    pools: list[asyncpg.Pool] = []

    async def make(spec: ServiceSpec, *, max_size: int = 5) -> asyncpg.Pool:
        conn = await asyncpg.connect(database_url)
        try:
            await apply_migrations(conn, spec.name, spec.migrations)
        finally:
            await conn.close()
        pool = await create_pool(database_url, spec.name, min_size=1, max_size=max_size)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.close()


@pytest.fixture
async def shared_schema_pool(database_url: str, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh schema holding only the shared tables (outbox, inbox)."""
    schema = "testsvc"
    empty = tmp_path / "migrations"
    empty.mkdir()
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn, schema, empty)
    finally:
        await conn.close()
    pool = await create_pool(database_url, schema, min_size=1, max_size=5)
    yield pool
    await pool.close()


async def make_api_key(
    conn: asyncpg.Pool | asyncpg.Connection, *scopes: Scope, name: str = "test"
) -> str:
    """A usable API key of the service whose schema ``conn`` is on (every scope if
    none is named)."""
    async with contextlib.AsyncExitStack() as stack:
        if isinstance(conn, asyncpg.Pool):
            conn = await stack.enter_async_context(conn.acquire())
        _, key = await security_store.create_key(conn, name, scopes or tuple(Scope), None)
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
