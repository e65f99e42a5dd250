"""The message contract: every event that crosses a topic, as a frozen Pydantic model.

Each event is a flat model on a common envelope (``event_id``, ``event_type``,
``schema_version``, ``occurred_at``, ``correlation_id``, ``causation_id``). Money is
whole Rupiah (``int``, never a boolean or a numeric string).

Versioning: ``schema_version`` is the major version of one event type and matches the
``.vN`` suffix of its topic. Within a version a producer may only *add* optional fields;
it never removes, renames or retypes one, and never makes one required
(``shared/contract.py`` and the snapshots in ``docs/contract/`` enforce it). Anything
else is a new version on a new topic.

Reading: events between our services are read tolerantly, so a consumer not yet
upgraded accepts (and ignores) a field that a newer producer added; in a rolling deploy
the producer goes first, and refusing the field would dead-letter live traffic. What a
person typed is read strictly: the upstream request (``EnrolmentRequested`` and its
``RequestedWorker``, also the HTTP API's body) refuses unknown fields, so a typo such as
``emial`` is answered with a reason instead of being silently dropped.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from shared import topics

EVENT_ID_NAMESPACE = uuid.UUID("6f1d7f3e-5b7a-4c3e-9a51-2f1e0c9b7d42")
"""Namespace for deterministic event ids: the same cause always yields the same id, so
a replayed or re-derived event is recognised downstream as the one already seen."""


def derive_event_id(event_type: str, *cause: object) -> uuid.UUID:
    """A stable event id from the event type and what caused it (aggregate id, version...)."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, ":".join([event_type, *map(str, cause)]))


def utc_now() -> datetime:
    return datetime.now(UTC)


def wire_time(moment: datetime) -> str:
    """A UTC moment as the events carry it (what Pydantic writes: ``...Z``), for
    events built in SQL."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


ParticipantNumber = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{11}$"),
    Field(
        description="The 11-digit participant number Perisai issues; the last digit is a "
        "Luhn check digit.",
        examples=["00000000018"],
    ),
]
MaskedNik = Annotated[
    str,
    StringConstraints(pattern=r"^\*{12}[0-9]{4}$"),
    Field(
        description="The worker's NIK with all but the last 4 digits masked. The full NIK "
        "never leaves the registration service.",
        examples=["************0001"],
    ),
]
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
"""No control characters: identifiers are stored and shown."""
SchemaVersion1 = Annotated[
    Literal[1],
    Field(
        description="Major version of this event's schema; matches the topic's .v1 suffix. "
        "A breaking change is a new version on a new topic."
    ),
]
EVENT_TYPE_DESCRIPTION = "Name of the event type; constant for each schema."
Rupiah = Annotated[
    int, Field(ge=0, strict=True, description="An amount in whole Indonesian Rupiah.")
]
"""Strict: a JSON integer, never a boolean (``false`` is not Rp 0), a float or a string."""
Count = Annotated[int, Field(ge=1, strict=True)]
Programme = Literal["JKK", "JKM"]
Channel = Literal["sms", "email"]
Language = Literal["id", "en"]


TOLERANT = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)
"""Internal events: fields this version does not know are accepted and ignored."""
STRICT = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)
"""What a person typed: an unknown field is an error, never silently dropped."""


class Event(BaseModel):
    """The envelope every event carries."""

    model_config = TOLERANT

    TOPIC: ClassVar[str]
    KEY_FIELD: ClassVar[str]
    """Field whose value is the partition key: one worker's (or request's) events stay in
    order on one partition."""

    event_id: uuid.UUID = Field(
        description="Unique id of this event; consumers deduplicate on it. Derived "
        "deterministically from the event's cause where one exists.",
        examples=["1b4e28ba-2fa1-11d2-883f-0016d3cca427"],
    )
    occurred_at: AwareDatetime = Field(
        default_factory=utc_now,
        description="When the fact happened, with a timezone (UTC on the wire).",
        examples=["2026-11-30T12:00:00Z"],
    )
    correlation_id: str = Field(
        min_length=1,
        max_length=128,
        pattern=PRINTABLE,
        description="Follows one enrolment from its first request through every event it "
        "causes, across services.",
        examples=["req-2026-11-30-000001"],
    )
    causation_id: uuid.UUID | None = Field(
        default=None,
        description="event_id of the event that caused this one, if any.",
    )

    def kafka_key(self) -> bytes:
        return str(getattr(self, self.KEY_FIELD)).encode()

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return [
            ("content-type", b"application/json"),
            ("event_type", self.event_type.encode()),  # type: ignore[attr-defined]
            ("schema_version", str(self.schema_version).encode()),  # type: ignore[attr-defined]
            ("correlation_id", self.correlation_id.encode()),
        ]


class RequestedWorker(BaseModel):
    """The facts about a person that an enrolment request carries (before validation)."""

    model_config = STRICT

    nik: str = Field(
        min_length=1,
        max_length=32,
        description="Nomor Induk Kependudukan, 16 digits. Validated by registration; "
        "a malformed NIK yields an EnrolmentRejected with reason NIK_FORMAT.",
        examples=["3575014101900001"],
    )
    full_name: str = Field(
        min_length=1, max_length=200, description="Name as on the KTP.", examples=["Siti Aminah"]
    )
    birth_date: date = Field(description="Date of birth.", examples=["1990-01-01"])
    gender: Literal["M", "F"] = Field(
        description="M or F, as on the KTP (the NIK encodes it).", examples=["F"]
    )
    address: str = Field(
        min_length=1,
        max_length=300,
        description="Street address of the domicile.",
        examples=["Jl. Soekarno Hatta 12"],
    )
    kelurahan: str = Field(
        min_length=1,
        max_length=100,
        description="Kelurahan of the domicile, within the kecamatan: its Kemendagri code "
        "(35.75.01.1001, dots optional) or its name, case, spaces and apostrophes as "
        "typed (Tapaan = Tapa'an).",
        examples=["Karangketug"],
    )
    kecamatan_code: str = Field(
        min_length=1,
        max_length=16,
        description="Kemendagri code of the domicile's kecamatan, e.g. 35.75.01 "
        "(Gadingrejo, Kota Pasuruan); 357501 is read as 35.75.01.",
        examples=["35.75.01"],
    )
    phone: str = Field(
        min_length=1,
        max_length=32,
        description="Indonesian mobile number as given: 08.., 628.. or +628..",
        examples=["081234567890"],
    )
    email: str | None = Field(
        default=None,
        max_length=254,
        description="Optional email.",
        examples=["siti.aminah@example.com"],
    )
    occupation: str = Field(
        min_length=1,
        max_length=64,
        description="Occupation code, e.g. pedagang, pemilik_warung_kopi, marbot_masjid, "
        "tukang_kayu, buruh_tani.",
        examples=["pedagang"],
    )
    declared_income: Rupiah = Field(
        default=1_000_000,
        description="Declared monthly income in Rupiah; the JKK premium is 1% of it.",
    )
    preferred_language: Language = Field(
        default="id", description="Language of messages to the worker (Bahasa Indonesia first)."
    )


class EnrolmentRequested(Event):
    """An upstream system asks registration to enrol one worker."""

    model_config = STRICT

    TOPIC: ClassVar[str] = topics.ENROLMENT_REQUESTED
    KEY_FIELD: ClassVar[str] = "request_id"

    event_type: Literal["enrolment.requested"] = Field(
        default="enrolment.requested", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    request_id: str = Field(
        min_length=1,
        max_length=128,
        pattern=PRINTABLE,
        description="The requester's idempotency key: sending the same request_id again "
        "gives the same outcome and creates nothing new.",
        examples=["dinsos-2026-000123"],
    )
    source: Literal["api", "upstream", "bulk"] = Field(
        default="upstream", description="Which intake channel the request came through."
    )
    worker: RequestedWorker = Field(description="The person to enrol.")


class WorkerEnrolled(Event):
    """Registration accepted a worker: stored, numbered, ready for coverage."""

    TOPIC: ClassVar[str] = topics.WORKER_ENROLLED
    KEY_FIELD: ClassVar[str] = "worker_id"

    event_type: Literal["worker.enrolled"] = Field(
        default="worker.enrolled", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    worker_id: uuid.UUID = Field(description="Perisai's id of the worker.")
    participant_number: ParticipantNumber
    request_id: str = Field(min_length=1, max_length=128, description="The request this answers.")
    nik_masked: MaskedNik
    full_name: str = Field(min_length=1, max_length=200, description="Name as on the KTP.")
    gender: Literal["M", "F"] = Field(description="M or F.")
    kecamatan_code: str = Field(
        max_length=16,
        description="Domicile kecamatan code, dotted.",
        examples=["35.75.01"],
    )
    kelurahan: str = Field(
        max_length=100, description="Domicile kelurahan, official spelling.", examples=["Tapa'an"]
    )
    kelurahan_code: str | None = Field(
        default=None,
        max_length=16,
        description="Kemendagri code of the domicile kelurahan (absent from events of "
        "workers enrolled before kelurahan were checked).",
        examples=["35.75.03.1003"],
    )
    occupation: str = Field(max_length=64, description="Occupation code.", examples=["pedagang"])
    declared_income: Rupiah = Field(description="Declared monthly income.")
    phone_e164: str = Field(
        pattern=r"^\+628[0-9]{7,11}$",
        description="Mobile number, E.164.",
        examples=["+6281234567890"],
    )
    email: str | None = Field(default=None, description="Email address, if given.")
    preferred_language: Language = Field(default="id", description="Message language.")
    enrolled_on: date = Field(description="Date the enrolment was accepted (WIB).")
    membership: int = Field(
        default=1,
        ge=1,
        description="Which membership of this worker the enrolment starts: 1, or more when "
        "a deregistered worker enrols again (same worker_id and participant number).",
    )
    revision: int = Field(
        default=1,
        ge=1,
        description="The worker record's revision after this enrolment; every later "
        "change (WorkerDetailsChanged, WorkerDeregistered) has a higher one, so a consumer "
        "can tell the newer of two facts whatever order the topics deliver them in.",
    )


class RejectionReason(BaseModel):
    """One reason an enrolment was refused, precise enough for a clerk to act on."""

    model_config = TOLERANT

    code: str = Field(description="Stable reason code.", examples=["NIK_FORMAT"])
    field: str | None = Field(description="The request field at fault, if one.", examples=["nik"])
    message: str = Field(description="Human-readable explanation (English).")


class EnrolmentRejected(Event):
    """Registration refused an enrolment request, with every reason found."""

    TOPIC: ClassVar[str] = topics.ENROLMENT_REJECTED
    KEY_FIELD: ClassVar[str] = "request_id"

    event_type: Literal["enrolment.rejected"] = Field(
        default="enrolment.rejected", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    request_id: str = Field(min_length=1, max_length=128, description="The request this answers.")
    source: Literal["api", "upstream", "bulk"] = Field(
        description="Intake channel: api, upstream, or bulk (the batch endpoint or a CSV import)."
    )
    nik_masked: MaskedNik | None = Field(
        default=None, description="Masked NIK when the request had a 16-digit one."
    )
    reasons: tuple[RejectionReason, ...] = Field(
        min_length=1, description="Every rule the request broke."
    )


class PolicyActivated(Event):
    """Coverage opened an active JKK + JKM policy for a worker under a funding agreement."""

    TOPIC: ClassVar[str] = topics.POLICY_ACTIVATED
    KEY_FIELD: ClassVar[str] = "worker_id"

    event_type: Literal["policy.activated"] = Field(
        default="policy.activated", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    policy_id: uuid.UUID = Field(description="The policy.")
    worker_id: uuid.UUID = Field(description="The insured worker.")
    participant_number: ParticipantNumber
    agreement_code: str = Field(
        description="Funding agreement the policy runs under.",
        examples=["KOTA-PASURUAN-DBHCHT"],
    )
    payer: str = Field(description="Who pays the premium.", examples=["Pemerintah Kota Pasuruan"])
    funding_source: str = Field(description="Budget line.", examples=["DBHCHT"])
    programmes: tuple[Programme, ...] = Field(description="Programmes covered.")
    coverage_start: date = Field(description="First day of cover.")
    monthly_premium: Rupiah = Field(description="Premium per month (JKK + JKM).")
    membership: int = Field(
        default=1, ge=1, description="The worker's membership it covers (WorkerEnrolled)."
    )


class PremiumPosted(Event):
    """A premium was posted to the append-only ledger: the payer owes BPJSTK for a month."""

    TOPIC: ClassVar[str] = topics.PREMIUM_POSTED
    KEY_FIELD: ClassVar[str] = "worker_id"

    event_type: Literal["premium.posted"] = Field(
        default="premium.posted", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    entry_id: uuid.UUID = Field(description="Ledger entry id.")
    policy_id: uuid.UUID = Field(description="The policy billed.")
    worker_id: uuid.UUID = Field(description="The insured worker.")
    period: str = Field(
        pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="Month billed.", examples=["2026-11"]
    )
    jkk_amount: Rupiah = Field(description="JKK part.")
    jkm_amount: Rupiah = Field(description="JKM part.")
    amount: Rupiah = Field(description="Total posted (JKK + JKM).")
    debit_account: str = Field(description="Account debited (the payer).")
    credit_account: str = Field(description="Account credited (BPJSTK receivable).")

    @model_validator(mode="after")
    def _amount_is_the_sum(self) -> PremiumPosted:
        if self.amount != self.jkk_amount + self.jkm_amount:
            raise ValueError("amount must equal jkk_amount + jkm_amount")
        return self


class NotificationSent(Event):
    """A message to a worker was accepted by the SMS gateway or the mail server."""

    TOPIC: ClassVar[str] = topics.NOTIFICATION_SENT
    KEY_FIELD: ClassVar[str] = "worker_id"

    event_type: Literal["notification.sent"] = Field(
        default="notification.sent", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    delivery_id: uuid.UUID = Field(description="The delivery record; also the idempotency key.")
    worker_id: uuid.UUID = Field(description="The recipient worker.")
    channel: Channel = Field(description="sms or email.")
    template: str = Field(description="Template used.", examples=["policy_activated"])
    recipient_masked: str = Field(description="Recipient with most characters masked.")
    provider_message_id: str | None = Field(
        default=None, description="The provider's id of the message, if it returned one."
    )
    attempts: Count = Field(description="Send attempts it took.")


class NotificationFailed(Event):
    """A message to a worker could not be delivered; operations must look at it."""

    TOPIC: ClassVar[str] = topics.NOTIFICATION_FAILED
    KEY_FIELD: ClassVar[str] = "worker_id"

    event_type: Literal["notification.failed"] = Field(
        default="notification.failed", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    delivery_id: uuid.UUID = Field(description="The delivery record.")
    worker_id: uuid.UUID = Field(description="The recipient worker.")
    channel: Channel = Field(description="sms or email.")
    template: str = Field(description="Template used.")
    reason: str = Field(description="Why it failed (last error).")
    permanent: bool = Field(description="True when retrying cannot help (e.g. invalid number).")
    attempts: Count = Field(description="Send attempts made.")


Period = Annotated[
    str,
    StringConstraints(pattern=r"^[12][0-9]{3}-(0[1-9]|1[0-2])$"),
    Field(description="A calendar month, YYYY-MM.", examples=["2026-11"]),
]
AgreementCode = Annotated[
    str,
    Field(description="The funding agreement.", examples=["KOTA-PASURUAN-DBHCHT"]),
]


class CoverageRefused(Event):
    """Coverage refused to commit money an agreement's budget cannot take: a billing
    month (refused whole, nothing posted) or a new policy's first month (the policy stays
    pending). Operations must act: raise the ceiling or renew the agreement."""

    TOPIC: ClassVar[str] = topics.COVERAGE_REFUSED
    KEY_FIELD: ClassVar[str] = "agreement_code"

    event_type: Literal["coverage.refused"] = Field(
        default="coverage.refused", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    agreement_code: AgreementCode
    reason: Literal["BUDGET_EXCEEDED"] = Field(
        description="Why: BUDGET_EXCEEDED = the postings would take the agreement's "
        "committed total past its budget ceiling."
    )
    detail: str = Field(description="The refusal in words, with the figures.")
    period: Period
    worker_id: uuid.UUID | None = Field(
        default=None, description="The worker whose first month was refused, if one."
    )
    amount: Rupiah = Field(description="What would have been committed.")
    committed: Rupiah = Field(description="Committed against the agreement before it.")
    budget_ceiling: Rupiah = Field(description="The agreement's ceiling.")


class InvoiceIssued(Event):
    """An agreement's invoice for a month was issued, or re-issued with more lines (a
    new revision) when postings of that month arrived after it."""

    TOPIC: ClassVar[str] = topics.INVOICE_ISSUED
    KEY_FIELD: ClassVar[str] = "agreement_code"

    event_type: Literal["invoice.issued"] = Field(
        default="invoice.issued", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    invoice_id: uuid.UUID = Field(description="The invoice.")
    agreement_code: AgreementCode
    payer: str = Field(description="Who pays it.", examples=["Pemerintah Kota Pasuruan"])
    period: Period
    revision: Count = Field(description="1 when first issued; +1 each time lines are added.")
    headcount: int = Field(ge=0, strict=True, description="Policies billed (lines).")
    total: Rupiah = Field(description="Sum of the invoice's lines.")


PolicyStatus = Literal["pending", "active", "lapsed", "ended"]


class PolicyLapsed(Event):
    """Cover stopped because the payer left a month unpaid past the agreement's grace
    period. Nothing is billed while lapsed; paying the overdue invoice reinstates it."""

    TOPIC: ClassVar[str] = topics.POLICY_LAPSED
    KEY_FIELD: ClassVar[str] = "worker_id"

    event_type: Literal["policy.lapsed"] = Field(
        default="policy.lapsed", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    policy_id: uuid.UUID = Field(description="The policy.")
    worker_id: uuid.UUID = Field(description="The insured worker.")
    participant_number: ParticipantNumber
    agreement_code: AgreementCode
    lapsed_on: date = Field(description="The day cover stopped.")
    reason: str = Field(description="Why, in words (which invoice, which month).")
    invoice_id: uuid.UUID = Field(description="The overdue invoice.")


class PolicyReinstated(Event):
    """Cover resumed after the overdue invoice that lapsed it was paid."""

    TOPIC: ClassVar[str] = topics.POLICY_REINSTATED
    KEY_FIELD: ClassVar[str] = "worker_id"

    event_type: Literal["policy.reinstated"] = Field(
        default="policy.reinstated", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    policy_id: uuid.UUID = Field(description="The policy.")
    worker_id: uuid.UUID = Field(description="The insured worker.")
    participant_number: ParticipantNumber
    agreement_code: AgreementCode
    reinstated_on: date = Field(description="The day cover resumed.")
    reason: str = Field(description="Why, in words (the payment that reinstated it).")


class PolicyEnded(Event):
    """Cover ended for good (death, moving out of the city, end of funding, an
    administrator's decision). Nothing is billed for the months after ``coverage_end``."""

    TOPIC: ClassVar[str] = topics.POLICY_ENDED
    KEY_FIELD: ClassVar[str] = "worker_id"

    event_type: Literal["policy.ended"] = Field(
        default="policy.ended", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    policy_id: uuid.UUID = Field(description="The policy.")
    worker_id: uuid.UUID = Field(description="The insured worker.")
    participant_number: ParticipantNumber
    agreement_code: AgreementCode | None = Field(
        default=None, description="The agreement it ran under; null if it never started."
    )
    previous_status: PolicyStatus = Field(description="The status it ended from.")
    coverage_end: date = Field(description="The last day of cover.")
    reason: str = Field(description="Why, in words.", examples=["deceased"])


class PremiumReversed(Event):
    """A premium posting was reversed by a new, opposite ledger entry (the ledger is
    never updated), e.g. because its invoice was voided."""

    TOPIC: ClassVar[str] = topics.PREMIUM_REVERSED
    KEY_FIELD: ClassVar[str] = "worker_id"

    event_type: Literal["premium.reversed"] = Field(
        default="premium.reversed", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    entry_id: uuid.UUID = Field(description="The reversing ledger entry.")
    reverses: uuid.UUID = Field(description="The premium entry it reverses.")
    policy_id: uuid.UUID = Field(description="The policy.")
    worker_id: uuid.UUID = Field(description="The insured worker.")
    period: Period
    amount: Rupiah = Field(description="Amount reversed.")
    debit_account: str = Field(description="Account debited (the BPJSTK receivable).")
    credit_account: str = Field(description="Account credited (the payer).")
    reason: str = Field(description="Why it was reversed.")


class InvoicePaid(Event):
    """The payer paid an invoice in full (the last of one or more payments)."""

    TOPIC: ClassVar[str] = topics.INVOICE_PAID
    KEY_FIELD: ClassVar[str] = "agreement_code"

    event_type: Literal["invoice.paid"] = Field(
        default="invoice.paid", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    invoice_id: uuid.UUID = Field(description="The invoice.")
    agreement_code: AgreementCode
    period: Period
    total: Rupiah = Field(description="The invoice's total.")
    paid_amount: Rupiah = Field(description="All payments recorded against it.")
    paid_on: date = Field(description="Date of the payment that completed it.")
    reference: str = Field(description="The payer's reference of that payment.")


class InvoiceVoided(Event):
    """An invoice was cancelled with a reason; each of its postings was reversed."""

    TOPIC: ClassVar[str] = topics.INVOICE_VOIDED
    KEY_FIELD: ClassVar[str] = "agreement_code"

    event_type: Literal["invoice.voided"] = Field(
        default="invoice.voided", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    invoice_id: uuid.UUID = Field(description="The invoice.")
    agreement_code: AgreementCode
    period: Period
    total: Rupiah = Field(description="The amount voided (and reversed in the ledger).")
    reason: str = Field(description="Why it was voided.")


DEREGISTRATION_REASONS = ("DIED", "MOVED_OUT", "BECAME_WAGE_EARNER", "DUPLICATE", "REQUESTED")
DeregistrationReason = Literal["DIED", "MOVED_OUT", "BECAME_WAGE_EARNER", "DUPLICATE", "REQUESTED"]


class WorkerDetailsChanged(Event):
    """A clerk changed a worker's contact or domicile details (within the city) or
    declared income. Carries every changeable detail as it now stands, and which of
    them changed; the contact is the one to use from now on."""

    TOPIC: ClassVar[str] = topics.WORKER_DETAILS_CHANGED
    KEY_FIELD: ClassVar[str] = "worker_id"

    event_type: Literal["worker.details-changed"] = Field(
        default="worker.details-changed", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    worker_id: uuid.UUID = Field(description="Perisai's id of the worker.")
    participant_number: ParticipantNumber
    revision: int = Field(ge=2, description="The worker record's revision after the change.")
    changed: list[str] = Field(
        min_length=1,
        description="The details that changed: phone_e164, email, address, kecamatan_code, "
        "kelurahan, preferred_language, declared_income.",
        examples=[["phone_e164"]],
    )
    phone_e164: str = Field(
        pattern=r"^\+628[0-9]{7,11}$",
        description="Mobile number, E.164.",
        examples=["+6281234567890"],
    )
    email: str | None = Field(default=None, description="Email address, if any.")
    preferred_language: Language = Field(description="Message language.")
    kecamatan_code: str = Field(max_length=16, description="Domicile kecamatan code, dotted.")
    kelurahan: str = Field(max_length=100, description="Domicile kelurahan, official spelling.")
    kelurahan_code: str = Field(max_length=16, description="Kemendagri code of the kelurahan.")
    declared_income: Rupiah = Field(description="Declared monthly income.")


class WorkerDeregistered(Event):
    """A worker's membership ended (death, moving out of the city, becoming a wage
    earner, a duplicate record, or at their request). Coverage ends the policy on
    ``effective_date``; nothing is billed for the months after it. The worker may enrol again
    later: a new membership under the same participant number."""

    TOPIC: ClassVar[str] = topics.WORKER_DEREGISTERED
    KEY_FIELD: ClassVar[str] = "worker_id"

    event_type: Literal["worker.deregistered"] = Field(
        default="worker.deregistered", description=EVENT_TYPE_DESCRIPTION
    )
    schema_version: SchemaVersion1 = 1
    worker_id: uuid.UUID = Field(description="Perisai's id of the worker.")
    participant_number: ParticipantNumber
    revision: int = Field(ge=2, description="The worker record's revision after this.")
    membership: int = Field(ge=1, description="The membership that ended.")
    reason: DeregistrationReason = Field(description="Why the membership ended.")
    effective_date: date = Field(
        description="The last day of membership and of cover (for DIED, the date of death)."
    )


EVENT_TYPES: tuple[type[Event], ...] = (
    EnrolmentRequested,
    WorkerEnrolled,
    EnrolmentRejected,
    PolicyActivated,
    PremiumPosted,
    NotificationSent,
    NotificationFailed,
    CoverageRefused,
    InvoiceIssued,
    InvoicePaid,
    InvoiceVoided,
    PolicyLapsed,
    PolicyReinstated,
    PolicyEnded,
    PremiumReversed,
    WorkerDetailsChanged,
    WorkerDeregistered,
)
