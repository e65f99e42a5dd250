"""Coverage's process: consumes WorkerEnrolled, opens policies, posts premiums; bills
the month, invoices the payer, records payments; serves the policies, invoices and
reports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from faststream.kafka.annotations import KafkaMessage

from services.coverage import (
    agreements,
    billing,
    domain,
    invoices,
    ledger,
    memberships,
    policies,
    reports,
    run_postings,
    spreadsheet,
    store,
)
from services.coverage.errors import NotFound, Refused
from services.coverage.requests import (
    PERIOD_PATTERN,
    BillingRunRequest,
    EndAgreementRequest,
    EndPolicyRequest,
    PaymentRequest,
    VoidRequest,
)
from services.coverage.schedule import Scheduler
from services.coverage.settings import CoverageSettings
from shared import db, topics
from shared.api_keys import Caller, Scope
from shared.events import (
    CoverageRefused,
    Event,
    InvoiceIssued,
    InvoicePaid,
    InvoiceVoided,
    PolicyActivated,
    PolicyEnded,
    PolicyLapsed,
    PolicyReinstated,
    PremiumPosted,
    PremiumReversed,
    WorkerDeregistered,
    WorkerEnrolled,
)
from shared.guard import log_reads, requires
from shared.http import (
    Problem,
    problem_response,
    problems,
    refused_problem,
    simple_problem,
    wants_csv,
)
from shared.outbox import enqueue_events
from shared.service import (
    Resources,
    ServiceSpec,
    batch_subscriber,
    new_broker,
    running,
    service_app,
)

SPEC = ServiceSpec(
    "coverage",
    Path(__file__).with_name("migrations"),
    append_only=("premium_ledger", "invoice_run_lines"),
    outbox_sources=run_postings.SOURCES,
)

PeriodQuery = Query(
    pattern=PERIOD_PATTERN,
    description="A calendar month, YYYY-MM (years 1000-2999).",
    examples=["2026-11"],
)
FormatQuery = Query(description="json (default) or csv (also chosen by Accept: text/csv).")

PRODUCED: tuple[type[Event], ...] = (
    PolicyActivated,
    PremiumPosted,
    PremiumReversed,
    CoverageRefused,
    InvoiceIssued,
    InvoicePaid,
    InvoiceVoided,
    PolicyLapsed,
    PolicyReinstated,
    PolicyEnded,
)
"""Every event coverage publishes (through its outbox)."""


def csv_response(body: str, filename: str) -> Response:
    return Response(
        body.encode(),
        media_type=spreadsheet.MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def create_app(resources: Resources) -> FastAPI:
    settings = resources.settings
    assert isinstance(settings, CoverageSettings)
    pool = resources.pool
    timezone = ZoneInfo(settings.timezone)

    def today() -> date:
        return datetime.now(timezone).date()

    async def handle_enrolled(conn: asyncpg.Connection, batch: list[WorkerEnrolled]) -> list[Event]:
        return await memberships.enrolled(conn, batch, today())

    async def handle_deregistered(
        conn: asyncpg.Connection, batch: list[WorkerDeregistered]
    ) -> list[Event]:
        return await memberships.deregistered(conn, batch)

    consume_enrolled = resources.consumer("worker-enrolled", WorkerEnrolled, handle_enrolled)
    consume_deregistered = resources.consumer(
        "worker-deregistered", WorkerDeregistered, handle_deregistered
    )
    broker = new_broker(settings, SPEC)

    @batch_subscriber(
        broker,
        resources,
        topics.WORKER_DEREGISTERED,
        "worker-deregistered",
        description="A deregistered worker's policy ends on the deregistration's date "
        "(PolicyEnded); nothing is billed for the months after it, and postings already "
        "made for them are reversed.",
    )
    async def on_worker_deregistered(message: KafkaMessage) -> None:
        await consume_deregistered(message.raw_message)  # type: ignore[arg-type]

    @batch_subscriber(
        broker,
        resources,
        topics.WORKER_ENROLLED,
        "worker-enrolled",
        description="Each enrolled worker gets an active JKK + JKM policy under the funding "
        "agreement in force and the first month's premium posted.",
    )
    async def on_worker_enrolled(message: KafkaMessage) -> None:
        await consume_enrolled(message.raw_message)  # type: ignore[arg-type]

    for event_type in PRODUCED:
        broker.publisher(
            settings.topic_prefix + event_type.TOPIC,
            schema=event_type,
            description=event_type.__doc__,
        )

    scheduler = Scheduler(
        pool,
        today=today,
        billing_day=settings.billing_day,
        interval_s=settings.schedule_interval_s,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with running(resources, broker):
            task = (
                asyncio.create_task(scheduler.run(), name="coverage-schedule")
                if settings.schedule_enabled
                else None
            )
            try:
                yield
            finally:
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    app = service_app(
        resources,
        broker,
        title="Perisai coverage",
        summary="Policies, the premium ledger, billing runs, invoices and the budgets of "
        "city-funded JKK + JKM cover.",
        lifespan=lifespan,
        models=(Problem,),
    )

    @app.exception_handler(NotFound)
    async def on_not_found(_: Request, error: Exception) -> JSONResponse:
        return problem_response(simple_problem(404, str(error)))

    @app.exception_handler(Refused)
    async def on_refused(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, Refused)
        return problem_response(refused_problem(error))

    @app.get("/v1/summary", responses=problems(422), dependencies=[requires(Scope.OPS)])
    async def summary(period: Annotated[str | None, PeriodQuery] = None) -> dict[str, object]:
        """Policies by status and the premium due for a month (default: this month)."""
        month = domain.parse_period(period) if period else domain.month_of(today())
        async with db.connection(pool) as conn:
            return await store.counts(conn, month)

    @app.get("/v1/workers/{worker_id}/policy", responses=problems(404, 422))
    async def worker_policy(
        request: Request, caller: Annotated[Caller, requires(Scope.READ)], worker_id: UUID
    ) -> dict[str, object]:
        """A worker's policy (of their latest membership) and its premium ledger entries."""
        async with db.connection(pool) as conn:
            policy = await store.policy_of(conn, worker_id)
        if policy is None:
            raise HTTPException(404, "no policy for this worker (yet)")
        await log_reads(pool, request, caller, [str(worker_id)])
        return policy

    @app.post(
        "/v1/workers/{worker_id}/policy/end",
        responses=problems(400, 404, 409, 422),
    )
    async def end_policy(
        request: Request,
        caller: Annotated[Caller, requires(Scope.ADMIN)],
        worker_id: UUID,
        body: EndPolicyRequest,
    ) -> dict[str, object]:
        """End a worker's policy from a date, with a reason: nothing is billed for later
        months and postings already made for them are reversed (PolicyEnded). Ending an
        ended policy is refused (409)."""
        async with db.transaction(pool) as conn:
            event, reversed_amount = await policies.end(
                conn, worker_id=worker_id, on=body.on, reason=body.reason
            )
            await enqueue_events(conn, [event])
        await log_reads(pool, request, caller, [str(worker_id)])
        return {**event.model_dump(mode="json"), "reversed_amount": reversed_amount}

    # -- Agreements ----------------------------------------------------------------

    @app.get(
        "/v1/agreements", responses=problems(), dependencies=[requires(Scope.ADMIN, Scope.FINANCE)]
    )
    async def list_agreements() -> list[dict[str, object]]:
        """Every funding agreement, oldest first."""
        async with db.connection(pool) as conn:
            return [agreements.describe(a) for a in await store.agreements(conn)]

    @app.post(
        "/v1/agreements",
        status_code=201,
        responses={**problems(400, 409, 422), 200: {"description": "This agreement exists."}},
        dependencies=[requires(Scope.ADMIN)],
    )
    async def add_agreement(draft: agreements.AgreementDraft) -> JSONResponse:
        """Record a funding agreement (201; 200 if this very agreement exists). One payer
        has one agreement at a time: an overlapping window is refused (409), as is a
        taken code with other terms. Pending policies it can cover are activated."""
        async with db.transaction(pool) as conn:
            agreement, added, events = await agreements.add(conn, draft, today())
            await enqueue_events(conn, events)
            body = await agreements.report(conn, agreement.code, today())
        activated = sum(isinstance(e, PolicyActivated) for e in events)
        return JSONResponse(
            {**body, "policies_activated": activated}, status_code=201 if added else 200
        )

    @app.post(
        "/v1/agreements/{code}/end",
        responses=problems(400, 404, 409, 422),
        dependencies=[requires(Scope.ADMIN)],
    )
    async def end_agreement(code: str, body: EndAgreementRequest) -> dict[str, object]:
        """Close an agreement's window (no longer in force from valid_to), e.g. so a
        renewal can start. Never below a month already billed under it (409)."""
        async with db.transaction(pool) as conn:
            await agreements.end(conn, code, body.valid_to)
            return await agreements.report(conn, code, today())

    @app.get(
        "/v1/agreements/{code}",
        responses=problems(404, 422),
        dependencies=[requires(Scope.ADMIN, Scope.FINANCE)],
    )
    async def show_agreement(code: str) -> dict[str, object]:
        """An agreement with its budget: ceiling, committed, remaining, and the month
        it runs out at the current headcount."""
        async with db.connection(pool) as conn:
            return await agreements.report(conn, code, today())

    # -- Billing and invoices ------------------------------------------------------

    @app.post(
        "/v1/billing-runs",
        responses=problems(400, 409, 422),
        dependencies=[requires(Scope.FINANCE)],
    )
    async def run_billing(body: BillingRunRequest) -> dict[str, object]:
        """Bill a month: post its premium once for every policy active in it, invoice
        each agreement, refuse whole a month an agreement's budget cannot take. Safe to
        repeat; 409 while another run bills the same month."""
        period = domain.parse_period(body.period)
        billing.check_period(period, today())
        try:
            summary = await billing.run(pool, period, trigger="api")
        except billing.BillingInProgress as error:
            raise Refused("BILLING_IN_PROGRESS", str(error)) from None
        return summary.as_dict()

    @app.get("/v1/invoices", responses=problems(422), dependencies=[requires(Scope.FINANCE)])
    async def list_invoices(
        period: Annotated[str | None, PeriodQuery] = None,
    ) -> list[dict[str, object]]:
        """Invoices, one per agreement and month; ?period=YYYY-MM for one month."""
        async with db.connection(pool) as conn:
            return await store.invoices(conn, domain.parse_period(period) if period else None)

    @app.get(
        "/v1/invoices/{invoice_id}",
        responses={
            **problems(404, 422),
            200: {"content": {"application/json": {}, "text/csv": {}}},
        },
        dependencies=[requires(Scope.FINANCE)],
    )
    async def show_invoice(
        request: Request,
        invoice_id: UUID,
        format: Annotated[Literal["json", "csv"] | None, FormatQuery] = None,
    ) -> Response:
        """An invoice with its totals by kecamatan, by occupation and by both, and its
        payments. As CSV (?format=csv or Accept: text/csv): one row per kecamatan and
        occupation, then the total (';' separated, UTF-8 with BOM)."""
        async with db.connection(pool) as conn:
            found = await store.invoice(conn, invoice_id)
            if found is None:
                raise NotFound(f"no invoice {invoice_id}")
            found["payments"] = await store.payments(conn, invoice_id)
        if wants_csv(request, format):
            return csv_response(
                spreadsheet.invoice(found),
                f"invoice-{found['agreement_code']}-{found['period']}.csv",
            )
        return JSONResponse(_jsonable(found))

    @app.get(
        "/v1/invoices/{invoice_id}/lines",
        responses={**problems(404, 422), 200: {"content": {"text/csv": {}}}},
        dependencies=[requires(Scope.FINANCE)],
    )
    async def invoice_lines(invoice_id: UUID) -> Response:
        """Every line of an invoice with the ledger entry it bills (CSV)."""
        async with db.connection(pool) as conn:
            if await store.invoice_agreement(conn, invoice_id) is None:
                raise NotFound(f"no invoice {invoice_id}")
            lines = await store.invoice_lines(conn, invoice_id)
        return csv_response(spreadsheet.invoice_lines(lines), f"invoice-{invoice_id}-lines.csv")

    @app.post(
        "/v1/invoices/{invoice_id}/payments",
        status_code=201,
        responses={
            **problems(400, 404, 409, 422),
            200: {"description": "This payment was recorded before; nothing changed."},
        },
        dependencies=[requires(Scope.FINANCE)],
    )
    async def pay_invoice(
        invoice_id: UUID, body: PaymentRequest, response: Response
    ) -> dict[str, object]:
        """Record a payment (201). A partial payment keeps the invoice open; the one that
        covers it makes it paid and reinstates policies its arrears lapsed. The same
        reference again with the same amount and date answers 200 and changes nothing;
        an overpayment or a void invoice is refused (409)."""
        async with db.transaction(pool) as conn:
            outcome = await invoices.pay(
                conn,
                invoice_id,
                amount=body.amount,
                paid_on=body.paid_on,
                reference=body.reference,
                today=today(),
            )
            await enqueue_events(conn, outcome.events)
        response.status_code = 201 if outcome.recorded_now else 200
        return {
            "payment_id": str(outcome.payment_id),
            "invoice_id": str(invoice_id),
            "status": outcome.status,
            "total": outcome.total,
            "paid_amount": outcome.paid_amount,
            "outstanding": outcome.outstanding,
            "policies_reinstated": sum(isinstance(e, PolicyReinstated) for e in outcome.events),
        }

    @app.post(
        "/v1/invoices/{invoice_id}/void",
        responses=problems(400, 404, 409, 422),
        dependencies=[requires(Scope.FINANCE)],
    )
    async def void_invoice(invoice_id: UUID, body: VoidRequest) -> dict[str, object]:
        """Cancel an unpaid invoice with a reason: each of its postings is reversed and
        its amount returns to the budget. An invoice with payments is refused (409)."""
        async with db.transaction(pool) as conn:
            reversed_amount, events = await invoices.void(
                conn, invoice_id, reason=body.reason, today=today()
            )
            await enqueue_events(conn, events)
        return {"invoice_id": str(invoice_id), "status": "void", "reversed": reversed_amount}

    @app.get(
        "/v1/ledger/check", responses=problems(), dependencies=[requires(Scope.FINANCE, Scope.OPS)]
    )
    async def check_ledger() -> dict[str, object]:
        """The ledger's invariants: ok, the violations with examples, and notices."""
        async with db.connection(pool) as conn:
            return _jsonable(await ledger.check(conn))

    # -- Reports -------------------------------------------------------------------

    @app.get(
        "/v1/reports/coverage",
        responses={**problems(422), 200: {"content": {"application/json": {}, "text/csv": {}}}},
        dependencies=[requires(Scope.OPS, Scope.FINANCE)],
    )
    async def coverage_report(
        request: Request,
        period: Annotated[str | None, PeriodQuery] = None,
        format: Annotated[Literal["json", "csv"] | None, FormatQuery] = None,
    ) -> Response:
        """Active policies by kecamatan and occupation, with the premium posted for them
        for a month (default: this month)."""
        month = domain.parse_period(period) if period else domain.month_of(today())
        async with db.connection(pool) as conn:
            groups = await store.coverage_groups(conn, month)
        if wants_csv(request, format):
            return csv_response(spreadsheet.coverage(groups), f"coverage-{month:%Y-%m}.csv")
        return JSONResponse(
            {
                "period": f"{month:%Y-%m}",
                "active_policies": sum(int(g["active_policies"]) for g in groups),  # type: ignore[call-overload]
                "groups": groups,
            }
        )

    @app.get(
        "/v1/reports/billing",
        responses=problems(422),
        dependencies=[requires(Scope.FINANCE, Scope.OPS)],
    )
    async def billing_report(
        first: Annotated[str, Query(alias="from", pattern=PERIOD_PATTERN)],
        last: Annotated[str, Query(alias="to", pattern=PERIOD_PATTERN)],
    ) -> dict[str, object]:
        """Per month (at most 60) and agreement: due, posted, invoiced and paid; and
        each agreement's budget used against its ceiling."""
        try:
            months = (domain.parse_period(first), domain.parse_period(last))
            reports.months(*months)
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        async with db.connection(pool) as conn:
            return _jsonable(await reports.billing(conn, *months))

    return app


def _jsonable(value: dict[str, object]) -> dict[str, object]:
    """Records to JSON: UUIDs, dates and timestamps as strings."""
    return jsonable_encoder(value)  # type: ignore[no-any-return]
