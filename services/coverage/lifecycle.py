"""The policy state machine and the rules that move a policy. Pure, no I/O.

    pending --activate--> active --lapse--> lapsed --reinstate--> active
       |                    |                  |
       +------- end --------+------ end -------+----> ended (for good)

Source: domain reference, section 4 (coverage lifecycle): every transition is an event
with a reason; arrears can be paid for ``grace_months`` (default 3) months, after which
cover lapses. [soft -> decision]
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Final

from services.coverage.domain import add_months, month_of
from shared.events import PolicyEnded, PolicyLapsed, PolicyReinstated, derive_event_id

TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"active", "ended"}),
    "active": frozenset({"lapsed", "ended"}),
    "lapsed": frozenset({"active", "ended"}),
    "ended": frozenset(),
}
"""Which status each status may move to; anything else is refused, never applied."""

UNPAID = "UNPAID"
"""status_reason of a lapsed policy: an invoice covering it is unpaid past grace."""


class ForbiddenTransition(ValueError):
    def __init__(self, policy_id: uuid.UUID, current: str, target: str) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
        super().__init__(
            f"policy {policy_id} is {current}; it cannot become {target} "
            f"(a {current} policy can become: {allowed})"
        )
        self.current = current
        self.target = target


def check_transition(policy_id: uuid.UUID, current: str, target: str) -> None:
    if target not in TRANSITIONS[current]:
        raise ForbiddenTransition(policy_id, current, target)


def overdue(period: date, today: date, grace_months: int) -> bool:
    """An unpaid invoice for ``period`` is overdue once more than ``grace_months`` whole
    months have passed after it: June with 3 months' grace is overdue from 1 October."""
    return month_of(today) > add_months(period, grace_months)


def first_overdue_period(today: date, grace_months: int) -> date:
    """Invoices for months before this one are overdue today when unpaid."""
    return add_months(month_of(today), -grace_months)


@dataclass(frozen=True)
class PolicyFacts:
    """What transition events say about a policy."""

    policy_id: uuid.UUID
    worker_id: uuid.UUID
    participant_number: str
    agreement_code: str | None
    status: str
    coverage_start: date


def end_date(policy: PolicyFacts, requested: date) -> date:
    """The last day of cover when ending from ``requested``: a policy whose cover had
    not begun ends on its start (it never covered a day and is never billed)."""
    check_transition(policy.policy_id, policy.status, "ended")
    if policy.status == "pending":
        return max(requested, policy.coverage_start)
    if requested < policy.coverage_start:
        raise ValueError(
            f"cover of policy {policy.policy_id} began {policy.coverage_start}; "
            f"it cannot end on {requested}"
        )
    return requested


def lapsed_event(
    policy: PolicyFacts,
    invoice_id: uuid.UUID,
    revision: int,
    period: date,
    on: date,
    grace: int,
) -> PolicyLapsed:
    """``revision``: of the overdue invoice (a re-issued invoice can lapse it again)."""
    assert policy.agreement_code is not None
    return PolicyLapsed(
        event_id=derive_event_id("policy.lapsed", policy.policy_id, invoice_id, revision),
        correlation_id=f"policy:{policy.policy_id}",
        policy_id=policy.policy_id,
        worker_id=policy.worker_id,
        participant_number=policy.participant_number,
        agreement_code=policy.agreement_code,
        lapsed_on=on,
        reason=f"the invoice for {period:%Y-%m} is unpaid more than {grace} months later",
        invoice_id=invoice_id,
    )


def reinstated_event(
    policy: PolicyFacts, lapsed_by: uuid.UUID, revision: int, on: date
) -> PolicyReinstated:
    assert policy.agreement_code is not None
    return PolicyReinstated(
        event_id=derive_event_id("policy.reinstated", policy.policy_id, lapsed_by, revision),
        correlation_id=f"policy:{policy.policy_id}",
        policy_id=policy.policy_id,
        worker_id=policy.worker_id,
        participant_number=policy.participant_number,
        agreement_code=policy.agreement_code,
        reinstated_on=on,
        reason=f"invoice {lapsed_by}, unpaid when cover lapsed, is settled",
    )


def ended_event(policy: PolicyFacts, coverage_end: date, reason: str) -> PolicyEnded:
    return PolicyEnded(
        event_id=derive_event_id("policy.ended", policy.policy_id),
        correlation_id=f"policy:{policy.policy_id}",
        policy_id=policy.policy_id,
        worker_id=policy.worker_id,
        participant_number=policy.participant_number,
        agreement_code=policy.agreement_code,
        previous_status=policy.status,  # type: ignore[arg-type]
        coverage_end=coverage_end,
        reason=reason,
    )
