"""Who may call what: every route but health and the API document needs an API key
(``Authorization: Bearer psk_...``) holding one of the scopes the route names.

The check runs in an ASGI middleware, before routing reads or parses anything: a caller
without a usable key gets 401, one whose key lacks the scope 403, one over its rate 429
(with ``Retry-After``); in each case nothing else is done, and the refusal is logged
with the key's shown part (never the key). A route declares its scopes with a
dependency, ``dependencies=[requires(Scope.READ)]`` or a ``Caller`` parameter
``Annotated[Caller, requires(Scope.READ)]``; the middleware reads that declaration off
the route it matches. A route that declares nothing is refused to everyone: forgetting
to guard a route closes it, it never opens it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import db, security_store
from shared.api_keys import Caller, bearer_key
from shared.api_keys import Scope as KeyScope
from shared.failures import is_unavailable
from shared.http import PROBLEM_REF, problem_response, simple_problem, unavailable
from shared.rate_limit import RateLimiter

log = structlog.get_logger(__name__)

PUBLIC_PATHS = frozenset({"/health/live", "/health/ready", "/openapi.json", "/docs", "/redoc"})
SECURITY_SCHEME = "apiKey"
LOOKUP_TIMEOUT_S = 5.0


class Requires:
    """The dependency that names a route's scopes (and, if it takes larger bodies than
    the service's limit, its own); the handler gets the Caller."""

    def __init__(self, *scopes: KeyScope, max_body_bytes: int | None = None) -> None:
        if not scopes:
            raise ValueError("a route needs at least one scope")
        self.scopes = scopes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, request: Request) -> Caller:
        caller = getattr(request.state, "caller", None)
        # The middleware has checked already; this only holds if it was bypassed.
        if not isinstance(caller, Caller) or not caller.may(*self.scopes):
            raise PermissionError("route reached without the guard's check")
        return caller

    def describe(self) -> str:
        return " or ".join(f"'{scope.value}'" for scope in self.scopes)


def requires(*scopes: KeyScope, max_body_bytes: int | None = None) -> Any:
    """``Depends`` on a Requires: put it in a route's ``dependencies`` or annotate a
    ``Caller`` parameter with it."""
    return Depends(Requires(*scopes, max_body_bytes=max_body_bytes))


class BodyTooLarge(HTTPException):
    """Raised while the body is read, past the limit: the app answers it as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than {limit:,} bytes")


def rule_of(route: BaseRoute) -> Requires | None:
    """The scopes a route declared, from its dependencies (decorator or parameters)."""
    if not isinstance(route, APIRoute):
        return None
    for dependency in route.dependencies:
        if isinstance(dependency, DependsParam) and isinstance(dependency.dependency, Requires):
            return dependency.dependency
    for dependant in route.dependant.dependencies:
        if isinstance(dependant.call, Requires):
            return dependant.call
    return None


class Guard:
    """The ASGI middleware: authenticate, authorize, rate-limit; then the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: FastAPI,
        pool: asyncpg.Pool,
        limiter: RateLimiter,
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.service = service
        self.pool = pool
        self.limiter = limiter
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # none is served; a future one is closed, not open
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        client = scope.get("client")
        where = {"method": method, "path": path, "client": client[0] if client else None}
        headers = dict(scope["headers"])
        key = bearer_key(headers.get(b"authorization", b"").decode("latin-1"))
        if key is None:
            log.warning("request refused: no API key", **where)
            await _refuse(scope, receive, send, 401, "an API key is needed (Authorization: Bearer)")
            return
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S), db.connection(self.pool) as conn:
                stored = await security_store.find_key(conn, key)
        except Exception as error:
            if not is_unavailable(error):
                raise
            log.warning("request refused: database unavailable", error=repr(error)[:200], **where)
            await unavailable("database")(scope, receive, send)
            return
        refusal = "unknown" if stored is None else stored.refusal(datetime.now(UTC))
        if stored is None or refusal is not None:
            shown = stored.shown if stored else None
            log.warning("request refused: API key not usable", reason=refusal, key=shown, **where)
            await _refuse(scope, receive, send, 401, "the API key is not valid")
            return
        caller = stored.caller()
        rule = self._rule(scope)
        if rule is not None and not caller.may(*rule.scopes):
            log.warning("request refused: scope", key=caller.shown, name=caller.name, **where)
            detail = f"this key may not do that: it needs the {rule.describe()} scope"
            await _refuse(scope, receive, send, 403, detail)
            return
        wait_s = self.limiter.take(caller.key_id)
        if wait_s:
            log.warning("request refused: rate limit", key=caller.shown, name=caller.name, **where)
            response = problem_response(
                simple_problem(429, "too many requests for this key; retry after Retry-After"),
                headers={"Retry-After": RateLimiter.retry_after(wait_s)},
            )
            await response(scope, receive, send)
            return
        limit = (rule.max_body_bytes if rule else None) or self.max_body_bytes
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            log.warning("request refused: body too large", key=caller.shown, **where)
            await _refuse(scope, receive, send, 413, f"the body is larger than {limit:,} bytes")
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, _counting(receive, limit), send)

    def _rule(self, scope: Scope) -> Requires | None:
        """The matched route's declaration. A route matched by path and method that
        declares nothing is refused (a Requires nobody holds); an unmatched path goes on
        to the app's own 404 or 405."""
        for route in self.service.router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                rule = rule_of(route)
                if rule is None:
                    log.error("route declares no scope: refused", path=scope["path"])
                    return _NOBODY
                return rule
        return None


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that counts the body as it arrives (a body sent in chunks declares
    no length) and stops it past ``limit``."""
    seen = 0

    async def receive_counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                log.warning("request refused: body too large (streamed)", limit=limit)
                raise BodyTooLarge(limit)
        return message

    return receive_counted


class _Nobody(Requires):
    def __init__(self) -> None:
        self.scopes = ()

    def describe(self) -> str:
        return "(none: this route is closed)"


_NOBODY = _Nobody()


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    headers = {"WWW-Authenticate": 'Bearer realm="perisai"'} if status == 401 else None
    await problem_response(simple_problem(status, detail), headers=headers)(scope, receive, send)


async def log_reads(
    pool: asyncpg.Pool, request: Request, caller: Caller, subjects: Sequence[str]
) -> None:
    """Keep, in the access log, that the caller was given these workers' personal data
    (the route as declared, the clerk X-Actor names)."""
    if not subjects:
        return
    route = request.scope.get("route")
    endpoint = getattr(route, "path", request.url.path)
    actor = (request.headers.get("x-actor") or "")[:128] or None
    async with db.connection(pool) as conn:
        await security_store.record_access(conn, caller, actor, request.method, endpoint, subjects)


def install_guard(
    app: FastAPI, pool: asyncpg.Pool, limiter: RateLimiter, *, max_body_bytes: int
) -> None:
    app.add_middleware(
        Guard, service=app, pool=pool, limiter=limiter, max_body_bytes=max_body_bytes
    )


GUARD_RESPONSES = {
    401: "No API key, or one that is unknown, revoked or expired.",
    403: "The API key lacks the scope this operation needs.",
    429: "Too many requests for this key; retry after Retry-After seconds.",
}


def document_security(document: dict[str, Any], routes: Sequence[BaseRoute]) -> None:
    """The bearer scheme, and on each guarded operation its security, the scopes that
    let a caller in, and the 401/403/429 answers."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (psk_...), made with `python -m services.<name> keys "
        "create`. Each operation names the scopes any one of which lets a caller in.",
    }
    for route in routes:
        rule = rule_of(route)
        if rule is None or not isinstance(route, APIRoute):
            continue
        for method in route.methods or ():
            operation = document.get("paths", {}).get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            operation["security"] = [{SECURITY_SCHEME: []}]
            operation["x-scopes"] = [scope.value for scope in rule.scopes]
            scopes = rule.describe()
            operation["description"] = (
                f"{operation.get('description', '')}\n\nNeeds an API key with the {scopes} scope."
            ).strip()
            responses = operation.setdefault("responses", {})
            for status, description in GUARD_RESPONSES.items():
                response: dict[str, Any] = {
                    "description": description,
                    "content": {"application/problem+json": {"schema": PROBLEM_REF}},
                }
                if status == 429:
                    response["headers"] = {
                        "Retry-After": {
                            "description": "Seconds to wait before retrying.",
                            "schema": {"type": "integer"},
                        }
                    }
                responses.setdefault(str(status), response)
