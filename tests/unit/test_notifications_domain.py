"""Notification rules (services.notifications.domain): what to send, in which language,
and what happens after each send."""

from __future__ import annotations

import dataclasses
import random
import uuid
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.domain import (
    CONFIRMATION_TEMPLATE,
    ClaimedDelivery,
    Confirmation,
    RetryPolicy,
    SendResult,
    after_send,
    confirmation_messages,
    delivery_id,
    mask_recipient,
    provider_text,
)
from services.registration.domain import mask_nik, participant_number
from shared.events import NotificationFailed, NotificationSent
from tests.factories import uid

FULL_NIK = "3575014101900001"
NUMBER = participant_number(1)
HELP = "BPJSTK 175"
SMS_TWO_SEGMENTS = 306  # 2 x 153 GSM-7 characters of a concatenated SMS
LONG_MULTI_WORD_NAME = (
    "Siti Aminah Nurul Hidayah Rahmawati Kusumaningrum Wulandari Purnamasari "
    "Setyaningsih Widyaningrum Anggraini Puspitasari Handayani Kartikasari "
    "Rahayuningtyas Susilowati Dewi"
)[:200]


def confirmation(**overrides: Any) -> Confirmation:
    values: dict[str, Any] = {
        "worker_id": uid("worker"),
        "policy_id": uid("policy"),
        "full_name": "Siti Aminah",
        "participant_number": NUMBER,
        "nik_masked": mask_nik(FULL_NIK),
        "phone_e164": "+6281234567890",
        "email": "siti.aminah@gmail.com",
        "language": "id",
        "coverage_start": date(2025, 5, 22),
        "payer": "Pemerintah Kota Pasuruan",
        "correlation_id": "req-1",
        "causation_id": uid("policy-activated"),
    }
    values.update(overrides)
    return Confirmation(**values)


def claimed(attempts: int = 1, channel: str = "sms", **overrides: Any) -> ClaimedDelivery:
    values: dict[str, Any] = {
        "delivery_id": delivery_id(uid("policy"), channel, CONFIRMATION_TEMPLATE),
        "worker_id": uid("worker"),
        "channel": channel,
        "template": CONFIRMATION_TEMPLATE,
        "recipient": "+6281234567890" if channel == "sms" else "siti.aminah@gmail.com",
        "subject": None,
        "body": "Perisai: ...",
        "attempts": attempts,
        "correlation_id": "req-1",
        "causation_id": uid("policy-activated"),
    }
    values.update(overrides)
    return ClaimedDelivery(**values)


# --- confirmation messages ---------------------------------------------------------


def test_sms_always_and_email_when_there_is_an_address() -> None:
    both = confirmation_messages(confirmation(), HELP)
    assert [m.channel for m in both] == ["sms", "email"]
    assert [m.recipient for m in both] == ["+6281234567890", "siti.aminah@gmail.com"]
    sms, email = both
    assert sms.subject is None
    assert email.subject
    for empty in (None, ""):
        [only] = confirmation_messages(confirmation(email=empty), HELP)
        assert only.channel == "sms"


def test_messages_carry_the_worker_template_and_trace() -> None:
    for message in confirmation_messages(confirmation(), HELP):
        assert message.worker_id == uid("worker")
        assert message.template == CONFIRMATION_TEMPLATE
        assert message.correlation_id == "req-1"
        assert message.causation_id == uid("policy-activated")


def test_delivery_ids_are_deterministic_per_policy_and_channel() -> None:
    first = confirmation_messages(confirmation(), HELP)
    again = confirmation_messages(confirmation(), HELP)
    assert [m.delivery_id for m in first] == [m.delivery_id for m in again]
    assert first[0].delivery_id != first[1].delivery_id
    other = confirmation_messages(confirmation(policy_id=uid("other-policy")), HELP)
    assert {m.delivery_id for m in other}.isdisjoint(m.delivery_id for m in first)
    assert first[0].delivery_id == delivery_id(uid("policy"), "sms", CONFIRMATION_TEMPLATE)


def test_bahasa_indonesia_by_default() -> None:
    sms, email = confirmation_messages(confirmation(), HELP)
    assert "Anda terlindungi" in sms.body
    assert "No. peserta" in sms.body
    assert email.subject is not None and "Perlindungan" in email.subject
    assert "Yth." in email.body
    assert "Jaminan Kecelakaan Kerja" in email.body
    for message in (sms, email):
        assert "you are covered" not in message.body.lower()


def test_english_when_asked() -> None:
    sms, email = confirmation_messages(confirmation(language="en"), HELP)
    assert "you are covered" in sms.body
    assert "Participant no." in sms.body
    assert email.subject is not None and "Your BPJS Ketenagakerjaan cover" in email.subject
    assert "Dear Siti Aminah" in email.body
    for message in (sms, email):
        assert "Anda" not in message.body


def test_an_unknown_language_falls_back_to_bahasa_indonesia() -> None:
    sms, email = confirmation_messages(confirmation(language="jv"), HELP)
    assert "Anda terlindungi" in sms.body
    assert "Yth." in email.body


@pytest.mark.parametrize("language", ["id", "en"])
def test_the_full_nik_never_appears(language: str) -> None:
    for message in confirmation_messages(confirmation(language=language), HELP):
        text = f"{message.subject or ''}\n{message.body}"
        assert FULL_NIK not in text
        assert FULL_NIK[:12] not in text
        assert FULL_NIK[-4:] in text


@pytest.mark.parametrize("language", ["id", "en"])
def test_participant_number_and_help_line_appear(language: str) -> None:
    for message in confirmation_messages(confirmation(language=language), HELP):
        assert NUMBER in message.body
        assert HELP in message.body
    _, email = confirmation_messages(confirmation(language=language), HELP)
    assert email.subject is not None and NUMBER in email.subject


@pytest.mark.parametrize("language", ["id", "en"])
def test_email_names_the_payer_and_benefits(language: str) -> None:
    _, email = confirmation_messages(confirmation(language=language), HELP)
    assert "Pemerintah Kota Pasuruan" in email.body
    assert "42" in email.body  # JKM Rp 42,000,000
    assert "22-05-2025" in email.body


def sms_body(**overrides: Any) -> str:
    [sms, *_] = confirmation_messages(confirmation(**overrides), HELP)
    assert sms.channel == "sms"
    return sms.body


@pytest.mark.parametrize("language", ["id", "en"])
@pytest.mark.parametrize(
    "full_name",
    ["Siti Aminah", LONG_MULTI_WORD_NAME, "Wulandari" * 10],
    ids=["short", "long-multi-word", "90-char-word"],
)
def test_sms_fits_two_gsm7_segments(language: str, full_name: str) -> None:
    body = sms_body(full_name=full_name, language=language)
    assert len(body) <= SMS_TWO_SEGMENTS
    assert body.isascii()


@pytest.mark.parametrize("language", ["id", "en"])
def test_sms_fits_two_segments_for_the_longest_single_word_name(language: str) -> None:
    """full_name may be 200 characters without a space (the contract allows it); the
    SMS quotes the whole first word, so it grows past two segments."""
    body = sms_body(full_name="A" * 200, language=language)
    assert len(body) <= SMS_TWO_SEGMENTS


@pytest.mark.parametrize("language", ["id", "en"])
def test_sms_stays_gsm7_for_a_name_with_a_typographic_apostrophe(language: str) -> None:
    """Names like Nur'aini are often typed with U+2019; one such character turns the
    whole SMS into UCS-2 (70 characters a segment), i.e. 3 segments instead of 2."""
    body = sms_body(full_name="Nur\u2019aini Rahmawati", language=language)
    assert body.isascii()
    assert len(body) <= SMS_TWO_SEGMENTS


# --- after a send ------------------------------------------------------------------


POLICY = RetryPolicy(max_attempts=5, base_s=2.0, max_s=60.0)


def rng() -> random.Random:
    return random.Random(1234)


def test_ok_is_sent_with_an_event() -> None:
    delivery = claimed(attempts=2)
    update, event = after_send(
        delivery, SendResult(ok=True, provider_message_id="m-1"), POLICY, rng()
    )
    assert update.status == "sent"
    assert update.provider_message_id == "m-1"
    assert update.error is None
    assert isinstance(event, NotificationSent)
    assert event.delivery_id == delivery.delivery_id
    assert event.worker_id == delivery.worker_id
    assert event.channel == "sms"
    assert event.attempts == 2
    assert event.provider_message_id == "m-1"
    assert event.recipient_masked == mask_recipient(delivery.recipient)
    assert "+6281234567890" not in event.model_dump_json()
    assert event.correlation_id == "req-1"
    assert event.causation_id == uid("policy-activated")


def test_sent_event_id_is_deterministic() -> None:
    ok = SendResult(ok=True)
    _, first = after_send(claimed(), ok, POLICY, rng())
    _, again = after_send(claimed(), ok, POLICY, rng())
    assert first is not None and again is not None
    assert first.event_id == again.event_id


def test_permanent_failure_fails_at_once() -> None:
    result = SendResult(ok=False, error="invalid number", permanent=True)
    update, event = after_send(claimed(attempts=1), result, POLICY, rng())
    assert update.status == "failed"
    assert update.error == "invalid number"
    assert isinstance(event, NotificationFailed)
    assert event.permanent is True
    assert event.reason == "invalid number"
    assert event.attempts == 1


@pytest.mark.parametrize("attempts", [1, 2, 4])
def test_transient_failure_below_the_bound_retries_without_an_event(attempts: int) -> None:
    result = SendResult(ok=False, error="503", retry_after_s=7.5)
    update, event = after_send(claimed(attempts=attempts), result, POLICY, rng())
    assert update.status == "retrying"
    assert update.error == "503"
    assert update.retry_in_s >= 7.5
    assert event is None


def test_transient_failure_at_the_bound_fails() -> None:
    result = SendResult(ok=False, error="SMS gateway answered 503")
    update, event = after_send(claimed(attempts=POLICY.max_attempts), result, POLICY, rng())
    assert update.status == "failed"
    assert isinstance(event, NotificationFailed)
    assert event.permanent is False
    assert event.attempts == POLICY.max_attempts
    assert event.reason == "SMS gateway answered 503"


def test_an_unknown_outcome_is_retried_as_uncertain() -> None:
    result = SendResult(ok=False, error="no answer", unknown=True)
    update, event = after_send(claimed(attempts=2), result, POLICY, rng())
    assert (update.status, update.uncertain, event) == ("retrying", True, None)
    assert update.error == "outcome unknown, will retry with the same key: no answer"


def test_an_unknown_outcome_at_the_bound_fails_and_stays_uncertain() -> None:
    result = SendResult(ok=False, error="no answer", unknown=True)
    update, event = after_send(claimed(attempts=POLICY.max_attempts), result, POLICY, rng())
    assert (update.status, update.uncertain) == ("failed", True)
    assert isinstance(event, NotificationFailed) and "outcome unknown" in event.reason


def test_a_known_failure_is_not_uncertain() -> None:
    update, _ = after_send(claimed(), SendResult(ok=False, error="503"), POLICY, rng())
    assert update.uncertain is False


def test_failure_without_an_error_text_still_says_something() -> None:
    update, event = after_send(claimed(), SendResult(ok=False, permanent=True), POLICY, rng())
    assert update.error
    assert isinstance(event, NotificationFailed)
    assert event.reason


@given(
    attempt=st.integers(1, 64),
    seed=st.integers(0, 2**32),
    retry_after=st.one_of(st.none(), st.floats(0, 60.0)),
)
def test_retry_delays_are_bounded_by_max_s(
    attempt: int, seed: int, retry_after: float | None
) -> None:
    delay = POLICY.delay_s(attempt, retry_after, random.Random(seed))
    assert 0 <= delay <= POLICY.max_s
    if retry_after is not None:
        assert delay >= retry_after


@given(attempt=st.integers(1, 64), seed=st.integers(0, 2**32), retry_after=st.floats(0, 1e5))
def test_retry_after_is_a_floor(attempt: int, seed: int, retry_after: float) -> None:
    assert POLICY.delay_s(attempt, retry_after, random.Random(seed)) >= retry_after


def test_backoff_grows_then_stops_at_max_s() -> None:
    policy = RetryPolicy(max_attempts=20, base_s=1.0, max_s=30.0)
    source = random.Random(7)
    early = max(policy.delay_s(1, None, source) for _ in range(200))
    late = max(policy.delay_s(15, None, source) for _ in range(200))
    assert early <= 1.0
    assert 20.0 < late <= 30.0


def test_delay_does_not_overflow_for_large_attempt_numbers() -> None:
    """NotificationSettings.max_attempts has no upper bound; past attempt ~1025,
    ``base_s * 2 ** (attempt - 1)`` no longer fits a float."""
    policy = RetryPolicy(max_attempts=5000, base_s=2.0, max_s=300.0)
    assert 0 <= policy.delay_s(1100, None, rng()) <= 300.0


# --- masking -----------------------------------------------------------------------


@pytest.mark.parametrize("phone", ["+6281234567890", "+628123456789", "+62811234567"])
def test_mask_recipient_hides_most_of_a_phone(phone: str) -> None:
    masked = mask_recipient(phone)
    assert len(masked) == len(phone)
    assert masked.startswith("+62")
    national = phone[3:]
    hidden = masked[3:].count("*")
    assert hidden >= len(national) // 2
    assert national not in masked
    assert phone[5:-3] not in masked


@pytest.mark.parametrize(
    ("email", "masked"),
    [("siti.aminah@gmail.com", "s***@gmail.com"), ("a@example.co.id", "a***@example.co.id")],
)
def test_mask_recipient_hides_an_email_local_part(email: str, masked: str) -> None:
    assert mask_recipient(email) == masked


def test_confirmation_is_a_plain_value() -> None:
    first = confirmation()
    assert dataclasses.replace(first) == first
    assert isinstance(first.worker_id, uuid.UUID)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        (12345, "12345"),
        ("a\x00b", "a\\x00b"),
        ("452 \udcff busy", "452 \\udcff busy"),
        ("x" * 2000, "x" * 500),
    ],
)
def test_what_a_provider_said_is_kept_as_storable_text(value: object, text: str | None) -> None:
    assert provider_text(value) == text


def test_a_numeric_message_id_from_a_provider_makes_a_valid_event() -> None:
    update, event = after_send(
        claimed(),
        SendResult(ok=True, provider_message_id=987),
        POLICY,
        rng(),  # type: ignore[arg-type]
    )
    assert update.provider_message_id == "987"
    assert isinstance(event, NotificationSent) and event.provider_message_id == "987"


def test_a_provider_error_quoting_the_recipient_is_masked_in_the_row_and_the_event() -> None:
    delivery = claimed(channel="email", recipient="siti.aminah@example.com")
    refusal = SendResult(
        ok=False,
        error="recipient refused: {'siti.aminah@example.com': (550, '5.1.1 "
        "<siti.aminah@example.com> unknown; call +6281234567890')}",
        permanent=True,
    )
    update, event = after_send(delivery, refusal, RetryPolicy(3, 1, 10), random.Random(1))
    assert isinstance(event, NotificationFailed)
    assert "siti.aminah@example.com" not in event.reason and "s***@example.com" in event.reason
    assert "6281234567890" not in event.reason
    assert update.error == event.reason
