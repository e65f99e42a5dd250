"""Who may call what, on the three services' real apps over a real PostgreSQL schema:
every route but health and the API document needs a key with one of its scopes; a
refusal (401, 403, 413, 429) does nothing and is logged without the key; reads of
personal data are kept in an append-only access log."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from structlog.testing import capture_logs

from services.coverage import app as coverage_app
from services.coverage.settings import CoverageSettings
from services.notifications import app as notifications_app
from services.notifications.settings import NotificationSettings
from services.registration import app as registration_app
from services.registration.settings import RegistrationSettings
from shared import security_store
from shared.api_keys import Scope
from shared.guard import PUBLIC_PATHS, rule_of
from shared.relay import OutboxRelay
from shared.service import Resources, ServiceSpec
from shared.settings import ServiceSettings
from tests.conftest import ServicePool, bearer, make_api_key
from tests.factories import requested_worker

pytestmark = pytest.mark.integration

SERVICES: dict[str, tuple[ServiceSpec, type[ServiceSettings], Callable[[Resources], FastAPI]]] = {
    "registration": (registration_app.SPEC, RegistrationSettings, registration_app.create_app),
    "coverage": (coverage_app.SPEC, CoverageSettings, coverage_app.create_app),
    "notifications": (notifications_app.SPEC, NotificationSettings, notifications_app.create_app),
}
A_READ = {
    "registration": "/v1/summary",
    "coverage": "/v1/summary",
    "notifications": "/v1/summary",
}


@dataclass
class Service:
    name: str
    pool: asyncpg.Pool
    app: FastAPI
    client: httpx.AsyncClient

    async def key(self, *scopes: Scope, name: str = "test") -> str:
        return await make_api_key(self.pool, *scopes, name=name)


@pytest.fixture
async def open_service(
    service_pool: ServicePool, topic_prefix: str
) -> AsyncIterator[Callable[..., Any]]:
    clients: list[httpx.AsyncClient] = []

    async def open_(name: str, **settings: Any) -> Service:
        spec, settings_class, create_app = SERVICES[name]
        pool = await service_pool(spec)
        config = settings_class.model_construct(topic_prefix=topic_prefix, **settings)
        app = create_app(Resources(spec, config, pool, cast(OutboxRelay, None)))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{name}"
        )
        clients.append(client)
        return Service(name, pool, app, client)

    yield open_
    for client in clients:
        await client.aclose()


def worker_json() -> dict[str, Any]:
    return requested_worker().model_dump(mode="json")


@pytest.mark.parametrize("name", list(SERVICES))
async def test_every_route_but_health_and_the_document_names_its_scopes(
    open_service: Callable[..., Any], name: str
) -> None:
    service: Service = await open_service(name)
    routes = [r for r in service.app.routes if isinstance(r, APIRoute)]
    unguarded = [r.path for r in routes if rule_of(r) is None and r.path not in PUBLIC_PATHS]
    assert routes and unguarded == []
    document = (await service.client.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/health/"):
                assert "security" not in operation
                continue
            assert operation["security"] == [{"apiKey": []}], (method, path)
            assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)


@pytest.mark.parametrize("name", list(SERVICES))
async def test_health_and_the_document_need_no_key(
    open_service: Callable[..., Any], name: str
) -> None:
    service: Service = await open_service(name)
    assert (await service.client.get("/health/live")).status_code == 200
    assert (await service.client.get("/openapi.json")).status_code == 200


@pytest.mark.parametrize("name", list(SERVICES))
async def test_no_key_an_unknown_one_a_revoked_one_and_an_expired_one_are_401(
    open_service: Callable[..., Any], name: str
) -> None:
    service: Service = await open_service(name)
    async with service.pool.acquire() as conn:
        _, expired = await security_store.create_key(
            conn, "old", [Scope.OPS], datetime.now(UTC) - timedelta(seconds=1)
        )
    revoked = await service.key(Scope.OPS, name="gone")
    async with service.pool.acquire() as conn:
        [gone] = await security_store.revoke_keys(conn, revoked[:12])
    assert gone.revoked_at is not None
    unknown = "psk_" + "x" * 43
    path = A_READ[name]
    with capture_logs() as logs:
        answers = [
            await service.client.get(path),
            await service.client.get(path, headers={"Authorization": "Basic dXNlcjpwYXNz"}),
            await service.client.get(path, headers=bearer(unknown)),
            await service.client.get(path, headers=bearer(revoked)),
            await service.client.get(path, headers=bearer(expired)),
        ]
    for answer in answers:
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    refusals = [entry for entry in logs if entry["event"].startswith("request refused")]
    assert len(refusals) == 5
    assert [entry.get("reason") for entry in refusals[2:]] == ["unknown", "revoked", "expired"]
    logged = json.dumps(refusals, default=str)
    for key in (unknown, revoked, expired):
        assert key not in logged and key[12:] not in logged  # at most the shown part


async def test_an_enrolment_without_a_usable_key_is_refused_before_its_body_is_read(
    open_service: Callable[..., Any],
) -> None:
    service: Service = await open_service("registration")
    headers = {"Idempotency-Key": f"k-{uuid.uuid4()}", "Content-Type": "application/json"}
    not_json = await service.client.post("/v1/enrolments", content=b"{not json", headers=headers)
    valid = await service.client.post("/v1/enrolments", json=worker_json(), headers=headers)
    assert (not_json.status_code, valid.status_code) == (401, 401)
    assert await service.pool.fetchval("SELECT count(*) FROM workers") == 0
    assert await service.pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_key_without_the_scope_is_403_and_does_nothing(
    open_service: Callable[..., Any],
) -> None:
    registration: Service = await open_service("registration")
    reader = await registration.key(Scope.READ, Scope.OPS)
    with capture_logs() as logs:
        enrol = await registration.client.post(
            "/v1/enrolments",
            json=worker_json(),
            headers={"Idempotency-Key": f"k-{uuid.uuid4()}", **bearer(reader)},
        )
    assert enrol.status_code == 403, enrol.text
    assert "'enrol'" in enrol.json()["detail"]
    assert await registration.pool.fetchval("SELECT count(*) FROM workers") == 0
    assert await registration.pool.fetchval("SELECT count(*) FROM outbox") == 0
    [refusal] = [entry for entry in logs if entry["event"] == "request refused: scope"]
    assert refusal["key"] == reader[:12] and reader not in json.dumps(refusal, default=str)

    coverage: Service = await open_service("coverage")
    ops = await coverage.key(Scope.OPS)
    run = await coverage.client.post(
        "/v1/billing-runs", json={"period": "2026-06"}, headers=bearer(ops)
    )
    agreement = await coverage.client.get("/v1/agreements", headers=bearer(ops))
    assert (run.status_code, agreement.status_code) == (403, 403)
    assert await coverage.pool.fetchval("SELECT count(*) FROM billing_runs") == 0

    notifications: Service = await open_service("notifications")
    enrol_only = await notifications.key(Scope.ENROL)
    summary = await notifications.client.get("/v1/summary", headers=bearer(enrol_only))
    metrics = await notifications.client.get("/metrics", headers=bearer(enrol_only))
    assert (summary.status_code, metrics.status_code) == (403, 403)
    ops_key = await notifications.key(Scope.OPS)
    assert (await notifications.client.get("/metrics", headers=bearer(ops_key))).status_code == 200


@pytest.mark.parametrize("name", list(SERVICES))
async def test_a_body_over_the_limit_is_413_before_it_is_parsed(
    open_service: Callable[..., Any], name: str
) -> None:
    service: Service = await open_service(name, max_body_bytes=4096)
    key = await service.key()
    path = {
        "registration": "/v1/enrolments/batch",
        "coverage": "/v1/billing-runs",
        "notifications": "/v1/summary",
    }[name]
    method = "GET" if name == "notifications" else "POST"
    oversized = b"{not json" + b" " * 5000
    declared = await service.client.request(
        method, path, content=oversized, headers={**bearer(key), "Content-Type": "application/json"}
    )
    assert declared.status_code == 413, declared.text
    assert declared.headers["content-type"] == "application/problem+json"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
        for _ in range(10):
            yield b" " * 1000

    if method == "POST":
        streamed = await service.client.post(
            path, content=chunks(), headers={**bearer(key), "Content-Type": "application/json"}
        )
        assert streamed.status_code == 413, streamed.text


async def test_a_batch_over_its_count_is_413_and_enrols_nobody(
    open_service: Callable[..., Any],
) -> None:
    service: Service = await open_service("registration", max_batch_requests=3)
    key = await service.key(Scope.ENROL)
    body = {
        "enrolments": [
            {"request_id": f"r-{uuid.uuid4()}", "worker": worker_json()} for _ in range(4)
        ]
    }
    answer = await service.client.post("/v1/enrolments/batch", json=body, headers=bearer(key))
    assert answer.status_code == 413, answer.text
    assert await service.pool.fetchval("SELECT count(*) FROM workers") == 0


async def test_a_batch_is_counted_as_it_arrives_and_refused_before_the_rest_is_read(
    open_service: Callable[..., Any],
) -> None:
    service: Service = await open_service("registration", max_batch_requests=3)
    key = await service.key(Scope.ENROL)
    sent: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        yield b'{"enrolments": ['
        for index in range(1000):
            sent.append(index)
            item = {"request_id": f"r-{index}", "worker": worker_json()}
            yield (b"," if index else b"") + json.dumps(item).encode()
        yield b"]}"

    answer = await service.client.post(
        "/v1/enrolments/batch",
        content=body(),
        headers={**bearer(key), "Content-Type": "application/json"},
    )
    assert answer.status_code == 413, answer.text
    assert "at most 3" in answer.json()["detail"]
    assert len(sent) < 10, "the server stopped reading at the fourth request"
    assert await service.pool.fetchval("SELECT count(*) FROM workers") == 0


async def test_a_batch_body_that_is_not_json_or_not_the_shape_says_so(
    open_service: Callable[..., Any],
) -> None:
    service: Service = await open_service("registration")
    key = await service.key(Scope.ENROL)
    headers = {**bearer(key), "Content-Type": "application/json"}
    broken = await service.client.post("/v1/enrolments/batch", content=b'{"enr', headers=headers)
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["detail"]
    assert '{"enr' not in broken.text
    shapes = {
        b"[]": "body",
        b'{"enrolments": []}': "body.enrolments",
        b'{"enrolments": [{"worker": {}}]}': "body.enrolments.0.request_id",
        b'{"enrolments": [], "extra": 1}': "body.extra",
    }
    deep = b'{"enrolments": [{"request_id": "r", "worker": ' + b"[" * 100_000
    nested = await service.client.post("/v1/enrolments/batch", content=deep, headers=headers)
    assert nested.status_code == 400 and "deeper than" in nested.json()["detail"]
    for content, location in shapes.items():
        answer = await service.client.post("/v1/enrolments/batch", content=content, headers=headers)
        assert answer.status_code == 422, (content, answer.text)
        assert location in [e["location"] for e in answer.json()["errors"]], answer.text


@pytest.mark.parametrize("name", list(SERVICES))
async def test_a_key_over_its_rate_is_429_with_retry_after_and_others_are_not(
    open_service: Callable[..., Any], name: str
) -> None:
    service: Service = await open_service(name, rate_limit_per_s=0.5, rate_limit_burst=3)
    busy, other = await service.key(Scope.OPS), await service.key(Scope.OPS)
    path = A_READ[name]
    answers = [await service.client.get(path, headers=bearer(busy)) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].headers["retry-after"] == "2"  # one request per 2 s
    assert answers[-1].headers["content-type"] == "application/problem+json"
    assert (await service.client.get(path, headers=bearer(other))).status_code == 200


async def test_a_duplicate_nik_names_its_holder_only_to_a_key_that_may_read(
    open_service: Callable[..., Any],
) -> None:
    service: Service = await open_service("registration")
    enrol_only = await service.key(Scope.ENROL)
    enrol_and_read = await service.key(Scope.ENROL, Scope.READ)
    worker = worker_json()
    first = await service.client.post(
        "/v1/enrolments", json=worker, headers={"Idempotency-Key": "a", **bearer(enrol_only)}
    )
    number = first.json()["participant_number"]
    blind = await service.client.post(
        "/v1/enrolments", json=worker, headers={"Idempotency-Key": "b", **bearer(enrol_only)}
    )
    seeing = await service.client.post(
        "/v1/enrolments", json=worker, headers={"Idempotency-Key": "c", **bearer(enrol_and_read)}
    )
    batch = {"enrolments": [{"request_id": "d", "worker": worker}]}
    blind_batch = await service.client.post(
        "/v1/enrolments/batch", json=batch, headers=bearer(enrol_only)
    )
    for refused in (blind, seeing):
        assert refused.status_code == 422
        assert [r["code"] for r in refused.json()["reasons"]] == ["DUPLICATE_NIK"]
    assert number not in blind.text and number not in blind_batch.text
    assert "participant_number" not in blind.json()
    assert seeing.json()["participant_number"] == number
    holder_told = await security_store.find_key(service.pool, enrol_and_read)
    assert holder_told is not None
    async with service.pool.acquire() as conn:
        log = await security_store.access_log(conn, number)
    assert [(e["endpoint"], e["key_id"]) for e in log] == [("/v1/enrolments", holder_told.key_id)]
    events = await service.pool.fetch("SELECT value FROM outbox")
    rejections = [e for e in events if b"enrolment.rejected" in bytes(e["value"])]
    assert len(rejections) == 3 and all(
        number.encode() not in bytes(e["value"]) for e in rejections
    )


async def test_every_read_of_personal_data_is_logged_and_the_log_cannot_be_changed(
    open_service: Callable[..., Any],
) -> None:
    service: Service = await open_service("registration")
    clerk = await service.key(Scope.ENROL, Scope.READ, name="kelurahan-clerks")
    worker = worker_json()
    created = await service.client.post(
        "/v1/enrolments", json=worker, headers={"Idempotency-Key": "a", **bearer(clerk)}
    )
    number = created.json()["participant_number"]
    as_ani = {**bearer(clerk), "X-Actor": "clerk.ani"}
    assert (await service.client.get(f"/v1/workers/{number}", headers=as_ani)).status_code == 200
    history = await service.client.get(f"/v1/workers/{number}/history", headers=bearer(clerk))
    found = await service.client.get(
        "/v1/workers", params={"q": worker["full_name"][:4]}, headers=bearer(clerk)
    )
    missing = await service.client.get("/v1/workers/00000009993", headers=bearer(clerk))
    assert (history.status_code, found.status_code, missing.status_code) == (200, 200, 404)
    async with service.pool.acquire() as conn:
        log = await security_store.access_log(conn, number)
    assert [(e["method"], e["endpoint"], e["actor"]) for e in log] == [
        ("GET", "/v1/workers/{participant_number}", "clerk.ani"),
        ("GET", "/v1/workers/{participant_number}/history", None),
        ("GET", "/v1/workers", None),
    ]
    assert {e["key_name"] for e in log} == {"kelurahan-clerks"}
    for statement in (
        "UPDATE personal_data_access SET actor = 'someone else'",
        "DELETE FROM personal_data_access",
        "TRUNCATE personal_data_access",
    ):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await service.pool.execute(statement)


async def test_a_policy_read_is_logged_in_coverage(open_service: Callable[..., Any]) -> None:
    from tests.integration.coverage_helpers import enrol

    service: Service = await open_service("coverage")
    [worker] = await enrol(service.pool, 1, datetime(2026, 5, 10).date())
    key = await service.key(Scope.READ, name="helpdesk")
    policy = await service.client.get(f"/v1/workers/{worker.worker_id}/policy", headers=bearer(key))
    assert policy.status_code == 200, policy.text
    async with service.pool.acquire() as conn:
        [entry] = await security_store.access_log(conn, str(worker.worker_id))
    assert (entry["key_name"], entry["endpoint"]) == ("helpdesk", "/v1/workers/{worker_id}/policy")


async def test_answers_stored_before_no_longer_name_a_duplicates_holder(
    open_service: Callable[..., Any],
) -> None:
    service: Service = await open_service("registration")
    old = [
        {"code": "NAME_INVALID", "field": "full_name", "message": "as participant 00000000018"},
        {"code": "DUPLICATE_NIK", "field": "nik",
         "message": "this NIK is already enrolled as participant 00000000018"},
    ]  # fmt: skip
    await service.pool.execute(
        "INSERT INTO enrolment_requests (request_id, source, outcome, reasons)"
        " VALUES ('old', 'api', 'rejected', $1::jsonb)",
        json.dumps(old),
    )
    migration = registration_app.SPEC.migrations / "0008_duplicate_holder_unnamed.sql"
    await service.pool.execute(migration.read_text())
    key = await service.key(Scope.ENROL)
    status = await service.client.get("/v1/enrolments/old", headers=bearer(key))
    assert [r["message"] for r in status.json()["reasons"]] == [
        "as participant 00000000018",  # another rule's text is left as it was
        "this NIK is already enrolled",
    ]
