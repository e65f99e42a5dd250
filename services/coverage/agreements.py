"""Funding agreements: recorded by operations (API or command), one at a time per payer,
never overlapping; a new one activates the policies left pending for want of it."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, Self

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from services.coverage import domain, policies, store
from services.coverage.errors import NotFound, Refused
from shared.events import Event

Text = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
]


MAX_CEILING = 10**15
"""Rp 1,000 trillion: far above any budget, far below what a bigint holds."""
LAST_DAY = date(2100, 1, 1)


class AgreementDraft(BaseModel):
    """A funding agreement to record (the city-BPJSTK cooperation agreement, PKS). A
    renewal is a new agreement starting where the last one ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9._-]{2,63}$")] = Field(
        description="Unique code, upper case: letters, digits, '.', '_', '-'.",
        examples=["KOTA-PASURUAN-DBHCHT-2027"],
    )
    payer: Text = Field(description="Who pays.", examples=["Pemerintah Kota Pasuruan"])
    payer_type: Literal["apbd", "apbn", "self"] = Field(
        description="apbd: a regional budget; apbn: the national budget; self: the member. "
        "Decides the tariff (budget-paid members pay the full rate)."
    )
    funding_source: Text = Field(description="The budget line.", examples=["DBHCHT"])
    valid_from: date = Field(lt=LAST_DAY, description="First day in force.")
    valid_to: date | None = Field(
        default=None,
        lt=LAST_DAY,
        description="First day no longer in force (exclusive); null = open.",
    )
    budget_ceiling: int = Field(
        gt=0,
        le=MAX_CEILING,
        strict=True,
        description="Most Rupiah the agreement may commit in all.",
    )
    grace_months: int = Field(
        default=domain.DEFAULT_GRACE_MONTHS,
        ge=0,
        le=24,
        strict=True,
        description="Months a month may stay unpaid before its policies lapse.",
    )
    programmes: tuple[Literal["JKK", "JKM"], ...] = Field(
        default=("JKK", "JKM"), min_length=1, description="Programmes paid for."
    )

    @model_validator(mode="after")
    def _window_and_programmes(self) -> Self:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        first_tariff = min(t.effective_from for t in domain.TARIFFS)
        if self.valid_from < first_tariff:
            raise ValueError(f"valid_from must be on or after {first_tariff} (the first tariff)")
        if len(set(self.programmes)) != len(self.programmes):
            raise ValueError("programmes must not repeat")
        return self

    def agreement(self) -> domain.Agreement:
        return domain.Agreement(
            code=self.code,
            payer=self.payer,
            payer_type=self.payer_type,
            funding_source=self.funding_source,
            valid_from=self.valid_from,
            valid_to=self.valid_to,
            budget_ceiling=self.budget_ceiling,
            grace_months=self.grace_months,
            programmes=tuple(sorted(self.programmes)),
        )


async def add(
    conn: asyncpg.Connection, draft: AgreementDraft, today: date
) -> tuple[domain.Agreement, bool, list[Event]]:
    """Record an agreement. The same agreement again is a no-op (False); another with
    its code, or one overlapping an agreement of the same payer, is refused. Returns the
    agreement, whether it was added now, and the events of the policies it activated."""
    agreement = draft.agreement()
    await store.lock_payer(conn, agreement.payer)
    existing = await store.agreement(conn, agreement.code)
    if existing is not None:
        if existing == agreement:
            return existing, False, []
        raise Refused(
            "AGREEMENT_CODE_TAKEN",
            f"agreement {agreement.code} exists with other terms; a renewal needs a new code",
        )
    for other in await store.agreements(conn):
        if agreement.overlaps(other):
            until = other.valid_to or "open-ended"
            raise Refused(
                "AGREEMENT_OVERLAPS",
                f"{other.payer} already has agreement {other.code} from {other.valid_from} "
                f"to {until} (exclusive); a renewal starts on or after the day the last "
                "one ends",
            )
    await store.insert_agreement(conn, agreement)
    events = await policies.activate_pending(
        conn, today, [domain.NO_AGREEMENT, domain.BUDGET_EXCEEDED]
    )
    return agreement, True, events


async def end(conn: asyncpg.Connection, code: str, valid_to: date) -> domain.Agreement:
    """Close an agreement's window: it is no longer in force from ``valid_to``, so a
    renewal may start that day. Only shortens (or closes an open) window, and never
    below a month already billed under it."""
    agreement = await store.agreement(conn, code)
    if agreement is None:
        raise NotFound(f"no agreement {code}")
    await store.lock_payer(conn, agreement.payer)
    # Its row lock, as billing runs and activations take it: what they post commits
    # before the check below, or waits for the new window.
    await store.lock_budgets(conn, [code])
    if valid_to <= agreement.valid_from:
        raise Refused(
            "AGREEMENT_WINDOW_INVALID",
            f"agreement {code} starts {agreement.valid_from}; it cannot end on {valid_to}",
        )
    if agreement.valid_to is not None and valid_to > agreement.valid_to:
        raise Refused(
            "AGREEMENT_WINDOW_INVALID",
            f"agreement {code} already ends {agreement.valid_to}; a window is only shortened"
            " (a longer one is a renewal: a new agreement)",
        )
    billed = await store.postings_from(conn, code, valid_to)
    if billed:
        raise Refused(
            "AGREEMENT_ALREADY_BILLED",
            f"agreement {code} has {billed:,} premiums posted for months from "
            f"{valid_to:%Y-%m}; void those invoices first",
        )
    await store.end_agreement(conn, code, valid_to)
    ended = await store.agreement(conn, code)
    assert ended is not None
    return ended


async def report(conn: asyncpg.Connection, code: str, today: date) -> dict[str, object]:
    """An agreement with its budget: committed, remaining, and the month it runs out at
    the current headcount."""
    agreement = await store.agreement(conn, code)
    if agreement is None:
        raise NotFound(f"no agreement {code}")
    month = domain.month_of(today)
    tariff = domain.agreement_tariff(agreement, month)
    figures = await store.budget_figures(conn, agreement, tariff)
    budget = domain.Budget(agreement.budget_ceiling, figures.committed)
    next_month = max(
        month,
        domain.add_months(figures.last_posted_period, 1) if figures.last_posted_period else month,
    )
    runs_out = budget.runs_out(figures.monthly_cost, next_month)
    return {
        **describe(agreement),
        "in_force_today": agreement.in_force(today),
        "budget": {
            "ceiling": agreement.budget_ceiling,
            "committed": figures.committed,
            "remaining": budget.remaining,
            "used_percent": (
                round(100 * figures.committed / agreement.budget_ceiling, 2)
                if agreement.budget_ceiling
                else None
            ),
            "active_policies": figures.active_policies,
            "monthly_cost": figures.monthly_cost,
            "paid_through": (
                f"{figures.last_posted_period:%Y-%m}" if figures.last_posted_period else None
            ),
            "runs_out": f"{runs_out:%Y-%m}" if runs_out else None,
        },
    }


def describe(agreement: domain.Agreement) -> dict[str, object]:
    return {
        "code": agreement.code,
        "payer": agreement.payer,
        "payer_type": agreement.payer_type,
        "funding_source": agreement.funding_source,
        "valid_from": agreement.valid_from.isoformat(),
        "valid_to": agreement.valid_to.isoformat() if agreement.valid_to else None,
        "budget_ceiling": agreement.budget_ceiling,
        "grace_months": agreement.grace_months,
        "programmes": list(agreement.programmes),
    }
