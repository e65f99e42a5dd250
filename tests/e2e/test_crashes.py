"""kill -9 of each service in the middle of the flow, then a restart: nothing lost,
nothing billed twice, every worker told once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from devtools.cohort import generate_cohort
from devtools.feeder import feed, mismatches
from devtools.pipeline import Expected, wait_until_delivered
from devtools.stack import LocalStack
from tests.e2e.conftest import assert_every_count_exact, own_stack

pytestmark = pytest.mark.e2e

WORKERS = 3_000
SMS_CONCURRENCY, SMS_BULK_SIZE, SMTP_CONNECTIONS = 4, 100, 4  # the services' defaults
SMS_CONCURRENCY, SMS_BULK_SIZE, SMTP_CONNECTIONS = 4, 100, 4  # the services' defaults


@pytest.fixture
async def crash_stack(stack: None, tmp_path: Path) -> AsyncIterator[LocalStack]:
    # A short delivery lease: deliveries the killed notifications process had claimed
    # are taken up again after it (default 120 s).
    async with own_stack(tmp_path, PERISAI_SEND_LEASE_S="8") as running:
        yield running


async def enrolled_so_far(client: httpx.AsyncClient, stack: LocalStack) -> int:
    response = await client.get(f"{stack.config.registration_url}/v1/summary")
    if response.status_code != 200:  # busy starting up, or the database is: ask again
        return 0
    return int(response.json()["enrolled"])


async def test_services_killed_mid_flow_lose_nothing_and_duplicate_nothing(
    crash_stack: LocalStack,
) -> None:
    entries = generate_cohort(WORKERS, seed=4242)
    feeding = asyncio.create_task(
        feed(
            crash_stack.config.registration_url,
            entries,
            batch_size=100,
            concurrency=2,
            api_key=crash_stack.feeder_key,
        )
    )
    async with httpx.AsyncClient(auth=crash_stack.auth) as client:
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

    assert_every_count_exact(summary, WORKERS, expected.emails)
    # The one duplicate a kill -9 can leave: a chunk the provider took in the moment
    # between its answer and our record of it. The stand-ins recognise the repeated
    # idempotency key / Message-ID (so each worker got one message here); a provider that
    # does not deduplicate would have sent those twice. Each such send is counted as
    # uncertain, and no more can be in doubt than one killed sender had at its providers.
    uncertain = summary["notifications"]["uncertain_sends"]
    duplicates = {
        "sms": summary["sms_gateway"]["duplicates"],
        "email": summary["smtp_server"]["duplicates"],
    }
    in_flight = {"sms": SMS_CONCURRENCY * SMS_BULK_SIZE, "email": SMTP_CONNECTIONS}
    for channel in ("sms", "email"):
        assert duplicates[channel] <= uncertain.get(channel, 0) <= in_flight[channel], (
            channel,
            duplicates,
            uncertain,
        )
    print(f"kill -9 of notifications: duplicates {duplicates}, uncertain sends {uncertain}")
