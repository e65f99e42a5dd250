"""Every error of the HTTP APIs in one shape (shared.http): an outage of any kind is a
503 with Retry-After, a bug a 500 that shows nothing of itself, and the client's own
mistakes 4xx naming the input."""

from __future__ import annotations

from typing import Annotated

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Header, HTTPException

from shared.db import DatabaseUnavailable
from shared.http import PROBLEM_JSON, install_problem_handlers

RAISED: dict[str, Exception] = {
    "internal-client": asyncpg.exceptions._base.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    ),
    "connection-lost": asyncpg.ConnectionDoesNotExistError("connection was closed"),
    "no-connection": DatabaseUnavailable("cannot connect to the database: refused"),
    "cannot-connect-now": asyncpg.CannotConnectNowError("the database system is starting up"),
    "timeout": TimeoutError(),
    "bug": ZeroDivisionError("secret internals"),
    "driver-refusal": asyncpg.CheckViolationError("new row violates check constraint"),
}


def app() -> FastAPI:
    api = FastAPI()
    install_problem_handlers(api)

    @api.get("/raise/{kind}")
    async def fail(kind: str) -> None:
        raise RAISED[kind]

    @api.get("/missing")
    async def missing() -> None:
        raise HTTPException(404, "no such worker")

    @api.post("/needs-header")
    async def needs_header(x_key: Annotated[str, Header(pattern=r"^\w+$")]) -> dict[str, int]:
        return {"ok": 1}

    return api


async def get(path: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        method = "POST" if path.startswith("/needs") else "GET"
        return await client.request(method, path, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kind", ["internal-client", "connection-lost", "no-connection", "cannot-connect-now", "timeout"]
)
async def test_an_outage_of_any_kind_is_a_503_with_retry_after(kind: str) -> None:
    response = await get(f"/raise/{kind}")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["cause"] == "database"


@pytest.mark.parametrize("kind", ["bug", "driver-refusal"])
async def test_anything_else_is_a_500_that_shows_nothing_of_itself(kind: str) -> None:
    response = await get(f"/raise/{kind}")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "secret" not in response.text and "constraint" not in response.text
    assert "Traceback" not in response.text


async def test_not_found_and_invalid_input_are_problems_naming_what() -> None:
    missing = await get("/missing")
    assert (missing.status_code, missing.json()["detail"]) == (404, "no such worker")
    invalid = await get("/needs-header", headers={"x-key": "a b"})
    assert invalid.status_code == 422
    assert [e["location"] for e in invalid.json()["errors"]] == ["header.x-key"]
    assert "a b" not in invalid.text, "inputs are not echoed back"
