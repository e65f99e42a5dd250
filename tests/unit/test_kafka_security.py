"""Kafka client security from the settings, and the ACL commands printed for operators."""

from __future__ import annotations

import contextlib
import io
import shlex
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared import kafka_acls
from shared.errors import StartupError
from shared.kafka_security import PLAINTEXT, KafkaSecurity, tls_context
from shared.settings import ServiceSettings
from shared.topics import ALL_TOPICS


def settings(monkeypatch: pytest.MonkeyPatch, **values: str) -> ServiceSettings:
    for name, value in values.items():
        monkeypatch.setenv(f"PERISAI_{name.upper()}", value)
    return ServiceSettings.load()


def test_plaintext_is_the_default_and_sends_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    security = settings(monkeypatch).kafka_security()
    assert security == PLAINTEXT
    assert security.client_options() == {"security_protocol": "PLAINTEXT"}
    assert security.for_faststream() is None


def test_sasl_ssl_gives_every_client_the_same_tls_and_scram_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    security = settings(
        monkeypatch,
        kafka_security_protocol="SASL_SSL",
        kafka_username="perisai-coverage",
        kafka_password="s3cret",
    ).kafka_security()
    options = security.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "perisai-coverage",
        "s3cret",
    )
    assert options["ssl_context"].check_hostname is True
    from faststream.kafka.security import parse_security

    faststream = parse_security(security.for_faststream())
    assert {k: faststream[k] for k in options} == options
    assert "s3cret" not in repr(security) and "s3cret" not in security.describe()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_username": "u"},
            "needs PERISAI_KAFKA_USERNAME",
        ),
        ({"kafka_username": "u", "kafka_password": "p"}, "sent only over SASL_SSL"),
        ({"kafka_ca_file": "/tmp/ca.pem"}, "need PERISAI_KAFKA_SECURITY_PROTOCOL=SSL"),
        (
            {"kafka_security_protocol": "SSL", "kafka_cert_file": "/tmp/c.pem"},
            "CERT_FILE and PERISAI_KAFKA_KEY_FILE go together",
        ),
        ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "KAFKA_SECURITY_PROTOCOL"),
        (
            {
                "migrate_on_start": "false",
                "migration_database_url": "postgresql://owner:pw@db/perisai",
            },
            "must not hold PERISAI_MIGRATION_DATABASE_URL",
        ),
    ],
)
def test_inconsistent_kafka_settings_fail_at_start_up(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], message: str
) -> None:
    with pytest.raises(StartupError, match=message):
        settings(monkeypatch, **values)


def test_a_missing_tls_file_fails_at_start_up_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="cannot load the Kafka TLS files"):
        tls_context(tmp_path / "absent-ca.pem")


def test_credentials_never_travel_without_tls() -> None:
    with pytest.raises(ValueError, match="only with it"):
        KafkaSecurity("PLAINTEXT", None, "SCRAM-SHA-512", "u", SecretStr("p"))
    with pytest.raises(ValueError, match="needs an SSL context"):
        KafkaSecurity("SASL_SSL", None, "SCRAM-SHA-512", "u", SecretStr("p"))


def test_every_topic_has_a_writer_and_each_consumed_topic_a_reader() -> None:
    acls = kafka_acls.service_acls()
    assert set(kafka_acls.all_topics(acls)) == set(ALL_TOPICS)
    writers = {topic for entry in acls for topic in entry.writes}
    assert writers == set(ALL_TOPICS) - {"enrolment.requested.v1"}  # written upstream
    by_service = {entry.service: entry for entry in acls}
    assert by_service["registration"].reads == ("enrolment.requested.v1",)
    assert "policy.activated.v1" not in by_service["registration"].writes
    assert by_service["coverage"].group_prefix == "coverage."


def test_the_printed_commands_are_the_acls_of_the_services() -> None:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert kafka_acls.main(["--topic-prefix", "prod.", "--principal", "coverage=User:cov"]) == 0
    lines = buffer.getvalue().splitlines()
    acl_lines = [shlex.split(line) for line in lines if line.startswith("kafka-acls.sh")]
    expected = [
        arguments
        for entry in kafka_acls.service_acls("prod.", {"coverage": "User:cov"})
        for arguments in entry.acl_arguments()
    ]
    assert [line[5:] for line in acl_lines] == expected
    assert expected[3][1:3] == ["--allow-principal", "User:cov"]
    topic_lines = [line for line in lines if line.startswith("kafka-topics.sh")]
    assert len(topic_lines) == len(ALL_TOPICS)
    assert all("--topic prod." in line for line in topic_lines)
    assert not any("--replication-factor" in line for line in topic_lines)


def test_the_replication_factor_of_the_topics_can_be_given() -> None:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert kafka_acls.main(["--replication-factor", "3"]) == 0
    topic_lines = [ln for ln in buffer.getvalue().splitlines() if ln.startswith("kafka-topics")]
    assert topic_lines and all(ln.endswith("--replication-factor 3") for ln in topic_lines)


def test_a_principal_for_an_unknown_service_is_refused() -> None:
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        kafka_acls.main(["--principal", "billing=User:x"])
