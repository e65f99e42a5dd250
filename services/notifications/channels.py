"""Adapters to the outside: an SMS gateway over HTTP (a generic JSON gateway) and email
over SMTP. Each turns the provider's answer into a SendResult: ok, transient (retry)
or permanent (give up with the provider's reason)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import replace
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, Literal

import aiosmtplib
import httpx
from pydantic import SecretStr

from services.notifications.domain import ClaimedDelivery, SendResult

NOT_SENT: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
"""HTTP failures before the request left: the gateway cannot have taken anything. Any
other failure (no answer, a connection reset mid-response) leaves the outcome unknown."""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class SmsGateway:
    """The generic JSON SMS gateway, used through its bulk API: one HTTP request per
    ``bulk_size`` messages. Each message carries its delivery id as idempotency key, so
    a send repeated after a crash is recognised by the gateway and not texted twice."""

    def __init__(
        self,
        base_url: str,
        sender_id: str,
        *,
        timeout_s: float = 10.0,
        bulk_size: int = 100,
        concurrency: int = 4,
        token: SecretStr | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else None
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=concurrency),
            headers=headers,
        )
        self._sender_id = sender_id
        self._bulk_size = bulk_size
        self._slots = asyncio.Semaphore(concurrency)

    async def send_many(self, deliveries: Sequence[ClaimedDelivery]) -> list[SendResult]:
        chunks = [
            deliveries[i : i + self._bulk_size] for i in range(0, len(deliveries), self._bulk_size)
        ]
        answers = await asyncio.gather(*(self._send_chunk(chunk) for chunk in chunks))
        return [result for answer in answers for result in answer]

    async def _send_chunk(self, chunk: Sequence[ClaimedDelivery]) -> list[SendResult]:
        payload = {
            "messages": [
                {
                    "to": d.recipient,
                    "text": d.body,
                    "sender_id": self._sender_id,
                    "client_ref": str(d.delivery_id),
                    "idempotency_key": str(d.delivery_id),
                }
                for d in chunk
            ]
        }
        async with self._slots:
            try:
                response = await self._client.post("/v1/messages/bulk", json=payload)
            except NOT_SENT as error:
                return [SendResult(ok=False, error=f"SMS gateway unreachable: {error!r}")] * len(
                    chunk
                )
            except httpx.HTTPError as error:
                # The request may have reached the gateway: its answer did not reach us.
                failed = SendResult(ok=False, error=f"no answer from the SMS gateway: {error!r}")
                return [replace(failed, unknown=True)] * len(chunk)
        if not response.is_success:
            # The gateway judged the request, not each message (overload, outage, or a
            # misconfiguration such as bad credentials): retry, bounded by max_attempts.
            # Only a per-message rejection is final.
            detail = f"SMS gateway answered {response.status_code}: {response.text[:200]}"
            failed = SendResult(ok=False, error=detail, retry_after_s=_retry_after(response))
            return [failed] * len(chunk)
        by_key = {r.get("idempotency_key"): r for r in response.json().get("results", [])}
        return [_item_result(by_key.get(str(d.delivery_id))) for d in chunk]

    async def aclose(self) -> None:
        await self._client.aclose()


def _item_result(item: dict | None) -> SendResult:  # type: ignore[type-arg]
    if item is None:
        return SendResult(ok=False, error="SMS gateway returned no result for this message")
    if item.get("status") == "accepted":
        return SendResult(ok=True, provider_message_id=item.get("message_id"))
    return SendResult(
        ok=False, error=f"SMS gateway rejected it: {item.get('error')}", permanent=True
    )


TlsMode = Literal["opportunistic", "starttls", "implicit", "off"]


class CredentialsNeedTls(aiosmtplib.SMTPException):
    """The session has no TLS and we hold credentials: they are not sent."""


class TrackingSMTP(aiosmtplib.SMTP):
    """An SMTP client that knows whether the message of its last transaction was handed
    over (DATA began): a connection lost before that leaves nothing at the server; one
    lost after it leaves the outcome unknown."""

    handed_over: bool = False

    async def send_tracked(self, message: EmailMessage) -> None:
        self.handed_over = False
        await self.send_message(message)

    async def data(self, message: str | bytes, /, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.handed_over = True
        return await super().data(message, **kwargs)


class SmtpMailer:
    """Email over SMTP through a small pool of open connections: a connection per
    message would spend most of its time on TCP set-up, EHLO and QUIT."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        tls: TlsMode = "opportunistic",
        ca_file: Path | None = None,
        username: str | None = None,
        password: SecretStr | None = None,
        timeout_s: float = 10.0,
        connections: int = 4,
    ) -> None:
        self._sender = sender
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self._connect_args = {
            "hostname": host,
            "port": port,
            "use_tls": tls == "implicit",
            # None: STARTTLS when the server offers it; True: or no session at all.
            "start_tls": {"opportunistic": None, "starttls": True}.get(tls, False),
            "tls_context": context,
            "timeout": timeout_s,
        }
        self._username = username
        self._password = password
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[TrackingSMTP] = []

    def compose(self, delivery: ClaimedDelivery) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = delivery.recipient
        message["Subject"] = delivery.subject or ""
        message["Date"] = formatdate(usegmt=True)
        # Stable per delivery: a mail server or client can spot a repeated send.
        message["Message-ID"] = f"<{delivery.delivery_id}@perisai>"
        message.set_content(delivery.body)
        return message

    async def send(self, delivery: ClaimedDelivery) -> SendResult:
        message = self.compose(delivery)
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            reused = client is not None
            try:
                if client is None or not client.is_connected:
                    client = await self._connect()
                    reused = False
                try:
                    await client.send_tracked(message)
                except aiosmtplib.SMTPServerDisconnected:
                    if not reused or client.handed_over:
                        raise
                    # The server closed an idle pooled connection before it took anything:
                    # one fresh try is safe.
                    client = await self._connect()
                    await client.send_tracked(message)
            except asyncio.CancelledError:
                # The round's time is up mid-conversation: this connection's state is
                # unknown, so it is dropped, never returned to the pool.
                if client is not None:
                    client.close()
                raise
            except aiosmtplib.SMTPRecipientsRefused as error:
                await _close(client)
                # 4xx (greylisting, mailbox busy) is worth retrying; only 5xx is final.
                permanent = all(500 <= r.code < 600 for r in error.recipients)
                return SendResult(
                    ok=False, error=f"recipient refused: {error}", permanent=permanent
                )
            except (
                aiosmtplib.SMTPConnectResponseError,
                aiosmtplib.SMTPHeloError,
                aiosmtplib.SMTPAuthenticationError,
                CredentialsNeedTls,
            ) as error:
                # The server refused us, not this message (greeting, EHLO, credentials):
                # a misconfiguration or an outage, worth retrying.
                await _close(client)
                return SendResult(ok=False, error=f"SMTP server refused the session: {error}")
            except aiosmtplib.SMTPResponseException as error:
                # An answer, even to DATA: the server did not take the message.
                await _close(client)
                return SendResult(
                    ok=False,
                    error=f"SMTP {error.code}: {error.message}",
                    permanent=500 <= error.code < 600,
                )
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                await _close(client)
                if client is not None and client.handed_over:
                    # Lost after DATA began: the server may have taken it. Never sent
                    # again at once; retried later with the same Message-ID.
                    return SendResult(
                        ok=False,
                        error=f"connection lost after the message was handed over: {error!r}",
                        unknown=True,
                    )
                return SendResult(ok=False, error=f"SMTP server unreachable: {error!r}")
            self._idle.append(client)
        return SendResult(ok=True, provider_message_id=message["Message-ID"])

    async def send_many(self, deliveries: Sequence[ClaimedDelivery]) -> list[SendResult]:
        return list(await asyncio.gather(*(self.send(d) for d in deliveries)))

    async def _connect(self) -> TrackingSMTP:
        client = TrackingSMTP(**self._connect_args)  # type: ignore[arg-type]
        await client.connect()
        if self._username:
            try:
                if client.get_transport_info("sslcontext") is None:
                    raise CredentialsNeedTls(
                        "the server offered no TLS; the credentials are not sent in clear"
                    )
                password = self._password.get_secret_value() if self._password else ""
                await client.login(self._username, password)
            except BaseException:
                client.close()  # not pooled: the caller never saw this connection
                raise
        return client

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            await _close(client)


async def _close(client: aiosmtplib.SMTP | None) -> None:
    if client is None or not client.is_connected:
        return
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()
