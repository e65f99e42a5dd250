"""End-to-end fixtures: the five processes of the product (three services, two
stand-ins) on a fresh database, a unique topic prefix and free ports."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import infra
from devtools.stack import LocalStack, StackConfig


async def start_stack(tmp_path: Path, **extra_env: str) -> tuple[LocalStack, str]:
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    database_url = await infra.create_database_async(name)
    config = StackConfig.on_free_ports(
        database_url=database_url,
        kafka_bootstrap=infra.kafka_bootstrap(),
        log_dir=tmp_path / "logs",
        topic_prefix=f"e2e{uuid.uuid4().hex[:10]}.",
        extra_env=dict(extra_env),
    )
    stack = LocalStack(config)
    try:
        await stack.start()
    except BaseException:
        stack.stop()
        await infra.drop_database_async(name)
        raise
    return stack, name


@asynccontextmanager
async def own_stack(tmp_path: Path, **extra_env: str) -> AsyncIterator[LocalStack]:
    """The five processes on a database and topics of their own, stopped and dropped
    on the way out."""
    running, name = await start_stack(tmp_path, **extra_env)
    try:
        yield running
    finally:
        running.stop()
        await infra.drop_database_async(name)


@pytest.fixture(scope="module")
async def local_stack(
    stack: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LocalStack]:
    """One stack shared by a module's tests (each makes its own ids)."""
    async with own_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture
async def fresh_stack(stack: None, tmp_path: Path) -> AsyncIterator[LocalStack]:
    """A stack for this test alone: one that counts everything, or breaks things."""
    async with own_stack(tmp_path) as running:
        yield running


def assert_every_count_exact(summary: dict[str, Any], workers: int, emails: int) -> None:
    """Every enrolled worker has one active policy, one premium, one SMS and (when they
    gave an address) one email, neither stand-in received anything twice, and every
    ledger invariant holds."""
    assert summary["coverage_ledger"]["ok"] is True, summary["coverage_ledger"]["violations"]
    assert summary["registration"]["enrolled"] == workers
    assert summary["coverage"]["policies"] == {"active": workers}
    assert summary["coverage"]["premium_total"] == workers * 16_800
    deliveries = summary["notifications"]["deliveries"]
    assert deliveries["sms"] == {"sent": workers}
    assert deliveries["email"] == {"sent": emails}
    assert summary["sms_gateway"]["accepted"] == workers
    assert summary["smtp_server"]["accepted"] == emails
