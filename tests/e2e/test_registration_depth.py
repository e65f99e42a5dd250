"""Registration in depth, against the running services on real Kafka and PostgreSQL:
the kelurahan checked against the official list on every channel, and stored (and
announced) under its official code and spelling."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from devtools.cohort import generate_cohort, write_cohort_csv
from devtools.stack import LocalStack
from services.registration.domain import normalise_phone
from shared.events import EnrolmentRequested
from shared.topics import ENROLMENT_REJECTED, ENROLMENT_REQUESTED, WORKER_ENROLLED
from tests.e2e.kafka_tools import publish
from tests.e2e.test_single_enrolment import unique_worker
from tests.integration.kafka_helpers import eventually, read_topic

pytestmark = pytest.mark.e2e


def worker_json(**changes: Any) -> dict[str, Any]:
    data = unique_worker().model_dump(mode="json")
    data.update(changes)
    return data


async def events_on(stack: LocalStack, topic: str) -> dict[str, dict[str, Any]]:
    """The events on a topic by request_id."""
    config = stack.config
    records = await read_topic(config.kafka_bootstrap, config.topic_prefix + topic, at_least=0)
    return {event["request_id"]: event for event in (json.loads(r.value) for r in records)}


async def test_a_kelurahan_as_typed_is_stored_and_announced_officially(
    local_stack: LocalStack,
) -> None:
    config = local_stack.config
    key = f"kel-{uuid.uuid4()}"
    async with httpx.AsyncClient(
        auth=local_stack.auth, base_url=config.registration_url, timeout=10
    ) as client:
        response = await client.post(
            "/v1/enrolments",
            json=worker_json(kecamatan_code="357503", kelurahan="tapaan"),
            headers={"Idempotency-Key": key},
        )
        assert response.status_code == 201, response.text
        number = response.json()["participant_number"]
        worker = (await client.get(f"/v1/workers/{number}")).json()
    assert (worker["kecamatan_code"], worker["kelurahan"], worker["kelurahan_code"]) == (
        "35.75.03",
        "Tapa'an",
        "35.75.03.1003",
    )
    enrolled = await eventually(
        lambda: events_on(local_stack, WORKER_ENROLLED),
        lambda found: key in found,
        timeout_s=30,
        interval_s=0.5,
        what="WorkerEnrolled for the request",
    )
    event = enrolled[key]
    assert (event["kecamatan_code"], event["kelurahan"], event["kelurahan_code"]) == (
        "35.75.03",
        "Tapa'an",
        "35.75.03.1003",
    )


async def test_a_kelurahan_of_another_kecamatan_is_refused_on_every_channel(
    local_stack: LocalStack,
) -> None:
    config = local_stack.config
    async with httpx.AsyncClient(
        auth=local_stack.auth, base_url=config.registration_url, timeout=10
    ) as client:
        response = await client.post(
            "/v1/enrolments",
            json=worker_json(kecamatan_code="35.75.01", kelurahan="Bugul Lor"),
            headers={"Idempotency-Key": f"kel-{uuid.uuid4()}"},
        )
        unknown = await client.post(
            "/v1/enrolments",
            json=worker_json(kecamatan_code="35.75.01", kelurahan="Karangketuk"),
            headers={"Idempotency-Key": f"kel-{uuid.uuid4()}"},
        )
    assert response.status_code == 422, response.text
    [reason] = response.json()["reasons"]
    assert (reason["code"], reason["field"]) == ("DOMICILE_KELURAHAN_MISMATCH", "kelurahan")
    assert "Bugul Lor (35.75.04.1010) is in kecamatan Panggungrejo" in reason["message"]
    assert unknown.status_code == 422, unknown.text
    [reason] = unknown.json()["reasons"]
    assert reason["code"] == "DOMICILE_KELURAHAN_UNKNOWN"
    assert "did you mean Karangketug (35.75.01.1001)" in reason["message"]

    upstream_id = f"dinsos-{uuid.uuid4()}"
    request = EnrolmentRequested(
        event_id=uuid.uuid4(),
        correlation_id=upstream_id,
        request_id=upstream_id,
        worker=unique_worker().model_copy(update={"kelurahan": "Tamba'an"}),
    )
    await publish(
        config.kafka_bootstrap,
        config.topic_prefix + ENROLMENT_REQUESTED,
        request.model_dump_json().encode(),
        key=b"k",
    )
    rejected = await eventually(
        lambda: events_on(local_stack, ENROLMENT_REJECTED),
        lambda found: upstream_id in found,
        timeout_s=30,
        interval_s=0.5,
        what="EnrolmentRejected for the upstream request",
    )
    [reason] = rejected[upstream_id]["reasons"]
    assert reason["code"] == "DOMICILE_KELURAHAN_MISMATCH"


async def test_an_upstream_request_id_reused_for_another_worker_is_not_answered_again(
    local_stack: LocalStack,
) -> None:
    config = local_stack.config
    request_id = f"dinsos-{uuid.uuid4()}"
    first, second = unique_worker(), unique_worker()
    for worker in (first, second):
        request = EnrolmentRequested(
            event_id=uuid.uuid4(),
            correlation_id=request_id,
            request_id=request_id,
            worker=worker,
        )
        await publish(
            config.kafka_bootstrap,
            config.topic_prefix + ENROLMENT_REQUESTED,
            request.model_dump_json().encode(),
            key=request_id.encode(),
        )

    async def conflicts_counted() -> float:
        async with httpx.AsyncClient(
            auth=local_stack.auth, base_url=config.registration_url
        ) as client:
            text = (await client.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith(
                'perisai_registration_idempotency_conflicts_total{channel="upstream"}'
            ):
                return float(line.split()[-1])
        return 0.0

    await eventually(
        conflicts_counted, lambda n: n >= 1, timeout_s=30, interval_s=0.5, what="conflict counted"
    )
    enrolled = await events_on(local_stack, WORKER_ENROLLED)
    assert enrolled[request_id]["nik_masked"].endswith(first.nik[-4:])
    records = await read_topic(
        config.kafka_bootstrap, config.topic_prefix + WORKER_ENROLLED, at_least=0
    )
    answers = [r for r in records if json.loads(r.value)["request_id"] == request_id]
    assert len(answers) == 1
    async with httpx.AsyncClient(auth=local_stack.auth, base_url=config.registration_url) as client:
        status = (await client.get(f"/v1/enrolments/{request_id}")).json()
    assert (status["outcome"], status["source"]) == ("enrolled", "upstream")


async def test_a_change_and_a_deregistration_reach_coverage_and_notifications(
    local_stack: LocalStack,
) -> None:
    """PATCH a phone: notifications holds the new one. Deregister: coverage ends the
    policy. Enrol again: the same participant number, a new policy, and a confirmation
    SMS to the number given this time."""
    config = local_stack.config
    worker = unique_worker()
    async with httpx.AsyncClient(auth=local_stack.auth, timeout=10) as client:
        created = await client.post(
            f"{config.registration_url}/v1/enrolments",
            json=worker.model_dump(mode="json"),
            headers={"Idempotency-Key": f"life-{uuid.uuid4()}"},
        )
        assert created.status_code == 201, created.text
        number, worker_id = created.json()["participant_number"], created.json()["worker_id"]
        policy_url = f"{config.coverage_url}/v1/workers/{worker_id}/policy"

        async def policy() -> dict[str, Any] | None:
            response = await client.get(policy_url)
            return response.json() if response.status_code == 200 else None

        await eventually(
            policy,
            lambda p: p is not None and p["status"] == "active",
            timeout_s=60,
            interval_s=0.5,
            what="an active policy",
        )
        new_phone = "0813" + worker.phone[4:]
        changed = await client.patch(
            f"{config.registration_url}/v1/workers/{number}",
            json={"phone": new_phone},
            headers={"X-Actor": "clerk.e2e"},
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["changed"] == ["phone_e164"]

        conn = await asyncpg.connect(config.database_url)
        try:

            async def contact() -> str | None:
                return await conn.fetchval(
                    "SELECT phone_e164 FROM notifications.confirmations WHERE worker_id = $1",
                    uuid.UUID(worker_id),
                )

            await eventually(
                contact,
                lambda phone: phone == "+62" + new_phone[1:],
                timeout_s=60,
                interval_s=0.5,
                what="notifications holding the new phone",
            )
        finally:
            await conn.close()

        enrolled_on = created_on = (
            await client.get(f"{config.registration_url}/v1/workers/{number}")
        ).json()["enrolled_on"]
        gone = await client.post(
            f"{config.registration_url}/v1/workers/{number}/deregistration",
            json={"reason": "MOVED_OUT", "effective_date": enrolled_on},
        )
        assert gone.status_code == 200, gone.text
        ended = await eventually(
            policy,
            lambda p: p is not None and p["status"] == "ended",
            timeout_s=60,
            interval_s=0.5,
            what="the policy ended",
        )
        assert ended["coverage_end"] == created_on

        back_phone = "0857" + worker.phone[4:]
        back = await client.post(
            f"{config.registration_url}/v1/enrolments",
            json={**worker.model_dump(mode="json"), "phone": back_phone},
            headers={"Idempotency-Key": f"life-{uuid.uuid4()}"},
        )
        assert back.status_code == 201, back.text
        assert back.json()["participant_number"] == number
        again = await eventually(
            policy,
            lambda p: p is not None and p["status"] == "active",
            timeout_s=60,
            interval_s=0.5,
            what="a new active policy",
        )
        assert again["policy_id"] != ended["policy_id"]

        async def sms_to_new_number() -> list[dict[str, Any]]:
            response = await client.get(
                f"{config.sms_url}/v1/messages", params={"to": "+62" + back_phone[1:]}
            )
            return list(response.json()["messages"])

        [sms] = await eventually(
            sms_to_new_number,
            lambda found: len(found) >= 1,
            timeout_s=60,
            interval_s=0.5,
            what="a confirmation SMS for the new membership",
        )
        assert number in sms["text"]


async def test_a_csv_upload_to_the_running_service_confirms_every_enrolled_worker(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    config = local_stack.config
    path = tmp_path / "daftar.csv"
    entries = generate_cohort(30, invalid=5, seed=int(uuid.uuid4().int % 10**6) + 1000)
    write_cohort_csv(entries, path)
    async with httpx.AsyncClient(
        auth=local_stack.auth, base_url=config.registration_url, timeout=30
    ) as client:
        created = await client.post(
            "/v1/imports", content=path.read_bytes(), headers={"Content-Type": "text/csv"}
        )
        assert created.status_code == 202, created.text
        import_id = created.json()["import_id"]

        async def status() -> dict[str, Any]:
            return dict((await client.get(f"/v1/imports/{import_id}")).json())

        done = await eventually(
            status,
            lambda s: s["status"] == "done",
            timeout_s=60,
            interval_s=0.5,
            what="the import done",
        )
    assert (done["enrolled"], done["rejected"]) == (30, 5)
    phones = {normalise_phone(e.worker.phone) for e in entries if e.expected_reason is None}

    async def confirmed() -> set[str | None]:
        async with httpx.AsyncClient(auth=local_stack.auth) as client:
            response = await client.get(f"{config.sms_url}/v1/messages")
        return {m["to"] for m in response.json()["messages"]} & phones

    await eventually(
        confirmed,
        lambda found: found == phones,
        timeout_s=90,
        interval_s=0.5,
        what="a confirmation SMS to every enrolled worker of the file",
    )


async def test_an_import_survives_the_service_killed_midway_and_the_file_sent_again(
    fresh_stack: LocalStack, tmp_path: Path
) -> None:
    """kill -9 of registration mid-import: on restart the import carries on from its
    kept file; the same file uploaded again too is the same import. Every row is
    answered once, every enrolled worker confirmed once."""
    config = fresh_stack.config
    size, invalid = 6000, 60
    path = tmp_path / "daftar.csv"
    entries = generate_cohort(size, invalid=invalid, seed=777)
    write_cohort_csv(entries, path)
    async with httpx.AsyncClient(
        auth=fresh_stack.auth, base_url=config.registration_url, timeout=60
    ) as client:
        created = await client.post(
            "/v1/imports", content=path.read_bytes(), headers={"Content-Type": "text/csv"}
        )
        assert created.status_code == 202, created.text
        import_id = created.json()["import_id"]

        async def status() -> dict[str, Any]:
            return dict((await client.get(f"/v1/imports/{import_id}")).json())

        await eventually(
            status,
            lambda s: s["rows_done"] >= (size + invalid) // 4,
            timeout_s=120,
            interval_s=0.2,
            what="a quarter of the rows done",
        )
        fresh_stack["registration"].kill()
        await fresh_stack.restart("registration")
        again = await client.post(
            "/v1/imports", content=path.read_bytes(), headers={"Content-Type": "text/csv"}
        )
        assert again.status_code == 202, again.text
        done = await eventually(
            status,
            lambda s: s["status"] == "done",
            timeout_s=180,
            interval_s=0.5,
            what="the import done",
        )
    assert (done["rows_done"], done["enrolled"], done["rejected"], done["uploads"]) == (
        size + invalid,
        size,
        invalid,
        2,
    )
    conn = await asyncpg.connect(config.database_url)
    try:
        counts = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM registration.workers) AS workers,
                      (SELECT count(*) FROM registration.enrolment_requests) AS requests"""
        )
    finally:
        await conn.close()
    assert (counts["workers"], counts["requests"]) == (size, size + invalid)
    phones = {normalise_phone(e.worker.phone) for e in entries if e.expected_reason is None}

    async def delivered() -> dict[str, Any]:
        async with httpx.AsyncClient(auth=fresh_stack.auth) as client:
            return dict((await client.get(f"{config.sms_url}/v1/stats")).json())

    stats = await eventually(
        delivered,
        lambda s: s.get("accepted", 0) >= size,
        timeout_s=240,
        interval_s=1,
        what="every enrolled worker's SMS",
    )
    assert len(phones) == size
    assert (stats["accepted"], stats["duplicates"]) == (size, 0), stats
