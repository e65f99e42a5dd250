"""Bad settings and unreachable servers end a service at start-up with one line on
stderr that says what is wrong (exit code 2), not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import infra
from devtools.serving import free_port

pytestmark = pytest.mark.integration


def start_failing(env: dict[str, str]) -> tuple[int, list[str]]:
    result = subprocess.run(
        [sys.executable, "-m", "services.coverage"],
        env={**os.environ, "PERISAI_HTTP_PORT": str(free_port()), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, [line for line in result.stderr.splitlines() if line.strip()]


def test_unreachable_database_is_one_clear_line(stack: None) -> None:
    code, lines = start_failing(
        {
            "PERISAI_KAFKA_BOOTSTRAP": infra.kafka_bootstrap(),
            "PERISAI_DATABASE_URL": "postgresql://perisai:perisai@127.0.0.1:1/perisai",
            "PERISAI_STARTUP_TIMEOUT_S": "5",
        }
    )
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("perisai-coverage: cannot connect to PostgreSQL at ")
    assert "perisai@127.0.0.1:1/perisai" in lines[0] and "perisai:perisai@" not in lines[0]


def test_missing_database_is_one_clear_line(stack: None) -> None:
    code, lines = start_failing(
        {
            "PERISAI_KAFKA_BOOTSTRAP": infra.kafka_bootstrap(),
            "PERISAI_DATABASE_URL": infra.postgres_dsn(database="no_such_database"),
        }
    )
    assert code == 2
    assert len(lines) == 1, lines
    assert "no_such_database" in lines[0] and "does not exist" in lines[0]


def test_unreachable_broker_is_one_clear_line(stack: None) -> None:
    code, lines = start_failing(
        {
            "PERISAI_KAFKA_BOOTSTRAP": "127.0.0.1:1",
            "PERISAI_DATABASE_URL": infra.postgres_dsn(),
            "PERISAI_STARTUP_TIMEOUT_S": "3",
        }
    )
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("perisai-coverage: cannot reach the Kafka broker at 127.0.0.1:1")


def test_invalid_setting_names_the_variable() -> None:
    code, lines = start_failing({"PERISAI_HTTP_PORT": "not-a-port"})
    assert code == 2
    assert len(lines) == 1, lines
    assert "invalid settings" in lines[0] and "PERISAI_HTTP_PORT" in lines[0]
