"""Reports for operations and the city's finance office."""

from __future__ import annotations

from datetime import date

import asyncpg

from services.coverage import domain, store

MAX_REPORT_MONTHS = 60


def months(first: date, last: date) -> list[date]:
    if last < first:
        raise ValueError(f"'to' ({last:%Y-%m}) is before 'from' ({first:%Y-%m})")
    span = (last.year - first.year) * 12 + last.month - first.month + 1
    if span > MAX_REPORT_MONTHS:
        raise ValueError(f"at most {MAX_REPORT_MONTHS} months per report, not {span}")
    return [domain.add_months(first, n) for n in range(span)]


async def billing(conn: asyncpg.Connection, first: date, last: date) -> dict[str, object]:
    """Per month and agreement: due (the billing rule applied to today's policies),
    posted (net ledger), invoiced and paid; and each agreement's budget."""
    periods = months(first, last)
    agreements = await store.agreements(conn)
    rows: list[dict[str, object]] = []
    for period in periods:
        for agreement in agreements:
            if not agreement.covers_month(period):
                continue
            tariff = domain.agreement_tariff(agreement, period)
            figures = await store.month_figures(conn, agreement, period, tariff)
            rows.append({"period": f"{period:%Y-%m}", "agreement_code": agreement.code, **figures})
    budgets = []
    for agreement in agreements:
        committed = await store.committed_of(conn, agreement.code)
        budget = domain.Budget(agreement.budget_ceiling, committed)
        budgets.append(
            {
                "agreement_code": agreement.code,
                "ceiling": agreement.budget_ceiling,
                "committed": committed,
                "remaining": budget.remaining,
            }
        )
    return {
        "from": f"{first:%Y-%m}",
        "to": f"{last:%Y-%m}",
        "months": rows,
        "totals": {
            key: sum(int(row[key]) for row in rows)  # type: ignore[call-overload]
            for key in ("due", "posted", "invoiced", "paid")
        },
        "budgets": budgets,
    }
