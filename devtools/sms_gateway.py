"""A development stand-in for an SMS gateway: a real HTTP server that records what it is sent.

Nothing is delivered anywhere. The API follows common commercial gateways closely enough to
exercise a sender's real failure handling:

* ``POST /v1/messages`` needs an ``Idempotency-Key`` header. The same key again returns the
  first answer (same ``message_id``, ``"duplicate": true``) and is not recorded twice: a
  sender that crashed after the gateway accepted can safely retry.
* ``to`` must be an Indonesian mobile number in E.164, else 400 ``invalid_number`` (a
  permanent failure: retrying cannot help).
* ``POST /v1/faults`` makes the next N sends fail with a chosen status (503, 429...) and
  optional ``Retry-After``, or (``status: null``) succeed but answer only after
  ``delay_s`` (the messages are taken at once: a client that gives up waiting cannot
  know they were); ``DELETE /v1/faults`` clears it.

    python -m devtools.sms_gateway --host 127.0.0.1 --port 18025 --log sms.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, TextIO

import uvicorn
from fastapi import FastAPI, Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_PORT: Final = 18025
E164_ID_MOBILE: Final = re.compile(r"^\+628\d{7,11}$")
"""Indonesian mobile numbers in E.164: +62 8xx, 10-14 characters after the plus."""
MAX_LIST_LIMIT: Final = 100_000
MAX_BULK: Final = 500


class SendRequest(BaseModel):
    """Body of ``POST /v1/messages``."""

    model_config = ConfigDict(extra="ignore")

    to: str = Field(min_length=1, max_length=32, examples=["+6281234567890"])
    text: str = Field(min_length=1, max_length=1600)
    sender_id: str = Field(default="PERISAI", min_length=1, max_length=11)
    client_ref: str | None = Field(default=None, max_length=200)


class BulkItem(SendRequest):
    """One message of ``POST /v1/messages/bulk``, with its own idempotency key."""

    idempotency_key: str = Field(min_length=1, max_length=200)


class BulkRequest(BaseModel):
    """Body of ``POST /v1/messages/bulk``: many messages in one request."""

    messages: list[BulkItem] = Field(min_length=1, max_length=MAX_BULK)


class FaultRequest(BaseModel):
    """Body of ``POST /v1/faults``: answer the next ``count`` sends with ``status`` (or,
    with ``status`` null, as usual), after ``delay_s``."""

    status: int | None = Field(default=503, ge=400, le=599)
    count: int = Field(default=1, ge=1)
    retry_after: int | None = Field(default=None, ge=0)
    delay_s: float = Field(default=0.0, ge=0, le=60)


@dataclass
class _Fault:
    status: int | None
    remaining: int
    retry_after: int | None
    delay_s: float = 0.0

    async def answer(self) -> Any:
        """The injected error answer (after the delay), or None to answer as usual."""
        if self.status is None:
            return None
        await asyncio.sleep(self.delay_s)
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return _error(self.status, "injected_fault", "fault injected for testing", headers)


@dataclass
class GatewayState:
    """Everything the gateway remembers. One per app; reachable as ``app.state.gateway``."""

    log_path: Path | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    by_key: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> message_id
    by_recipient: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    duplicates: int = 0
    rejected: int = 0
    fault: _Fault | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _log: TextIO | None = None

    def stats(self) -> dict[str, int]:
        return {
            "accepted": len(self.messages),
            "duplicates": self.duplicates,
            "rejected": self.rejected,
        }

    def take_fault(self) -> _Fault | None:
        """The armed fault for this request, if any (consumes one of its count)."""
        fault = self.fault
        if fault is None:
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            self.fault = None
        return fault

    def record(self, key: str, request: SendRequest) -> dict[str, Any]:
        """Store an accepted message (caller holds the lock)."""
        message: dict[str, Any] = {
            "message_id": str(uuid.uuid4()),
            "idempotency_key": key,
            "to": request.to,
            "text": request.text,
            "sender_id": request.sender_id,
            "client_ref": request.client_ref,
            "received_at": datetime.now(UTC).isoformat(),
        }
        self.messages.append(message)
        self.by_key[key] = message["message_id"]
        self.by_recipient[request.to].append(message)
        self._append_log(message)
        return message

    def _append_log(self, message: dict[str, Any]) -> None:
        if self.log_path is None:
            return
        if self._log is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("a", encoding="utf-8")
        self._log.write(json.dumps(message, ensure_ascii=False) + "\n")
        self._log.flush()  # a reader (test, operator) sees each message at once

    def reset(self) -> None:
        self.messages.clear()
        self.by_key.clear()
        self.by_recipient.clear()
        self.duplicates = self.rejected = 0
        self.fault = None

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> Any:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def normalise_recipient(to: str) -> str:
    """Query-string tolerant: an unencoded ``+`` arrives as a space."""
    to = to.strip()
    return to if to.startswith("+") else f"+{to}"


def create_app(log_path: Path | None = None) -> FastAPI:
    """The gateway app. Accepted messages are kept in memory and, if ``log_path`` is
    given, appended to it as JSON lines."""
    state = GatewayState(log_path=log_path)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.close()

    app = FastAPI(title="Perisai SMS gateway stand-in", lifespan=lifespan)
    app.state.gateway = state

    @app.post("/v1/messages", status_code=202)
    async def send(
        request: SendRequest,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Any:
        fault = state.take_fault()
        if fault is not None and (refusal := await fault.answer()) is not None:
            return refusal
        if not idempotency_key:
            state.rejected += 1
            return _error(400, "missing_idempotency_key", "the Idempotency-Key header is required")
        if not E164_ID_MOBILE.match(request.to):
            state.rejected += 1
            return _error(
                400,
                "invalid_number",
                f"{request.to!r} is not an Indonesian mobile number in E.164 (+628...)",
            )
        async with state.lock:
            known = state.by_key.get(idempotency_key)
            if known is not None:
                state.duplicates += 1
                return {"message_id": known, "status": "accepted", "duplicate": True}
            message = state.record(idempotency_key, request)
        if fault is not None:
            await asyncio.sleep(fault.delay_s)  # taken; the answer comes late
        return {"message_id": message["message_id"], "status": "accepted", "duplicate": False}

    @app.post("/v1/messages/bulk")
    async def send_bulk(body: BulkRequest) -> Any:
        """Many messages, one result each (in order): accepted (maybe as a duplicate of
        an earlier send with the same key) or rejected with the reason. An injected
        fault answers the whole request."""
        fault = state.take_fault()
        if fault is not None and (refusal := await fault.answer()) is not None:
            return refusal
        results: list[dict[str, Any]] = []
        async with state.lock:
            for item in body.messages:
                key = item.idempotency_key
                if not E164_ID_MOBILE.match(item.to):
                    state.rejected += 1
                    results.append(
                        {"idempotency_key": key, "status": "rejected", "error": "invalid_number"}
                    )
                    continue
                known = state.by_key.get(key)
                if known is not None:
                    state.duplicates += 1
                message_id = known or state.record(key, item)["message_id"]
                results.append(
                    {
                        "idempotency_key": key,
                        "status": "accepted",
                        "message_id": message_id,
                        "duplicate": known is not None,
                    }
                )
        if fault is not None:
            await asyncio.sleep(fault.delay_s)  # taken; the answer comes late
        return {"results": results}

    @app.get("/v1/messages")
    async def list_messages(
        to: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 1000,
    ) -> dict[str, Any]:
        """The newest ``limit`` messages (to one recipient if ``to`` is given), oldest first."""
        selected = state.by_recipient.get(normalise_recipient(to), []) if to else state.messages
        return {"total": len(selected), "messages": selected[-limit:]}

    @app.delete("/v1/messages")
    async def reset() -> dict[str, str]:
        """Forget every message, key and counter (the log file is kept)."""
        async with state.lock:
            state.reset()
        return {"status": "reset"}

    @app.get("/v1/stats")
    async def stats() -> dict[str, int]:
        return state.stats()

    @app.post("/v1/faults")
    async def arm_fault(fault: FaultRequest) -> dict[str, Any]:
        state.fault = _Fault(fault.status, fault.count, fault.retry_after, fault.delay_s)
        return {"armed": fault.model_dump()}

    @app.delete("/v1/faults")
    async def clear_fault() -> dict[str, Any]:
        state.fault = None
        return {"armed": None}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.sms_gateway", description="SMS gateway stand-in (loopback)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--log", type=Path, default=None, help="append accepted messages here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    uvicorn.run(
        create_app(args.log), host=args.host, port=args.port, log_level="warning", access_log=False
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
