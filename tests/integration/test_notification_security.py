"""Notifications' transport security and retention, against real servers on loopback and
a real PostgreSQL: SMTP with STARTTLS (opportunistic by default, required, implicit),
credentials only over TLS, the SMS gateway's credential and its refusal of plain http,
and the removal of recipients and texts from old deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI, Request
from pydantic import SecretStr

from devtools.serving import serve_app
from devtools.smtp_sink import SmtpSink
from infra import certs
from services.notifications import retention, store
from services.notifications.app import SPEC
from services.notifications.channels import SmsGateway, SmtpMailer
from services.notifications.settings import NotificationSettings
from shared.errors import StartupError
from tests.conftest import ServicePool
from tests.integration.test_channels import delivery

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> certs.Certificate:
    folder = tmp_path_factory.mktemp("tls")
    return certs.issue(certs.authority(folder), folder, "smtp")


@pytest.fixture
def starttls_sink(certificate: certs.Certificate) -> Iterator[SmtpSink]:
    with SmtpSink(
        certificate=(certificate.cert, certificate.key), logins={"perisai": PASSWORD}
    ) as sink:
        yield sink


async def send(mailer: SmtpMailer, to: str = "siti@example.com") -> Any:
    try:
        [result] = await mailer.send_many([delivery("email", to)])
    finally:
        await mailer.aclose()
    return result


async def test_starttls_is_used_when_the_server_offers_it_by_default(
    starttls_sink: SmtpSink, certificate: certs.Certificate
) -> None:
    mailer = SmtpMailer("127.0.0.1", starttls_sink.port, "p@example.org", ca_file=certificate.ca)
    result = await send(mailer)
    assert result.ok, result
    [message] = starttls_sink.messages
    assert message["tls"] is True and message["login"] is None


async def test_credentials_go_only_over_tls(
    starttls_sink: SmtpSink, certificate: certs.Certificate
) -> None:
    mailer = SmtpMailer(
        "127.0.0.1",
        starttls_sink.port,
        "p@example.org",
        ca_file=certificate.ca,
        username="perisai",
        password=SecretStr(PASSWORD),
    )
    assert (await send(mailer)).ok
    [message] = starttls_sink.messages
    assert (message["tls"], message["login"]) == (True, "perisai")

    with SmtpSink() as plain:  # no STARTTLS offered
        mailer = SmtpMailer(
            "127.0.0.1", plain.port, "p@example.org", username="perisai",
            password=SecretStr(PASSWORD),
        )  # fmt: skip
        result = await send(mailer)
        assert not result.ok and not result.permanent
        assert "not sent in clear" in result.error
        assert plain.messages == [] and plain.failed_logins == 0
        # Without credentials, a server without TLS still gets the mail (opportunistic).
        assert (await send(SmtpMailer("127.0.0.1", plain.port, "p@example.org"))).ok
        assert [m["tls"] for m in plain.messages] == [False]


async def test_required_starttls_refuses_a_server_without_it() -> None:
    with SmtpSink() as plain:
        result = await send(SmtpMailer("127.0.0.1", plain.port, "p@example.org", tls="starttls"))
        assert not result.ok and plain.messages == []


async def test_a_server_certificate_not_signed_by_the_trusted_ca_is_refused(
    starttls_sink: SmtpSink,
) -> None:
    result = await send(SmtpMailer("127.0.0.1", starttls_sink.port, "p@example.org"))
    assert not result.ok and starttls_sink.messages == []


async def test_implicit_tls(certificate: certs.Certificate) -> None:
    with SmtpSink(certificate=(certificate.cert, certificate.key), implicit_tls=True) as sink:
        mailer = SmtpMailer(
            "127.0.0.1", sink.port, "p@example.org", tls="implicit", ca_file=certificate.ca
        )
        assert (await send(mailer)).ok
        assert [m["tls"] for m in sink.messages] == [True]


async def test_the_sms_gateway_gets_its_credential_in_a_header() -> None:
    seen: list[str | None] = []
    app = FastAPI()

    @app.post("/v1/messages/bulk")
    async def bulk(request: Request) -> dict[str, Any]:
        seen.append(request.headers.get("authorization"))
        messages = (await request.json())["messages"]
        return {
            "results": [
                {"idempotency_key": m["idempotency_key"], "status": "accepted", "message_id": "x"}
                for m in messages
            ]
        }

    async with serve_app(app) as url:
        gateway = SmsGateway(url, "PERISAI", token=SecretStr("gateway-token"))
        try:
            [result] = await gateway.send_many([delivery("sms", "+6281234567890")])
        finally:
            await gateway.aclose()
    assert result.ok and seen == ["Bearer gateway-token"]


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        ({"PERISAI_SMS_GATEWAY_URL": "http://sms.example.com"}, "plain http only to a loopback"),
        ({"PERISAI_SMS_GATEWAY_URL": "https://sms.example.com"}, None),
        ({"PERISAI_SMS_GATEWAY_URL": "http://[::1]:8080"}, None),
        (
            {"PERISAI_SMS_GATEWAY_URL": "http://sms-gateway:18025",
             "PERISAI_SMS_GATEWAY_PLAIN_HTTP": "true"},
            None,
        ),
        ({"PERISAI_SMTP_USERNAME": "u", "PERISAI_SMTP_TLS": "off"}, "only over TLS"),
    ],
)  # fmt: skip
def test_settings_refuse_plain_transport_for_secrets(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], refused: str | None
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PERISAI_SMTP_PASSWORD", PASSWORD)
    if refused is None:
        settings = NotificationSettings.load()
        assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())
        return
    with pytest.raises(StartupError, match=refused) as error:
        NotificationSettings.load()
    assert PASSWORD not in str(error.value)


async def queue_delivery(
    conn: asyncpg.Connection, status: str, age_days: int, to: str
) -> uuid.UUID:
    delivery_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO deliveries (delivery_id, worker_id, channel, template, recipient,
                                   subject, body, status, correlation_id, created_at)
           VALUES ($1, $2, 'email', 'policy_activated', $3, 'Perlindungan aktif',
                   'Perisai: Anda terlindungi', $4, 'test', $5)""",
        delivery_id,
        uuid.uuid4(),
        to,
        status,
        datetime.now(UTC) - timedelta(days=age_days),
    )
    return delivery_id


async def test_old_finished_deliveries_lose_recipient_and_text_but_keep_their_counts(
    service_pool: ServicePool, tmp_path: Path
) -> None:
    pool = await service_pool(SPEC)
    async with pool.acquire() as conn:
        old_sent = await queue_delivery(conn, "sent", 91, "ani@example.com")
        old_failed = await queue_delivery(conn, "failed", 120, "budi@example.com")
        old_queued = await queue_delivery(conn, "retrying", 91, "citra@example.com")
        recent = await queue_delivery(conn, "sent", 89, "dewi@example.com")
        before = await store.counts(conn)

    assert await retention.purge(pool, datetime.now(UTC), days=90) == 2
    assert await retention.purge(pool, datetime.now(UTC), days=90) == 0

    rows = {
        r["delivery_id"]: r
        for r in await pool.fetch(
            "SELECT delivery_id, recipient, recipient_masked, subject, body, status, purged_at"
            " FROM deliveries"
        )
    }
    for purged, masked in ((old_sent, "a***@example.com"), (old_failed, "b***@example.com")):
        row = rows[purged]
        assert (row["recipient"], row["subject"], row["body"]) == (None, None, None)
        assert row["recipient_masked"] == masked and row["purged_at"] is not None
    for kept in (old_queued, recent):
        assert rows[kept]["recipient"] is not None and rows[kept]["purged_at"] is None
    async with pool.acquire() as conn:
        assert await store.counts(conn) == before
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE deliveries SET body = NULL WHERE delivery_id = $1", recent)
