"""PostgreSQL refuses every connection for 40 s while a cohort is being fed: the HTTP API
answers 503 with Retry-After and a problem naming the database (never a 500, never a
stack trace), readiness is false meanwhile, the feeder keeps retrying and resumes, and
the run ends with every count exact."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx
import pytest

import infra
from devtools.cohort import generate_cohort
from devtools.feeder import feed, mismatches
from devtools.pipeline import Expected, wait_until_delivered
from devtools.stack import LocalStack
from tests.e2e.conftest import assert_every_count_exact
from tests.e2e.test_intake_rules import worker_json

pytestmark = pytest.mark.e2e

WORKERS = 3_000
OUTAGE_S = 40.0


async def refuse_connections(admin: asyncpg.Connection, database: str, refuse: bool) -> None:
    await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(not refuse).lower()}')
    if refuse:
        await admin.execute(
            """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
               WHERE datname = $1 AND pid <> pg_backend_pid()""",
            database,
        )


async def enrolled_so_far(client: httpx.AsyncClient, stack: LocalStack) -> int:
    response = await client.get(f"{stack.config.registration_url}/v1/summary")
    return int(response.json()["enrolled"]) if response.status_code == 200 else 0


def assert_is_the_outage_problem(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    problem: dict[str, Any] = response.json()
    assert problem["status"] == 503
    assert problem["cause"] == "database"
    assert problem["type"] == "/problems/dependency-unavailable"
    assert "Traceback" not in response.text and "asyncpg" not in response.text


async def test_a_database_outage_is_a_503_and_the_feed_finishes_exact(
    fresh_stack: LocalStack,
) -> None:
    stack, config = fresh_stack, fresh_stack.config
    database = config.database_url.rsplit("/", 1)[1]
    entries = generate_cohort(WORKERS, seed=5150)
    retries: list[tuple[str, float]] = []
    feeding = asyncio.create_task(
        feed(
            config.registration_url,
            entries,
            batch_size=100,
            concurrency=2,
            on_retry=lambda problem, waited: retries.append((problem, waited)),
            api_key=stack.feeder_key,
        )
    )
    admin = await asyncpg.connect(infra.admin_dsn())
    try:
        async with httpx.AsyncClient(auth=stack.auth, timeout=10) as client:
            deadline = time.monotonic() + 120
            while await enrolled_so_far(client, stack) < WORKERS // 3:
                assert time.monotonic() < deadline, "feeding did not get going"
                assert not feeding.done(), feeding
                await asyncio.sleep(0.1)

            await refuse_connections(admin, database, refuse=True)
            outage_began = time.monotonic()

            batch = await client.post(
                f"{config.registration_url}/v1/enrolments/batch",
                json={"enrolments": [{"request_id": "during-outage", "worker": worker_json()}]},
            )
            assert_is_the_outage_problem(batch)
            single = await client.post(
                f"{config.registration_url}/v1/enrolments",
                json=worker_json(),
                headers={"Idempotency-Key": "during-outage-single"},
            )
            assert_is_the_outage_problem(single)
            for url in (
                f"{config.registration_url}/v1/summary",
                f"{config.coverage_url}/v1/summary",
                f"{config.notifications_url}/v1/summary",
            ):
                assert_is_the_outage_problem(await client.get(url))
            for url in (config.registration_url, config.coverage_url, config.notifications_url):
                ready = await client.get(f"{url}/health/ready")
                assert ready.status_code == 503, ready.text
                assert ready.json()["checks"]["database"] is False

            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_began)))
            assert not feeding.done(), "the feeder gave up (or finished) during the outage"
            await refuse_connections(admin, database, refuse=False)
    finally:
        await refuse_connections(admin, database, refuse=False)
        await admin.close()

    results = await feeding
    assert retries, "the feeder met the outage and said so"
    assert any("503" in problem and "database" in problem for problem, _ in retries), retries
    assert mismatches(entries, results) == []
    expected = Expected.from_results(entries, results)
    summary = await wait_until_delivered(stack, expected, timeout_s=300)

    assert_every_count_exact(summary, WORKERS, expected.emails)
    assert summary["sms_gateway"]["duplicates"] == 0, "a worker was texted twice"
    assert summary["smtp_server"]["duplicates"] == 0, "a worker was mailed twice"
