"""The development stand-ins (SMS gateway, SMTP sink) and the feeder, over real sockets.

Everything here runs on loopback with servers started by the test itself; no Kafka or
PostgreSQL is needed.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import date
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from devtools.cohort import generate_cohort
from devtools.feeder import (
    FeederError,
    ProgressLine,
    RegistrationUnavailable,
    RetryNotice,
    feed,
    mismatches,
)
from devtools.serving import free_port, serve_app
from devtools.sms_gateway import create_app
from devtools.smtp_sink import SmtpSink, create_http_app

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


# --- SMS gateway ------------------------------------------------------------------------


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve_app(create_app(tmp_path / "sms.jsonl")) as base_url,
        httpx.AsyncClient(base_url=base_url) as client,
    ):
        yield client


def sms(to: str = "+6281234567890", text: str = "Selamat, Anda terdaftar.") -> dict[str, Any]:
    return {"to": to, "text": text, "sender_id": "PERISAI", "client_ref": "delivery-1"}


async def test_sms_accepted_and_recorded(gateway: httpx.AsyncClient, tmp_path: Path) -> None:
    response = await gateway.post("/v1/messages", json=sms(), headers={"Idempotency-Key": "k1"})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted"
    assert body["duplicate"] is False

    listed = (await gateway.get("/v1/messages", params={"to": "+6281234567890"})).json()
    assert [m["message_id"] for m in listed["messages"]] == [body["message_id"]]
    assert listed["messages"][0]["text"] == "Selamat, Anda terdaftar."
    logged = [json.loads(line) for line in (tmp_path / "sms.jsonl").read_text().splitlines()]
    assert [m["message_id"] for m in logged] == [body["message_id"]]
    assert (await gateway.get("/health")).status_code == 200


async def test_sms_same_idempotency_key_is_deduplicated(gateway: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "delivery-42"}
    first = (await gateway.post("/v1/messages", json=sms(), headers=headers)).json()
    again = await gateway.post("/v1/messages", json=sms(), headers=headers)
    assert again.status_code == 202
    assert again.json() == {
        "message_id": first["message_id"],
        "status": "accepted",
        "duplicate": True,
    }
    assert (await gateway.get("/v1/stats")).json() == {
        "accepted": 1,
        "duplicates": 1,
        "rejected": 0,
    }


async def test_sms_concurrent_same_key_records_once(gateway: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "race"}
    responses = await asyncio.gather(
        *(gateway.post("/v1/messages", json=sms(), headers=headers) for _ in range(20))
    )
    assert {r.json()["message_id"] for r in responses} == {responses[0].json()["message_id"]}
    assert sum(not r.json()["duplicate"] for r in responses) == 1


@pytest.mark.parametrize("number", ["081234567890", "+62343421234", "+62812", "+6581234567"])
async def test_sms_invalid_number_is_400(gateway: httpx.AsyncClient, number: str) -> None:
    response = await gateway.post(
        "/v1/messages", json=sms(to=number), headers={"Idempotency-Key": number}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_number"
    assert (await gateway.get("/v1/stats")).json()["rejected"] == 1


async def test_sms_missing_idempotency_key_is_400(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post("/v1/messages", json=sms())
    assert response.status_code == 400
    assert (await gateway.get("/v1/stats")).json()["accepted"] == 0


async def test_sms_fault_injection(gateway: httpx.AsyncClient) -> None:
    armed = await gateway.post("/v1/faults", json={"status": 503, "count": 2, "retry_after": 1})
    assert armed.status_code == 200
    headers = {"Idempotency-Key": "after-outage"}
    statuses = []
    for _ in range(3):
        response = await gateway.post("/v1/messages", json=sms(), headers=headers)
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert response.headers["Retry-After"] == "1"
    assert statuses == [503, 503, 202]
    assert (await gateway.get("/v1/stats")).json()["accepted"] == 1

    await gateway.post("/v1/faults", json={"status": 500, "count": 5})
    assert (await gateway.delete("/v1/faults")).status_code == 200
    response = await gateway.post("/v1/messages", json=sms(), headers={"Idempotency-Key": "x"})
    assert response.status_code == 202


async def test_sms_list_is_newest_last_and_limited(gateway: httpx.AsyncClient) -> None:
    for index in range(5):
        await gateway.post(
            "/v1/messages", json=sms(text=f"pesan {index}"), headers={"Idempotency-Key": str(index)}
        )
    listed = (await gateway.get("/v1/messages", params={"limit": 2})).json()
    assert [m["text"] for m in listed["messages"]] == ["pesan 3", "pesan 4"]
    assert listed["total"] == 5


async def test_sms_gateway_takes_a_burst(gateway: httpx.AsyncClient) -> None:
    """Concurrent sends all land once. (Client and server share this loop, so this is a
    correctness check with a loose time bound, not a benchmark.)"""
    count = 1000
    gate = asyncio.Semaphore(50)

    async def send(index: int) -> int:
        async with gate:
            response = await gateway.post(
                "/v1/messages",
                json=sms(to=f"+62812{index:08d}"),
                headers={"Idempotency-Key": f"burst-{index}"},
            )
            return response.status_code

    started = time.perf_counter()
    statuses = await asyncio.gather(*(send(i) for i in range(count)))
    elapsed = time.perf_counter() - started
    assert set(statuses) == {202}
    assert (await gateway.get("/v1/stats")).json()["accepted"] == count
    listed = (await gateway.get("/v1/messages", params={"limit": count})).json()["messages"]
    assert len({m["message_id"] for m in listed}) == count
    assert elapsed < 60, f"{count} messages took {elapsed:.1f}s"


# --- CLIs as real processes -------------------------------------------------------------


@pytest.fixture
def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} not healthy within {timeout_s}s")


@pytest.fixture
def sms_gateway_process(tmp_path: Path, cli_env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "devtools.sms_gateway", "--port", str(port)]
    command += ["--log", str(tmp_path / "sms.jsonl")]
    process = subprocess.Popen(command, cwd=ROOT, env=cli_env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_sms_gateway_cli(sms_gateway_process: str, tmp_path: Path) -> None:
    response = httpx.post(
        f"{sms_gateway_process}/v1/messages",
        json=sms(),
        headers={"Idempotency-Key": "cli-1"},
    )
    assert response.status_code == 202
    lines = (tmp_path / "sms.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["message_id"] == response.json()["message_id"]


def test_smtp_sink_cli(tmp_path: Path, cli_env: dict[str, str]) -> None:
    smtp_port, http_port = free_port(), free_port()
    command = [sys.executable, "-m", "devtools.smtp_sink", "--port", str(smtp_port)]
    command += ["--http-port", str(http_port), "--log", str(tmp_path / "mail.jsonl")]
    process = subprocess.Popen(command, cwd=ROOT, env=cli_env)
    try:
        wait_healthy(f"http://127.0.0.1:{http_port}/health", process)
        message = email_message("siti.aminah87@gmail.com", "Kartu peserta")
        asyncio.run(aiosmtplib.send(message, hostname="127.0.0.1", port=smtp_port))
        listed = httpx.get(
            f"http://127.0.0.1:{http_port}/v1/messages", params={"to": "siti.aminah87@gmail.com"}
        ).json()
        assert [m["subject"] for m in listed["messages"]] == ["Kartu peserta"]
        assert json.loads((tmp_path / "mail.jsonl").read_text())["subject"] == "Kartu peserta"
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- SMTP sink --------------------------------------------------------------------------


def email_message(to: str, subject: str, message_id: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Perisai <noreply@perisai.test>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = message_id or make_msgid(domain="perisai.test")
    message.set_content(f"Yth. Bapak/Ibu,\n\n{subject}: NIK ************0001.\n")
    return message


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with SmtpSink("127.0.0.1", 0, log_path=tmp_path / "mail.jsonl") as sink:
        yield sink


async def test_smtp_sink_records_and_deduplicates(smtp_sink: SmtpSink, tmp_path: Path) -> None:
    first = email_message("sri.wahyuni@yahoo.co.id", "Pendaftaran diterima")
    second = email_message("agus.setiawan12@gmail.com", "Polis aktif — JKK & JKM")
    port = smtp_sink.port
    await aiosmtplib.send(first, hostname="127.0.0.1", port=port)
    await aiosmtplib.send(second, hostname="127.0.0.1", port=port)
    await aiosmtplib.send(second, hostname="127.0.0.1", port=port)  # a retry: same Message-ID

    assert smtp_sink.stats() == {"accepted": 2, "duplicates": 1}
    recorded = smtp_sink.messages
    assert [m["subject"] for m in recorded] == ["Pendaftaran diterima", "Polis aktif — JKK & JKM"]
    assert recorded[1]["message_id"] == second["Message-ID"]
    assert recorded[1]["rcpt_tos"] == ["agus.setiawan12@gmail.com"]
    assert recorded[1]["mail_from"] == "noreply@perisai.test"
    assert "************0001" in recorded[0]["text"]
    assert len((tmp_path / "mail.jsonl").read_text().splitlines()) == 2

    async with (
        serve_app(create_http_app(smtp_sink)) as base_url,
        httpx.AsyncClient(base_url=base_url) as client,
    ):
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/v1/stats")).json() == {"accepted": 2, "duplicates": 1}
        listed = (await client.get("/v1/messages", params={"to": "SRI.WAHYUNI@yahoo.co.id"})).json()
        assert [m["subject"] for m in listed["messages"]] == ["Pendaftaran diterima"]


# --- feeder -----------------------------------------------------------------------------


class FakeRegistration:
    """A fake of registration's batch endpoint: enrols everything it is sent except
    requests whose occupation is unknown, answers out of order, and can fail on demand."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_remaining = fail_first
        self.calls: list[list[str]] = []
        self.app = FastAPI()
        self.app.post("/v1/enrolments/batch")(self.batch)

    async def batch(self, request: Request) -> Any:
        body = await request.json()
        ids = [item["request_id"] for item in body["enrolments"]]
        self.calls.append(ids)
        if self.fail_remaining > 0:
            self.fail_remaining -= 1
            return JSONResponse({"detail": "warming up"}, status_code=503)
        results = [self.result(item) for item in body["enrolments"]]
        return {"results": list(reversed(results))}

    @staticmethod
    def result(item: dict[str, Any]) -> dict[str, Any]:
        if item["worker"]["occupation"] == "astronot":
            reason = {"code": "OCCUPATION_UNKNOWN", "field": "occupation", "message": "unknown"}
            return {"request_id": item["request_id"], "outcome": "rejected", "reasons": [reason]}
        return {
            "request_id": item["request_id"],
            "outcome": "enrolled",
            "participant_number": "00000000018",
            "worker_id": "00000000-0000-0000-0000-000000000001",
            "reasons": [],
        }


async def test_feeder_against_fake_registration_batches_orders_and_retries() -> None:
    entries = generate_cohort(23, seed=11, today=date(2025, 5, 22))
    fake = FakeRegistration(fail_first=1)
    progress: list[tuple[int, int]] = []

    def on_progress(done: int, total: int) -> None:
        progress.append((done, total))

    async with serve_app(fake.app) as base_url:
        results = await feed(
            base_url, entries, batch_size=5, concurrency=2, on_progress=on_progress
        )

    assert [r["request_id"] for r in results] == [e.request_id for e in entries]
    assert all(r["outcome"] == "enrolled" for r in results)
    expected_batches = {tuple(e.request_id for e in entries[i : i + 5]) for i in range(0, 23, 5)}
    posted = Counter(tuple(call) for call in fake.calls)
    assert set(posted) == expected_batches  # 5, 5, 5, 5, 3
    assert sorted(posted.values()) == [1, 1, 1, 1, 2]  # the batch that met the 503 went twice
    assert progress[-1] == (23, 23)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


async def test_feeder_against_fake_registration_reports_mismatches() -> None:
    entries = generate_cohort(
        30, invalid=8, seed=12, today=date(2025, 5, 22), reasons=("OCCUPATION_UNKNOWN",)
    )
    fake = FakeRegistration()
    async with serve_app(fake.app) as base_url:
        results = await feed(base_url, entries, batch_size=500)
    assert len(fake.calls) == 1
    assert mismatches(entries, results) == []
    assert sum(r["outcome"] == "rejected" for r in results) == 8


async def test_feeder_against_fake_registration_does_not_retry_a_refusal() -> None:
    calls: list[int] = []
    app = FastAPI()

    @app.post("/v1/enrolments/batch")
    async def batch() -> JSONResponse:
        calls.append(1)
        return JSONResponse({"detail": "schema mismatch"}, status_code=422)

    entries = generate_cohort(3, seed=14, today=date(2025, 5, 22))
    async with serve_app(app) as base_url:
        with pytest.raises(FeederError, match="HTTP 422") as raised:
            await feed(base_url, entries)
    assert not isinstance(raised.value, RegistrationUnavailable)
    assert calls == [1]


async def test_feeder_gives_up_clearly_when_unreachable_for_longer_than_its_bound() -> None:
    entries = generate_cohort(3, seed=13, today=date(2025, 5, 22))
    base_url = f"http://127.0.0.1:{free_port()}"
    notices: list[tuple[str, float]] = []
    with pytest.raises(RegistrationUnavailable, match=r"still unavailable after 1 s: .*Connect"):
        await feed(
            base_url,
            entries,
            retry_for_s=1.0,
            max_wait_s=0.1,
            on_retry=lambda problem, waited: notices.append((problem, waited)),
        )
    assert notices and "ConnectError" in notices[0][0]
    assert [waited for _, waited in notices] == sorted(waited for _, waited in notices)


async def test_feeder_rides_out_an_outage_and_resumes_where_it_was() -> None:
    """503s for a while (an outage), then answers: every batch is answered, the outage
    is reported, nothing is given up."""
    entries = generate_cohort(12, seed=15, today=date(2025, 5, 22))
    fake = FakeRegistration(fail_first=6)
    out = io.StringIO()
    notice = RetryNotice(60, every_s=0, stream=out)
    async with serve_app(fake.app) as base_url:
        results = await feed(
            base_url, entries, batch_size=4, concurrency=2, on_retry=notice, max_wait_s=0.2
        )
    assert mismatches(entries, results) == []
    posted = Counter(tuple(call) for call in fake.calls)
    assert set(posted) == {tuple(e.request_id for e in entries[i : i + 4]) for i in (0, 4, 8)}
    assert sum(posted.values()) == 3 + 6, "a batch answered once is never sent again"
    assert "registration unavailable (HTTP 503: warming up); retrying" in out.getvalue()


def test_progress_line_without_a_terminal_prints_every_ten_percent() -> None:
    out = io.StringIO()
    ticks = iter(range(1000))
    line = ProgressLine(1000, "requests", stream=out, clock=lambda: float(next(ticks)))
    for done in range(0, 1001, 25):
        line(done, 1000)
    line.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # 0%, 10%, ..., 100%
    assert lines[-1].startswith("requests: 1000/1000 (100.0%)")
    assert "\r" not in out.getvalue()
