"""Coverage rules: tariffs, policies and premium postings. Pure, no I/O.

Sources: domain reference (docs: domain.md), section 2 (contributions) and 4
(lifecycle). Money is whole Rupiah in ``int``, never float.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from shared.events import Event, PolicyActivated, PremiumPosted, WorkerEnrolled, derive_event_id

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
    for tariff in tariffs:
        if tariff.applies(period, payer_type):
            income = tariff.jkk_income_basis or declared_income
            jkk = income * tariff.jkk_basis_points // 10_000
            return Premium(jkk=jkk, jkm=tariff.jkm_monthly, tariff_code=tariff.code)
    raise LookupError(f"no tariff for payer type {payer_type!r} in {period:%Y-%m}")


@dataclass(frozen=True)
class Agreement:
    """A funding agreement (the city-BPJSTK cooperation agreement, PKS). [decision]"""

    code: str
    payer: str
    payer_type: str
    funding_source: str
    valid_from: date
    valid_to: date | None  # exclusive; None = until ended

    @property
    def payer_account(self) -> str:
        return f"payer:{self.code}"

    def in_force(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day < self.valid_to)


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


@dataclass
class Activation:
    policies: list[Policy]
    entries: list[LedgerEntry]
    events: list[Event]


def month_of(day: date) -> date:
    return day.replace(day=1)


def policy_id_for(worker_id: uuid.UUID, agreement_code: str) -> uuid.UUID:
    """Deterministic: redelivery or replay of an enrolment yields the same policy."""
    return uuid.uuid5(POLICY_NAMESPACE, f"{worker_id}:{agreement_code}")


def activate(
    enrolments: Sequence[WorkerEnrolled], agreements: Sequence[Agreement], today: date
) -> Activation:
    """Each newly enrolled worker gets an active policy under the agreement in force,
    cover from the enrolment date (or the agreement's start, if later), and the first
    month posted to the ledger. Workers with no agreement in force stay ``pending``."""
    result = Activation([], [], [])
    for enrolled in enrolments:
        start = enrolled.enrolled_on
        agreement = agreement_in_force(agreements, start) or agreement_in_force(agreements, today)
        if agreement is None:
            result.policies.append(_policy(enrolled, None, "pending", start))
            continue
        start = max(start, agreement.valid_from)
        policy = _policy(enrolled, agreement, "active", start)
        period = month_of(start)
        premium = premium_for(enrolled.declared_income, period, agreement.payer_type)
        entry = LedgerEntry(
            entry_id=uuid.uuid5(POLICY_NAMESPACE, f"premium:{policy.policy_id}:{period}"),
            policy_id=policy.policy_id,
            worker_id=enrolled.worker_id,
            period=period,
            premium=premium,
            debit_account=agreement.payer_account,
            credit_account=BPJSTK_RECEIVABLE_ACCOUNT,
        )
        result.policies.append(policy)
        result.entries.append(entry)
        result.events += [
            activated_event(enrolled, policy, agreement, premium),
            posted_event(enrolled, entry),
        ]
    return result


def _policy(
    enrolled: WorkerEnrolled, agreement: Agreement | None, status: str, start: date
) -> Policy:
    code = agreement.code if agreement else ""
    return Policy(
        policy_id=policy_id_for(enrolled.worker_id, code),
        worker_id=enrolled.worker_id,
        participant_number=enrolled.participant_number,
        agreement_code=code,
        status=status,
        coverage_start=start,
        declared_income=enrolled.declared_income,
        kecamatan_code=enrolled.kecamatan_code,
        occupation=enrolled.occupation,
    )


def activated_event(
    enrolled: WorkerEnrolled, policy: Policy, agreement: Agreement, premium: Premium
) -> PolicyActivated:
    return PolicyActivated(
        event_id=derive_event_id("policy.activated", policy.policy_id),
        correlation_id=enrolled.correlation_id,
        causation_id=enrolled.event_id,
        policy_id=policy.policy_id,
        worker_id=policy.worker_id,
        participant_number=policy.participant_number,
        agreement_code=agreement.code,
        payer=agreement.payer,
        funding_source=agreement.funding_source,
        programmes=PROGRAMMES,  # type: ignore[arg-type]
        coverage_start=policy.coverage_start,
        monthly_premium=premium.total,
    )


def posted_event(enrolled: WorkerEnrolled, entry: LedgerEntry) -> PremiumPosted:
    return PremiumPosted(
        event_id=derive_event_id("premium.posted", entry.entry_id),
        correlation_id=enrolled.correlation_id,
        causation_id=enrolled.event_id,
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
