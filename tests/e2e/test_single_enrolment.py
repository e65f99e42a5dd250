"""One enrolment in, through all three services as separate processes on the real
Kafka broker and PostgreSQL, and a confirmation out at the SMS gateway stand-in."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from devtools.stack import LocalStack
from shared.events import EnrolmentRequested, RequestedWorker
from shared.topics import ENROLMENT_REQUESTED

pytestmark = pytest.mark.e2e

DEADLINE_S = 60.0


def unique_worker(email: str | None = None) -> RequestedWorker:
    """A valid Kota Pasuruan worker whose NIK and phone no other test uses."""
    n = uuid.uuid4().int
    serial = n % 9999 + 1
    phone = f"0812{n % 10**8:08d}"
    return RequestedWorker(
        nik=f"357501150590{serial:04d}",  # born 15-05-1990, male
        full_name="Budi Santoso",
        birth_date=date(1990, 5, 15),
        gender="M",
        address="Jl. Panglima Sudirman No. 7",
        kelurahan="Gadingrejo",
        kecamatan_code="35.75.01",
        phone=phone,
        email=email,
        occupation="tukang_kayu",
    )


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"not within {DEADLINE_S:.0f} s: {what} (last: {last!r})")


async def sms_to(client: httpx.AsyncClient, stack: LocalStack, phone_e164: str) -> list[dict]:
    response = await client.get(f"{stack.config.sms_url}/v1/messages", params={"to": phone_e164})
    return response.json()["messages"]


async def test_enrolment_over_http_ends_in_policy_ledger_entry_and_sms(
    local_stack: LocalStack,
) -> None:
    worker = unique_worker(email=f"budi.{uuid.uuid4().hex[:8]}@example.com")
    phone_e164 = "+62" + worker.phone[1:]
    async with httpx.AsyncClient(auth=local_stack.auth) as client:
        response = await client.post(
            f"{local_stack.config.registration_url}/v1/enrolments",
            json=worker.model_dump(mode="json"),
            headers={"Idempotency-Key": f"e2e-{uuid.uuid4()}"},
        )
        assert response.status_code == 201, response.text
        participant = response.json()["participant_number"]
        worker_id = response.json()["worker_id"]

        [sms] = await eventually(lambda: sms_to(client, local_stack, phone_e164), "SMS sent")
        assert participant in sms["text"]
        assert worker.nik not in sms["text"] and worker.nik[-4:] in sms["text"]
        assert "BPJS Ketenagakerjaan" in sms["text"]

        async def email_received() -> list[dict]:
            url = f"{local_stack.config.smtp_http_url}/v1/messages"
            return (await client.get(url, params={"to": worker.email})).json()["messages"]

        [email] = await eventually(email_received, "email received by the SMTP stand-in")
        assert participant in email["subject"]

        url = f"{local_stack.config.coverage_url}/v1/workers/{worker_id}/policy"
        policy = (await client.get(url)).json()
        assert policy["status"] == "active"
        assert policy["participant_number"] == participant
        [entry] = policy["ledger"]
        assert (entry["entry_type"], entry["jkk_amount"], entry["jkm_amount"]) == (
            "premium",
            10_000,
            6_800,
        )
        assert entry["debit_account"] == "payer:KOTA-PASURUAN-DBHCHT"


async def test_enrolment_from_the_upstream_topic_ends_in_an_sms(local_stack: LocalStack) -> None:
    worker = unique_worker()
    phone_e164 = "+62" + worker.phone[1:]
    request = EnrolmentRequested(
        event_id=uuid.uuid4(),
        correlation_id=f"upstream-{uuid.uuid4()}",
        request_id=f"dinsos-{uuid.uuid4()}",
        worker=worker,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=local_stack.config.kafka_bootstrap, enable_idempotence=True
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            local_stack.config.topic_prefix + ENROLMENT_REQUESTED,
            request.model_dump_json().encode(),
            key=request.kafka_key(),
            headers=request.kafka_headers(),
        )
    finally:
        await producer.stop()
    async with httpx.AsyncClient(auth=local_stack.auth) as client:
        [sms] = await eventually(lambda: sms_to(client, local_stack, phone_e164), "SMS sent")
    assert "Budi" in sms["text"]


def test_the_running_services_hold_no_owners_url(local_stack: LocalStack) -> None:
    """The stack migrates with separate jobs, as the schema's owner; the service
    processes get their runtime role's URL only (read from the kernel, as an attacker
    on the host would)."""
    owner = local_stack.config.database_url
    for name in ("registration", "coverage", "notifications"):
        process = local_stack[name].process
        assert process is not None
        environ = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
        variables = dict(item.decode().partition("=")[::2] for item in environ if item)
        assert "PERISAI_MIGRATION_DATABASE_URL" not in variables, name
        assert owner not in variables.values(), name
        assert variables["PERISAI_DATABASE_URL"].startswith(f"postgresql://perisai_{name}:")
        assert variables["PERISAI_MIGRATE_ON_START"] == "false"
