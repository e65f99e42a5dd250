"""Coverage rules: tariffs, policies and premium postings. Pure, no I/O.

Sources: domain reference (docs: domain.md), section 2 (contributions) and 4
(lifecycle). Money is whole Rupiah in ``int``, never float.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from shared.events import (
    EVENT_ID_NAMESPACE,
    CoverageRefused,
    Event,
    PolicyActivated,
    PremiumPosted,
    WorkerEnrolled,
    derive_event_id,
    utc_now,
)

JKK_RATE_BASIS_POINTS = 100
"""JKK = 1% (100 basis points) of the declared monthly income. [firm]"""
JKM_MONTHLY_RUPIAH = 6_800
"""JKM is a flat Rp 6,800 per month. [firm]"""
PROGRAMMES: tuple[str, ...] = ("JKK", "JKM")
"""The city pays JKK and JKM; JHT is optional and not city-funded. [firm]"""
MINIMUM_PACKAGE_INCOME = 1_000_000
"""The lowest declared-income bracket; its JKK (Rp 10,000) + JKM is the minimum package
every city programme pays. [firm]"""
BPJSTK_RECEIVABLE_ACCOUNT = "bpjstk:receivable"
NO_AGREEMENT = "NO_AGREEMENT"
"""Why a policy is pending: no funding agreement was in force."""
BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
"""Why a posting was refused: it would take the agreement past its budget ceiling."""

POLICY_NAMESPACE = uuid.UUID("8e2f4a6c-1d3b-4c5e-9f7a-0b1c2d3e4f50")


@dataclass(frozen=True)
class Tariff:
    """Premium rule in force from ``effective_from`` (inclusive) to ``effective_to``
    (exclusive, None = open), for the payer types listed. [decision: effective-dated,
    payer-dependent, because the 2026-27 BPU discount excludes budget-paid members]"""

    code: str
    effective_from: date
    effective_to: date | None
    payer_types: frozenset[str]
    jkk_basis_points: int
    jkm_monthly: int
    jkk_income_basis: int | None = None
    """Income the JKK is computed on; None means the worker's declared income."""

    def premium(self, declared_income: int) -> Premium:
        """JKK on the income basis (truncated to whole Rupiah) plus the flat JKM. The
        billing run computes the same in SQL (store.bill_month)."""
        income = self.jkk_income_basis or declared_income
        jkk = income * self.jkk_basis_points // 10_000
        return Premium(jkk=jkk, jkm=self.jkm_monthly, tariff_code=self.code)

    def applies(self, period: date, payer_type: str) -> bool:
        in_window = self.effective_from <= period and (
            self.effective_to is None or period < self.effective_to
        )
        return in_window and payer_type in self.payer_types


TARIFFS: tuple[Tariff, ...] = (
    # PP 50/2025: 50% off JKK + JKM for BPU, Jan 2026 - Mar 2027, but NOT for members
    # paid from APBN/APBD budgets. [firm] Listed first: the first match wins.
    Tariff(
        "BPU-DISCOUNT-PP50-2025",
        date(2026, 1, 1),
        date(2027, 4, 1),
        frozenset({"self"}),
        JKK_RATE_BASIS_POINTS // 2,
        JKM_MONTHLY_RUPIAH // 2,
    ),
    # Budget-paid programmes pay the minimum package whatever the worker declares:
    # Rp 16,800 = JKK on Rp 1,000,000 + JKM, billed headcount x rate x months. [firm]
    Tariff(
        "CITY-MINIMUM-PACKAGE",
        date(2015, 7, 1),
        None,
        frozenset({"apbd", "apbn"}),
        JKK_RATE_BASIS_POINTS,
        JKM_MONTHLY_RUPIAH,
        jkk_income_basis=MINIMUM_PACKAGE_INCOME,
    ),
    Tariff(
        "BPU-STANDARD",
        date(2015, 7, 1),
        None,
        frozenset({"self"}),
        JKK_RATE_BASIS_POINTS,
        JKM_MONTHLY_RUPIAH,
    ),
)


@dataclass(frozen=True)
class Premium:
    jkk: int
    jkm: int
    tariff_code: str

    @property
    def total(self) -> int:
        return self.jkk + self.jkm


def premium_for(
    declared_income: int, period: date, payer_type: str, tariffs: Sequence[Tariff] = TARIFFS
) -> Premium:
    """The month's premium from the tariff in force that month for that payer."""
    return tariff_for(period, payer_type, tariffs).premium(declared_income)


DEFAULT_GRACE_MONTHS = 3
"""Arrears can be paid for at most 3 months; after more consecutive unpaid months cover
lapses. [soft -> decision, configurable per agreement]"""


@dataclass(frozen=True)
class Agreement:
    """A funding agreement (the city-BPJSTK cooperation agreement, PKS). [decision]"""

    code: str
    payer: str
    payer_type: str
    funding_source: str
    valid_from: date
    valid_to: date | None  # exclusive; None = until ended
    budget_ceiling: int | None = None
    """Most Rupiah the agreement may commit in all; None = no ceiling recorded."""
    grace_months: int = DEFAULT_GRACE_MONTHS
    programmes: tuple[str, ...] = PROGRAMMES

    @property
    def payer_account(self) -> str:
        return f"payer:{self.code}"

    def in_force(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day < self.valid_to)

    def covers_month(self, period: date) -> bool:
        """In force on at least one day of the month starting ``period``."""
        return self.valid_from <= month_end(period) and (
            self.valid_to is None or self.valid_to > period
        )

    def overlaps(self, other: Agreement) -> bool:
        """Same payer, windows sharing a day: one payer has one agreement at a time (a
        renewal starts where the last one ends)."""
        if self.payer != other.payer:
            return False
        starts_before_other_ends = other.valid_to is None or self.valid_from < other.valid_to
        other_starts_before_this_ends = self.valid_to is None or other.valid_from < self.valid_to
        return starts_before_other_ends and other_starts_before_this_ends


RUNS_OUT_HORIZON_MONTHS = 1_200
"""A budget lasting longer than a century at the current headcount does not run out
in any month worth naming."""


@dataclass(frozen=True)
class Budget:
    """What an agreement may still commit. Like a balance limit on a ledger account: a
    posting that would take ``committed`` past ``ceiling`` is refused whole."""

    ceiling: int | None
    committed: int

    @property
    def remaining(self) -> int | None:
        return None if self.ceiling is None else self.ceiling - self.committed

    def admits(self, amount: int) -> bool:
        return self.ceiling is None or self.committed + amount <= self.ceiling

    def after(self, amount: int) -> Budget:
        return Budget(self.ceiling, self.committed + amount)

    def runs_out(self, monthly_cost: int, next_month: date) -> date | None:
        """The first month the remaining budget cannot pay in full at ``monthly_cost``
        per month, billing from ``next_month``; None with no ceiling, no cost, or not
        within RUNS_OUT_HORIZON_MONTHS."""
        remaining = self.remaining
        if remaining is None or monthly_cost <= 0:
            return None
        months = max(remaining, 0) // monthly_cost
        return add_months(next_month, months) if months <= RUNS_OUT_HORIZON_MONTHS else None


def agreement_in_force(agreements: Iterable[Agreement], day: date) -> Agreement | None:
    candidates = [a for a in agreements if a.in_force(day)]
    return max(candidates, key=lambda a: a.valid_from) if candidates else None


@dataclass(frozen=True)
class Policy:
    policy_id: uuid.UUID
    worker_id: uuid.UUID
    participant_number: str
    agreement_code: str
    status: str
    coverage_start: date
    declared_income: int
    kecamatan_code: str
    occupation: str
    status_reason: str | None = None
    payer: str = ""
    """The payer of its agreement, whose later agreements (renewals) go on paying."""
    membership: int = 1
    """The worker's membership it covers (a worker enrolling again gets a new policy)."""


@dataclass(frozen=True)
class LedgerEntry:
    """A premium posting: debit the payer, credit the BPJSTK receivable."""

    entry_id: uuid.UUID
    policy_id: uuid.UUID
    worker_id: uuid.UUID
    period: date  # first day of the month billed
    premium: Premium
    debit_account: str
    credit_account: str
    agreement_code: str = ""


@dataclass
class Activation:
    policies: list[Policy]
    entries: list[LedgerEntry]
    events: list[Event]


def month_of(day: date) -> date:
    return day.replace(day=1)


def add_months(period: date, months: int) -> date:
    index = period.year * 12 + period.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def month_end(period: date) -> date:
    """The last day of the month starting ``period``."""
    return add_months(period, 1) - timedelta(days=1)


def parse_period(text: str) -> date:
    """``YYYY-MM`` to the first day of that month."""
    try:
        year, month = text.split("-")
        if len(year) != 4 or len(month) != 2:
            raise ValueError
        return date(int(year), int(month), 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a month: expected YYYY-MM, e.g. 2026-11") from None


def tariff_for(period: date, payer_type: str, tariffs: Sequence[Tariff] = TARIFFS) -> Tariff:
    """The tariff in force in that month for that payer type (the first that applies)."""
    for tariff in tariffs:
        if tariff.applies(period, payer_type):
            return tariff
    raise LookupError(f"no tariff for payer type {payer_type!r} in {period:%Y-%m}")


def agreement_tariff(agreement: Agreement, period: date) -> Tariff:
    """The tariff an agreement pays in a month, limited to its programmes (an agreement
    without JKM pays no JKM)."""
    tariff = tariff_for(period, agreement.payer_type)
    if "JKK" not in agreement.programmes:
        tariff = replace(tariff, jkk_basis_points=0)
    if "JKM" not in agreement.programmes:
        tariff = replace(tariff, jkm_monthly=0)
    return tariff


def billing_event_id(entry_id: uuid.UUID) -> uuid.UUID:
    """The id of the PremiumPosted event of a posting a billing run made (a name-based
    md5 UUID, as the runs before this one computed it in SQL: the same posting always
    gets the same id)."""
    return uuid.uuid3(EVENT_ID_NAMESPACE, f"premium.posted:{entry_id}")


def run_posting_event(
    entry: LedgerEntry, run_started_at: datetime, correlation_id: str
) -> PremiumPosted:
    """The PremiumPosted event of a posting a billing run made. The relay publishes it
    as store.run_posting_events builds it in SQL; a test holds the two equal."""
    return premium_posted(
        entry,
        event_id=billing_event_id(entry.entry_id),
        occurred_at=run_started_at,
        correlation_id=correlation_id,
    )


def premium_posted(
    entry: LedgerEntry,
    *,
    event_id: uuid.UUID,
    correlation_id: str,
    causation_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> PremiumPosted:
    """The PremiumPosted event of ``entry`` (occurred now unless told otherwise)."""
    return PremiumPosted(
        event_id=event_id,
        occurred_at=occurred_at or utc_now(),
        correlation_id=correlation_id,
        causation_id=causation_id,
        entry_id=entry.entry_id,
        policy_id=entry.policy_id,
        worker_id=entry.worker_id,
        period=f"{entry.period:%Y-%m}",
        jkk_amount=entry.premium.jkk,
        jkm_amount=entry.premium.jkm,
        amount=entry.premium.total,
        debit_account=entry.debit_account,
        credit_account=entry.credit_account,
    )


def invoice_id_for(agreement_code: str, period: date) -> uuid.UUID:
    return uuid.uuid5(POLICY_NAMESPACE, f"invoice:{agreement_code}:{period:%Y-%m}")


def policy_id_for(worker_id: uuid.UUID, agreement_code: str, membership: int = 1) -> uuid.UUID:
    """Deterministic: redelivery or replay of an enrolment yields the same policy. A
    later membership of the worker has its own."""
    name = f"{worker_id}:{agreement_code}"
    return uuid.uuid5(POLICY_NAMESPACE, name if membership == 1 else f"{name}:{membership}")


@dataclass(frozen=True)
class Candidate:
    """A worker to be covered: newly enrolled (from WorkerEnrolled), or waiting in a
    pending policy for an agreement or budget."""

    worker_id: uuid.UUID
    participant_number: str
    enrolled_on: date
    declared_income: int
    kecamatan_code: str
    occupation: str
    correlation_id: str
    causation_id: uuid.UUID | None
    policy_id: uuid.UUID | None = None
    """The pending policy's id; None for a new enrolment."""
    membership: int = 1

    @classmethod
    def enrolled(cls, event: WorkerEnrolled) -> Candidate:
        return cls(
            worker_id=event.worker_id,
            participant_number=event.participant_number,
            enrolled_on=event.enrolled_on,
            declared_income=event.declared_income,
            kecamatan_code=event.kecamatan_code,
            occupation=event.occupation,
            correlation_id=event.correlation_id,
            causation_id=event.event_id,
            membership=event.membership,
        )

    @classmethod
    def pending(cls, policy: Policy) -> Candidate:
        return cls(
            worker_id=policy.worker_id,
            participant_number=policy.participant_number,
            enrolled_on=policy.coverage_start,
            declared_income=policy.declared_income,
            kecamatan_code=policy.kecamatan_code,
            occupation=policy.occupation,
            correlation_id=f"policy:{policy.policy_id}",
            causation_id=None,
            policy_id=policy.policy_id,
            membership=policy.membership,
        )


def agreement_for(
    enrolled: Candidate, agreements: Sequence[Agreement], today: date
) -> Agreement | None:
    """The agreement a new policy runs under: the one in force on the enrolment date,
    else the one in force today (an enrolment dated before the programme began). A
    pending policy looks at today's first: the agreement that was in force when it was
    left pending could not cover it (none, or its budget was spent)."""
    if enrolled.policy_id is not None:
        return agreement_in_force(agreements, today) or agreement_in_force(
            agreements, enrolled.enrolled_on
        )
    return agreement_in_force(agreements, enrolled.enrolled_on) or agreement_in_force(
        agreements, today
    )


def activate(
    enrolments: Sequence[Candidate | WorkerEnrolled],
    agreements: Sequence[Agreement],
    today: date,
    budgets: Mapping[str, Budget] | None = None,
) -> Activation:
    """Each newly enrolled worker gets an active policy under the agreement in force,
    cover from the enrolment date (or the agreement's start, if later), and the first
    month posted to the ledger. Workers with no agreement in force stay ``pending``
    (NO_AGREEMENT), and so do those whose first month the agreement's budget cannot take
    (BUDGET_EXCEEDED, with a CoverageRefused event): a posting is admitted whole or not
    at all, in the order given."""
    budgets = dict(budgets or {})
    result = Activation([], [], [])
    for candidate in enrolments:
        enrolled = candidate if isinstance(candidate, Candidate) else Candidate.enrolled(candidate)
        start = enrolled.enrolled_on
        agreement = agreement_for(enrolled, agreements, today)
        if agreement is None:
            result.policies.append(_policy(enrolled, None, "pending", start, NO_AGREEMENT))
            continue
        start = max(start, agreement.valid_from)
        period = month_of(start)
        premium = agreement_tariff(agreement, period).premium(enrolled.declared_income)
        budget = budgets.get(agreement.code, Budget(agreement.budget_ceiling, 0))
        if not budget.admits(premium.total):
            result.policies.append(_policy(enrolled, None, "pending", start, BUDGET_EXCEEDED))
            result.events.append(
                refused_event(agreement, budget, premium.total, period, enrolled.worker_id)
            )
            continue
        budgets[agreement.code] = budget.after(premium.total)
        policy = _policy(enrolled, agreement, "active", start)
        entry = LedgerEntry(
            entry_id=uuid.uuid5(POLICY_NAMESPACE, f"premium:{policy.policy_id}:{period}"),
            policy_id=policy.policy_id,
            worker_id=enrolled.worker_id,
            period=period,
            premium=premium,
            debit_account=agreement.payer_account,
            credit_account=BPJSTK_RECEIVABLE_ACCOUNT,
            agreement_code=agreement.code,
        )
        result.policies.append(policy)
        result.entries.append(entry)
        result.events += [
            activated_event(enrolled, policy, agreement, premium),
            posted_event(enrolled, entry),
        ]
    return result


def refused_event(
    agreement: Agreement,
    budget: Budget,
    amount: int,
    period: date,
    worker_id: uuid.UUID | None = None,
) -> CoverageRefused:
    assert budget.ceiling is not None
    subject = f"the first month of worker {worker_id}" if worker_id else "the month's premiums"
    return CoverageRefused(
        event_id=derive_event_id(
            "coverage.refused",
            agreement.code,
            f"{period:%Y-%m}",
            worker_id or "billing",
            budget.committed,
            amount,
        ),
        correlation_id=f"agreement:{agreement.code}",
        agreement_code=agreement.code,
        reason=BUDGET_EXCEEDED,
        detail=f"{subject} for {period:%Y-%m} (Rp {amount:,}) would take agreement "
        f"{agreement.code} to Rp {budget.committed + amount:,}, past its budget ceiling of "
        f"Rp {budget.ceiling:,} (Rp {budget.remaining:,} remaining)",
        period=f"{period:%Y-%m}",
        worker_id=worker_id,
        amount=amount,
        committed=budget.committed,
        budget_ceiling=budget.ceiling,
    )


def _policy(
    enrolled: Candidate,
    agreement: Agreement | None,
    status: str,
    start: date,
    reason: str | None = None,
) -> Policy:
    code = agreement.code if agreement else ""
    return Policy(
        policy_id=enrolled.policy_id
        or policy_id_for(enrolled.worker_id, code, enrolled.membership),
        worker_id=enrolled.worker_id,
        participant_number=enrolled.participant_number,
        agreement_code=code,
        status=status,
        coverage_start=start,
        declared_income=enrolled.declared_income,
        kecamatan_code=enrolled.kecamatan_code,
        occupation=enrolled.occupation,
        status_reason=reason,
        payer=agreement.payer if agreement else "",
        membership=enrolled.membership,
    )


def activated_event(
    enrolled: Candidate, policy: Policy, agreement: Agreement, premium: Premium
) -> PolicyActivated:
    return PolicyActivated(
        event_id=derive_event_id("policy.activated", policy.policy_id),
        correlation_id=enrolled.correlation_id,
        causation_id=enrolled.causation_id,
        policy_id=policy.policy_id,
        worker_id=policy.worker_id,
        participant_number=policy.participant_number,
        agreement_code=agreement.code,
        payer=agreement.payer,
        funding_source=agreement.funding_source,
        programmes=agreement.programmes,  # type: ignore[arg-type]
        coverage_start=policy.coverage_start,
        monthly_premium=premium.total,
        membership=policy.membership,
    )


def posted_event(enrolled: Candidate, entry: LedgerEntry) -> PremiumPosted:
    return premium_posted(
        entry,
        event_id=derive_event_id("premium.posted", entry.entry_id),
        correlation_id=enrolled.correlation_id,
        causation_id=enrolled.causation_id,
    )
