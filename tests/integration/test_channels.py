"""The notification channels against real servers on loopback: the SMS stand-in's
bulk API (accepted, deduplicated by idempotency key, invalid numbers, injected
outages) and the SMTP stand-in through the pooled mailer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from devtools.serving import serve_app
from devtools.sms_gateway import create_app
from devtools.smtp_sink import SmtpSink
from services.notifications.channels import SmsGateway, SmtpMailer
from services.notifications.domain import ClaimedDelivery

pytestmark = pytest.mark.integration


def delivery(channel: str, recipient: str, delivery_id: uuid.UUID | None = None) -> ClaimedDelivery:
    return ClaimedDelivery(
        delivery_id=delivery_id or uuid.uuid4(),
        worker_id=uuid.uuid4(),
        channel=channel,  # type: ignore[arg-type]
        template="policy_activated",
        recipient=recipient,
        subject="Perlindungan aktif" if channel == "email" else None,
        body="Perisai: Anda terlindungi BPJS Ketenagakerjaan.",
        attempts=1,
        correlation_id="test",
        causation_id=None,
    )


@pytest.fixture
async def gateway_url() -> AsyncIterator[str]:
    async with serve_app(create_app()) as url:
        yield url


@pytest.fixture
async def sms(gateway_url: str) -> AsyncIterator[SmsGateway]:
    gateway = SmsGateway(gateway_url, "PERISAI", bulk_size=7, concurrency=2)
    yield gateway
    await gateway.aclose()


async def test_bulk_send_accepts_every_message_in_order(sms: SmsGateway, gateway_url: str) -> None:
    batch = [delivery("sms", f"+6281234{i:06d}") for i in range(50)]
    results = await sms.send_many(batch)
    assert [r.ok for r in results] == [True] * 50
    assert len({r.provider_message_id for r in results}) == 50
    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"{gateway_url}/v1/stats")).json()
    assert stats == {"accepted": 50, "duplicates": 0, "rejected": 0}


async def test_a_repeated_send_is_recognised_by_its_idempotency_key(
    sms: SmsGateway, gateway_url: str
) -> None:
    first = delivery("sms", "+6281299990000")
    [before] = await sms.send_many([first])
    [again] = await sms.send_many([first])  # e.g. resent after a crash before recording
    assert again.ok and again.provider_message_id == before.provider_message_id
    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"{gateway_url}/v1/stats")).json()
    assert stats["accepted"] == 1 and stats["duplicates"] == 1


async def test_an_invalid_number_fails_permanently_and_alone(sms: SmsGateway) -> None:
    good, bad = delivery("sms", "+6281211112222"), delivery("sms", "+62343421234")
    ok, refused = await sms.send_many([good, bad])
    assert ok.ok
    assert not refused.ok and refused.permanent and "invalid_number" in (refused.error or "")


async def test_an_outage_is_transient_and_honours_retry_after(
    sms: SmsGateway, gateway_url: str
) -> None:
    async with httpx.AsyncClient() as client:
        armed = await client.post(
            f"{gateway_url}/v1/faults", json={"status": 503, "count": 1, "retry_after": 7}
        )
        assert armed.status_code == 200
    [result] = await sms.send_many([delivery("sms", "+6281233334444")])
    assert not result.ok and not result.permanent and result.retry_after_s == 7


async def test_an_unreachable_gateway_is_transient() -> None:
    gateway = SmsGateway("http://127.0.0.1:1", "PERISAI", timeout_s=2)
    try:
        [result] = await gateway.send_many([delivery("sms", "+6281255556666")])
    finally:
        await gateway.aclose()
    assert not result.ok and not result.permanent


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink("127.0.0.1", 0).start()
    yield sink
    sink.stop()


async def test_pooled_mailer_delivers_every_email_once(smtp_sink: SmtpSink) -> None:
    mailer = SmtpMailer("127.0.0.1", smtp_sink.port, "perisai@example.org", connections=3)
    try:
        batch = [delivery("email", f"worker{i}@example.com") for i in range(25)]
        results = await mailer.send_many(batch)
        assert all(r.ok for r in results), results
        # The same delivery again (a retry) carries the same Message-ID.
        [again] = await mailer.send_many([batch[0]])
        assert again.provider_message_id == results[0].provider_message_id
    finally:
        await mailer.aclose()
    assert smtp_sink.stats() == {"accepted": 25, "duplicates": 1}


async def test_unreachable_smtp_server_is_transient() -> None:
    mailer = SmtpMailer("127.0.0.1", 1, "perisai@example.org", timeout_s=2)
    [result] = await mailer.send_many([delivery("email", "worker@example.com")])
    assert not result.ok and not result.permanent


async def test_an_smtp_server_refusing_the_session_is_transient() -> None:
    """A 554 greeting (or a refused login) is about the session, not this message."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 5.7.1 no service for you\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    mailer = SmtpMailer("127.0.0.1", port, "perisai@example.org", timeout_s=5)
    try:
        [result] = await mailer.send_many([delivery("email", "worker@example.com")])
    finally:
        await mailer.aclose()
        server.close()
        await server.wait_closed()
    assert not result.ok and not result.permanent, result


class DroppingSmtpServer:
    """A real SMTP server on loopback (a small one of our own, so it can misbehave):
    it takes every message, and for the first ``drop_after_data`` of them it drops the
    connection after the message's final dot, before answering: the client cannot know
    the message was taken. Later connections may also be dropped while idle."""

    def __init__(self, drop_after_data: int = 0) -> None:
        self.drop_after_data = drop_after_data
        self.received: list[bytes] = []
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 test ESMTP\r\n")
        try:
            while line := await reader.readline():
                command = line.strip().upper()
                if command.startswith((b"EHLO", b"HELO")):
                    writer.write(b"250-test\r\n250 8BITMIME\r\n")
                elif command == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    body = b""
                    while (chunk := await reader.readline()) not in (b".\r\n", b""):
                        body += chunk
                    self.received.append(body)
                    if self.drop_after_data > 0:
                        self.drop_after_data -= 1
                        writer.transport.abort()  # taken, never answered
                        return
                    writer.write(b"250 queued\r\n")
                elif command == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        finally:
            writer.close()


async def test_a_connection_lost_after_the_message_was_handed_over_is_unknown_not_resent() -> None:
    """The server took the message and the connection died before its 250: the mailer
    must not send it again at once (it would reach the worker twice); the outcome is
    unknown, left for a later attempt with the same Message-ID."""
    server = DroppingSmtpServer(drop_after_data=1)
    async with server as port:
        mailer = SmtpMailer("127.0.0.1", port, "perisai@example.org", timeout_s=5)
        try:
            [result] = await mailer.send_many([delivery("email", "worker@example.com")])
        finally:
            await mailer.aclose()
    assert not result.ok and result.unknown and not result.permanent
    assert "handed over" in (result.error or "")
    assert len(server.received) == 1, "sent once, not re-sent on a fresh connection"


async def test_a_pooled_connection_the_server_closed_while_idle_is_replaced_at_once() -> None:
    """Nothing was handed over on a connection the server had closed: one fresh try."""
    server = DroppingSmtpServer()
    async with server as port:
        mailer = SmtpMailer("127.0.0.1", port, "perisai@example.org", timeout_s=5, connections=1)
        try:
            [first] = await mailer.send_many([delivery("email", "a@example.com")])
            for client in mailer._idle:  # the server side goes away while idle
                assert client.transport is not None
                client.transport.abort()
            await asyncio.sleep(0.05)
            [second] = await mailer.send_many([delivery("email", "b@example.com")])
        finally:
            await mailer.aclose()
    assert first.ok and second.ok, (first, second)
    assert len(server.received) == 2 and server.connections == 2


async def test_an_sms_request_without_an_answer_is_unknown(gateway_url: str) -> None:
    """The request reached the gateway but its answer did not come back in time: the
    messages may have been accepted."""
    async with httpx.AsyncClient(base_url=gateway_url) as client:
        response = await client.post("/v1/faults", json={"status": None, "delay_s": 2, "count": 1})
        assert response.status_code == 200, response.text
    gateway = SmsGateway(gateway_url, "PERISAI", timeout_s=0.5)
    try:
        results = await gateway.send_many([delivery("sms", "+6281234567890")])
    finally:
        await gateway.aclose()
    assert [(r.ok, r.unknown) for r in results] == [(False, True)]
    assert "no answer" in (results[0].error or "")
