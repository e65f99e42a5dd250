"""Changes to an enrolled worker and the end of a membership: pure decisions, no I/O.
A change is checked by the same rules as an enrolment; moving out of the city is a
deregistration, not a change."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date
from typing import Any, Final

from services.registration.codes import MAXIMUM_DECLARED_INCOME, MINIMUM_DECLARED_INCOME
from services.registration.domain import (
    Domicile,
    invisible_characters,
    normalise_email,
    normalise_phone,
    reason,
    validate_domicile,
)
from shared.events import (
    DeregistrationReason,
    RejectionReason,
    WorkerDeregistered,
    WorkerDetailsChanged,
    derive_event_id,
)

CHANGEABLE: Final = (
    "phone",
    "email",
    "address",
    "kecamatan_code",
    "kelurahan",
    "preferred_language",
    "declared_income",
)
"""What a clerk may change (PATCH). Name, NIK, birth date and gender are the person's
identity: a wrong one is a deregistration (DUPLICATE) and a new enrolment."""


@dataclass(frozen=True)
class WorkerDetails:
    """A worker's changeable details as stored."""

    phone_e164: str
    email: str | None
    address: str
    kecamatan_code: str
    kelurahan: str
    kelurahan_code: str | None
    preferred_language: str
    declared_income: int


@dataclass(frozen=True)
class WorkerState:
    """What a change or a deregistration is decided against."""

    worker_id: uuid.UUID
    participant_number: str
    status: str
    membership: int
    revision: int
    enrolled_on: date
    deregistered_on: date | None
    deregistration_reason: str | None
    details: WorkerDetails


def apply_changes(
    current: WorkerDetails, requested: Mapping[str, Any]
) -> WorkerDetails | list[RejectionReason]:
    """``current`` with the requested changes (only the fields given), each checked by
    the enrolment rules; or every reason the changes break."""
    reasons: list[RejectionReason] = []
    changed: dict[str, Any] = {}
    for name in ("address", "kelurahan", "kecamatan_code"):
        if name in requested and (found := invisible_characters(name, requested[name])):
            reasons.append(found)
    if "phone" in requested:
        phone = normalise_phone(requested["phone"])
        if phone is None:
            reasons.append(
                reason("PHONE_INVALID", "phone", "not an Indonesian mobile number (08.., +628..)")
            )
        changed["phone_e164"] = phone
    if "email" in requested:
        email, email_reasons = normalise_email(requested["email"])
        reasons += email_reasons
        changed["email"] = email
    if "address" in requested:
        address = requested["address"].strip()
        if not address:
            reasons.append(reason("ADDRESS_INVALID", "address", "address is empty"))
        changed["address"] = address
    if {"kecamatan_code", "kelurahan"} & requested.keys() and not reasons:
        domicile = validate_domicile(
            requested.get("kecamatan_code", current.kecamatan_code),
            requested.get("kelurahan", current.kelurahan_code or current.kelurahan),
        )
        if isinstance(domicile, Domicile):
            changed["kecamatan_code"] = domicile.kecamatan_code
            changed["kelurahan"] = domicile.kelurahan.name
            changed["kelurahan_code"] = domicile.kelurahan.code
        else:
            reasons += [_moving_out(r) for r in domicile]
    if "preferred_language" in requested:
        changed["preferred_language"] = requested["preferred_language"]
    if "declared_income" in requested:
        income = requested["declared_income"]
        if income < MINIMUM_DECLARED_INCOME:
            reasons.append(
                reason(
                    "INCOME_BELOW_MINIMUM",
                    "declared_income",
                    f"declared income must be at least Rp {MINIMUM_DECLARED_INCOME:,}",
                )
            )
        elif income > MAXIMUM_DECLARED_INCOME:
            reasons.append(
                reason(
                    "INCOME_ABOVE_MAXIMUM",
                    "declared_income",
                    f"declared income must be at most Rp {MAXIMUM_DECLARED_INCOME:,}",
                )
            )
        changed["declared_income"] = income
    if reasons:
        return reasons
    after = replace(current, **changed)
    if after.kelurahan_code is None:  # enrolled before kelurahan were checked
        recorded = validate_domicile(after.kecamatan_code, after.kelurahan)
        if not isinstance(recorded, Domicile):
            return [
                reason(
                    r.code,
                    r.field,
                    f"the recorded domicile is not in the official list ({r.message}): "
                    "give kecamatan_code and kelurahan with this change",
                )
                for r in recorded
            ]
        after = replace(
            after,
            kecamatan_code=recorded.kecamatan_code,
            kelurahan=recorded.kelurahan.name,
            kelurahan_code=recorded.kelurahan.code,
        )
    return after


def _moving_out(problem: RejectionReason) -> RejectionReason:
    if problem.code not in {"DOMICILE_OUTSIDE_CITY", "DOMICILE_KABUPATEN_PASURUAN"}:
        return problem
    return reason(
        problem.code,
        problem.field,
        f"{problem.message}. Moving out of the city is a deregistration (reason MOVED_OUT), "
        "not a change",
    )


def differences(before: WorkerDetails, after: WorkerDetails) -> dict[str, dict[str, Any]]:
    """Each detail that differs: {field: {"from": old, "to": new}}."""
    old, new = asdict(before), asdict(after)
    return {name: {"from": old[name], "to": new[name]} for name in old if old[name] != new[name]}


def check_deregistration(
    worker: WorkerState, why: DeregistrationReason, effective_date: date, today: date
) -> list[RejectionReason]:
    """A membership ends on a day from its enrolment to today (a date of death, the day
    of the move): never before it began, never in the future."""
    reasons = []
    if effective_date < worker.enrolled_on:
        reasons.append(
            reason(
                "EFFECTIVE_DATE_BEFORE_ENROLMENT",
                "effective_date",
                f"the membership began on {worker.enrolled_on}; it cannot end on {effective_date}",
            )
        )
    if effective_date > today:
        reasons.append(
            reason(
                "EFFECTIVE_DATE_IN_FUTURE",
                "effective_date",
                f"{effective_date} is after today ({today}): record a deregistration once "
                "it has happened",
            )
        )
    return reasons


def details_changed_event(
    worker: WorkerState, after: WorkerDetails, changed: list[str], correlation_id: str
) -> WorkerDetailsChanged:
    revision = worker.revision + 1
    assert after.kelurahan_code is not None
    return WorkerDetailsChanged(
        event_id=derive_event_id("worker.details-changed", worker.worker_id, revision),
        correlation_id=correlation_id,
        worker_id=worker.worker_id,
        participant_number=worker.participant_number,
        revision=revision,
        changed=changed,
        phone_e164=after.phone_e164,
        email=after.email,
        preferred_language=after.preferred_language,  # type: ignore[arg-type]
        kecamatan_code=after.kecamatan_code,
        kelurahan=after.kelurahan,
        kelurahan_code=after.kelurahan_code,
        declared_income=after.declared_income,
    )


def deregistered_event(
    worker: WorkerState, why: DeregistrationReason, effective_date: date, correlation_id: str
) -> WorkerDeregistered:
    revision = worker.revision + 1
    return WorkerDeregistered(
        event_id=derive_event_id("worker.deregistered", worker.worker_id, revision),
        correlation_id=correlation_id,
        worker_id=worker.worker_id,
        participant_number=worker.participant_number,
        revision=revision,
        membership=worker.membership,
        reason=why,
        effective_date=effective_date,
    )
