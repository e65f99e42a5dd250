"""kill -9 of each service in the middle of the flow, then a restart: nothing lost,
nothing billed twice, every worker told once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import infra
from devtools.cohort import generate_cohort
from devtools.feeder import feed, mismatches
from devtools.pipeline import Expected, wait_until_delivered
from devtools.stack import LocalStack
from tests.e2e.conftest import start_stack

pytestmark = pytest.mark.e2e

WORKERS = 3_000


@pytest.fixture
async def crash_stack(stack: None, tmp_path: Path) -> AsyncIterator[LocalStack]:
    # A short delivery lease: deliveries the killed notifications process had claimed
    # are taken up again after it (default 120 s).
    running, name = await start_stack(tmp_path, PERISAI_SEND_LEASE_S="8")
    try:
        yield running
    finally:
        running.stop()
        await infra.drop_database_async(name)


async def enrolled_so_far(client: httpx.AsyncClient, stack: LocalStack) -> int:
    summary = (await client.get(f"{stack.config.registration_url}/v1/summary")).json()
    return int(summary["enrolled"])


async def test_services_killed_mid_flow_lose_nothing_and_duplicate_nothing(
    crash_stack: LocalStack,
) -> None:
    entries = generate_cohort(WORKERS, seed=4242)
    feeding = asyncio.create_task(
        feed(crash_stack.config.registration_url, entries, batch_size=100, concurrency=2)
    )
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + 120
        while await enrolled_so_far(client, crash_stack) < WORKERS // 3:
            assert time.monotonic() < deadline, "feeding did not get going"
            await asyncio.sleep(0.1)
    # Mid-flow: coverage and notifications die without any cleanup or offset commit.
    crash_stack["coverage"].kill()
    crash_stack["notifications"].kill()
    await asyncio.sleep(1)
    await crash_stack.restart("coverage")
    await crash_stack.restart("notifications")

    results = await feeding
    # Registration dies right after answering, its outbox possibly not yet published.
    crash_stack["registration"].kill()
    await crash_stack.restart("registration")

    assert mismatches(entries, results) == []
    expected = Expected.from_results(entries, results)
    summary = await wait_until_delivered(crash_stack, expected, timeout_s=300)

    assert summary["registration"]["enrolled"] == WORKERS
    assert summary["coverage"]["policies"] == {"active": WORKERS}
    assert summary["coverage"]["premium_total"] == WORKERS * 16_800
    deliveries = summary["notifications"]["deliveries"]
    assert deliveries["sms"] == {"sent": WORKERS}
    assert deliveries["email"] == {"sent": expected.emails}
    # A send repeated after a crash reaches the gateway again, which recognises its
    # idempotency key: each worker is texted once.
    assert summary["sms_gateway"]["accepted"] == WORKERS
    assert summary["smtp_server"]["accepted"] == expected.emails
