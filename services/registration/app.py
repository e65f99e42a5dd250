"""Registration's process: the HTTP API and the upstream-topic consumer, both feeding
the same enrolment use case."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
import stamina
import structlog
from fastapi import Body, FastAPI, Header, HTTPException
from fastapi import Path as PathParam
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from services.registration import service, store
from services.registration.domain import (
    AgeRule,
    Answer,
    Conflict,
    Enrolled,
    EnrolmentCommand,
    Rejected,
    RequestStatus,
    is_valid_participant_number,
    mask_nik,
    read_worker,
)
from services.registration.settings import RegistrationSettings
from shared import db, outbox, topics
from shared.events import (
    PRINTABLE,
    EnrolmentRejected,
    EnrolmentRequested,
    Event,
    RejectionReason,
    RequestedWorker,
    WorkerEnrolled,
)
from shared.http import Problem, problem_response, problems
from shared.service import (
    Resources,
    ServiceSpec,
    batch_subscriber,
    new_broker,
    service_app,
)

SPEC = ServiceSpec("registration", Path(__file__).with_name("migrations"))
log = structlog.get_logger("registration")

IDEMPOTENCY_CONFLICTS = Counter(
    "perisai_registration_idempotency_conflicts",
    "Requests under a request id already used for a different request, by channel "
    "(api and bulk get a conflict answer; upstream ones are logged and not answered).",
    ["channel"],
)

RACE_ERRORS = (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError)


WorkerPayload = Annotated[
    Any,
    WithJsonSchema(RequestedWorker.model_json_schema()),
]
"""A worker as sent: any JSON value, documented as RequestedWorker. It is checked by
domain.read_worker, so that a field that does not fit (a name too long, a typo'd field
name, not even an object) is an answer with a reason code for that one request, not a
422 for the lot."""

IdempotencyKey = Annotated[
    str,
    Header(
        min_length=1,
        max_length=128,
        pattern=PRINTABLE,
        description="The client's key for this request: the same key again returns the "
        "same answer and creates nothing.",
    ),
]
CorrelationId = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=128,
        pattern=PRINTABLE,
        description="Follows the enrolment through every event it causes (default: the "
        "Idempotency-Key).",
    ),
]


class UpstreamRequest(EnrolmentRequested):
    """EnrolmentRequested as registration reads it off the upstream topic. The envelope
    must be readable (without a request_id there is nobody to answer: a dead letter);
    the worker, and fields the contract does not know, become reasons in the answer
    (an EnrolmentRejected), exactly as on the HTTP API."""

    model_config = ConfigDict(frozen=True, extra="allow")

    worker: Any = Field(description="The person to enrol; checked by domain.read_worker.")


class EnrolmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(
        min_length=1, max_length=128, pattern=PRINTABLE, description="Idempotency key."
    )
    worker: WorkerPayload


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enrolments: list[EnrolmentIn] = Field(min_length=1)


class ResultOut(BaseModel):
    request_id: str
    outcome: Literal["enrolled", "rejected", "conflict"] = Field(
        description="conflict: the request id was already used for a different request; "
        "nothing was decided (the reason says what the first request got)."
    )
    worker_id: UUID | None = None
    participant_number: str | None = None
    reasons: list[RejectionReason] = []

    @classmethod
    def of(cls, outcome: Answer) -> ResultOut:
        if isinstance(outcome, Enrolled):
            return cls(
                request_id=outcome.request_id,
                outcome="enrolled",
                worker_id=outcome.worker_id,
                participant_number=outcome.participant_number,
            )
        if isinstance(outcome, Conflict):
            conflict = RejectionReason(
                code=IDEMPOTENCY_CONFLICT, field=None, message=outcome.message
            )
            return cls(request_id=outcome.request_id, outcome="conflict", reasons=[conflict])
        return cls(request_id=outcome.request_id, outcome="rejected", reasons=list(outcome.reasons))


class RequestStatusOut(ResultOut):
    """A request as recorded, whatever channel it came by."""

    outcome: Literal["enrolled", "rejected"]  # type: ignore[assignment]
    source: Literal["api", "bulk", "upstream"] = Field(
        description="The channel: api (POST /v1/enrolments), bulk (the batch endpoint), "
        "upstream (the enrolment-requested topic; its source field as sent)."
    )
    received_at: datetime

    @classmethod
    def of_status(cls, status: RequestStatus) -> RequestStatusOut:
        result = ResultOut.of(status.outcome).model_dump()
        return cls(**result, source=status.source, received_at=status.received_at)


IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"


def conflict_problem(conflict: Conflict) -> Problem:
    first = conflict.first
    return Problem(
        type="/problems/idempotency-conflict",
        title="Request id already used for a different request",
        status=409,
        detail=conflict.message,
        request_id=conflict.request_id,
        outcome="conflict",
        first_outcome="enrolled" if isinstance(first, Enrolled) else "rejected",
        participant_number=first.participant_number if isinstance(first, Enrolled) else None,
    )


def rejection_problem(rejected: Rejected) -> Problem:
    return Problem(
        type="/problems/enrolment-rejected",
        title="Enrolment rejected",
        status=422,
        detail="; ".join(f"{r.code} ({r.field}): {r.message}" for r in rejected.reasons),
        request_id=rejected.request_id,
        outcome="rejected",
        reasons=list(rejected.reasons),
    )


class BatchOut(BaseModel):
    results: list[ResultOut]


class WorkerOut(BaseModel):
    worker_id: UUID
    participant_number: str
    nik_masked: str
    full_name: str
    kecamatan_code: str
    kelurahan: str
    kelurahan_code: str | None
    occupation: str
    enrolled_on: date


def create_app(resources: Resources) -> FastAPI:
    settings = resources.settings
    assert isinstance(settings, RegistrationSettings)
    pool = resources.pool
    ages = AgeRule(settings.min_age, settings.max_age_exclusive)
    timezone = ZoneInfo(settings.timezone)

    def today() -> date:
        return datetime.now(timezone).date()

    async def handle_requested(
        conn: asyncpg.Connection, batch: list[UpstreamRequest]
    ) -> list[Event]:
        commands = [
            EnrolmentCommand(
                e.request_id,
                e.source,
                read_worker(e.worker, unknown_fields=e.model_extra or {}),
                e.correlation_id,
                e.event_id,
            )
            for e in batch
        ]
        answers, events = await service.enrol(conn, commands, today(), ages)
        for answer in answers:
            if isinstance(answer, Conflict):
                IDEMPOTENCY_CONFLICTS.labels("upstream").inc()
                log.warning(
                    "request id reused for a different request",
                    request_id=answer.request_id,
                    channel="upstream",
                    first_outcome=answer.first.outcome,
                )
        return events

    consume_requested = resources.consumer("enrolment-requested", UpstreamRequest, handle_requested)

    broker = new_broker(settings, SPEC)

    @batch_subscriber(
        broker,
        resources,
        topics.ENROLMENT_REQUESTED,
        "enrolment-requested",
        description="Enrolment requests from upstream systems; each ends as exactly one "
        "WorkerEnrolled or EnrolmentRejected. Unreadable messages go to the .dlq topic.",
    )
    async def on_enrolment_requested(message: KafkaMessage) -> None:
        await consume_requested(message.raw_message)  # type: ignore[arg-type]

    for event_type in (WorkerEnrolled, EnrolmentRejected):
        broker.publisher(
            settings.topic_prefix + event_type.TOPIC,
            schema=event_type,
            description=event_type.__doc__,
        )

    async def enrol(commands: list[EnrolmentCommand]) -> list[Answer]:
        # A concurrent request with the same idempotency key or NIK can make the
        # transaction fail on a unique index; the retry then sees the winner's answer.
        async for attempt in stamina.retry_context(on=RACE_ERRORS, attempts=3, timeout=10):
            with attempt:
                async with db.transaction(pool) as conn:
                    outcomes, events = await service.enrol(conn, commands, today(), ages)
                    await outbox.enqueue_events(conn, events)
        return outcomes

    app = service_app(
        resources,
        broker,
        title="Perisai registration",
        summary="Enrol informal workers of Kota Pasuruan in JKK + JKM cover.",
    )

    @app.post("/v1/enrolments", status_code=201, responses=problems(400, 409, 422))
    async def enrol_one(
        worker: Annotated[WorkerPayload, Body()],
        idempotency_key: IdempotencyKey,
        x_correlation_id: CorrelationId = None,
    ) -> ResultOut:
        """Enrol one worker: 201 with the participant number, or 422 (a problem of type
        /problems/enrolment-rejected) with every reason. Sending the same Idempotency-Key
        again returns the same answer and creates nothing."""
        command = EnrolmentCommand(
            idempotency_key, "api", read_worker(worker), x_correlation_id or idempotency_key
        )
        [outcome] = await enrol([command])
        if isinstance(outcome, Enrolled):
            return ResultOut.of(outcome)
        if isinstance(outcome, Conflict):
            IDEMPOTENCY_CONFLICTS.labels("api").inc()
            return problem_response(conflict_problem(outcome))  # type: ignore[return-value]
        return problem_response(rejection_problem(outcome))  # type: ignore[return-value]

    @app.post("/v1/enrolments/batch", responses=problems(400, 413, 422))
    async def enrol_batch(body: BatchIn) -> BatchOut:
        """Enrol many workers in one transaction; one result per request, in order. A
        request id already used for a different request (or twice in the batch for
        different workers) is a result with outcome ``conflict``."""
        if len(body.enrolments) > settings.max_batch_requests:
            raise HTTPException(413, f"at most {settings.max_batch_requests} enrolments per batch")
        commands = [
            EnrolmentCommand(e.request_id, "bulk", read_worker(e.worker), e.request_id)
            for e in body.enrolments
        ]
        answers = await enrol(commands)
        conflicts = sum(isinstance(answer, Conflict) for answer in answers)
        if conflicts:
            IDEMPOTENCY_CONFLICTS.labels("bulk").inc(conflicts)
        return BatchOut(results=[ResultOut.of(answer) for answer in answers])

    @app.get("/v1/enrolments/{request_id:path}", responses=problems(404, 422))
    async def enrolment_status(
        request_id: Annotated[
            str,
            PathParam(
                min_length=1,
                max_length=128,
                pattern=PRINTABLE,
                description="The request id: an Idempotency-Key, a batch or upstream "
                "request_id, or an import row's key.",
            ),
        ],
    ) -> RequestStatusOut:
        """The status and outcome of any enrolment request, from any channel. 404 until
        the request is answered (an upstream request waiting on its topic, too)."""
        async with db.connection(pool) as conn:
            status = await store.request_status(conn, request_id)
        if status is None:
            raise HTTPException(404, "no enrolment request answered under this id")
        return RequestStatusOut.of_status(status)

    @app.get("/v1/workers/{participant_number}", responses=problems(404, 422))
    async def get_worker(
        participant_number: Annotated[
            str,
            PathParam(
                pattern=r"^[0-9]{11}$",
                description="11 digits, the last a Luhn check digit.",
                examples=["00000000018"],
            ),
        ],
    ) -> WorkerOut:
        """A worker's record, the NIK masked."""
        if not is_valid_participant_number(participant_number):
            raise HTTPException(422, "not a valid participant number (11 digits, Luhn)")
        async with db.connection(pool) as conn:
            row = await store.worker_summary(conn, participant_number)
        if row is None:
            raise HTTPException(404, "no worker with this participant number")
        return WorkerOut(
            **{k: v for k, v in row.items() if k != "nik"}, nik_masked=mask_nik(row["nik"])
        )

    @app.get("/v1/summary", responses=problems())
    async def summary() -> dict[str, object]:
        """Enrolled and rejected counts, rejections by reason."""
        async with db.connection(pool) as conn:
            return await store.counts(conn)

    return app
