"""The TLS context every Kafka client of a service gets (shared.kafka_security): it
checks the server's certificate against the configured authority and presents the
client certificate when one is configured. Shown against a loopback TLS server that
requires a client certificate (the SASL_SSL lane's broker only requests one)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from infra import certs
from shared.kafka_security import tls_context

pytestmark = pytest.mark.integration


@pytest.fixture
async def mutual_tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, Path, list[str]]]:
    """A TLS server on loopback that requires a client certificate from the same
    authority; yields its port, the authority's file and the client names it saw."""
    authority = certs.authority(tmp_path, "test CA")
    server = certs.issue(authority, tmp_path, "server")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(authority.cert))
    context.load_cert_chain(str(server.cert), str(server.key))
    context.verify_mode = ssl.CERT_REQUIRED
    seen: list[str] = []

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        seen.extend(
            value for rdn in peer.get("subject", ()) for key, value in rdn if key == "commonName"
        )
        writer.write(b"hello\n")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(greet, "127.0.0.1", 0, ssl=context)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield port, authority.cert, seen
    finally:
        listener.close()
        await listener.wait_closed()


async def hello(port: int, context: ssl.SSLContext) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()


async def test_the_client_certificate_is_presented_when_configured(
    mutual_tls_server: tuple[int, Path, list[str]], tmp_path: Path
) -> None:
    port, ca_file, seen = mutual_tls_server
    client = certs.issue(
        certs.Authority(ca_file, ca_file.with_name("ca.key")), tmp_path, "perisai-coverage"
    )
    assert await hello(port, tls_context(ca_file, client.cert, client.key)) == b"hello\n"
    assert seen == ["perisai-coverage"]


async def test_without_a_client_certificate_the_server_refuses(
    mutual_tls_server: tuple[int, Path, list[str]],
) -> None:
    port, ca_file, seen = mutual_tls_server
    try:  # TLS 1.3: the client may finish its handshake before the server refuses
        answer = await hello(port, tls_context(ca_file))
    except (ssl.SSLError, ConnectionError):
        answer = b""
    assert answer == b"", "the server never answered"
    assert seen == []


async def test_a_server_the_authority_did_not_sign_is_refused(
    mutual_tls_server: tuple[int, Path, list[str]], tmp_path: Path
) -> None:
    port, _, _ = mutual_tls_server
    other = certs.authority(tmp_path / "other", "another CA")
    with pytest.raises(ssl.SSLCertVerificationError):
        await hello(port, tls_context(other.cert))
