"""Coverage rules (services.coverage.domain): tariffs, policies, premium postings."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.coverage.domain import (
    BPJSTK_RECEIVABLE_ACCOUNT,
    JKM_MONTHLY_RUPIAH,
    PROGRAMMES,
    TARIFFS,
    Agreement,
    activate,
    agreement_in_force,
    month_of,
    policy_id_for,
    premium_for,
)
from services.registration.domain import participant_number
from shared.events import PolicyActivated, PremiumPosted, WorkerEnrolled
from tests.factories import uid, worker_enrolled

DEFAULT_INCOME = 1_000_000
MINIMUM_PACKAGE = 16_800  # JKK Rp 10,000 + JKM Rp 6,800
COVERED_APRIL_2025 = 9_038

CITY = Agreement(
    code="KOTA-PASURUAN-DBHCHT-2025",
    payer="Pemerintah Kota Pasuruan",
    payer_type="apbd",
    funding_source="DBHCHT",
    valid_from=date(2025, 5, 22),
    valid_to=None,
)


def months(first: date, last: date) -> list[date]:
    result = []
    day = first
    while day <= last:
        result.append(day)
        day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return result


def enrolled(n: int, on: date = date(2025, 6, 2), **overrides: object) -> WorkerEnrolled:
    return worker_enrolled(
        event_id=uid(f"enrolled-{n}"),
        worker_id=uid(f"worker-{n}"),
        participant_number=participant_number(n),
        request_id=f"req-{n}",
        enrolled_on=on,
        **overrides,
    )


# --- tariffs -----------------------------------------------------------------------


@pytest.mark.parametrize("period", months(date(2025, 5, 1), date(2027, 12, 1)), ids=str)
def test_city_pays_the_full_minimum_package_every_month(period: date) -> None:
    """The 2026-27 BPU discount (PP 50/2025) excludes APBD-paid members."""
    premium = premium_for(DEFAULT_INCOME, period, "apbd")
    assert (premium.jkk, premium.jkm, premium.total) == (10_000, 6_800, MINIMUM_PACKAGE)
    assert premium.tariff_code == "CITY-MINIMUM-PACKAGE"


@pytest.mark.parametrize("payer_type", ["apbd", "apbn"])
def test_budget_payers_never_get_the_discount(payer_type: str) -> None:
    for period in months(date(2026, 1, 1), date(2027, 3, 1)):
        assert premium_for(DEFAULT_INCOME, period, payer_type).total == MINIMUM_PACKAGE


def test_self_payers_get_half_during_the_discount() -> None:
    premium = premium_for(DEFAULT_INCOME, date(2026, 6, 1), "self")
    assert (premium.jkk, premium.jkm, premium.total) == (5_000, 3_400, MINIMUM_PACKAGE // 2)
    assert premium.tariff_code == "BPU-DISCOUNT-PP50-2025"


@pytest.mark.parametrize(
    ("period", "total"),
    [
        (date(2025, 12, 1), MINIMUM_PACKAGE),
        (date(2026, 1, 1), MINIMUM_PACKAGE // 2),
        (date(2027, 3, 1), MINIMUM_PACKAGE // 2),
        (date(2027, 4, 1), MINIMUM_PACKAGE),
    ],
    ids=str,
)
def test_discount_window_edges_for_self_payers(period: date, total: int) -> None:
    assert premium_for(DEFAULT_INCOME, period, "self").total == total


@pytest.mark.parametrize(
    ("period", "payer_type"),
    [(date(2026, 6, 1), "corporate"), (date(2015, 6, 1), "apbd"), (date(2026, 6, 1), "")],
)
def test_no_tariff_applies(period: date, payer_type: str) -> None:
    with pytest.raises(LookupError, match="no tariff"):
        premium_for(DEFAULT_INCOME, period, payer_type)


def test_tariffs_use_integer_money() -> None:
    for tariff in TARIFFS:
        assert isinstance(tariff.jkk_basis_points, int)
        assert isinstance(tariff.jkm_monthly, int)


@given(st.integers(1_000_000, 20_700_000))
def test_self_paid_jkk_is_one_percent_of_declared_income(income: int) -> None:
    premium = premium_for(income, date(2025, 6, 1), "self")
    assert isinstance(premium.jkk, int)
    assert premium.jkk == income // 100
    assert premium.jkm == JKM_MONTHLY_RUPIAH
    assert premium.total == premium.jkk + premium.jkm


@given(st.integers(10_000, 207_000))
def test_jkk_is_exact_for_whole_hundreds(hundreds_of_rupiah: int) -> None:
    income = hundreds_of_rupiah * 100
    assert premium_for(income, date(2025, 6, 1), "self").jkk * 100 == income


def test_highest_bracket() -> None:
    assert premium_for(20_700_000, date(2025, 6, 1), "self").jkk == 207_000


@given(st.integers(1_000_000, 20_700_000), st.sampled_from(["apbd", "apbn"]))
def test_budget_payers_pay_the_minimum_package_whatever_the_declared_income(
    income: int, payer_type: str
) -> None:
    premium = premium_for(income, date(2026, 6, 1), payer_type)
    assert (premium.jkk, premium.jkm, premium.total) == (10_000, 6_800, MINIMUM_PACKAGE)


# --- agreements --------------------------------------------------------------------


def test_agreement_window_is_half_open() -> None:
    window = Agreement("A", "p", "apbd", "DBHCHT", date(2025, 5, 1), date(2026, 1, 1))
    assert not window.in_force(date(2025, 4, 30))
    assert window.in_force(date(2025, 5, 1))
    assert window.in_force(date(2025, 12, 31))
    assert not window.in_force(date(2026, 1, 1))


def test_the_latest_starting_agreement_wins() -> None:
    old = Agreement("OLD", "p", "apbd", "DBHCHT", date(2025, 1, 1), None)
    new = Agreement("NEW", "p", "apbd", "DBHCHT", date(2026, 1, 1), None)
    assert agreement_in_force([old, new], date(2026, 2, 1)) is new
    assert agreement_in_force([old, new], date(2025, 2, 1)) is old
    assert agreement_in_force([old, new], date(2024, 2, 1)) is None


# --- activate ----------------------------------------------------------------------


def test_the_whole_cohort_costs_151_838_400_a_month() -> None:
    """9,038 people x Rp 16,800 = Rp 151,838,400 (domain reference, section 2)."""
    template = enrolled(0)
    cohort = [
        template.model_copy(
            update={"event_id": uuid.UUID(int=n), "worker_id": uuid.UUID(int=10**6 + n)}
        )
        for n in range(1, COVERED_APRIL_2025 + 1)
    ]
    activation = activate(cohort, [CITY], date(2025, 6, 2))
    assert len(activation.policies) == len(activation.entries) == COVERED_APRIL_2025
    assert sum(e.premium.total for e in activation.entries) == 151_838_400
    assert COVERED_APRIL_2025 * MINIMUM_PACKAGE == 151_838_400
    posted = [e for e in activation.events if isinstance(e, PremiumPosted)]
    assert sum(e.amount for e in posted) == 151_838_400
    assert len({p.policy_id for p in activation.policies}) == COVERED_APRIL_2025


def test_activation_is_deterministic() -> None:
    batch = [enrolled(1), enrolled(2)]
    first = activate(batch, [CITY], date(2025, 6, 2))
    second = activate(batch, [CITY], date(2025, 6, 2))
    assert [p.policy_id for p in first.policies] == [p.policy_id for p in second.policies]
    assert [e.entry_id for e in first.entries] == [e.entry_id for e in second.entries]
    assert [e.event_id for e in first.events] == [e.event_id for e in second.events]
    assert [e.model_dump(exclude={"occurred_at"}) for e in first.events] == [
        e.model_dump(exclude={"occurred_at"}) for e in second.events
    ]
    assert first.policies[0].policy_id == policy_id_for(uid("worker-1"), CITY.code)
    assert len({e.event_id for e in first.events}) == len(first.events)


def test_active_policy_and_its_events() -> None:
    worker = enrolled(1)
    activation = activate([worker], [CITY], date(2025, 6, 2))
    [policy] = activation.policies
    assert policy.status == "active"
    assert policy.agreement_code == CITY.code
    assert policy.worker_id == worker.worker_id
    assert policy.participant_number == worker.participant_number
    activated, posted = activation.events
    assert isinstance(activated, PolicyActivated)
    assert activated.policy_id == policy.policy_id
    assert activated.programmes == PROGRAMMES == ("JKK", "JKM")
    assert activated.monthly_premium == MINIMUM_PACKAGE
    assert activated.payer == CITY.payer
    assert activated.funding_source == "DBHCHT"
    assert isinstance(posted, PremiumPosted)
    assert posted.period == "2025-06"
    assert (posted.jkk_amount, posted.jkm_amount, posted.amount) == (10_000, 6_800, 16_800)
    for event in activation.events:
        assert event.causation_id == worker.event_id
        assert event.correlation_id == worker.correlation_id
        assert event.kafka_key() == str(worker.worker_id).encode()


@pytest.mark.parametrize(
    ("enrolled_on", "today", "start"),
    [
        (date(2025, 6, 2), date(2025, 6, 2), date(2025, 6, 2)),  # after the agreement began
        (date(2025, 4, 30), date(2025, 6, 2), date(2025, 5, 22)),  # before: its first day
        (date(2025, 5, 22), date(2025, 5, 22), date(2025, 5, 22)),
    ],
)
def test_coverage_starts_at_the_later_of_enrolment_and_agreement(
    enrolled_on: date, today: date, start: date
) -> None:
    activation = activate([enrolled(1, on=enrolled_on)], [CITY], today)
    [policy] = activation.policies
    assert policy.coverage_start == start == max(enrolled_on, CITY.valid_from)
    [entry] = activation.entries
    assert entry.period == month_of(start)


def test_no_agreement_in_force_leaves_the_policy_pending() -> None:
    activation = activate([enrolled(1, on=date(2025, 4, 1))], [CITY], date(2025, 4, 1))
    [policy] = activation.policies
    assert policy.status == "pending"
    assert policy.agreement_code == ""
    assert activation.entries == []
    assert activation.events == []


def test_no_agreements_at_all() -> None:
    activation = activate([enrolled(1), enrolled(2)], [], date(2025, 6, 2))
    assert [p.status for p in activation.policies] == ["pending", "pending"]
    assert activation.entries == activation.events == []


def test_ledger_entry_debits_the_payer_and_credits_bpjstk() -> None:
    [entry] = activate([enrolled(1)], [CITY], date(2025, 6, 2)).entries
    assert entry.debit_account == CITY.payer_account == f"payer:{CITY.code}"
    assert entry.credit_account == BPJSTK_RECEIVABLE_ACCOUNT == "bpjstk:receivable"
    assert entry.debit_account != entry.credit_account
    assert entry.period == date(2025, 6, 1)
    assert isinstance(entry.entry_id, uuid.UUID)


def test_the_city_pays_the_minimum_package_whatever_the_declared_income() -> None:
    [entry] = activate([enrolled(1, declared_income=2_500_000)], [CITY], date(2025, 6, 2)).entries
    assert (entry.premium.jkk, entry.premium.total) == (10_000, MINIMUM_PACKAGE)


def test_a_self_paying_member_pays_on_the_declared_income() -> None:
    own = Agreement("SELF", "Peserta", "self", "mandiri", date(2025, 1, 1), None)
    [entry] = activate([enrolled(1, declared_income=2_500_000)], [own], date(2025, 6, 2)).entries
    assert (entry.premium.jkk, entry.premium.total) == (25_000, 31_800)


def test_self_paying_agreement_gets_the_discount_in_2026() -> None:
    own = Agreement("SELF", "Peserta", "self", "mandiri", date(2026, 1, 1), None)
    [entry] = activate([enrolled(1, on=date(2026, 6, 3))], [own], date(2026, 6, 3)).entries
    assert entry.premium.total == MINIMUM_PACKAGE // 2
