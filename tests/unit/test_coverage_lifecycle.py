"""Properties of coverage's pure rules: the policy state machine, budgets, the grace
rule, months and tariff selection (services.coverage.lifecycle and .domain)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.coverage.domain import (
    RUNS_OUT_HORIZON_MONTHS,
    TARIFFS,
    Agreement,
    Budget,
    activate,
    add_months,
    agreement_tariff,
    month_end,
    parse_period,
    tariff_for,
)
from services.coverage.lifecycle import (
    TRANSITIONS,
    ForbiddenTransition,
    PolicyFacts,
    check_transition,
    end_date,
    overdue,
)
from shared.events import CoverageRefused
from tests.factories import worker_enrolled

STATUSES = sorted(TRANSITIONS)
POLICY = uuid.UUID(int=7)
months = st.dates(min_value=date(2015, 7, 1), max_value=date(2040, 12, 1)).map(
    lambda d: d.replace(day=1)
)


def walk(start: str, targets: list[str]) -> tuple[str, list[str]]:
    """Apply each target in turn; a forbidden one is refused and changes nothing."""
    status, refused = start, []
    for target in targets:
        try:
            check_transition(POLICY, status, target)
        except ForbiddenTransition:
            refused.append(target)
            continue
        status = target
    return status, refused


@given(st.lists(st.sampled_from(STATUSES), max_size=30))
def test_any_sequence_of_transitions_stays_on_the_drawn_machine(targets: list[str]) -> None:
    status = "pending"
    for target in targets:
        allowed = target in TRANSITIONS[status]
        if allowed:
            check_transition(POLICY, status, target)
            status = target
        else:
            with pytest.raises(ForbiddenTransition, match=f"cannot become {target}"):
                check_transition(POLICY, status, target)


@given(st.lists(st.sampled_from(STATUSES), max_size=30))
def test_ended_is_final_and_no_policy_returns_to_pending(targets: list[str]) -> None:
    statuses = [walk("pending", targets[:n])[0] for n in range(len(targets) + 1)]
    if "ended" in statuses:
        first = statuses.index("ended")
        assert set(statuses[first:]) == {"ended"}
    assert "pending" not in statuses[1:] or set(statuses[: statuses.index("pending", 1)]) == {
        "pending"
    }


def test_the_machine_is_the_documented_one() -> None:
    edges = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert edges == {
        ("pending", "active"),
        ("pending", "ended"),
        ("active", "lapsed"),
        ("active", "ended"),
        ("lapsed", "active"),
        ("lapsed", "ended"),
    }


@given(
    st.integers(min_value=1, max_value=10**12),
    st.lists(st.integers(min_value=0, max_value=10**9), max_size=40),
)
def test_a_budget_admitting_postings_one_by_one_never_passes_its_ceiling(
    ceiling: int, amounts: list[int]
) -> None:
    budget = Budget(ceiling, 0)
    for amount in amounts:
        if budget.admits(amount):
            budget = budget.after(amount)
        assert budget.committed <= ceiling
        assert budget.remaining == ceiling - budget.committed


@given(
    st.integers(min_value=1, max_value=10**12),
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=1, max_value=10**9),
    months,
)
def test_the_month_a_budget_runs_out_is_the_first_it_cannot_pay(
    ceiling: int, committed: int, monthly: int, start: date
) -> None:
    budget = Budget(ceiling, min(committed, ceiling))
    runs_out = budget.runs_out(monthly, start)
    if runs_out is None:
        assert budget.admits(RUNS_OUT_HORIZON_MONTHS * monthly)
        return
    paid_months = (runs_out.year - start.year) * 12 + runs_out.month - start.month
    assert budget.admits(paid_months * monthly)
    assert not budget.admits((paid_months + 1) * monthly)


def test_a_budget_without_ceiling_admits_anything_and_never_runs_out() -> None:
    assert Budget(None, 10**15).admits(10**15)
    assert Budget(None, 0).runs_out(16_800, date(2026, 1, 1)) is None


@given(months, st.integers(min_value=0, max_value=24), st.integers(min_value=0, max_value=40))
def test_an_unpaid_month_is_overdue_exactly_after_its_grace_months(
    period: date, grace: int, later: int
) -> None:
    today = add_months(period, later) + timedelta(days=later % 28)
    assert overdue(period, today, grace) == (later > grace)


@given(months)
def test_months_round_trip_and_end_on_their_last_day(period: date) -> None:
    assert parse_period(f"{period:%Y-%m}") == period
    end = month_end(period)
    assert end.month == period.month and (end + timedelta(days=1)).day == 1
    assert add_months(add_months(period, 13), -13) == period


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-01", "2026/01", "", "2026-00x"])
def test_a_period_that_is_not_a_month_is_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match="expected YYYY-MM"):
        parse_period(text)


@given(months, st.sampled_from(["apbd", "apbn", "self"]))
def test_the_tariff_is_the_first_in_force_for_the_payer_type(period: date, payer: str) -> None:
    chosen = tariff_for(period, payer)
    assert chosen.applies(period, payer)
    earlier = TARIFFS[: TARIFFS.index(chosen)]
    assert not any(t.applies(period, payer) for t in earlier)


@given(months)
def test_budget_paid_members_always_pay_the_full_minimum_package(period: date) -> None:
    """PP 50/2025's discount excludes members paid from APBN/APBD budgets. [firm]"""
    for payer in ("apbd", "apbn"):
        assert tariff_for(period, payer).premium(20_700_000).total == 16_800


def agreement(**overrides: object) -> Agreement:
    values: dict[str, object] = {
        "code": "A",
        "payer": "Kota",
        "payer_type": "apbd",
        "funding_source": "DBHCHT",
        "valid_from": date(2025, 5, 22),
        "valid_to": None,
    }
    values.update(overrides)
    return Agreement(**values)  # type: ignore[arg-type]


def test_an_agreement_pays_only_its_programmes() -> None:
    period = date(2026, 6, 1)
    assert agreement_tariff(agreement(programmes=("JKM",)), period).premium(10**6).total == 6_800
    assert agreement_tariff(agreement(programmes=("JKK",)), period).premium(10**6).total == 10_000


@given(
    st.dates(min_value=date(2025, 1, 1), max_value=date(2030, 1, 1)),
    st.integers(min_value=1, max_value=800),
    st.dates(min_value=date(2025, 1, 1), max_value=date(2030, 1, 1)),
    st.integers(min_value=1, max_value=800),
)
def test_agreements_of_one_payer_overlap_exactly_when_they_share_a_day(
    a_from: date, a_days: int, b_from: date, b_days: int
) -> None:
    a = agreement(code="A", valid_from=a_from, valid_to=a_from + timedelta(days=a_days))
    b = agreement(code="B", valid_from=b_from, valid_to=b_from + timedelta(days=b_days))
    shared_day = any(
        a.in_force(day) and b.in_force(day)
        for day in (a_from + timedelta(days=n) for n in range(a_days))
    )
    assert a.overlaps(b) == b.overlaps(a) == shared_day
    assert not a.overlaps(agreement(code="C", payer="Other", valid_from=a_from))


@given(st.integers(min_value=0, max_value=30), st.integers(min_value=0, max_value=20))
def test_activation_admits_first_months_in_order_until_the_ceiling(
    workers: int, affordable: int
) -> None:
    city = agreement(budget_ceiling=affordable * 16_800 + 16_799)
    enrolled = [
        worker_enrolled(
            worker_id=uuid.UUID(int=n + 1),
            event_id=uuid.UUID(int=1000 + n),
            enrolled_on=date(2026, 6, 1),
        )
        for n in range(workers)
    ]
    result = activate(enrolled, [city], date(2026, 6, 1))
    active = [p for p in result.policies if p.status == "active"]
    assert len(active) == min(workers, affordable)
    assert [p.worker_id for p in active] == [e.worker_id for e in enrolled[: len(active)]]
    assert sum(e.premium.total for e in result.entries) <= city.budget_ceiling  # type: ignore[operator]
    refused = [e for e in result.events if isinstance(e, CoverageRefused)]
    assert len(refused) == workers - len(active)
    assert all(p.status_reason == "BUDGET_EXCEEDED" for p in result.policies[len(active) :])


def test_ending_a_policy_whose_cover_has_not_begun_ends_it_on_its_start() -> None:
    pending = PolicyFacts(POLICY, POLICY, "00000000011", None, "pending", date(2026, 7, 1))
    assert end_date(pending, date(2026, 6, 1)) == date(2026, 7, 1)
    active = PolicyFacts(POLICY, POLICY, "00000000011", "A", "active", date(2026, 7, 1))
    with pytest.raises(ValueError, match="cannot end on 2026-06-01"):
        end_date(active, date(2026, 6, 1))
    ended = PolicyFacts(POLICY, POLICY, "00000000011", "A", "ended", date(2026, 7, 1))
    with pytest.raises(ForbiddenTransition):
        end_date(ended, date(2026, 8, 1))
