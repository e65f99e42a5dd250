"""The message contract (shared.events), topic names (shared.topics) and the settings
loader (shared.settings)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from shared import topics
from shared.errors import StartupError
from shared.events import (
    EVENT_TYPES,
    EnrolmentRejected,
    EnrolmentRequested,
    Event,
    PremiumPosted,
    RejectionReason,
    RequestedWorker,
    derive_event_id,
)
from shared.settings import ServiceSettings
from tests.factories import SAMPLES, uid

EVENT_IDS = [t.__name__ for t in EVENT_TYPES]
UPSTREAM: tuple[type[BaseModel], ...] = (EnrolmentRequested,)
"""Written by systems outside Perisai from what people typed: read strictly."""
ALL_MODELS: tuple[type[BaseModel], ...] = (*EVENT_TYPES, RequestedWorker, RejectionReason)


def sample(event_type: type[Event], **overrides: Any) -> Event:
    return SAMPLES[event_type](**overrides)


def test_every_event_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=EVENT_IDS)
class TestEveryEvent:
    def test_json_round_trip_equals_original(self, event_type: type[Event]) -> None:
        event = sample(event_type)
        assert event_type.model_validate_json(event.model_dump_json()) == event

    def test_json_round_trip_of_the_outbox_bytes(self, event_type: type[Event]) -> None:
        event = sample(event_type)
        wire = event.model_dump_json().encode()
        assert event_type.model_validate_json(wire) == event

    def test_a_field_from_a_newer_producer_is_ignored_or_refused_by_rule(
        self, event_type: type[Event]
    ) -> None:
        """Internal events: an old consumer reads a newer producer's event and ignores
        the field it does not know. The upstream request, typed by people: refused."""
        event = sample(event_type)
        data = json.loads(event.model_dump_json())
        data["added_in_a_later_release"] = {"any": ["shape", 1]}
        wire = json.dumps(data)
        if event_type in UPSTREAM:
            with pytest.raises(ValidationError, match=r"extra_forbidden|Extra inputs"):
                event_type.model_validate_json(wire)
        else:
            assert event_type.model_validate_json(wire) == event

    def test_events_are_frozen(self, event_type: type[Event]) -> None:
        event = sample(event_type)
        with pytest.raises(ValidationError, match="frozen"):
            event.correlation_id = "changed"  # type: ignore[misc]

    def test_schema_version_is_1_and_fixed(self, event_type: type[Event]) -> None:
        event = sample(event_type)
        assert event.schema_version == 1  # type: ignore[attr-defined]
        assert json.loads(event.model_dump_json())["schema_version"] == 1
        data = json.loads(event.model_dump_json())
        data["schema_version"] = 2
        with pytest.raises(ValidationError):
            event_type.model_validate(data)

    def test_event_type_is_a_fixed_literal(self, event_type: type[Event]) -> None:
        event = sample(event_type)
        expected = event_type.model_fields["event_type"].default
        assert event.event_type == expected  # type: ignore[attr-defined]
        data = json.loads(event.model_dump_json())
        assert data["event_type"] == expected
        data["event_type"] = "something.else"
        with pytest.raises(ValidationError):
            event_type.model_validate(data)

    def test_event_type_names_the_topic(self, event_type: type[Event]) -> None:
        event_name = event_type.model_fields["event_type"].default
        version = event_type.model_fields["schema_version"].default
        assert f"{event_name}.v{version}" == event_type.TOPIC

    def test_kafka_key_is_the_key_field(self, event_type: type[Event]) -> None:
        event = sample(event_type)
        assert event_type.KEY_FIELD in {"worker_id", "request_id", "agreement_code"}
        assert event.kafka_key() == str(getattr(event, event_type.KEY_FIELD)).encode()

    def test_kafka_headers(self, event_type: type[Event]) -> None:
        event = sample(event_type)
        headers = dict(event.kafka_headers())
        assert headers["event_type"] == event.event_type.encode()  # type: ignore[attr-defined]
        assert headers["schema_version"] == b"1"
        assert headers["correlation_id"] == event.correlation_id.encode()
        assert headers["content-type"] == b"application/json"
        assert all(isinstance(value, bytes) for value in headers.values())

    def test_topic_is_a_declared_versioned_topic(self, event_type: type[Event]) -> None:
        assert event_type.TOPIC in topics.EVENT_TOPICS
        assert event_type.TOPIC.endswith(".v1")

    def test_occurred_at_must_carry_a_timezone(self, event_type: type[Event]) -> None:
        data = json.loads(sample(event_type).model_dump_json())
        data["occurred_at"] = "2026-06-15T03:00:00"
        with pytest.raises(ValidationError):
            event_type.model_validate(data)


def test_worker_events_key_on_the_worker_requests_on_the_request_money_on_the_agreement() -> None:
    for event_type in EVENT_TYPES:
        event = sample(event_type)
        if event_type.KEY_FIELD == "worker_id":
            assert event.kafka_key() == str(uid("worker")).encode()
        elif event_type.KEY_FIELD == "agreement_code":
            assert event.kafka_key() == b"KOTA-PASURUAN-DBHCHT"
        else:
            assert event.kafka_key() == event.request_id.encode()  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", ALL_MODELS, ids=[m.__name__ for m in ALL_MODELS])
def test_every_field_has_a_description(model: type[BaseModel]) -> None:
    """The AsyncAPI document is built from these descriptions: none may be missing."""
    missing = [name for name, info in model.model_fields.items() if not info.description]
    properties = model.model_json_schema()["properties"]
    undocumented = [
        name for name, schema in properties.items() if not str(schema.get("description", ""))
    ]
    assert missing == [], f"{model.__name__} fields without a description: {missing}"
    assert undocumented == [], f"{model.__name__} schema properties: {undocumented}"


@pytest.mark.parametrize("model", ALL_MODELS, ids=[m.__name__ for m in ALL_MODELS])
def test_internal_events_read_tolerantly_and_what_people_type_strictly(
    model: type[BaseModel],
) -> None:
    strict = model in UPSTREAM or model is RequestedWorker
    assert model.model_config.get("extra") == ("forbid" if strict else "ignore")
    assert model.model_config.get("frozen") is True
    assert model.__doc__ and model.__doc__.strip()


def test_a_nested_reason_from_a_newer_producer_is_read_too() -> None:
    data = json.loads(sample(EnrolmentRejected).model_dump_json())
    data["reasons"][0]["message_id"] = "nik.format"
    assert EnrolmentRejected.model_validate(data) == sample(EnrolmentRejected)


def test_nested_models_reject_unknown_fields() -> None:
    data = json.loads(sample(EnrolmentRequested).model_dump_json())
    data["worker"]["nickname"] = "Ti"
    with pytest.raises(ValidationError, match=r"worker\.nickname"):
        EnrolmentRequested.model_validate(data)


def test_rejected_event_needs_at_least_one_reason() -> None:
    with pytest.raises(ValidationError):
        sample(EnrolmentRejected, reasons=())


def test_money_is_never_negative() -> None:
    with pytest.raises(ValidationError):
        sample(PremiumPosted, amount=-1)


def test_derive_event_id_is_deterministic_and_depends_on_the_cause() -> None:
    first = derive_event_id("worker.enrolled", "req-1")
    assert first == derive_event_id("worker.enrolled", "req-1")
    assert first != derive_event_id("worker.enrolled", "req-2")
    assert first != derive_event_id("enrolment.rejected", "req-1")
    assert derive_event_id("dead-letter", "t", 0, 5) != derive_event_id("dead-letter", "t", 0, 6)
    assert first.version == 5


def test_topic_names_are_unique_and_versioned() -> None:
    assert len(set(topics.EVENT_TOPICS)) == len(topics.EVENT_TOPICS)
    assert {t.TOPIC for t in EVENT_TYPES} == set(topics.EVENT_TOPICS)
    for topic in topics.EVENT_TOPICS:
        assert topic.endswith(".v1")
    assert set(topics.CONSUMED_TOPICS) <= set(topics.EVENT_TOPICS)


def test_dead_letter_topic_appends_dlq() -> None:
    assert topics.dead_letter_topic(topics.WORKER_ENROLLED) == "worker.enrolled.v1.dlq"
    for topic in topics.CONSUMED_TOPICS:
        assert topics.dead_letter_topic(topic) in topics.ALL_TOPICS


class TestSettings:
    def test_defaults_load(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("PERISAI_DATABASE_URL", "PERISAI_DB_POOL_MIN_SIZE"):
            monkeypatch.delenv(name, raising=False)
        settings = ServiceSettings.load()
        assert settings.database_url.get_secret_value().startswith("postgresql://")

    def test_bad_values_raise_one_line_naming_every_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PERISAI_DATABASE_URL", "mysql://x")
        monkeypatch.setenv("PERISAI_DB_POOL_MIN_SIZE", "zero")
        with pytest.raises(StartupError) as caught:
            ServiceSettings.load()
        message = str(caught.value)
        assert "\n" not in message
        assert "PERISAI_DATABASE_URL" in message
        assert "PERISAI_DB_POOL_MIN_SIZE" in message
        assert caught.value.__cause__ is None

    def test_one_bad_value_names_only_that_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("PERISAI_DATABASE_URL", raising=False)
        monkeypatch.setenv("PERISAI_DB_POOL_MIN_SIZE", "0")
        with pytest.raises(StartupError, match="PERISAI_DB_POOL_MIN_SIZE") as caught:
            ServiceSettings.load()
        assert "PERISAI_DATABASE_URL" not in str(caught.value)

    def test_secrets_are_never_shown(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PERISAI_DATABASE_URL", "postgresql://svc:hunter2@db:5432/perisai")
        settings = ServiceSettings.load()
        assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
        monkeypatch.setenv("PERISAI_DATABASE_URL", "mysql://svc:hunter2@db/perisai")
        with pytest.raises(StartupError) as caught:
            ServiceSettings.load()
        assert "PERISAI_DATABASE_URL" in str(caught.value) and "hunter2" not in str(caught.value)

    def test_settings_are_frozen(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("PERISAI_DATABASE_URL", raising=False)
        monkeypatch.delenv("PERISAI_DB_POOL_MIN_SIZE", raising=False)
        settings = ServiceSettings.load()
        with pytest.raises(ValidationError):
            settings.database_url = "postgresql://other"  # type: ignore[misc]
