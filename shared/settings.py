"""Settings every service shares, read once from the environment (prefix ``PERISAI_``).

A bad value fails at start-up with one line per offending variable, never later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import StartupError
from shared.kafka_security import KafkaSecurity, Mechanism, Protocol, security_from

DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:19092"
DEFAULT_DATABASE_URL = "postgresql://perisai:perisai@127.0.0.1:15432/perisai"


class ServiceSettings(BaseSettings):
    """Base of every service's settings class."""

    model_config = SettingsConfigDict(env_prefix="PERISAI_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(
        default=DEFAULT_KAFKA_BOOTSTRAP,
        min_length=1,
        description="Kafka bootstrap servers, host:port[,host:port].",
    )
    kafka_security_protocol: Protocol = Field(
        default="PLAINTEXT",
        description="PLAINTEXT (local only), SSL, or SASL_SSL (TLS plus a SCRAM user).",
    )
    kafka_sasl_mechanism: Mechanism = Field(
        default="SCRAM-SHA-512", description="The SCRAM mechanism of SASL_SSL."
    )
    kafka_username: str | None = Field(
        default=None, min_length=1, description="The service's SCRAM user (SASL_SSL)."
    )
    kafka_password: SecretStr | None = Field(
        default=None, description="The SCRAM user's password (SASL_SSL)."
    )
    kafka_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the authorities that sign the brokers' certificates "
        "(SSL, SASL_SSL); unset: the system's authorities.",
    )
    kafka_cert_file: Path | None = Field(
        default=None, description="PEM client certificate, for brokers that ask for one."
    )
    kafka_key_file: Path | None = Field(
        default=None, description="PEM private key of kafka_cert_file (unencrypted)."
    )
    database_url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        description="PostgreSQL URL: postgresql://user:password@host:port/database, with "
        "libpq's TLS parameters if wanted (?sslmode=verify-full&sslrootcert=/path/ca.pem).",
    )
    migration_database_url: SecretStr | None = Field(
        default=None,
        description="The schema owner's URL, for migrations (then the grants of the "
        "runtime role, database_url's user). Unset: database_url's user migrates and "
        "owns the schema (one role).",
    )
    migrate_on_start: bool = Field(
        default=True,
        description="Apply pending migrations at start. False: a separate job "
        "(python -m services.<name> migrate) applies them, and the service only checks, "
        "as its runtime role, that none is pending; then it needs no "
        "migration_database_url.",
    )
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prepended to every topic name, so several environments (or test "
        "runs) can share one Kafka cluster without seeing each other's messages.",
    )
    db_pool_min_size: int = Field(default=2, ge=1)
    db_pool_max_size: int = Field(default=10, ge=1)
    consumer_batch_size: int = Field(
        default=2000, ge=1, le=50_000, description="Most records one consumer batch takes."
    )
    relay_batch_size: int = Field(
        default=2000, ge=1, le=50_000, description="Most outbox rows one relay round publishes."
    )
    relay_poll_interval_s: float = Field(
        default=0.5,
        gt=0,
        description="How often the relay looks at the outbox when no NOTIFY woke it.",
    )
    startup_timeout_s: float = Field(
        default=15.0, gt=0, description="How long to wait for Kafka and PostgreSQL at start."
    )
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    http_port: int = Field(default=8000, ge=0, le=65535, description="HTTP port.")
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    max_body_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="Largest request body the HTTP API reads (413 beyond, before parsing); "
        "the CSV upload has its own limit.",
    )
    rate_limit_per_s: float = Field(
        default=50.0, gt=0, description="Requests a second one API key may make, on average."
    )
    rate_limit_burst: int = Field(
        default=200, ge=1, description="Requests one API key may make at once, above the rate."
    )

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("must start with postgresql:// (the value is not shown)")
        return value

    @model_validator(mode="after")
    def _kafka_security_consistent(self) -> Self:
        tls = self.kafka_security_protocol != "PLAINTEXT"
        sasl = self.kafka_security_protocol == "SASL_SSL"
        has_credentials = self.kafka_username is not None or self.kafka_password is not None
        if sasl and (self.kafka_username is None or self.kafka_password is None):
            raise ValueError(
                "PERISAI_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs PERISAI_KAFKA_USERNAME "
                "and PERISAI_KAFKA_PASSWORD"
            )
        if has_credentials and not sasl:
            raise ValueError(
                "PERISAI_KAFKA_USERNAME/PASSWORD are sent only over SASL_SSL; set "
                "PERISAI_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
            )
        tls_files = (self.kafka_ca_file, self.kafka_cert_file, self.kafka_key_file)
        if not tls and any(f is not None for f in tls_files):
            raise ValueError(
                "PERISAI_KAFKA_CA_FILE/CERT_FILE/KEY_FILE need "
                "PERISAI_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL"
            )
        if (self.kafka_cert_file is None) != (self.kafka_key_file is None):
            raise ValueError("PERISAI_KAFKA_CERT_FILE and PERISAI_KAFKA_KEY_FILE go together")
        return self

    @model_validator(mode="after")
    def _owner_url_only_to_migrate(self) -> Self:
        if not self.migrate_on_start and self.migration_database_url is not None:
            raise ValueError(
                "PERISAI_MIGRATE_ON_START=false: the service does not migrate, so it must not "
                "hold PERISAI_MIGRATION_DATABASE_URL (give it to the migrate job only)"
            )
        return self

    def kafka_security(self) -> KafkaSecurity:
        """How this service's Kafka clients connect (StartupError: a TLS file is unreadable)."""
        return security_from(
            self.kafka_security_protocol,
            mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_username,
            password=self.kafka_password,
            ca_file=self.kafka_ca_file,
            cert_file=self.kafka_cert_file,
            key_file=self.kafka_key_file,
        )

    @classmethod
    def load(cls) -> Self:
        """Read the environment, or raise StartupError naming every bad variable."""
        try:
            return cls()
        except ValidationError as error:
            prefix = cls.model_config.get("env_prefix", "")
            problems = "; ".join(
                f"{prefix}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                if e["loc"]
                else e["msg"].removeprefix("Value error, ")
                for e in error.errors()
            )
            raise StartupError(f"invalid settings: {problems}") from None
