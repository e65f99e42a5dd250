"""The monthly billing run: post one month's premium for every policy active in it,
invoice each agreement, and refuse whole any agreement whose budget cannot take it.

Exactly once, however often it runs and wherever it is stopped:
- one run per month at a time in the whole cluster (a PostgreSQL advisory lock held by
  the run's connection, so a killed run releases it);
- each agreement's month is one transaction: its postings, the outbox row that stands
  for their PremiumPosted events (``run_postings``), the budget commitment and the
  invoice commit together or not at all;
- the ledger's unique (policy, month) index skips what an earlier run (or the first
  month posted at activation) already holds.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

import asyncpg
import structlog

from services.coverage import domain, run_postings, store
from services.coverage.errors import Refused
from services.coverage.run_postings import RunPostings
from shared import db
from shared.events import InvoiceIssued, derive_event_id
from shared.outbox import enqueue_events

log = structlog.get_logger(__name__)

Trigger = Literal["command", "api", "schedule"]
DEFAULT_CHUNK = 50_000
"""Policies per statement: big enough to be set-based, small enough to show progress."""
MIN_POLICY_ID = uuid.UUID(int=0)


MONTHS_AHEAD = 1
"""A month is billed at most this far ahead of the current one: a run for a later month
is far more often a typo (2062-11 for 2026-11) than an advance invoice."""


def check_period(period: date, today: date) -> None:
    latest = domain.add_months(domain.month_of(today), MONTHS_AHEAD)
    if period > latest:
        raise Refused(
            "PERIOD_TOO_FAR_AHEAD",
            f"{period:%Y-%m} is after {latest:%Y-%m}: a month is billed at most "
            f"{MONTHS_AHEAD} month ahead",
        )


class BillingInProgress(Exception):
    """Another run holds this month's billing lock."""

    def __init__(self, period: date) -> None:
        super().__init__(f"a billing run for {period:%Y-%m} is already in progress")
        self.period = period


class AlreadyBilled(Exception):
    """The month has a recorded run (asked for with ``unless_billed``)."""


@dataclass(frozen=True)
class Progress:
    agreement_code: str
    policies_done: int
    policies_total: int
    postings_created: int
    elapsed_s: float


@dataclass
class AgreementBilling:
    agreement_code: str
    payer: str
    policies_billed: int = 0
    postings_created: int = 0
    postings_existing: int = 0
    amount_created: int = 0
    invoice_id: str | None = None
    invoice_revision: int | None = None
    invoice_total: int = 0
    refused: str | None = None


@dataclass
class BillingSummary:
    run_id: str
    period: str
    trigger: Trigger
    started_at: str
    finished_at: str = ""
    policies_billed: int = 0
    postings_created: int = 0
    postings_existing: int = 0
    amount_created: int = 0
    """Rupiah posted by this run."""
    invoice_total: int = 0
    """Rupiah invoiced for the month in all (this run's postings and earlier ones)."""
    refused: int = 0
    """Agreements whose month the budget could not take (nothing posted for them)."""
    agreements: list[AgreementBilling] = field(default_factory=list)

    def add(self, billed: AgreementBilling) -> None:
        self.agreements.append(billed)
        self.policies_billed += billed.policies_billed
        self.postings_created += billed.postings_created
        self.postings_existing += billed.postings_existing
        self.amount_created += billed.amount_created
        self.invoice_total += billed.invoice_total
        self.refused += billed.refused is not None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _Refused(Exception):
    def __init__(self, billed: AgreementBilling, budget: domain.Budget) -> None:
        self.billed = billed
        self.budget = budget


async def run(
    pool: asyncpg.Pool,
    period: date,
    *,
    trigger: Trigger,
    chunk: int = DEFAULT_CHUNK,
    progress: Callable[[Progress], None] | None = None,
    unless_billed: bool = False,
) -> BillingSummary:
    """Bill ``period`` (the first day of a month) for every agreement in force in it.
    Raises BillingInProgress if another run holds the month, and, with
    ``unless_billed``, AlreadyBilled if a run of the month was recorded."""
    started = datetime.now(UTC)
    summary = BillingSummary(
        run_id=str(uuid.uuid4()),
        period=f"{period:%Y-%m}",
        trigger=trigger,
        started_at=started.isoformat(),
    )
    async with db.connection(pool) as conn:
        if not await store.try_lock_period(conn, period):
            raise BillingInProgress(period)
        try:
            if unless_billed and await store.billing_periods_run(conn, period):
                raise AlreadyBilled(period)
            agreements = [a for a in await store.agreements(conn) if a.covers_month(period)]
            for agreement in agreements:
                summary.add(
                    await _bill_agreement(conn, agreement, period, summary, chunk, progress)
                )
            summary.finished_at = datetime.now(UTC).isoformat()
            await store.record_run(
                conn, uuid.UUID(summary.run_id), period, trigger, started, summary.as_dict()
            )
        finally:
            # On a connection that died the lock went with it; the run's error is the news.
            with contextlib.suppress(Exception):
                await store.unlock_period(conn, period)
    log.info(
        "billing run finished", **{k: v for k, v in summary.as_dict().items() if k != "agreements"}
    )
    return summary


async def _bill_agreement(
    conn: asyncpg.Connection,
    agreement: domain.Agreement,
    period: date,
    summary: BillingSummary,
    chunk: int,
    progress: Callable[[Progress], None] | None,
) -> AgreementBilling:
    try:
        async with conn.transaction():
            return await _post_and_invoice(conn, agreement, period, summary, chunk, progress)
    except _Refused as refused:
        # Everything the month posted is rolled back; only the refusal is kept.
        billed = refused.billed
        event = domain.refused_event(agreement, refused.budget, billed.amount_created, period)
        async with conn.transaction():
            await enqueue_events(conn, [event])
        log.warning(
            "billing refused", agreement=agreement.code, period=summary.period, detail=event.detail
        )
        return AgreementBilling(
            agreement.code,
            agreement.payer,
            policies_billed=billed.policies_billed,
            postings_existing=billed.postings_existing,
            refused=event.detail,
        )


async def _post_and_invoice(
    conn: asyncpg.Connection,
    agreement: domain.Agreement,
    period: date,
    summary: BillingSummary,
    chunk: int,
    progress: Callable[[Progress], None] | None,
) -> AgreementBilling:
    await store.size_work_memory(conn)
    budget = (await store.lock_budgets(conn, [agreement.code]))[agreement.code]
    try:
        tariff = domain.agreement_tariff(agreement, period)
    except LookupError as error:
        raise Refused("NO_TARIFF", f"agreement {agreement.code}: {error}") from None
    invoice = await store.open_invoice(
        conn, agreement, period, domain.invoice_id_for(agreement.code, period)
    )
    total = await store.count_billable(conn, agreement, period)
    billed = AgreementBilling(agreement.code, agreement.payer)
    run_id = uuid.UUID(summary.run_id)
    clock = time.monotonic()
    after = MIN_POLICY_ID
    while True:
        result = await store.bill_chunk(
            conn,
            agreement,
            period,
            tariff,
            run_id=run_id,
            after=after,
            limit=chunk,
        )
        if result.last_policy_id is None:
            break
        after = result.last_policy_id
        billed.policies_billed += result.billable
        billed.postings_created += result.created
        billed.postings_existing += result.billable - result.created
        billed.amount_created += result.amount
        if progress:
            progress(
                Progress(
                    agreement.code,
                    billed.policies_billed,
                    total,
                    billed.postings_created,
                    time.monotonic() - clock,
                )
            )
    if not budget.admits(billed.amount_created):
        raise _Refused(billed, budget)
    await store.commit_amounts(conn, {agreement.code: billed.amount_created})
    if billed.postings_created:
        started_at = datetime.fromisoformat(summary.started_at)
        await run_postings.enqueue(
            conn, RunPostings(run_id, period, agreement.payer_account, started_at)
        )
    if invoice is not None:
        if billed.postings_created:
            await store.line_run_postings(conn, invoice, run_id)
        first_months, first_months_amount = await store.line_first_months(
            conn, invoice, agreement, period
        )
        issued = await store.settle_invoice(
            conn,
            invoice,
            billed.postings_created + first_months,
            billed.amount_created + first_months_amount,
        )
        if issued is not None:
            await enqueue_events(conn, [_issued(agreement, period, issued, summary.run_id)])
    current = await store.invoice_of(conn, agreement.code, period)
    if current is not None:
        billed.invoice_id = str(current["invoice_id"])
        billed.invoice_revision = current["revision"]
        billed.invoice_total = current["total"]
    return billed


STRAGGLER_MONTHS = 12
"""How far back the schedule looks for postings made after their month was invoiced."""


async def invoice_stragglers(pool: asyncpg.Pool, today: date) -> int:
    """Put first months posted after their month's run (a late enrolment, a pending
    policy started later) on that month's invoice, as a new revision. Posts nothing and
    commits nothing: those postings were committed when made. Returns the invoices
    re-issued."""
    since = domain.add_months(domain.month_of(today), -STRAGGLER_MONTHS)
    reissued = 0
    async with db.connection(pool) as conn:
        for code, period in await store.uninvoiced_months(conn, since):
            async with conn.transaction():
                await store.lock_budgets(conn, [code])  # as a billing run of it would
                agreement = await store.agreement(conn, code)
                assert agreement is not None
                invoice = await store.invoice_month(
                    conn, agreement, period, domain.invoice_id_for(code, period)
                )
                if invoice is not None:
                    run_id = str(uuid.uuid4())
                    await enqueue_events(conn, [_issued(agreement, period, invoice, run_id)])
                    reissued += 1
    return reissued


def _issued(
    agreement: domain.Agreement, period: date, invoice: store.InvoiceChange, run_id: str
) -> InvoiceIssued:
    return InvoiceIssued(
        event_id=derive_event_id("invoice.issued", invoice.invoice_id, invoice.revision),
        correlation_id=f"billing-run:{run_id}",
        invoice_id=invoice.invoice_id,
        agreement_code=agreement.code,
        payer=agreement.payer,
        period=f"{period:%Y-%m}",
        revision=invoice.revision,
        headcount=invoice.headcount,
        total=invoice.total,
    )
