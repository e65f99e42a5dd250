"""End-to-end fixtures: the five processes of the product (three services, two
stand-ins) on a fresh database, a unique topic prefix and free ports."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

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


@pytest.fixture(scope="module")
async def local_stack(
    stack: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LocalStack]:
    running, name = await start_stack(tmp_path_factory.mktemp("stack"))
    try:
        yield running
    finally:
        running.stop()
        await infra.drop_database_async(name)
