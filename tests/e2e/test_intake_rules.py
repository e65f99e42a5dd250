"""Registration's rules on every channel, against the running services: a request whose
worker does not fit the schema gets the same reason code over HTTP (single and batch)
and on the upstream topic, where it is an EnrolmentRejected, not a dead letter.
Invisible characters are refused; header values must be printable text. And an event
id that comes back with other content is counted, logged and kept."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from devtools.stack import LocalStack
from services.registration.domain import participant_number
from shared.events import EnrolmentRequested
from shared.topics import (
    ENROLMENT_REJECTED,
    ENROLMENT_REQUESTED,
    WORKER_ENROLLED,
    dead_letter_topic,
)
from tests.e2e.kafka_tools import publish
from tests.e2e.test_single_enrolment import unique_worker
from tests.factories import worker_enrolled
from tests.integration.kafka_helpers import end_offsets, eventually, read_topic

pytestmark = pytest.mark.e2e


def worker_json(**changes: Any) -> dict[str, Any]:
    data = unique_worker().model_dump(mode="json")
    data.update(changes)
    return data


async def publish_to(stack: LocalStack, topic: str, value: bytes, key: bytes) -> None:
    await publish(stack.config.kafka_bootstrap, stack.config.topic_prefix + topic, value, key=key)


def codes(reasons: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(r["code"], r["field"]) for r in reasons]


async def test_a_name_too_long_is_name_invalid_on_every_channel(local_stack: LocalStack) -> None:
    config = local_stack.config
    long_name = "Siti " + "A" * 200
    async with httpx.AsyncClient(
        auth=local_stack.auth, base_url=config.registration_url, timeout=10
    ) as client:
        single = await client.post(
            "/v1/enrolments",
            json=worker_json(full_name=long_name),
            headers={"Idempotency-Key": f"long-{uuid.uuid4()}"},
        )
        assert single.status_code == 422, single.text
        assert codes(single.json()["reasons"]) == [("NAME_INVALID", "full_name")]

        good_id, long_id = f"ok-{uuid.uuid4()}", f"long-{uuid.uuid4()}"
        batch = await client.post(
            "/v1/enrolments/batch",
            json={
                "enrolments": [
                    {"request_id": good_id, "worker": worker_json()},
                    {"request_id": long_id, "worker": worker_json(full_name=long_name)},
                ]
            },
        )
        assert batch.status_code == 200, batch.text
        by_id = {r["request_id"]: r for r in batch.json()["results"]}
        assert by_id[good_id]["outcome"] == "enrolled", "one bad request does not sink a batch"
        assert codes(by_id[long_id]["reasons"]) == [("NAME_INVALID", "full_name")]

    # The upstream topic: the same answer, as an EnrolmentRejected.
    upstream_id = f"dinsos-{uuid.uuid4()}"
    request = EnrolmentRequested(
        event_id=uuid.uuid4(),
        correlation_id=upstream_id,
        request_id=upstream_id,
        worker=unique_worker(),
    )
    data = json.loads(request.model_dump_json())
    data["worker"]["full_name"] = long_name
    await publish_to(local_stack, ENROLMENT_REQUESTED, json.dumps(data).encode(), b"k")

    # A typo'd field name, inside the worker and beside it: refused with the field named.
    typo_id = f"dinsos-{uuid.uuid4()}"
    typo = json.loads(
        EnrolmentRequested(
            event_id=uuid.uuid4(),
            correlation_id=typo_id,
            request_id=typo_id,
            worker=unique_worker(),
        ).model_dump_json()
    )
    typo["worker"]["emial"] = typo["worker"].pop("email")
    typo["sourcee"] = "upstream"
    await publish_to(local_stack, ENROLMENT_REQUESTED, json.dumps(typo).encode(), b"k")

    async def answers() -> dict[str, list[tuple[str, str | None]]]:
        records = await read_topic(
            config.kafka_bootstrap, config.topic_prefix + ENROLMENT_REJECTED, at_least=0
        )
        found = {}
        for record in records:
            event = json.loads(record.value)
            found[event["request_id"]] = codes(event["reasons"])
        return found

    rejected = await eventually(
        answers,
        lambda found: upstream_id in found and typo_id in found,
        timeout_s=60,
        interval_s=0.5,
        what="EnrolmentRejected for both upstream requests",
    )
    assert rejected[upstream_id] == [("NAME_INVALID", "full_name")]
    assert sorted(rejected[typo_id]) == [("FIELD_UNKNOWN", "emial"), ("FIELD_UNKNOWN", "sourcee")]
    dlq = config.topic_prefix + dead_letter_topic(ENROLMENT_REQUESTED)
    assert sum((await end_offsets(config.kafka_bootstrap, dlq)).values()) == 0


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("full_name", "Siti \u202enimA"),  # right-to-left override
        ("full_name", "Siti\u200bAminah"),  # zero-width space
        ("address", "Jl. Kartini\u2066 3"),  # left-to-right isolate
        ("kelurahan", "Gadingrejo\u0378"),  # unassigned
    ],
    ids=["rlo", "zwsp", "isolate", "unassigned"],
)
async def test_invisible_characters_are_text_invalid_naming_the_field(
    local_stack: LocalStack, field: str, text: str
) -> None:
    async with httpx.AsyncClient(
        auth=local_stack.auth, base_url=local_stack.config.registration_url
    ) as client:
        response = await client.post(
            "/v1/enrolments",
            json=worker_json(**{field: text}),
            headers={"Idempotency-Key": f"text-{uuid.uuid4()}"},
        )
    assert response.status_code == 422, response.text
    assert codes(response.json()["reasons"]) == [("TEXT_INVALID", field)]


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Correlation-Id"])
async def test_a_header_that_is_not_printable_text_is_refused_before_anything_is_written(
    local_stack: LocalStack, header: str
) -> None:
    key = f"tab-{uuid.uuid4()}"
    headers = {"Idempotency-Key": key, header: f"a\t{key}"}
    async with httpx.AsyncClient(
        auth=local_stack.auth, base_url=local_stack.config.registration_url
    ) as client:
        before = (await client.get("/v1/summary")).json()
        response = await client.post("/v1/enrolments", json=worker_json(), headers=headers)
        after = (await client.get("/v1/summary")).json()
    assert response.status_code == 422, response.text
    assert header.lower() in response.text.lower()
    assert (after["enrolled"], after["rejected"]) == (before["enrolled"], before["rejected"])


async def test_an_event_id_reused_for_other_content_is_counted_logged_and_kept(
    local_stack: LocalStack,
) -> None:
    config = local_stack.config
    first = worker_enrolled(
        event_id=uuid.uuid4(),
        worker_id=uuid.uuid4(),
        participant_number=participant_number(7_000_001),
        request_id=f"conflict-{uuid.uuid4()}",
        phone_e164="+6281377770001",
        email=None,
    )
    forged = first.model_copy(update={"worker_id": uuid.uuid4(), "full_name": "Someone Else"})
    await publish_to(local_stack, WORKER_ENROLLED, first.model_dump_json().encode(), b"same")
    await publish_to(local_stack, WORKER_ENROLLED, forged.model_dump_json().encode(), b"same")

    async def conflicts() -> float:
        async with httpx.AsyncClient(auth=local_stack.auth) as client:
            text = (await client.get(f"{config.coverage_url}/metrics")).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("perisai_inbox_conflicts_total")
            and "coverage.worker-enrolled" in line
        )

    assert await eventually(conflicts, lambda n: n >= 1, timeout_s=60, what="the count") == 1
    log = (config.log_dir / "coverage.log").read_text()
    [line] = [json.loads(ln) for ln in log.splitlines() if "same event id" in ln]
    assert line["event_id"] == str(first.event_id)
    assert line["first_origin"] != line["origin"]
    assert line["origin"].startswith(config.topic_prefix + WORKER_ENROLLED)

    conn = await asyncpg.connect(config.database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM coverage.inbox_conflicts")
        policies = await conn.fetchval(
            "SELECT count(*) FROM coverage.policies WHERE worker_id = ANY($1::uuid[])",
            [first.worker_id, forged.worker_id],
        )
    finally:
        await conn.close()
    assert row is not None and row["event_id"] == first.event_id
    assert (row["first_origin"], row["origin"]) == (line["first_origin"], line["origin"])
    assert policies == 1, "the first one stands"


async def test_a_worker_that_is_not_an_object_is_a_rejection_of_that_request_only(
    local_stack: LocalStack,
) -> None:
    odd_id, good_id = f"odd-{uuid.uuid4()}", f"ok-{uuid.uuid4()}"
    async with httpx.AsyncClient(
        auth=local_stack.auth, base_url=local_stack.config.registration_url
    ) as client:
        batch = await client.post(
            "/v1/enrolments/batch",
            json={
                "enrolments": [
                    {"request_id": odd_id, "worker": [1, 2]},
                    {"request_id": good_id, "worker": worker_json()},
                ]
            },
        )
        single = await client.post(
            "/v1/enrolments", json="Siti", headers={"Idempotency-Key": f"odd-{uuid.uuid4()}"}
        )
    assert batch.status_code == 200, batch.text
    by_id = {r["request_id"]: r for r in batch.json()["results"]}
    assert codes(by_id[odd_id]["reasons"]) == [("WORKER_INVALID", "worker")]
    assert by_id[good_id]["outcome"] == "enrolled"
    assert single.status_code == 422
    assert codes(single.json()["reasons"]) == [("WORKER_INVALID", "worker")]


async def test_what_the_fuzzer_found_is_answered_in_the_documented_shape(
    local_stack: LocalStack,
) -> None:
    config = local_stack.config
    async with httpx.AsyncClient(auth=local_stack.auth, timeout=10) as client:
        year_zero = await client.get(f"{config.coverage_url}/v1/summary?period=0000-01")
        not_a_number = await client.get(f"{config.registration_url}/v1/workers/abc")
        bad_luhn = await client.get(f"{config.registration_url}/v1/workers/00000000011")
        income_false = await client.post(
            f"{config.registration_url}/v1/enrolments",
            json=worker_json(declared_income=False),
            headers={"Idempotency-Key": f"income-{uuid.uuid4()}"},
        )
        not_json = await client.post(
            f"{config.registration_url}/v1/enrolments/batch",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
    for response, status in (
        (year_zero, 422),
        (not_a_number, 422),
        (bad_luhn, 422),
        (income_false, 422),
        (not_json, 400),
    ):
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == status and problem["title"] and problem["type"]
    assert [e["location"] for e in year_zero.json()["errors"]] == ["query.period"]
    assert [e["location"] for e in not_a_number.json()["errors"]] == ["path.participant_number"]
    assert codes(income_false.json()["reasons"]) == [("INCOME_INVALID", "declared_income")]
    assert income_false.json()["type"] == "/problems/enrolment-rejected"
