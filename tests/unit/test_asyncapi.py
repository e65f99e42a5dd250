"""The committed AsyncAPI documents (docs/asyncapi) match the code, and explain every
field they carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shared import asyncapi, topics
from shared.events import EVENT_TYPES
from tests.factories import SAMPLES

SERVICE_NAMES = [service.name for service in asyncapi.SERVICES]
EXPECTED_TOPICS = {
    "registration": (
        {topics.ENROLMENT_REQUESTED},
        {
            topics.WORKER_ENROLLED,
            topics.ENROLMENT_REJECTED,
            topics.WORKER_DETAILS_CHANGED,
            topics.WORKER_DEREGISTERED,
        },
    ),
    "coverage": (
        {topics.WORKER_ENROLLED, topics.WORKER_DEREGISTERED},
        {
            topics.POLICY_ACTIVATED,
            topics.PREMIUM_POSTED,
            topics.PREMIUM_REVERSED,
            topics.COVERAGE_REFUSED,
            topics.INVOICE_ISSUED,
            topics.INVOICE_PAID,
            topics.INVOICE_VOIDED,
            topics.POLICY_LAPSED,
            topics.POLICY_REINSTATED,
            topics.POLICY_ENDED,
        },
    ),
    "notifications": (
        {topics.WORKER_ENROLLED, topics.POLICY_ACTIVATED, topics.WORKER_DETAILS_CHANGED},
        {topics.NOTIFICATION_SENT, topics.NOTIFICATION_FAILED},
    ),
}
SCHEMA_BY_TOPIC = {event.TOPIC: event.__name__ for event in EVENT_TYPES}


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return asyncapi.build_documents()


@pytest.fixture(scope="module")
def documents(generated: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {name: yaml.safe_load(text) for name, text in generated.items()}


def resolve(doc: dict[str, Any], ref: dict[str, Any]) -> Any:
    node: Any = doc
    for part in ref["$ref"].removeprefix("#/").split("/"):
        node = node[part]
    return node


def operation_messages(doc: dict[str, Any], action: str) -> dict[str, dict[str, Any]]:
    """address -> component message, for every operation with this action."""
    found: dict[str, dict[str, Any]] = {}
    for operation in doc["operations"].values():
        if operation["action"] != action:
            continue
        channel = resolve(doc, operation["channel"])
        for ref in operation["messages"]:
            found[channel["address"]] = resolve(doc, resolve(doc, ref))
    return found


def test_one_document_per_service(generated: dict[str, str]) -> None:
    assert sorted(generated) == sorted(EXPECTED_TOPICS)


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_committed_document_is_up_to_date(name: str, generated: dict[str, str]) -> None:
    path = asyncapi.document_path(name)
    assert path.is_file(), f"{path} is missing: run python -m shared.asyncapi"
    assert path.read_text(encoding="utf-8") == generated[name], (
        f"{path} is out of date: run python -m shared.asyncapi"
    )


def test_generation_is_deterministic(generated: dict[str, str]) -> None:
    assert asyncapi.build_documents() == generated


def test_generation_ignores_the_environment(
    generated: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERISAI_TOPIC_PREFIX", "someone-else.")
    monkeypatch.setenv("PERISAI_KAFKA_BOOTSTRAP", "kafka.example:9092")
    assert asyncapi.build_documents() == generated


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_subscribers_and_publishers(name: str, documents: dict[str, dict[str, Any]]) -> None:
    doc = documents[name]
    consumed, produced = EXPECTED_TOPICS[name]
    assert doc["asyncapi"] == asyncapi.ASYNCAPI_VERSION
    assert set(operation_messages(doc, "receive")) == consumed
    dead_letters = {topics.dead_letter_topic(topic) for topic in consumed}
    assert set(operation_messages(doc, "send")) == produced | dead_letters


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_message_carries_its_event_schema(
    name: str, documents: dict[str, dict[str, Any]]
) -> None:
    doc = documents[name]
    for action in ("receive", "send"):
        for address, message in operation_messages(doc, action).items():
            if address.endswith(topics.DEAD_LETTER_SUFFIX):
                continue
            schema = resolve(doc, message["payload"])
            assert schema["title"] == SCHEMA_BY_TOPIC[address], (action, address)
            assert schema.get("description"), (action, address)
            # The document says how each topic is read: the upstream request strictly
            # (unknown fields refused), events between services tolerantly.
            strict = address == topics.ENROLMENT_REQUESTED
            assert schema.get("additionalProperties", True) is not strict, address
            assert message["contentType"] == "application/json"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_channels_are_described(name: str, documents: dict[str, dict[str, Any]]) -> None:
    for key, channel in documents[name]["channels"].items():
        assert channel.get("description"), key


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_no_empty_payload_is_left(name: str, generated: dict[str, str]) -> None:
    assert asyncapi.EMPTY_PAYLOAD not in generated[name]


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_payload_field_has_a_description(
    name: str, documents: dict[str, dict[str, Any]]
) -> None:
    """Every property of every schema a message refers to, nested ones included."""
    doc = documents[name]
    undocumented = [
        f"{schema_name}.{field}"
        for schema_name, schema in doc["components"]["schemas"].items()
        for field, prop in schema.get("properties", {}).items()
        if not str(prop.get("description", "")).strip()
    ]
    assert undocumented == []


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_headers_and_key_match_what_events_carry(
    name: str, documents: dict[str, dict[str, Any]]
) -> None:
    doc = documents[name]
    events = {event.__name__: event for event in EVENT_TYPES}
    for message in doc["components"]["messages"].values():
        if message["name"] == "dead-letter":
            assert set(message["headers"]["properties"]) == set(asyncapi.DEAD_LETTER_HEADERS)
            continue
        event_type = events[resolve(doc, message["payload"])["title"]]
        sample = SAMPLES[event_type]()
        headers = message["headers"]
        assert set(headers["properties"]) == {key for key, _ in sample.kafka_headers()}
        for key, value in sample.kafka_headers():
            if "const" in headers["properties"][key]:
                assert headers["properties"][key]["const"] == value.decode()
        assert event_type.KEY_FIELD in message["bindings"]["kafka"]["key"]["description"]
        assert message["name"] == sample.event_type  # type: ignore[attr-defined]


def test_check_names_stale_files_and_write_fixes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert asyncapi.main(["--check", "--out", str(tmp_path)]) == 1
    complaint = capsys.readouterr().err
    for name in SERVICE_NAMES:
        assert f"{name}.yaml" in complaint
    assert asyncapi.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.yaml" for n in SERVICE_NAMES)
    assert asyncapi.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "coverage.yaml").write_text("stale\n", encoding="utf-8")
    assert asyncapi.main(["--check", "--out", str(tmp_path)]) == 1
    assert "coverage.yaml" in capsys.readouterr().err
