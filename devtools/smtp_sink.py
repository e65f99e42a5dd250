"""A development SMTP server that records the mail it receives, plus an HTTP API to read it.

Nothing is relayed. Messages are deduplicated by their ``Message-ID`` header (a sender that
retries after a lost reply re-sends the same Message-ID): a duplicate is answered 250 like
any message, counted, and not recorded again.

    python -m devtools.smtp_sink --host 127.0.0.1 --port 18026 --http-port 18027 --log mail.jsonl

From tests::

    with SmtpSink("127.0.0.1", 0) as sink:   # port 0: the OS picks one; see sink.port
        ...
        assert sink.stats() == {"accepted": 1, "duplicates": 0}
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import ssl
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Final, Self

import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from fastapi import FastAPI, Query

DEFAULT_SMTP_PORT: Final = 18026
DEFAULT_HTTP_PORT: Final = 18027
MAX_LIST_LIMIT: Final = 100_000


def parse_message(mail_from: str, rcpt_tos: Sequence[str], content: bytes) -> dict[str, Any]:
    """The recorded form of one received message."""
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return {
        "mail_from": mail_from,
        "rcpt_tos": list(rcpt_tos),
        "from": str(parsed.get("From", "")),
        "to": str(parsed.get("To", "")),
        "subject": str(parsed.get("Subject", "")),
        "message_id": _message_id(parsed),
        "text": _body(parsed, "plain"),
        "html": _body(parsed, "html"),
        "received_at": datetime.now(UTC).isoformat(),
    }


def _message_id(message: EmailMessage) -> str | None:
    value = message.get("Message-ID")
    return str(value).strip() if value else None


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


class _Recorder:
    """aiosmtpd handler. Runs on the controller's thread; readers use the same lock.
    Each message records whether its session was encrypted (``tls``) and who logged in
    (``login``), so tests can see how a client spoke."""

    def __init__(self, log_path: Path | None) -> None:
        self.lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.seen_ids: set[str] = set()
        self.duplicates = 0
        self.log_path = log_path

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8")
        record = parse_message(envelope.mail_from or "", envelope.rcpt_tos, content)
        transport = getattr(server, "transport", None)
        implicit = transport is not None and transport.get_extra_info("sslcontext") is not None
        record["tls"] = session.ssl is not None or implicit
        auth = session.auth_data if session.authenticated else None
        record["login"] = auth.login.decode() if isinstance(auth, LoginPassword) else None
        with self.lock:
            message_id = record["message_id"]
            if message_id is not None and message_id in self.seen_ids:
                self.duplicates += 1
                return "250 OK duplicate Message-ID, not recorded again"
            if message_id is not None:
                self.seen_ids.add(message_id)
            self.messages.append(record)
            self._append_log(record)
        return "250 OK"

    def _append_log(self, record: dict[str, Any]) -> None:
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(record, ensure_ascii=False) + "\n")


class _Controller(Controller):
    """A Controller that also works with ``port=0``: it learns the port the OS chose
    before its readiness probe connects."""

    def _trigger_server(self) -> None:
        sockets = getattr(self.server, "sockets", None)
        if self.port == 0 and sockets:
            self.port = sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpSink:
    """An SMTP server on its own thread that records (and deduplicates) what it receives."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | None = None,
        *,
        certificate: tuple[Path, Path] | None = None,
        implicit_tls: bool = False,
        logins: dict[str, str] | None = None,
    ):
        """``certificate`` (cert, key) offers STARTTLS, or with ``implicit_tls`` speaks
        TLS from the first byte; ``logins`` (user: password) offers AUTH, over TLS only."""
        self.host = host
        self._requested_port = port
        self._recorder = _Recorder(log_path)
        self._controller: _Controller | None = None
        self._certificate = certificate
        self._implicit_tls = implicit_tls
        self._logins = logins
        self.failed_logins = 0

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and self._logins is not None
            and self._logins.get(data.login.decode()) == data.password.decode()
        )
        if not ok:
            self.failed_logins += 1
        return AuthResult(success=ok, auth_data=data if ok else None)

    def _tls_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        if self._certificate is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self._certificate)
            arguments["ssl_context" if self._implicit_tls else "tls_context"] = context
        if self._logins is not None:
            arguments["authenticator"] = self._authenticate
            arguments["auth_require_tls"] = True
        return arguments

    @property
    def port(self) -> int:
        """The bound port (the OS-chosen one when created with port 0 and started)."""
        return self._controller.port if self._controller else self._requested_port

    def start(self) -> Self:
        if self._controller is not None:
            raise RuntimeError("SmtpSink already started")
        controller = _Controller(
            self._recorder,
            hostname=self.host,
            port=self._requested_port,
            enable_SMTPUTF8=True,  # names like "Siti Ma'ruf" and UTF-8 subjects
            ready_timeout=10.0,
            **self._tls_arguments(),
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._requested_port = self._controller.port
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def messages(self) -> list[dict[str, Any]]:
        """A snapshot of the recorded messages, oldest first."""
        with self._recorder.lock:
            return list(self._recorder.messages)

    def messages_to(self, address: str) -> list[dict[str, Any]]:
        """Messages whose envelope recipients include ``address`` (case-insensitive)."""
        wanted = address.strip().lower()
        return [m for m in self.messages if wanted in (r.lower() for r in m["rcpt_tos"])]

    def stats(self) -> dict[str, int]:
        with self._recorder.lock:
            return {
                "accepted": len(self._recorder.messages),
                "duplicates": self._recorder.duplicates,
            }

    def clear(self) -> None:
        """Forget every message and counter (the log file is kept)."""
        with self._recorder.lock:
            self._recorder.messages.clear()
            self._recorder.seen_ids.clear()
            self._recorder.duplicates = 0


def create_http_app(sink: SmtpSink) -> FastAPI:
    """Read-only HTTP view of ``sink`` (plus a reset for test runs)."""
    app = FastAPI(title="Perisai SMTP sink")
    app.state.sink = sink

    @app.get("/v1/messages")
    async def list_messages(
        to: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 1000,
    ) -> dict[str, Any]:
        """The newest ``limit`` messages (to one recipient if ``to`` is given), oldest first."""
        selected = sink.messages_to(to) if to else sink.messages
        return {"total": len(selected), "messages": selected[-limit:]}

    @app.delete("/v1/messages")
    async def reset() -> dict[str, str]:
        sink.clear()
        return {"status": "reset"}

    @app.get("/v1/stats")
    async def stats() -> dict[str, int]:
        return sink.stats()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.smtp_sink", description="SMTP sink stand-in (loopback)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_SMTP_PORT, help="SMTP port")
    parser.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help="HTTP API port")
    parser.add_argument("--log", type=Path, default=None, help="append received mail here")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    sink = SmtpSink(args.host, args.port, args.log).start()
    try:
        config = uvicorn.Config(
            create_http_app(sink),
            host=args.host,
            port=args.http_port,
            log_level="warning",
            access_log=False,
        )
        await uvicorn.Server(config).serve()
    finally:
        sink.stop()


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(_serve(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
