"""Valid sample messages and domain inputs for the tests. Every factory returns a
valid object; keyword arguments override single fields."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from services.registration.domain import FEMALE_DAY_OFFSET, mask_nik, participant_number
from shared.events import (
    CoverageRefused,
    EnrolmentRejected,
    EnrolmentRequested,
    Event,
    InvoiceIssued,
    InvoicePaid,
    InvoiceVoided,
    NotificationFailed,
    NotificationSent,
    PolicyActivated,
    PolicyEnded,
    PolicyLapsed,
    PolicyReinstated,
    PremiumPosted,
    PremiumReversed,
    RejectionReason,
    RequestedWorker,
    WorkerDeregistered,
    WorkerDetailsChanged,
    WorkerEnrolled,
)

TODAY = date(2026, 6, 15)
"""A fixed 'today' so that age rules are reproducible."""
OCCURRED_AT = datetime(2026, 6, 15, 3, 0, tzinfo=UTC)
KOTA_REGION = "357501"  # Jawa Timur / Kota Pasuruan / Gadingrejo


def make_nik(
    birth_date: date, gender: str, *, region: str = KOTA_REGION, serial: str = "0001"
) -> str:
    """A structurally valid NIK for this birth date and gender."""
    day = birth_date.day + (FEMALE_DAY_OFFSET if gender == "F" else 0)
    return f"{region}{day:02d}{birth_date.month:02d}{birth_date.year % 100:02d}{serial}"


def uid(name: str) -> uuid.UUID:
    """A readable, stable UUID for a name used in a test."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"perisai-test:{name}")


def requested_worker(**overrides: Any) -> RequestedWorker:
    birth_date = overrides.get("birth_date", date(1990, 1, 1))
    gender = overrides.get("gender", "F")
    values: dict[str, Any] = {
        "nik": make_nik(birth_date, gender),
        "full_name": "Siti Aminah",
        "birth_date": birth_date,
        "gender": gender,
        "address": "Jl. Soekarno Hatta 12",
        "kelurahan": "Gadingrejo",
        "kecamatan_code": "35.75.01",
        "phone": "081234567890",
        "email": None,
        "occupation": "pedagang",
        "declared_income": 1_000_000,
        "preferred_language": "id",
    }
    values.update(overrides)
    return RequestedWorker(**values)


def enrolment_requested(**overrides: Any) -> EnrolmentRequested:
    values: dict[str, Any] = {
        "event_id": uid("enrolment-requested"),
        "occurred_at": OCCURRED_AT,
        "correlation_id": "req-2026-06-15-000001",
        "request_id": "dinsos-2026-000001",
        "source": "upstream",
        "worker": requested_worker(),
    }
    values.update(overrides)
    return EnrolmentRequested(**values)


def worker_enrolled(**overrides: Any) -> WorkerEnrolled:
    values: dict[str, Any] = {
        "event_id": uid("worker-enrolled"),
        "occurred_at": OCCURRED_AT,
        "correlation_id": "req-2026-06-15-000001",
        "causation_id": uid("enrolment-requested"),
        "worker_id": uid("worker"),
        "participant_number": participant_number(1),
        "request_id": "dinsos-2026-000001",
        "nik_masked": mask_nik("3575014101900001"),
        "full_name": "Siti Aminah",
        "gender": "F",
        "kecamatan_code": "35.75.01",
        "kelurahan": "Gadingrejo",
        "occupation": "pedagang",
        "declared_income": 1_000_000,
        "phone_e164": "+6281234567890",
        "email": "siti@example.com",
        "preferred_language": "id",
        "enrolled_on": TODAY,
    }
    values.update(overrides)
    return WorkerEnrolled(**values)


def enrolment_rejected(**overrides: Any) -> EnrolmentRejected:
    values: dict[str, Any] = {
        "event_id": uid("enrolment-rejected"),
        "occurred_at": OCCURRED_AT,
        "correlation_id": "req-2026-06-15-000002",
        "request_id": "dinsos-2026-000002",
        "source": "bulk",
        "nik_masked": mask_nik("3575014101900002"),
        "reasons": (
            RejectionReason(code="NIK_SERIAL", field="nik", message="serial is 0000"),
            RejectionReason(code="PHONE_INVALID", field="phone", message="not a mobile"),
        ),
    }
    values.update(overrides)
    return EnrolmentRejected(**values)


def policy_activated(**overrides: Any) -> PolicyActivated:
    values: dict[str, Any] = {
        "event_id": uid("policy-activated"),
        "occurred_at": OCCURRED_AT,
        "correlation_id": "req-2026-06-15-000001",
        "causation_id": uid("worker-enrolled"),
        "policy_id": uid("policy"),
        "worker_id": uid("worker"),
        "participant_number": participant_number(1),
        "agreement_code": "KOTA-PASURUAN-DBHCHT",
        "payer": "Pemerintah Kota Pasuruan",
        "funding_source": "DBHCHT",
        "programmes": ("JKK", "JKM"),
        "coverage_start": TODAY,
        "monthly_premium": 16_800,
    }
    values.update(overrides)
    return PolicyActivated(**values)


def premium_posted(**overrides: Any) -> PremiumPosted:
    values: dict[str, Any] = {
        "event_id": uid("premium-posted"),
        "occurred_at": OCCURRED_AT,
        "correlation_id": "req-2026-06-15-000001",
        "entry_id": uid("entry"),
        "policy_id": uid("policy"),
        "worker_id": uid("worker"),
        "period": "2026-06",
        "jkk_amount": 10_000,
        "jkm_amount": 6_800,
        "amount": 16_800,
        "debit_account": "payer:KOTA-PASURUAN-DBHCHT",
        "credit_account": "bpjstk:receivable",
    }
    values.update(overrides)
    return PremiumPosted(**values)


def notification_sent(**overrides: Any) -> NotificationSent:
    values: dict[str, Any] = {
        "event_id": uid("notification-sent"),
        "occurred_at": OCCURRED_AT,
        "correlation_id": "req-2026-06-15-000001",
        "delivery_id": uid("delivery"),
        "worker_id": uid("worker"),
        "channel": "sms",
        "template": "policy_activated",
        "recipient_masked": "+6281******890",
        "provider_message_id": "gw-123",
        "attempts": 1,
    }
    values.update(overrides)
    return NotificationSent(**values)


def notification_failed(**overrides: Any) -> NotificationFailed:
    values: dict[str, Any] = {
        "event_id": uid("notification-failed"),
        "occurred_at": OCCURRED_AT,
        "correlation_id": "req-2026-06-15-000001",
        "delivery_id": uid("delivery"),
        "worker_id": uid("worker"),
        "channel": "email",
        "template": "policy_activated",
        "reason": "550 mailbox unavailable",
        "permanent": True,
        "attempts": 2,
    }
    values.update(overrides)
    return NotificationFailed(**values)


def _sample(event_type: type[Event], name: str, **fields: Any) -> Callable[..., Event]:
    def make(**overrides: Any) -> Event:
        values: dict[str, Any] = {
            "event_id": uid(name),
            "occurred_at": OCCURRED_AT,
            "correlation_id": f"{name}-1",
            **fields,
        }
        values.update(overrides)
        return event_type(**values)

    return make


CITY_CODE = "KOTA-PASURUAN-DBHCHT"
coverage_refused = _sample(
    CoverageRefused,
    "coverage-refused",
    agreement_code=CITY_CODE,
    reason="BUDGET_EXCEEDED",
    detail="the month's premiums would pass the ceiling",
    period="2026-06",
    amount=16_800,
    committed=1_000_000,
    budget_ceiling=1_010_000,
)
invoice_issued = _sample(
    InvoiceIssued,
    "invoice-issued",
    invoice_id=uid("invoice"),
    agreement_code=CITY_CODE,
    payer="Pemerintah Kota Pasuruan",
    period="2026-06",
    revision=1,
    headcount=9_038,
    total=151_838_400,
)
invoice_paid = _sample(
    InvoicePaid,
    "invoice-paid",
    invoice_id=uid("invoice"),
    agreement_code=CITY_CODE,
    period="2026-06",
    total=151_838_400,
    paid_amount=151_838_400,
    paid_on=date(2026, 6, 20),
    reference="SP2D-0001",
)
invoice_voided = _sample(
    InvoiceVoided,
    "invoice-voided",
    invoice_id=uid("invoice"),
    agreement_code=CITY_CODE,
    period="2026-06",
    total=151_838_400,
    reason="billed in error",
)
policy_lapsed = _sample(
    PolicyLapsed,
    "policy-lapsed",
    policy_id=uid("policy"),
    worker_id=uid("worker"),
    participant_number=participant_number(1),
    agreement_code=CITY_CODE,
    lapsed_on=date(2026, 10, 1),
    reason="the invoice for 2026-06 is unpaid",
    invoice_id=uid("invoice"),
)
policy_reinstated = _sample(
    PolicyReinstated,
    "policy-reinstated",
    policy_id=uid("policy"),
    worker_id=uid("worker"),
    participant_number=participant_number(1),
    agreement_code=CITY_CODE,
    reinstated_on=date(2026, 10, 5),
    reason="invoice settled",
)
policy_ended = _sample(
    PolicyEnded,
    "policy-ended",
    policy_id=uid("policy"),
    worker_id=uid("worker"),
    participant_number=participant_number(1),
    agreement_code=CITY_CODE,
    previous_status="active",
    coverage_end=date(2026, 6, 20),
    reason="deceased",
)
premium_reversed = _sample(
    PremiumReversed,
    "premium-reversed",
    entry_id=uid("reversal"),
    reverses=uid("entry"),
    policy_id=uid("policy"),
    worker_id=uid("worker"),
    period="2026-06",
    amount=16_800,
    debit_account="bpjstk:receivable",
    credit_account=f"payer:{CITY_CODE}",
    reason="invoice voided",
)
worker_details_changed = _sample(
    WorkerDetailsChanged,
    "worker-details-changed",
    worker_id=uid("worker"),
    participant_number=participant_number(1),
    revision=2,
    changed=["phone_e164"],
    phone_e164="+6281311112222",
    email=None,
    preferred_language="id",
    kecamatan_code="35.75.01",
    kelurahan="Gadingrejo",
    kelurahan_code="35.75.01.1009",
    declared_income=1_000_000,
)
worker_deregistered = _sample(
    WorkerDeregistered,
    "worker-deregistered",
    worker_id=uid("worker"),
    participant_number=participant_number(1),
    revision=2,
    membership=1,
    reason="DIED",
    effective_date=date(2026, 6, 20),
)


SAMPLES: dict[type[Event], Callable[..., Event]] = {
    EnrolmentRequested: enrolment_requested,
    WorkerEnrolled: worker_enrolled,
    EnrolmentRejected: enrolment_rejected,
    PolicyActivated: policy_activated,
    PremiumPosted: premium_posted,
    NotificationSent: notification_sent,
    NotificationFailed: notification_failed,
    CoverageRefused: coverage_refused,
    InvoiceIssued: invoice_issued,
    InvoicePaid: invoice_paid,
    InvoiceVoided: invoice_voided,
    PolicyLapsed: policy_lapsed,
    PolicyReinstated: policy_reinstated,
    PolicyEnded: policy_ended,
    PremiumReversed: premium_reversed,
    WorkerDetailsChanged: worker_details_changed,
    WorkerDeregistered: worker_deregistered,
}
"""A valid sample of every event type, keyed by its class."""


@dataclass(frozen=True)
class FakeRecord:
    """What BatchConsumer reads of an aiokafka ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] = field(default_factory=tuple)
