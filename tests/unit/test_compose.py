"""docker-compose.yml cannot run here (no Docker engine); these tests keep it parsing
and consistent with the local setup: same topology, same settings names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.coverage.settings import CoverageSettings
from services.notifications.settings import NotificationSettings
from services.registration.settings import RegistrationSettings
from shared.settings import ServiceSettings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
SETTINGS: dict[str, type[ServiceSettings]] = {
    "registration": RegistrationSettings,
    "coverage": CoverageSettings,
    "notifications": NotificationSettings,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_has_the_whole_topology(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "kafka",
        "postgres",
        "registration",
        "coverage",
        "notifications",
        "sms-gateway",
        "smtp-server",
    }
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:4.")
    assert compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name, service in compose["services"].items():
        assert "healthcheck" in service, f"{name} has no healthcheck"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_services_wait_for_healthy_dependencies(compose: dict[str, Any], name: str) -> None:
    depends = compose["services"][name]["depends_on"]
    assert depends["kafka"] == {"condition": "service_healthy"}
    assert depends["postgres"] == {"condition": "service_healthy"}
    assert compose["services"][name]["command"] == ["python", "-m", f"services.{name}"]


def test_notifications_waits_for_the_stand_ins(compose: dict[str, Any]) -> None:
    depends = compose["services"]["notifications"]["depends_on"]
    assert depends["sms-gateway"] == {"condition": "service_healthy"}
    assert depends["smtp-server"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_setting_in_compose_exists_in_the_code(compose: dict[str, Any], name: str) -> None:
    known = {f"PERISAI_{field.upper()}" for field in SETTINGS[name].model_fields}
    environment = compose["services"][name]["environment"]
    unknown = {key for key in environment if key.startswith("PERISAI_")} - known
    assert not unknown, f"{name}: compose sets variables its settings do not read: {unknown}"
    settings = SETTINGS[name](
        **{k.removeprefix("PERISAI_").lower(): v for k, v in environment.items()}
    )
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.database_url.get_secret_value().endswith("@postgres:5432/perisai")
