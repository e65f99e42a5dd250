"""Registration's process: the HTTP API and the upstream-topic consumer, both feeding
the same enrolment use case."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
import stamina
import structlog
from fastapi import Body, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from services.registration import (
    batch_body,
    csv_intake,
    imports,
    membership,
    search,
    service,
    store,
)
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
from services.registration.membership import WorkerNotFound
from services.registration.reasons import meaning
from services.registration.settings import RegistrationSettings
from shared import db, outbox, topics
from shared.api_keys import Caller, Scope
from shared.errors import Refused
from shared.events import (
    PRINTABLE,
    DeregistrationReason,
    EnrolmentRejected,
    EnrolmentRequested,
    Event,
    Language,
    RejectionReason,
    RequestedWorker,
    WorkerDeregistered,
    WorkerDetailsChanged,
    WorkerEnrolled,
)
from shared.guard import log_reads, requires
from shared.http import Problem, problem_response, problems, refused_problem, wants_csv
from shared.service import (
    Resources,
    ServiceSpec,
    batch_subscriber,
    new_broker,
    running,
    service_app,
)

SPEC = ServiceSpec(
    "registration", Path(__file__).with_name("migrations"), append_only=("worker_history",)
)
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


ParticipantNumberPath = Annotated[
    str,
    PathParam(
        pattern=r"^[0-9]{11}$",
        description="11 digits, the last a Luhn check digit.",
        examples=["00000000018"],
    ),
]
ActorHeader = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=128,
        pattern=PRINTABLE,
        description="Who makes the change (a clerk's user name), kept in the worker's "
        "history; default 'api'.",
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


BATCH_IN_REF = "#/components/schemas/BatchIn"


class ResultOut(BaseModel):
    request_id: str
    outcome: Literal["enrolled", "rejected", "conflict"] = Field(
        description="conflict: the request id was already used for a different request; "
        "nothing was decided (the reason says what the first request got)."
    )
    worker_id: UUID | None = None
    participant_number: str | None = None
    reasons: list[RejectionReason] = []
    existing_participant_number: str | None = Field(
        default=None,
        description="DUPLICATE_NIK: the member who holds the NIK, named only to a caller "
        "whose key has the 'read' scope.",
    )

    @classmethod
    def of(cls, outcome: Answer, caller: Caller | None = None) -> ResultOut:
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
        return cls(
            request_id=outcome.request_id,
            outcome="rejected",
            reasons=list(outcome.reasons),
            existing_participant_number=disclosed(outcome, caller),
        )


class RequestStatusOut(ResultOut):
    """A request as recorded, whatever channel it came by."""

    outcome: Literal["enrolled", "rejected"]  # type: ignore[assignment]
    source: Literal["api", "bulk", "upstream", "import"] = Field(
        description="The channel: api (POST /v1/enrolments), bulk (the batch endpoint), "
        "upstream (the enrolment-requested topic; its source field as sent), import (a "
        "CSV import row)."
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


def disclosed(rejected: Rejected, caller: Caller | None) -> str | None:
    """Who holds a duplicate NIK, for a caller who may read personal data; else None,
    so an enrolment key cannot learn which NIKs are enrolled under which number."""
    if caller is None or not caller.may(Scope.READ):
        return None
    return rejected.existing_participant


def disclosures(answers: list[Answer], caller: Caller) -> list[str]:
    """The members a caller is told hold a duplicate NIK: reads of personal data."""
    named = (disclosed(a, caller) for a in answers if isinstance(a, Rejected))
    return [number for number in named if number]


def actor(caller: Caller, x_actor: str | None) -> str:
    """Who makes a change, for the worker's history: the clerk the caller names, and the
    key it calls with."""
    return f"{x_actor} (key {caller.name})" if x_actor else f"key {caller.name}"


def rejection_problem(rejected: Rejected, caller: Caller | None = None) -> Problem:
    return Problem(
        type="/problems/enrolment-rejected",
        title="Enrolment rejected",
        status=422,
        detail="; ".join(f"{r.code} ({r.field}): {r.message}" for r in rejected.reasons),
        request_id=rejected.request_id,
        outcome="rejected",
        reasons=list(rejected.reasons),
        participant_number=disclosed(rejected, caller),
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
    enrolled_on: date = Field(description="When the current (or last) membership began.")
    status: Literal["active", "deregistered"]
    membership: int = Field(description="1, or more after enrolling again.")
    revision: int = Field(description="How many times the record was written.")
    deregistered_on: date | None = None
    deregistration_reason: DeregistrationReason | None = None


class FoundWorker(BaseModel):
    participant_number: str
    nik_masked: str = Field(description="All but the last four NIK digits masked.")
    full_name: str
    birth_date: date
    gender: Literal["M", "F"]
    kecamatan_code: str
    kelurahan: str
    status: Literal["active", "deregistered"]


class SearchOut(BaseModel):
    items: list[FoundWorker]
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page; null on the last page."
    )


def encode_cursor(row: dict[str, Any]) -> str:
    text = json.dumps([row["name_key"], row["participant_number"]])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        key, number = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise HTTPException(422, "cursor: not a cursor this API returned") from None
    if not isinstance(key, str) or not isinstance(number, str):
        raise HTTPException(422, "cursor: not a cursor this API returned")
    return key, number


class ImportOut(BaseModel):
    import_id: UUID
    file_digest: str = Field(description="SHA-256 of the file: the same file is the same import.")
    filename: str | None
    status: Literal["running", "done"]
    rows_total: int
    rows_done: int = Field(description="Rows answered so far (progress).")
    enrolled: int
    rejected: int
    rejected_by_reason: dict[str, int]
    ignored_columns: list[str] = Field(description="Header columns that are not ours.")
    uploads: int = Field(description="How many times the file was uploaded.")
    created_at: datetime
    finished_at: datetime | None


IMPORT_ROW_COLUMNS = (
    "row",
    "line",
    "outcome",
    "participant_number",
    "reason_codes",
    "alasan",
    "reasons",
    "request_id",
)
"""The per-row report: row number, the line it starts on, enrolled/rejected, the
participant number or the reasons in Indonesian (alasan) and English (reasons)."""


def import_row_csv(row: dict[str, Any]) -> list[object]:
    reasons = row["reasons"]
    return [
        row["row_number"],
        row["line"],
        row["outcome"],
        row["participant_number"] or "",
        " ".join(r["code"] for r in reasons),
        " | ".join(meaning(r["code"]).indonesian for r in reasons),
        " | ".join(f"{r['code']}: {r['message']}" for r in reasons),
        row["request_id"],
    ]


class WorkerChangesIn(BaseModel):
    """The details to change; a field left out stays as it is. Checked by the enrolment
    rules. Moving out of the city is a deregistration, not a change."""

    model_config = ConfigDict(extra="forbid")

    phone: str | None = Field(default=None, min_length=1, max_length=32)
    email: str | None = Field(default=None, max_length=254, description="null removes it.")
    address: str | None = Field(default=None, min_length=1, max_length=300)
    kecamatan_code: str | None = Field(default=None, min_length=1, max_length=16)
    kelurahan: str | None = Field(default=None, min_length=1, max_length=100)
    preferred_language: Language | None = None
    declared_income: int | None = Field(default=None, strict=True)

    def requested(self) -> dict[str, Any]:
        """The fields the request set (an explicit null only for email)."""
        given = {name: getattr(self, name) for name in self.model_fields_set}
        return {k: v for k, v in given.items() if v is not None or k == "email"}


class ChangedOut(BaseModel):
    worker: WorkerOut
    changed: list[str] = Field(description="The details that changed (empty: none did).")


class DeregistrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: DeregistrationReason = Field(description="Why the membership ends.")
    effective_date: date = Field(
        description="The last day of membership and of cover (for DIED, the date of "
        "death); from the enrolment date to today."
    )


class HistoryOut(BaseModel):
    revision: int
    change: Literal["enrolled", "details_changed", "deregistered", "re_enrolled"]
    changes: dict[str, Any] = Field(description="field: {from, to}.")
    actor: str = Field(description="Who made the change (X-Actor, or the intake channel).")
    request_id: str | None
    effective_date: date | None
    reason: str | None
    recorded_at: datetime


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

    for event_type in (
        WorkerEnrolled,
        EnrolmentRejected,
        WorkerDetailsChanged,
        WorkerDeregistered,
    ):
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

    running_imports: dict[UUID, asyncio.Task[None]] = {}

    async def import_in_background(found: imports.Scan) -> None:
        try:
            await imports.run(pool, found, today, ages, batch=settings.import_batch_size)
            found.path.unlink(missing_ok=True)
        except imports.ImportBusy:
            log.info("import already running elsewhere", import_id=str(found.import_id))
        except Exception:
            log.exception(
                "import stopped; upload the file again to carry on", import_id=str(found.import_id)
            )
        finally:
            running_imports.pop(found.import_id, None)

    async def resume_imports() -> None:
        """Imports a crash or a restart interrupted carry on from their kept file."""
        async with db.connection(pool) as conn:
            unfinished = await store.unfinished_imports(conn)
        for import_id, digest in unfinished:
            kept = settings.import_dir / f"{digest}.csv"
            if not kept.exists():
                log.warning(
                    "import interrupted and its file is gone: upload the file again",
                    import_id=str(import_id),
                )
                continue
            try:
                found = await asyncio.to_thread(imports.scan, kept)
            except (OSError, csv_intake.FileInvalid) as error:
                log.warning(
                    "kept import file unreadable; upload the file again",
                    import_id=str(import_id),
                    error=str(error),
                )
                continue
            if found.digest != digest:
                log.warning("kept import file changed; not resumed", import_id=str(import_id))
                continue
            log.info("resuming import", import_id=str(import_id), rows=found.rows_total)
            running_imports[import_id] = asyncio.create_task(
                import_in_background(found), name=f"import-{import_id}"
            )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with running(resources, broker):
            await resume_imports()
            try:
                yield
            finally:
                for task in list(running_imports.values()):
                    task.cancel()  # whole batches are kept; the next start carries on
                await asyncio.gather(*running_imports.values(), return_exceptions=True)

    app = service_app(
        resources,
        broker,
        title="Perisai registration",
        summary="Enrol informal workers of Kota Pasuruan in JKK + JKM cover.",
        lifespan=lifespan,
        models=[BatchIn],
    )

    @app.post("/v1/enrolments", status_code=201, responses=problems(400, 409, 413, 422))
    async def enrol_one(
        request: Request,
        caller: Annotated[Caller, requires(Scope.ENROL)],
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
        await accessed(request, caller, disclosures([outcome], caller))
        if isinstance(outcome, Enrolled):
            return ResultOut.of(outcome)
        if isinstance(outcome, Conflict):
            IDEMPOTENCY_CONFLICTS.labels("api").inc()
            return problem_response(conflict_problem(outcome))  # type: ignore[return-value]
        return problem_response(rejection_problem(outcome, caller))  # type: ignore[return-value]

    @app.post(
        "/v1/enrolments/batch",
        responses=problems(400, 413, 422),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": BATCH_IN_REF}}},
            }
        },
    )
    async def enrol_batch(
        request: Request, caller: Annotated[Caller, requires(Scope.ENROL)]
    ) -> BatchOut:
        """Enrol many workers in one transaction; one result per request, in order. A
        request id already used for a different request (or twice in the batch for
        different workers) is a result with outcome ``conflict``. The requests are
        counted as the body arrives: one more than the limit is a 413 at once."""
        try:
            document = await batch_body.read(request.stream(), settings.max_batch_requests)
        except batch_body.TooManyRequests as error:
            raise HTTPException(413, str(error)) from None
        except batch_body.NotJson as error:
            raise HTTPException(400, str(error)) from None
        try:
            body = BatchIn.model_validate(document)
        except ValidationError as error:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in error.errors()]
            ) from None
        commands = [
            EnrolmentCommand(e.request_id, "bulk", read_worker(e.worker), e.request_id)
            for e in body.enrolments
        ]
        answers = await enrol(commands)
        await accessed(request, caller, disclosures(answers, caller))
        conflicts = sum(isinstance(answer, Conflict) for answer in answers)
        if conflicts:
            IDEMPOTENCY_CONFLICTS.labels("bulk").inc(conflicts)
        return BatchOut(results=[ResultOut.of(answer, caller) for answer in answers])

    @app.get(
        "/v1/enrolments/{request_id:path}",
        responses=problems(404, 422),
        dependencies=[requires(Scope.ENROL, Scope.READ)],
    )
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

    async def accessed(request: Request, caller: Caller, numbers: list[str]) -> None:
        await log_reads(pool, request, caller, numbers)

    async def worker_out(conn: asyncpg.Connection, participant_number: str) -> WorkerOut:
        row = await store.worker_summary(conn, participant_number)
        if row is None:
            raise HTTPException(404, "no worker with this participant number")
        return WorkerOut(
            **{k: v for k, v in row.items() if k != "nik"}, nik_masked=mask_nik(row["nik"])
        )

    def checked(participant_number: str) -> str:
        if not is_valid_participant_number(participant_number):
            raise HTTPException(422, "not a valid participant number (11 digits, Luhn)")
        return participant_number

    async def changing(work: Callable[[asyncpg.Connection], Awaitable[Event | None]]) -> None:
        """Run a change in a transaction, its event to the outbox; the rules' refusals
        become problem answers."""
        try:
            async with db.transaction(pool) as conn:
                event = await work(conn)
                if event is not None:
                    await outbox.enqueue_events(conn, [event])
        except WorkerNotFound as error:
            raise HTTPException(404, str(error)) from None

    @app.post(
        "/v1/imports",
        status_code=202,
        responses=problems(400, 413, 422),
        dependencies=[requires(Scope.ENROL, max_body_bytes=settings.max_import_bytes)],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def create_import(
        request: Request,
        filename: Annotated[
            str | None, Query(max_length=255, pattern=PRINTABLE, description="Its name.")
        ] = None,
    ) -> ImportOut:
        """Upload the city's list as CSV (the request body; columns and an example in
        the README). The whole file is checked first: a malformed one (not UTF-8, a
        missing column, a row with too many fields) is a 422 naming the line, and
        nothing is stored. Then its rows are enrolled in the background with the API's
        rules; follow GET /v1/imports/{import_id}. The same file again is the same
        import: it carries on after the rows already done and enrols nobody twice."""
        settings.import_dir.mkdir(parents=True, exist_ok=True)
        spool = settings.import_dir / f"upload-{uuid.uuid4()}.part"
        try:
            with spool.open("wb") as out:
                async for chunk in request.stream():  # the guard stops it past the limit
                    out.write(chunk)
            try:
                found = await asyncio.to_thread(imports.scan, spool)
            except csv_intake.FileInvalid as error:
                return problem_response(  # type: ignore[return-value]
                    Problem(
                        type="/problems/import-file-invalid",
                        title="The file cannot be imported",
                        status=422,
                        detail=f"{error}; nothing was stored",
                    )
                )
            kept = settings.import_dir / f"{found.digest}.csv"
            spool.replace(kept)
            found = imports.Scan(kept, found.digest, found.rows_total, found.ignored_columns)
        finally:
            spool.unlink(missing_ok=True)
        await imports.register(pool, found, filename)
        async with db.connection(pool) as conn:
            status = await store.import_status(conn, found.import_id)
        assert status is not None
        if status["status"] != "done" and found.import_id not in running_imports:
            running_imports[found.import_id] = asyncio.create_task(
                import_in_background(found), name=f"import-{found.import_id}"
            )
        elif status["status"] == "done":
            kept.unlink(missing_ok=True)
        return ImportOut(**status)

    @app.get(
        "/v1/imports/{import_id}",
        responses=problems(404, 422),
        dependencies=[requires(Scope.ENROL, Scope.READ, Scope.OPS)],
    )
    async def get_import(import_id: UUID) -> ImportOut:
        """An import's progress and counts (rejections by reason)."""
        async with db.connection(pool) as conn:
            status = await store.import_status(conn, import_id)
        if status is None:
            raise HTTPException(404, "no import with this id")
        return ImportOut(**status)

    @app.get(
        "/v1/imports/{import_id}/rows",
        responses={
            **problems(404, 422),
            200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        },
        dependencies=[requires(Scope.ENROL, Scope.READ)],
    )
    async def import_rows(
        request: Request,
        import_id: UUID,
        format: Annotated[Literal["json", "csv"] | None, Query()] = None,
        after: Annotated[int, Query(ge=0, description="JSON: rows after this row.")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        """Each row's outcome: participant number, or the reasons (codes, in Indonesian
        and in English). CSV (?format=csv or Accept: text/csv) gives every row, for a
        spreadsheet: ';' separated, UTF-8 with BOM; JSON gives a page."""
        async with db.connection(pool) as conn:
            if not await store.import_exists(conn, import_id):
                raise HTTPException(404, "no import with this id")
        if not wants_csv(request, format):
            async with db.connection(pool) as conn:
                page = await store.import_rows_page(conn, import_id, after, limit)
            return JSONResponse(jsonable_encoder({"rows": page}))

        async def lines() -> AsyncIterator[bytes]:
            buffer = io.StringIO()
            writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
            writer.writerow(IMPORT_ROW_COLUMNS)
            yield ("\ufeff" + buffer.getvalue()).encode()
            last = 0
            while True:
                async with db.connection(pool) as conn:
                    page = await store.import_rows_page(conn, import_id, last, 1000)
                if not page:
                    return
                buffer.seek(0)
                buffer.truncate()
                writer.writerows(import_row_csv(row) for row in page)
                yield buffer.getvalue().encode()
                last = int(str(page[-1]["row_number"]))

        return StreamingResponse(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="import-{import_id}.csv"'},
        )

    @app.get("/v1/workers", responses=problems(422))
    async def search_workers(
        request: Request,
        caller: Annotated[Caller, requires(Scope.READ)],
        q: Annotated[
            str,
            Query(
                min_length=1,
                max_length=100,
                description="A name (accent- and case-insensitive prefix, at least 2 "
                "letters), the last four NIK digits and a birth date ('0001 1990-01-31', "
                "also DD-MM-YYYY or DD/MM/YYYY), or a phone number (08.., +628..).",
                examples=["siti am"],
            ),
        ],
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=400)] = None,
    ) -> SearchOut:
        """Find workers as a clerk would: by name, by NIK tail and birth date, or by
        phone. Ordered by name; paginated with next_cursor. NIKs are masked."""
        try:
            query = search.parse_query(q)
        except search.QueryInvalid as error:
            raise HTTPException(422, f"q: {error}") from None
        after = decode_cursor(cursor) if cursor else None
        async with db.connection(pool) as conn:
            rows = await store.search(conn, query, limit + 1, after)
        page = rows[:limit]
        items = [
            FoundWorker(
                **{k: v for k, v in r.items() if k in FoundWorker.model_fields},
                nik_masked=mask_nik(str(r["nik"])),
            )
            for r in page
        ]
        more = len(rows) > limit
        await accessed(request, caller, [item.participant_number for item in items])
        return SearchOut(items=items, next_cursor=encode_cursor(page[-1]) if more else None)

    @app.get("/v1/workers/{participant_number}", responses=problems(404, 422))
    async def get_worker(
        request: Request,
        caller: Annotated[Caller, requires(Scope.READ)],
        participant_number: ParticipantNumberPath,
    ) -> WorkerOut:
        """A worker's record, the NIK masked."""
        async with db.connection(pool) as conn:
            found = await worker_out(conn, checked(participant_number))
        await accessed(request, caller, [found.participant_number])
        return found

    @app.patch("/v1/workers/{participant_number}", responses=problems(400, 404, 409, 422))
    async def change_worker(
        request: Request,
        caller: Annotated[Caller, requires(Scope.ADMIN)],
        participant_number: ParticipantNumberPath,
        body: WorkerChangesIn,
        x_actor: ActorHeader = None,
        x_correlation_id: CorrelationId = None,
    ) -> ChangedOut:
        """Change a worker's phone, email, address (within the city: kecamatan_code and
        kelurahan), preferred language or declared income. Emits WorkerDetailsChanged
        (notifications uses the new contact from then on) and keeps the change in the
        worker's history. The same change again changes nothing and emits nothing. 422
        (/problems/change-rejected) with every reason; 409 for a deregistered worker."""
        number = checked(participant_number)
        done: list[str] = []

        async def work(conn: asyncpg.Connection) -> Event | None:
            result = await membership.change_details(
                conn, number, body.requested(), actor(caller, x_actor), x_correlation_id or number
            )
            done.extend(result.changed)
            return result.event

        await changing(work)
        async with db.connection(pool) as conn:
            changed = ChangedOut(worker=await worker_out(conn, number), changed=done)
        await accessed(request, caller, [number])
        return changed

    @app.post(
        "/v1/workers/{participant_number}/deregistration", responses=problems(400, 404, 409, 422)
    )
    async def deregister_worker(
        request: Request,
        caller: Annotated[Caller, requires(Scope.ADMIN)],
        participant_number: ParticipantNumberPath,
        body: DeregistrationIn,
        x_actor: ActorHeader = None,
        x_correlation_id: CorrelationId = None,
    ) -> WorkerOut:
        """End a worker's membership (DIED, MOVED_OUT, BECAME_WAGE_EARNER, DUPLICATE,
        REQUESTED) on a date: emits WorkerDeregistered, and coverage ends the policy on
        that date (nothing billed for later months). The same deregistration again is
        a no-op; another one for a deregistered worker is a 409. The NIK may enrol again
        later: a new membership under the same participant number."""
        number = checked(participant_number)

        async def work(conn: asyncpg.Connection) -> Event | None:
            return await membership.deregister(
                conn,
                number,
                body.reason,
                body.effective_date,
                actor(caller, x_actor),
                x_correlation_id or number,
                today(),
            )

        await changing(work)
        async with db.connection(pool) as conn:
            found = await worker_out(conn, number)
        await accessed(request, caller, [number])
        return found

    @app.get("/v1/workers/{participant_number}/history", responses=problems(404, 422))
    async def worker_history(
        request: Request,
        caller: Annotated[Caller, requires(Scope.READ)],
        participant_number: ParticipantNumberPath,
    ) -> list[HistoryOut]:
        """Every change to the worker, oldest first: who, when, what (from, to)."""
        number = checked(participant_number)
        async with db.connection(pool) as conn:
            await worker_out(conn, number)
            history = [HistoryOut(**row) for row in await store.history(conn, number)]
        await accessed(request, caller, [number])
        return history

    @app.exception_handler(membership.ChangeInvalid)
    async def on_change_invalid(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, membership.ChangeInvalid)
        problem = Problem(
            type="/problems/change-rejected",
            title="Change rejected",
            status=422,
            detail=str(error),
            reasons=error.reasons,
        )
        return problem_response(problem)

    @app.exception_handler(Refused)
    async def on_refused(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, Refused)
        return problem_response(refused_problem(error))

    @app.get("/v1/summary", responses=problems(), dependencies=[requires(Scope.OPS)])
    async def summary() -> dict[str, object]:
        """Enrolled and rejected counts, rejections by reason."""
        async with db.connection(pool) as conn:
            return await store.counts(conn)

    return app
