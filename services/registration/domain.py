"""Registration rules: pure decisions, no I/O.

Each rule names its source strength from the domain reference (docs: domain.md,
section 3). Validation returns every reason a request fails, not just the first, so a
clerk can fix a row in one go.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from services.registration.codes import (
    KABUPATEN_PASURUAN,
    MAXIMUM_DECLARED_INCOME,
    MINIMUM_DECLARED_INCOME,
    OCCUPATIONS,
)
from services.registration.regions import (
    Kelurahan,
    KelurahanMismatch,
    RegionList,
    canonical_kecamatan_code,
    kota_pasuruan,
)
from shared.events import (
    EnrolmentRejected,
    Event,
    RejectionReason,
    RequestedWorker,
    WorkerEnrolled,
    derive_event_id,
)

NIK_LENGTH = 16
"""NIK: province(2) regency(2) kecamatan(2) DDMMYY serial(4). [firm]"""
FEMALE_DAY_OFFSET = 40
"""Women's NIKs add 40 to the day of birth. [firm]"""
PARTICIPANT_NUMBER_BASE_DIGITS = 10
"""Participant number: 10 digits from a sequence + 1 Luhn check digit = 11. [decision]"""

_ASCII_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class AgeRule:
    """Age at enrolment must satisfy minimum <= age < maximum_exclusive. [decision]"""

    minimum: int = 15
    maximum_exclusive: int = 65


DEFAULT_AGE_RULE = AgeRule()


@dataclass(frozen=True)
class UnreadableWorker:
    """A request whose worker does not fit the schema (a field missing, too long, of the
    wrong type, or unknown), with a reason for each problem. ``remainder`` is the
    request with those fields replaced by harmless placeholders, so that every other
    rule can still be checked and the clerk learns everything wrong in one answer."""

    reasons: tuple[RejectionReason, ...]
    nik: str | None
    bad_fields: frozenset[str]
    remainder: RequestedWorker | None
    digest: str
    """request_digest of the worker as it arrived."""


@dataclass(frozen=True)
class EnrolmentCommand:
    """One enrolment to decide, from any intake channel."""

    request_id: str
    source: str
    worker: RequestedWorker | UnreadableWorker
    correlation_id: str
    causation_id: uuid.UUID | None = None

    @property
    def nik(self) -> str | None:
        """The NIK as given, stripped, if the request carried one as text."""
        nik = self.worker.nik
        return nik.strip() if nik is not None else None

    @property
    def digest(self) -> str:
        """What the idempotency key promises: the same key with another digest is
        another request (see request_digest)."""
        if isinstance(self.worker, UnreadableWorker):
            return self.worker.digest
        return request_digest(self.worker.model_dump(mode="json"))


@dataclass(frozen=True)
class ValidWorker:
    """A request that passed every rule, normalised for storage."""

    worker_id: uuid.UUID
    nik: str
    phone_e164: str
    email: str | None
    domicile: Domicile
    request: RequestedWorker


@dataclass(frozen=True)
class Enrolled:
    request_id: str
    worker_id: uuid.UUID
    participant_number: str
    outcome: str = "enrolled"


@dataclass(frozen=True)
class Rejected:
    request_id: str
    reasons: tuple[RejectionReason, ...]
    outcome: str = "rejected"
    existing_participant: str | None = None
    """DUPLICATE_NIK: the member who holds the NIK. Never in the reasons: the API names
    it only to a caller allowed to read personal data."""


Outcome = Enrolled | Rejected
"""The answer a request gets, recorded under its idempotency key."""


@dataclass(frozen=True)
class Conflict:
    """A request under an idempotency key already used for a different request: it is
    not decided, and the first request's answer stands."""

    request_id: str
    first: Outcome
    outcome: str = "conflict"

    @property
    def message(self) -> str:
        if isinstance(self.first, Enrolled):
            answered = f"enrolled as participant {self.first.participant_number}"
        else:
            answered = "rejected"
        return (
            f"request id {self.request_id!r} was already used for a different request "
            f"({answered}); use a new id for a new request, or send the same request "
            "again for its answer"
        )


Answer = Outcome | Conflict


@dataclass(frozen=True)
class RequestStatus:
    """A recorded request: its answer, the channel it came by, and when."""

    outcome: Outcome
    source: str
    received_at: datetime


def request_digest(worker: object) -> str:
    """SHA-256 of a worker as canonical JSON (keys sorted, no spaces, UTF-8). A readable
    worker is digested as the schema reads it (defaults filled in), so key order,
    spacing and omitted defaults do not make two sendings of one request differ."""
    canonical = json.dumps(worker, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


REASON_MESSAGE_SHOWN = 300
"""Longest reason message: some quote the input back (email-validator does)."""


def reason(code: str, field_name: str | None, message: str) -> RejectionReason:
    """A rejection reason, its texts safe to store and show (see ``shown``)."""
    return RejectionReason(
        code=code,
        field=None if field_name is None else shown(field_name),
        message=shown(message, REASON_MESSAGE_SHOWN),
    )


def mask_nik(nik: str) -> str:
    """All but the last 4 digits masked. [decision] The full NIK never leaves
    registration."""
    return "*" * (len(nik) - 4) + nik[-4:]


def luhn_check_digit(digits: str) -> str:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def is_valid_participant_number(number: str) -> bool:
    return (
        len(number) == PARTICIPANT_NUMBER_BASE_DIGITS + 1
        and _ASCII_DIGITS.fullmatch(number) is not None
        and luhn_check_digit(number[:-1]) == number[-1]
    )


def participant_number(sequence_value: int) -> str:
    """The 11-digit participant number for a sequence value: 10 digits + check digit."""
    base = f"{sequence_value:0{PARTICIPANT_NUMBER_BASE_DIGITS}d}"
    if len(base) != PARTICIPANT_NUMBER_BASE_DIGITS:
        raise ValueError(f"participant number sequence exhausted at {sequence_value}")
    return base + luhn_check_digit(base)


def age_on(birth_date: date, today: date) -> int:
    had_birthday = (today.month, today.day) >= (birth_date.month, birth_date.day)
    return today.year - birth_date.year - (0 if had_birthday else 1)


def is_nik_shaped(text: str) -> bool:
    """Sixteen ASCII digits: the only text that can be a NIK (and so a duplicate)."""
    return len(text) == NIK_LENGTH and _ASCII_DIGITS.fullmatch(text) is not None


def _nik_date(nik: str) -> tuple[int, int, int]:
    return int(nik[6:8]), int(nik[8:10]), int(nik[10:12])


def validate_nik(nik: str, birth_date: date, gender: str) -> list[RejectionReason]:
    """NIK structure and agreement with the birth date and gender given. The NIK's
    region prefix is where the person was first registered, so it is not checked
    against the domicile. [firm]"""
    if not is_nik_shaped(nik):
        return [reason("NIK_FORMAT", "nik", f"NIK must be exactly {NIK_LENGTH} digits")]
    reasons = []
    if nik[0:2] == "00" or nik[2:4] == "00" or nik[4:6] == "00":
        reasons.append(reason("NIK_REGION", "nik", "NIK region codes cannot be 00"))
    day, month, year = _nik_date(nik)
    female = day > FEMALE_DAY_OFFSET
    real_day = day - FEMALE_DAY_OFFSET if female else day
    try:
        date(2000 + year, month, real_day)  # century does not matter except 29 Feb
    except ValueError:
        try:
            date(1900 + year, month, real_day)
        except ValueError:
            return [
                *reasons,
                reason("NIK_BIRTHDATE_INVALID", "nik", "NIK digits 7-12 are not a date"),
            ]
    if (real_day, month, year) != (birth_date.day, birth_date.month, birth_date.year % 100):
        reasons.append(
            reason(
                "NIK_BIRTHDATE_MISMATCH",
                "birth_date",
                "birth date does not match the date in the NIK (digits 7-12)",
            )
        )
    if ("F" if female else "M") != gender:
        reasons.append(
            reason(
                "NIK_GENDER_MISMATCH",
                "gender",
                "gender does not match the NIK (women's NIKs add 40 to the day)",
            )
        )
    if nik[12:] == "0000":
        reasons.append(reason("NIK_SERIAL", "nik", "NIK serial (last 4 digits) cannot be 0000"))
    return reasons


@dataclass(frozen=True)
class Domicile:
    """Where a worker lives, as the official region list names it."""

    kecamatan_code: str
    kelurahan: Kelurahan


def validate_domicile(
    kecamatan_code: str, kelurahan: str, regions: RegionList | None = None
) -> Domicile | list[RejectionReason]:
    """Domicile comes from the address, never from the NIK prefix. [firm] The kecamatan
    code may be written with or without dots; the kelurahan by its code or its name as
    clerks type it, and it must lie in that kecamatan. The kelurahan is checked only
    once the kecamatan is the city's."""
    regions = regions or kota_pasuruan()
    code = canonical_kecamatan_code(kecamatan_code)
    if code not in regions.kecamatan:
        return [_outside_city(code, regions)]
    resolved = regions.resolve(kelurahan, code)
    if isinstance(resolved, Kelurahan):
        return Domicile(code, resolved)
    where = f"{regions.kecamatan[code]} ({code})"
    meant = ", ".join(str(k) for k in resolved.suggestions)
    given = shown(kelurahan.strip(), 60)
    if isinstance(resolved, KelurahanMismatch):
        found = resolved.found
        return [
            reason(
                "DOMICILE_KELURAHAN_MISMATCH",
                "kelurahan",
                f"{found} is in kecamatan {found.kecamatan} ({found.kecamatan_code}), not "
                f"{where}; kelurahan of {regions.kecamatan[code]} closest in spelling: {meant}",
            )
        ]
    return [
        reason(
            "DOMICILE_KELURAHAN_UNKNOWN",
            "kelurahan",
            f"{given!r} is not a kelurahan of {where}; did you mean {meant}?",
        )
    ]


def _outside_city(code: str, regions: RegionList) -> RejectionReason:
    if code.startswith(KABUPATEN_PASURUAN + "."):
        return reason(
            "DOMICILE_KABUPATEN_PASURUAN",
            "kecamatan_code",
            f"{code} is in Kabupaten Pasuruan (35.14), a different "
            "government; only Kota Pasuruan (35.75) residents are covered",
        )
    return reason(
        "DOMICILE_OUTSIDE_CITY",
        "kecamatan_code",
        f"{shown(code, 20)} is not a kecamatan of Kota Pasuruan ({', '.join(regions.kecamatan)})",
    )


def normalise_phone(phone: str) -> str | None:
    """E.164 of an Indonesian mobile number written 08.., 628.. or +628..; else None."""
    text = re.sub(r"[\s\-().]", "", phone)
    if text.startswith("62"):
        text = "+" + text
    try:
        number = phonenumbers.parse(text, "ID")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number) or number.country_code != 62:
        return None
    if phonenumbers.number_type(number) != phonenumbers.PhoneNumberType.MOBILE:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(email: str | None) -> tuple[str | None, list[RejectionReason]]:
    if email is None or not email.strip():
        return None, []
    try:
        result = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        return None, [reason("EMAIL_INVALID", "email", str(error))]
    return result.normalized, []


TEXT_FIELDS = (
    "nik",
    "full_name",
    "address",
    "kelurahan",
    "kecamatan_code",
    "phone",
    "email",
    "occupation",
)
MULTILINE_FIELDS = ("address",)
"""Addresses arrive from spreadsheets with line breaks; those are kept."""
LINE_BREAKS = frozenset("\t\n\r")
INVISIBLE_CATEGORIES = {
    "Cc": "control characters",
    "Cf": "invisible format characters (e.g. a right-to-left override, a zero-width space)",
    "Cn": "unassigned code points",
}
"""Unicode categories that have no place in a name, address or code: they hide or
reorder what a clerk sees (Cf), cannot be stored (NUL) or mean nothing yet (Cn). Lone
surrogates (Cs) are not even text: the schema refuses them (see _schema_reason)."""


def invisible_characters(name: str, value: str | None) -> RejectionReason | None:
    """TEXT_INVALID if the field's text holds characters a clerk cannot see."""
    allowed = LINE_BREAKS if name in MULTILINE_FIELDS else frozenset()
    found = sorted(
        {
            category
            for c in value or ""
            if (category := unicodedata.category(c)) in INVISIBLE_CATEGORIES and c not in allowed
        }
    )
    if not found:
        return None
    what = ", ".join(INVISIBLE_CATEGORIES[category] for category in found)
    return reason("TEXT_INVALID", name, f"contains {what}")


def validate_text(request: RequestedWorker) -> list[RejectionReason]:
    return [
        problem
        for name in TEXT_FIELDS
        if (problem := invisible_characters(name, getattr(request, name))) is not None
    ]


SCHEMA_REASON_CODES: Final[dict[str, str]] = {
    "nik": "NIK_FORMAT",
    "full_name": "NAME_INVALID",
    "birth_date": "BIRTH_DATE_INVALID",
    "gender": "GENDER_INVALID",
    "address": "ADDRESS_INVALID",
    "kelurahan": "DOMICILE_KELURAHAN_INVALID",
    "kecamatan_code": "DOMICILE_KECAMATAN_INVALID",
    "phone": "PHONE_INVALID",
    "email": "EMAIL_INVALID",
    "occupation": "OCCUPATION_UNKNOWN",
    "declared_income": "INCOME_INVALID",
    "preferred_language": "LANGUAGE_UNKNOWN",
}
"""The reason code of a worker field that does not fit the schema (missing, too long,
wrong type): the same code whatever the channel."""
FIELD_UNKNOWN: Final = "FIELD_UNKNOWN"
WORKER_INVALID: Final = "WORKER_INVALID"
RULE_INPUTS: Final[dict[str, frozenset[str]]] = {
    "NIK_BIRTHDATE_MISMATCH": frozenset({"nik", "birth_date"}),
    "NIK_GENDER_MISMATCH": frozenset({"nik", "gender"}),
    "DOMICILE_KELURAHAN_UNKNOWN": frozenset({"kelurahan", "kecamatan_code"}),
    "DOMICILE_KELURAHAN_MISMATCH": frozenset({"kelurahan", "kecamatan_code"}),
}
"""Rules that compare fields: they say nothing when either field is unreadable."""
PLACEHOLDERS: Final[dict[str, object]] = {
    "nik": "3575010101900001",
    "full_name": "-",
    "birth_date": date(1990, 1, 1),
    "gender": "M",
    "address": "-",
    "kelurahan": "-",
    "kecamatan_code": "35.75.01",
    "phone": "081234567890",
    "email": None,
    "occupation": "pedagang",
    "declared_income": MINIMUM_DECLARED_INCOME,
    "preferred_language": "id",
}
"""Stand-ins for unreadable fields, so the other rules can run (their own reasons are
dropped: see RULE_INPUTS)."""


FIELD_NAME_SHOWN = 64
"""Longest unknown field name echoed back in a reason."""
UNSHOWABLE = frozenset({*INVISIBLE_CATEGORIES, "Cs"})


def shown(text: str, limit: int = FIELD_NAME_SHOWN) -> str:
    """Text the sender chose, safe to store and show: invisible characters (NUL among
    them, which PostgreSQL cannot store) spelled as escapes, and bounded in length."""
    visible = "".join(
        c if unicodedata.category(c) not in UNSHOWABLE else f"\\u{ord(c):04x}"
        for c in text[: limit + 1]
    )
    return visible if len(text) <= limit else visible[:limit] + "..."


def _schema_reason(error: ErrorDetails) -> tuple[str | None, RejectionReason]:
    location = error["loc"]
    if not location and error["type"] == "string_unicode":
        return None, reason(
            "TEXT_INVALID", "worker", "a field name contains lone surrogates (not Unicode text)"
        )
    if not location:
        return None, reason(WORKER_INVALID, "worker", "the worker must be a JSON object")
    name = str(location[0])
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(name, RequestedWorker.model_fields, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return name, reason(FIELD_UNKNOWN, name, f"unknown field {shown(name)!r}{hint}")
    if error["type"] == "string_unicode":  # a lone surrogate, e.g. "\ud800" in JSON
        return name, reason("TEXT_INVALID", name, "contains lone surrogates (not Unicode text)")
    return name, reason(SCHEMA_REASON_CODES.get(name, WORKER_INVALID), name, error["msg"])


def read_worker(
    raw: object, unknown_fields: Iterable[str] = ()
) -> RequestedWorker | UnreadableWorker:
    """The worker of a request as it arrived (a parsed JSON value), checked against the
    schema. ``unknown_fields`` are fields of the request around it that the schema
    does not know (each is a FIELD_UNKNOWN reason)."""
    reasons = [
        reason(FIELD_UNKNOWN, name, f"unknown field {shown(name)!r} in the request")
        for name in unknown_fields
    ]
    bad: set[str] = set()
    try:
        worker = RequestedWorker.model_validate(raw)
    except ValidationError as error:
        for error_details in error.errors(include_url=False, include_input=False):
            name, problem = _schema_reason(error_details)
            reasons.append(problem)
            if name is not None:
                bad.add(name)
        worker = None
    if worker is not None and not reasons:
        return worker
    given = raw if isinstance(raw, dict) else {}
    nik = given.get("nik") if isinstance(given.get("nik"), str) else None
    if worker is None and isinstance(raw, dict):
        readable = {k: v for k, v in given.items() if k in RequestedWorker.model_fields}
        stand_ins = {k: v for k, v in PLACEHOLDERS.items() if k in bad or k not in readable}
        try:
            worker = RequestedWorker.model_validate({**readable, **stand_ins})
        except ValidationError:
            worker = None
    return UnreadableWorker(tuple(reasons), nik, frozenset(bad), worker, _raw_digest(raw))


def _raw_digest(raw: object) -> str:
    try:
        return request_digest(raw)
    except (TypeError, ValueError):  # not JSON data: only a JSON-parsed value is expected
        return request_digest(repr(raw))


def validate(
    request: RequestedWorker | UnreadableWorker, today: date, ages: AgeRule = DEFAULT_AGE_RULE
) -> ValidWorker | list[RejectionReason]:
    if isinstance(request, UnreadableWorker):
        reasons = list(request.reasons)
        if request.remainder is not None:
            others = validate(request.remainder, today, ages)
            if isinstance(others, list):
                reasons += [
                    r
                    for r in others
                    if not RULE_INPUTS.get(r.code, frozenset({r.field})) & request.bad_fields
                ]
        return reasons
    reasons = validate_text(request)
    if not request.full_name.strip():
        reasons.append(reason("NAME_INVALID", "full_name", "name is empty"))
    nik = request.nik.strip()
    reasons += validate_nik(nik, request.birth_date, request.gender)
    domicile: Domicile | list[RejectionReason] = []
    if not {"kecamatan_code", "kelurahan"} & {r.field for r in reasons}:  # both readable
        domicile = validate_domicile(request.kecamatan_code, request.kelurahan)
    if isinstance(domicile, list):
        reasons += domicile
    age = age_on(request.birth_date, today)
    if not ages.minimum <= age < ages.maximum_exclusive:
        reasons.append(
            reason(
                "AGE_OUT_OF_RANGE",
                "birth_date",
                f"age {age} is outside {ages.minimum} <= age < {ages.maximum_exclusive}",
            )
        )
    phone = normalise_phone(request.phone)
    if phone is None:
        reasons.append(
            reason("PHONE_INVALID", "phone", "not an Indonesian mobile number (08.., +628..)")
        )
    email, email_reasons = normalise_email(request.email)
    reasons += email_reasons
    if request.occupation not in OCCUPATIONS:
        reasons.append(
            reason("OCCUPATION_UNKNOWN", "occupation", f"unknown code {request.occupation!r}")
        )
    if request.declared_income < MINIMUM_DECLARED_INCOME:
        reasons.append(
            reason(
                "INCOME_BELOW_MINIMUM",
                "declared_income",
                f"declared income must be at least Rp {MINIMUM_DECLARED_INCOME:,}",
            )
        )
    elif request.declared_income > MAXIMUM_DECLARED_INCOME:
        reasons.append(
            reason(
                "INCOME_ABOVE_MAXIMUM",
                "declared_income",
                f"declared income must be at most Rp {MAXIMUM_DECLARED_INCOME:,}",
            )
        )
    if reasons:
        return reasons
    assert phone is not None and isinstance(domicile, Domicile)
    return ValidWorker(
        # Random, not derived from the NIK: a hash of a NIK can be reversed by trying
        # every birth date and serial, and worker ids travel to other services.
        worker_id=uuid.uuid4(),
        nik=nik,
        phone_e164=phone,
        email=email,
        domicile=domicile,
        request=request,
    )


@dataclass(frozen=True)
class Numbered:
    """A worker stored under its participant number: a first membership, or a later one
    of a deregistered worker enrolling again (its own worker id and number kept)."""

    command: EnrolmentCommand
    worker: ValidWorker
    participant_number: str
    membership: int = 1
    revision: int = 1
    changes: Mapping[str, Any] | None = None
    """Enrolling again: what the new request changed on the record ({field: {from, to}})."""


@dataclass
class Decision:
    """What to do with a batch of new requests."""

    to_store: list[tuple[EnrolmentCommand, ValidWorker]] = field(default_factory=list)
    rejected: list[tuple[EnrolmentCommand, Rejected]] = field(default_factory=list)


def decide(
    commands: Sequence[EnrolmentCommand],
    enrolled_niks: Mapping[str, str],
    today: date,
    ages: AgeRule = DEFAULT_AGE_RULE,
) -> Decision:
    """Validate new requests; one membership per NIK: a NIK already enrolled (or
    claimed earlier in this batch) is a duplicate naming the existing participant."""
    decision = Decision()
    claimed: set[str] = set()
    for command in commands:
        result = validate(command.worker, today, ages)
        if isinstance(result, list):
            decision.rejected.append((command, Rejected(command.request_id, tuple(result))))
        elif result.nik in enrolled_niks or result.nik in claimed:
            decision.rejected.append((command, duplicate(command, enrolled_niks.get(result.nik))))
        else:
            claimed.add(result.nik)
            decision.to_store.append((command, result))
    return decision


def duplicate(command: EnrolmentCommand, participant: str | None) -> Rejected:
    message = "this NIK is already enrolled" + ("" if participant else " by another request")
    return Rejected(
        command.request_id,
        (reason("DUPLICATE_NIK", "nik", message),),
        existing_participant=participant,
    )


def enrolled_event(stored: Numbered, today: date) -> WorkerEnrolled:
    command, worker, number = stored.command, stored.worker, stored.participant_number
    request = worker.request
    return WorkerEnrolled(
        event_id=derive_event_id("worker.enrolled", command.request_id),
        correlation_id=command.correlation_id,
        causation_id=command.causation_id,
        worker_id=worker.worker_id,
        participant_number=number,
        request_id=command.request_id,
        nik_masked=mask_nik(worker.nik),
        full_name=request.full_name.strip(),
        gender=request.gender,
        kecamatan_code=worker.domicile.kecamatan_code,
        kelurahan=worker.domicile.kelurahan.name,
        kelurahan_code=worker.domicile.kelurahan.code,
        occupation=request.occupation,
        declared_income=request.declared_income,
        phone_e164=worker.phone_e164,
        email=worker.email,
        preferred_language=request.preferred_language,
        enrolled_on=today,
        membership=stored.membership,
        revision=stored.revision,
    )


def rejected_event(command: EnrolmentCommand, rejected: Rejected) -> EnrolmentRejected:
    nik = command.nik or ""
    return EnrolmentRejected(
        event_id=derive_event_id("enrolment.rejected", command.request_id),
        correlation_id=command.correlation_id,
        causation_id=command.causation_id,
        request_id=command.request_id,
        # The v1 contract knows api, upstream and bulk: a CSV import row is bulk intake.
        source="bulk" if command.source == "import" else command.source,  # type: ignore[arg-type]
        nik_masked=mask_nik(nik) if is_nik_shaped(nik) else None,
        reasons=rejected.reasons,
    )


def events_for(
    stored: Iterable[Numbered],
    rejected: Iterable[tuple[EnrolmentCommand, Rejected]],
    today: date,
) -> list[Event]:
    events: list[Event] = [enrolled_event(entry, today) for entry in stored]
    events += [rejected_event(c, r) for c, r in rejected]
    return events
