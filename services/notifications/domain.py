"""Notification rules: what to tell a worker, on which channel, and how to retry.
Pure, no I/O. Bahasa Indonesia first; the full NIK is never shown (domain reference,
section 6)."""

from __future__ import annotations

import random
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import date

from shared.events import Channel, NotificationFailed, NotificationSent, derive_event_id
from shared.redact import redact

CONFIRMATION_TEMPLATE = "policy_activated"
DELIVERY_NAMESPACE = uuid.UUID("3c9a1e52-7b64-4d0f-a8e3-5f2b9c1d7e60")

BENEFIT_HEADLINES = {
    "id": (
        "JKK: biaya perawatan kecelakaan kerja tanpa batas biaya, termasuk perjalanan "
        "pergi dan pulang kerja.\n"
        "JKM: santunan kematian Rp 42.000.000 bagi ahli waris."
    ),
    "en": (
        "JKK: work-accident medical care with no cost ceiling, including the trip to "
        "and from work.\n"
        "JKM: death benefit of Rp 42,000,000 for your heirs."
    ),
}


@dataclass(frozen=True)
class Confirmation:
    """Everything a confirmation needs: the worker's contact (from WorkerEnrolled)
    joined with their policy (from PolicyActivated)."""

    worker_id: uuid.UUID
    policy_id: uuid.UUID
    full_name: str
    participant_number: str
    nik_masked: str
    phone_e164: str
    email: str | None
    language: str
    coverage_start: date
    payer: str
    correlation_id: str
    causation_id: uuid.UUID | None


@dataclass(frozen=True)
class Message:
    delivery_id: uuid.UUID
    worker_id: uuid.UUID
    channel: Channel
    template: str
    recipient: str
    subject: str | None
    body: str
    correlation_id: str
    causation_id: uuid.UUID | None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts. [decision]"""

    max_attempts: int = 12
    base_s: float = 2.0
    max_s: float = 600.0

    def delay_s(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Wait before attempt ``attempt + 1``; a provider's Retry-After is a floor."""
        growth = 2.0 ** min(attempt - 1, 62)  # capped: no float overflow at any attempt
        backoff = rng.uniform(0, min(self.max_s, self.base_s * growth))
        return max(backoff, retry_after_s or 0.0)


def delivery_id(policy_id: uuid.UUID, channel: str, template: str) -> uuid.UUID:
    """Deterministic, so a redelivered event maps to the same delivery; also the
    idempotency key the provider deduplicates on."""
    return uuid.uuid5(DELIVERY_NAMESPACE, f"{policy_id}:{channel}:{template}")


def short_nik(nik_masked: str) -> str:
    return "****" + nik_masked[-4:]


SMS_NAME_MAX = 40
"""Keeps the confirmation within two SMS segments whatever the name. [decision]"""


def sms_name(full_name: str) -> str:
    """The first name, in plain GSM-7-safe ASCII and bounded in length: one typographic
    apostrophe would otherwise switch the whole SMS to UCS-2 (70 characters a segment)."""
    words = full_name.split()
    first = words[0] if words else ""
    first = first.replace("\u2019", "'").replace("\u2018", "'")
    ascii_only = unicodedata.normalize("NFKD", first).encode("ascii", "ignore").decode()
    return ascii_only[:SMS_NAME_MAX] or "Peserta"


def mask_recipient(recipient: str) -> str:
    if "@" in recipient:
        local, _, domain_part = recipient.partition("@")
        return f"{local[:1]}***@{domain_part}"
    return recipient[:5] + "*" * max(0, len(recipient) - 8) + recipient[-3:]


def sms_text(c: Confirmation, help_line: str) -> str:
    start = f"{c.coverage_start:%d-%m-%Y}"
    if c.language == "en":
        return (
            f"Perisai: {sms_name(c.full_name)}, you are covered by BPJS Ketenagakerjaan "
            f"(JKK+JKM) from {start}, paid by Kota Pasuruan. Participant no. "
            f"{c.participant_number}, NIK {short_nik(c.nik_masked)}. Help: {help_line}"
        )
    return (
        f"Perisai: {sms_name(c.full_name)}, Anda terlindungi BPJS Ketenagakerjaan "
        f"(JKK+JKM) mulai {start}, iuran dibayar Pemkot Pasuruan. No. peserta "
        f"{c.participant_number}, NIK {short_nik(c.nik_masked)}. Info: {help_line}"
    )


def email_content(c: Confirmation, help_line: str) -> tuple[str, str]:
    start = f"{c.coverage_start:%d-%m-%Y}"
    benefits = BENEFIT_HEADLINES["en" if c.language == "en" else "id"]
    if c.language == "en":
        subject = f"Your BPJS Ketenagakerjaan cover is active - participant {c.participant_number}"
        body = (
            f"Dear {c.full_name},\n\n"
            f"You are now covered by BPJS Ketenagakerjaan for work accidents (JKK) and "
            f"death (JKM) from {start}. Your contributions are paid by {c.payer}; you pay "
            f"nothing.\n\n"
            f"Participant number: {c.participant_number}\nNIK: {c.nik_masked}\n\n"
            f"{benefits}\n\nQuestions: {help_line}\n"
        )
        return subject, body
    subject = f"Perlindungan BPJS Ketenagakerjaan Anda aktif - No. peserta {c.participant_number}"
    body = (
        f"Yth. {c.full_name},\n\n"
        f"Mulai {start} Anda terlindungi BPJS Ketenagakerjaan untuk Jaminan Kecelakaan "
        f"Kerja (JKK) dan Jaminan Kematian (JKM). Iuran dibayar oleh {c.payer}; Anda tidak "
        f"membayar apa pun.\n\n"
        f"Nomor peserta: {c.participant_number}\nNIK: {c.nik_masked}\n\n"
        f"{benefits}\n\nInformasi: {help_line}\n"
    )
    return subject, body


def confirmation_messages(c: Confirmation, help_line: str) -> list[Message]:
    """An SMS always; an email too when the worker gave an address."""
    common = {
        "worker_id": c.worker_id,
        "template": CONFIRMATION_TEMPLATE,
        "correlation_id": c.correlation_id,
        "causation_id": c.causation_id,
    }
    messages = [
        Message(
            delivery_id=delivery_id(c.policy_id, "sms", CONFIRMATION_TEMPLATE),
            channel="sms",
            recipient=c.phone_e164,
            subject=None,
            body=sms_text(c, help_line),
            **common,  # type: ignore[arg-type]
        )
    ]
    if c.email:
        subject, body = email_content(c, help_line)
        messages.append(
            Message(
                delivery_id=delivery_id(c.policy_id, "email", CONFIRMATION_TEMPLATE),
                channel="email",
                recipient=c.email,
                subject=subject,
                body=body,
                **common,  # type: ignore[arg-type]
            )
        )
    return messages


@dataclass(frozen=True)
class SendResult:
    """What a provider said about one send. ``unknown``: the message was handed over but
    no answer came (a connection lost during SMTP DATA, an HTTP response that never
    arrived): it may have been taken. It is retried like a transient failure, with the
    same idempotency key and Message-ID, and counted as an uncertain send."""

    ok: bool
    provider_message_id: str | None = None
    error: str | None = None
    permanent: bool = False
    retry_after_s: float | None = None
    unknown: bool = False


@dataclass(frozen=True)
class ClaimedDelivery:
    delivery_id: uuid.UUID
    worker_id: uuid.UUID
    channel: Channel
    template: str
    recipient: str
    subject: str | None
    body: str
    attempts: int  # including the one being made
    correlation_id: str
    causation_id: uuid.UUID | None


@dataclass(frozen=True)
class DeliveryUpdate:
    delivery_id: uuid.UUID
    attempt: int  # the attempt this result is of: fences out a sender whose lease ran out
    status: str  # sent | retrying | failed
    provider_message_id: str | None
    error: str | None
    retry_in_s: float
    uncertain: bool = False  # the outcome of this attempt is unknown (it may have been taken)


PROVIDER_TEXT_LIMIT = 500
"""Longest provider text (an error, a message id) kept with a delivery."""


def provider_text(value: object) -> str | None:
    """What a provider said, as text that can be stored and published: providers send
    numbers as ids, NULs and undecodable bytes in error replies (aiosmtplib keeps those
    as surrogate escapes)."""
    if value is None:
        return None
    text = str(value).replace("\x00", "\\x00")
    text = text.encode(errors="backslashreplace").decode()
    return text[:PROVIDER_TEXT_LIMIT]


def after_send(
    delivery: ClaimedDelivery, result: SendResult, policy: RetryPolicy, rng: random.Random
) -> tuple[DeliveryUpdate, NotificationSent | NotificationFailed | None]:
    """The delivery's next state and the event to publish, if any."""
    if result.ok:
        message_id = provider_text(result.provider_message_id)
        update = DeliveryUpdate(
            delivery.delivery_id, delivery.attempts, "sent", message_id, None, 0
        )
        return update, NotificationSent(
            event_id=derive_event_id("notification.sent", delivery.delivery_id),
            correlation_id=delivery.correlation_id,
            causation_id=delivery.causation_id,
            delivery_id=delivery.delivery_id,
            worker_id=delivery.worker_id,
            channel=delivery.channel,
            template=delivery.template,
            recipient_masked=mask_recipient(delivery.recipient),
            provider_message_id=message_id,
            attempts=delivery.attempts,
        )
    # Providers quote the recipient back ("<budi@example.com>: mailbox unknown"); the
    # reason goes to the delivery row, the NotificationFailed event and the logs.
    error = redact(provider_text(result.error) or "unknown error")
    if result.unknown:
        error = f"outcome unknown, will retry with the same key: {error}"
    if result.permanent or delivery.attempts >= policy.max_attempts:
        update = DeliveryUpdate(
            delivery.delivery_id, delivery.attempts, "failed", None, error, 0, result.unknown
        )
        return update, NotificationFailed(
            event_id=derive_event_id("notification.failed", delivery.delivery_id),
            correlation_id=delivery.correlation_id,
            causation_id=delivery.causation_id,
            delivery_id=delivery.delivery_id,
            worker_id=delivery.worker_id,
            channel=delivery.channel,
            template=delivery.template,
            reason=error,
            permanent=result.permanent,
            attempts=delivery.attempts,
        )
    delay = policy.delay_s(delivery.attempts, result.retry_after_s, rng)
    return DeliveryUpdate(
        delivery.delivery_id, delivery.attempts, "retrying", None, error, delay, result.unknown
    ), None
