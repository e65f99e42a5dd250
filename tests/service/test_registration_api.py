"""Registration's HTTP API in depth: the real app and handlers over a real PostgreSQL
schema (the broker is not started; the events are checked in the outbox)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import httpx
import pytest

from services.registration.app import SPEC, create_app
from services.registration.settings import RegistrationSettings
from shared.relay import OutboxRelay
from shared.service import Resources
from tests.conftest import ServicePool
from tests.factories import requested_worker

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(service_pool: ServicePool) -> asyncpg.Pool:
    return await service_pool(SPEC, max_size=8)


@pytest.fixture
async def api(pool: asyncpg.Pool, topic_prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = RegistrationSettings.model_construct(
        **{**RegistrationSettings().model_dump(), "topic_prefix": topic_prefix}
    )
    app = create_app(Resources(SPEC, settings, pool, cast(OutboxRelay, None)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registration") as client:
        yield client


def worker_json(**changes: Any) -> dict[str, Any]:
    return {**requested_worker().model_dump(mode="json"), **changes}


async def events(pool: asyncpg.Pool, event_type: str) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT value FROM outbox ORDER BY created_at, event_id")
    found = [json.loads(row["value"]) for row in rows]
    return [event for event in found if event["event_type"] == event_type]


async def test_the_same_key_for_a_different_worker_is_a_409_naming_the_first_answer(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    key = f"key-{uuid.uuid4()}"
    first = worker_json()
    created = await api.post("/v1/enrolments", json=first, headers={"Idempotency-Key": key})
    reordered = dict(reversed(list(first.items())))
    reordered.pop("declared_income")  # the default: the same request
    again = await api.post("/v1/enrolments", json=reordered, headers={"Idempotency-Key": key})
    other = await api.post(
        "/v1/enrolments",
        json={**first, "phone": "081298765432"},
        headers={"Idempotency-Key": key},
    )
    assert created.status_code == 201, created.text
    assert again.status_code == 201 and again.json() == created.json()
    assert other.status_code == 409, other.text
    problem = other.json()
    assert problem["type"] == "/problems/idempotency-conflict"
    assert (problem["request_id"], problem["outcome"], problem["first_outcome"]) == (
        key,
        "conflict",
        "enrolled",
    )
    assert problem["participant_number"] == created.json()["participant_number"]
    assert created.json()["participant_number"] in problem["detail"]
    assert len(await events(pool, "worker.enrolled")) == 1
    assert await pool.fetchval("SELECT count(*) FROM workers") == 1


async def test_a_rejected_request_reused_for_another_worker_is_a_conflict_too(
    api: httpx.AsyncClient,
) -> None:
    key = f"key-{uuid.uuid4()}"
    bad = await api.post(
        "/v1/enrolments", json=worker_json(phone="12"), headers={"Idempotency-Key": key}
    )
    fixed = await api.post("/v1/enrolments", json=worker_json(), headers={"Idempotency-Key": key})
    assert bad.status_code == 422
    assert fixed.status_code == 409
    assert fixed.json()["first_outcome"] == "rejected"


async def test_a_batch_names_conflicts_with_earlier_requests_and_within_itself(
    api: httpx.AsyncClient,
) -> None:
    earlier = f"key-{uuid.uuid4()}"
    assert (
        await api.post("/v1/enrolments", json=worker_json(), headers={"Idempotency-Key": earlier})
    ).status_code == 201
    twice = f"key-{uuid.uuid4()}"
    alice, bob = worker_json(), worker_json(nik="3575014101900002", phone="081311112222")
    response = await api.post(
        "/v1/enrolments/batch",
        json={
            "enrolments": [
                {"request_id": earlier, "worker": bob},
                {"request_id": twice, "worker": alice},
                {"request_id": twice, "worker": bob},
                {"request_id": twice, "worker": alice},
            ]
        },
    )
    assert response.status_code == 200, response.text
    outcomes = [
        (r["outcome"], [x["code"] for x in r["reasons"]]) for r in response.json()["results"]
    ]
    assert outcomes == [
        ("conflict", ["IDEMPOTENCY_CONFLICT"]),
        ("rejected", ["DUPLICATE_NIK"]),  # alice's NIK is the earlier request's worker
        ("conflict", ["IDEMPOTENCY_CONFLICT"]),
        ("rejected", ["DUPLICATE_NIK"]),
    ]


async def test_concurrent_requests_under_one_key_with_different_workers_decide_one(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    key = f"key-{uuid.uuid4()}"
    workers = [
        worker_json(nik=f"357501410190{n:04d}", phone=f"08131111{n:04d}") for n in range(1, 7)
    ]
    responses = await asyncio.gather(
        *(api.post("/v1/enrolments", json=w, headers={"Idempotency-Key": key}) for w in workers)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409, 409], [r.text for r in responses]
    assert await pool.fetchval("SELECT count(*) FROM workers") == 1


async def test_the_status_of_any_request_by_its_id(api: httpx.AsyncClient) -> None:
    key = f"status/{uuid.uuid4()}"  # ids may hold slashes
    created = await api.post("/v1/enrolments", json=worker_json(), headers={"Idempotency-Key": key})
    batch_id = f"batch-{uuid.uuid4()}"
    await api.post(
        "/v1/enrolments/batch",
        json={"enrolments": [{"request_id": batch_id, "worker": worker_json(phone="x")}]},
    )

    status = await api.get(f"/v1/enrolments/{key}")
    rejected = await api.get(f"/v1/enrolments/{batch_id}")
    missing = await api.get(f"/v1/enrolments/never-{uuid.uuid4()}")

    assert status.status_code == 200, status.text
    body = status.json()
    assert (body["outcome"], body["source"], body["participant_number"]) == (
        "enrolled",
        "api",
        created.json()["participant_number"],
    )
    assert body["received_at"]
    assert (rejected.json()["outcome"], rejected.json()["source"]) == ("rejected", "bulk")
    assert [r["code"] for r in rejected.json()["reasons"]] == ["PHONE_INVALID"]
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
