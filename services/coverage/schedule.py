"""What the coverage service does by the calendar: each day, start pending policies
whose agreement came into force and lapse or reinstate on arrears; from the billing day
of each month (WIB), bill the month once; and each round, put first months posted after
their month's run (late enrolments, pending policies started later) on that month's
invoice. Safe with any number of instances: the billing run takes its month's database
lock, a month with a recorded run is not run again by the schedule, and invoicing takes
the agreement's lock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import date

import asyncpg
import structlog

from services.coverage import billing, domain, policies
from shared import db
from shared.failures import Failure, classify
from shared.outbox import enqueue_events

log = structlog.get_logger(__name__)


class Scheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        today: Callable[[], date],
        billing_day: int,
        interval_s: float,
    ) -> None:
        self.pool = pool
        self.today = today
        self.billing_day = billing_day
        self.interval_s = interval_s

    async def run(self) -> None:
        while True:
            try:
                await self.tick(self.today())
            except asyncio.CancelledError:
                raise
            except Exception as error:
                level = "warning" if classify(error) is Failure.UNAVAILABLE else "error"
                getattr(log, level)("scheduled work failed; retrying next round", error=repr(error))
            await asyncio.sleep(self.interval_s)

    async def tick(self, today: date) -> billing.BillingSummary | None:
        """One round; returns the billing run's summary if this round ran one."""
        async with db.transaction(self.pool) as conn:
            events = await policies.daily_sweep(conn, today)
            await enqueue_events(conn, events)
        if events:
            log.info("daily sweep", events=len(events))
        summary = None
        if today.day >= self.billing_day:
            with contextlib.suppress(billing.BillingInProgress, billing.AlreadyBilled):
                summary = await billing.run(
                    self.pool, domain.month_of(today), trigger="schedule", unless_billed=True
                )
        reissued = await billing.invoice_stragglers(self.pool, today)
        if reissued:
            log.info("invoices re-issued with late postings", invoices=reissued)
        return summary
