"""What every service's HTTP API shares: one shape for every error (RFC 9457 problem
details, ``application/problem+json``), the exception handlers that produce it, and an
OpenAPI document that declares every status an operation can answer with.

- a request that does not fit the API (a missing header, a bad path or query value, a
  body of the wrong shape): 422, ``errors`` naming each input and why (never echoing the
  input back); a body that is not JSON at all: 400;
- a dependency outage (the database cannot be reached): 503 with ``Retry-After`` and
  ``cause``; readiness is false meanwhile;
- anything unexpected: 500, logged with its traceback, never sent to the client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Literal

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import Refused
from shared.events import RejectionReason
from shared.failures import UNAVAILABLE_ERRORS, is_unavailable

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
REF_TEMPLATE = "#/components/schemas/{model}"
PROBLEM_REF = {"$ref": REF_TEMPLATE.format(model="Problem")}
RETRY_AFTER_S = 5
"""What a 503 asks the client to wait before trying again, in seconds."""


class InputError(BaseModel):
    """One input of the request that the API cannot use."""

    location: str = Field(
        description="Where: body.<path>, query.<name>, path.<name> or header.<name>.",
        examples=["header.idempotency-key"],
    )
    message: str = Field(description="Why, in English.", examples=["Field required"])


class Problem(BaseModel):
    """Every error answer (RFC 9457 problem details, ``application/problem+json``).
    Members other than type, title and status appear only where they apply."""

    type: str = Field(
        default="about:blank",
        description="What kind of problem: about:blank (the status says it all) or a "
        "Perisai problem type such as /problems/enrolment-rejected.",
    )
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(description="The HTTP status code.", examples=[422])
    detail: str | None = Field(default=None, description="This occurrence, explained.")
    errors: list[InputError] | None = Field(
        default=None, description="Inputs the API could not use (invalid requests)."
    )
    request_id: str | None = Field(
        default=None, description="The enrolment request answered (rejections, conflicts)."
    )
    outcome: Literal["rejected", "conflict"] | None = Field(
        default=None,
        description="'rejected' for an enrolment rejection; 'conflict' for a request id "
        "already used for a different request.",
    )
    first_outcome: Literal["enrolled", "rejected"] | None = Field(
        default=None, description="Conflicts: the answer the request id's first request got."
    )
    participant_number: str | None = Field(
        default=None,
        description="Conflicts: the participant the first request enrolled. DUPLICATE_NIK "
        "rejections: the member who holds the NIK, named only to a caller whose key has "
        "the 'read' scope.",
    )
    reasons: list[RejectionReason] | None = Field(
        default=None, description="Every rule the enrolment broke (rejections)."
    )
    cause: str | None = Field(
        default=None,
        description="The dependency that is unavailable (503), e.g. 'database'.",
        examples=["database"],
    )


def problem_response(problem: Problem, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def simple_problem(status: int, detail: str | None = None, **members: Any) -> Problem:
    return Problem(title=HTTPStatus(status).phrase, status=status, detail=detail, **members)


def wants_csv(request: Request, format: str | None) -> bool:
    """CSV when ``?format=csv``, or with no format asked when Accept names text/csv."""
    if format is not None:
        return format == "csv"
    return "text/csv" in request.headers.get("accept", "")


def refused_problem(error: Refused) -> Problem:
    """A 409 whose type names the rule: ALREADY_DEREGISTERED is
    /problems/already-deregistered."""
    return Problem(
        type=f"/problems/{error.code.lower().replace('_', '-')}",
        title=error.code.replace("_", " ").capitalize(),
        status=409,
        detail=error.detail,
    )


DESCRIPTIONS = {
    400: "The body is not JSON.",
    404: "Not found.",
    409: "Conflicts with what was recorded before.",
    413: "The request carries more than the API takes at once.",
    422: "The request does not fit the API (each input named in errors).",
    503: "A dependency is unavailable; retry after Retry-After seconds.",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses (plus 503: every operation that
    reads the database can meet an outage), each a Problem."""
    declared: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 503}):
        response: dict[str, Any] = {
            "description": DESCRIPTIONS[status],
            "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
        }
        if status == 503:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer"},
                }
            }
        declared[status] = response
    return declared


def _location(loc: Iterable[Any]) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] == "header" and len(parts) > 1:
        parts[1] = parts[1].replace("_", "-")
    return ".".join(parts) or "request"


async def on_invalid_request(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    details = error.errors()
    if any(d.get("type") == "json_invalid" for d in details):
        return problem_response(simple_problem(400, "the body is not valid JSON"))
    errors = [InputError(location=_location(d["loc"]), message=d["msg"]) for d in details]
    return problem_response(
        Problem(
            type="/problems/invalid-request",
            title="Invalid request",
            status=422,
            detail="; ".join(f"{e.location}: {e.message}" for e in errors[:5]),
            errors=errors,
        )
    )


async def on_http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    detail = error.detail if isinstance(error.detail, str) else None
    return problem_response(simple_problem(error.status_code, detail), headers=error.headers)


def unavailable(cause: str = "database") -> JSONResponse:
    return problem_response(
        simple_problem(
            503,
            f"the {cause} is unavailable; retry in {RETRY_AFTER_S} s",
            type="/problems/dependency-unavailable",
            cause=cause,
        ),
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def on_dependency_error(request: Request, error: Exception) -> JSONResponse:
    """Errors from the database driver and the network: an outage is a 503, anything
    else a 500 (logged, not shown)."""
    if is_unavailable(error):
        log.warning(
            "request refused: database unavailable",
            path=request.url.path,
            error=repr(error)[:300],
        )
        return unavailable("database")
    return await on_unexpected_error(request, error)


async def on_unexpected_error(request: Request, error: Exception) -> JSONResponse:
    if is_unavailable(error):  # whatever its class: the classifier has the last word
        return await on_dependency_error(request, error)
    log.error("request failed", path=request.url.path, method=request.method, exc_info=error)
    return problem_response(
        simple_problem(500, "an unexpected error; it has been logged for the operators")
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    # Handled where they are raised (the catch-all for Exception runs outside, after
    # the server logged a traceback): every kind of outage, and the driver's errors.
    for error_type in (*UNAVAILABLE_ERRORS, asyncpg.PostgresError):
        app.add_exception_handler(error_type, on_dependency_error)
    app.add_exception_handler(Exception, on_unexpected_error)


def document_models(
    app: FastAPI,
    *models: type[BaseModel],
    extend: Sequence[Callable[[dict[str, Any]], None]] = (),
) -> None:
    """Add ``models`` (and Problem) to the OpenAPI components: a body accepted as raw
    JSON, to answer each problem in it with a reason instead of a bare 422, refers to its
    model there. Error responses declare application/problem+json only. Each of
    ``extend`` then completes the document (the guard adds its security)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            documented: tuple[type[BaseModel], ...] = (*models, Problem)
            for model in documented:
                schema = model.model_json_schema(ref_template=REF_TEMPLATE)
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            for status in ("HTTPValidationError", "ValidationError"):
                schemas.pop(status, None)
            for complete in extend:
                complete(document)
            for path in document.get("paths", {}).values():
                for operation in path.values():
                    for response in operation.get("responses", {}).values():
                        content = response.get("content", {})
                        if PROBLEM_JSON in content and content.get("application/json") == {
                            "schema": {}
                        }:
                            del content["application/json"]
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
