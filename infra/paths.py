"""Where the local stack keeps its state and which ports it listens on.

Everything is read from the environment each time :meth:`Settings.from_env` is called,
so a test that sets ``PERISAI_*`` variables before calling the API sees them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError

HOST = "127.0.0.1"

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
KAFKA_RESOURCES = PACKAGE_DIR / "kafka"
"""The pom.xml and log4j2 config shipped with this package (not the runtime state)."""

DEFAULT_KAFKA_PORT = 19092
DEFAULT_KAFKA_CONTROLLER_PORT = 19093
DEFAULT_POSTGRES_PORT = 15432


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise InfraError(f"{name} must be a port number between 1 and 65535, got {raw!r}")
    return port


@dataclass(frozen=True)
class Settings:
    """Ports and state directories for one checkout of the repo."""

    state_dir: Path
    kafka_port: int
    kafka_controller_port: int
    postgres_port: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        state = env.get("PERISAI_INFRA_DIR", "").strip()
        settings = cls(
            state_dir=Path(state).expanduser().absolute() if state else REPO_ROOT / ".infra",
            kafka_port=_port(env, "PERISAI_KAFKA_PORT", DEFAULT_KAFKA_PORT),
            kafka_controller_port=_port(
                env, "PERISAI_KAFKA_CONTROLLER_PORT", DEFAULT_KAFKA_CONTROLLER_PORT
            ),
            postgres_port=_port(env, "PERISAI_POSTGRES_PORT", DEFAULT_POSTGRES_PORT),
        )
        ports = [settings.kafka_port, settings.kafka_controller_port, settings.postgres_port]
        if len(set(ports)) != len(ports):
            raise InfraError(
                "PERISAI_KAFKA_PORT, PERISAI_KAFKA_CONTROLLER_PORT and PERISAI_POSTGRES_PORT "
                f"must all differ, got {ports}"
            )
        return settings

    @property
    def lock_file(self) -> Path:
        return self.state_dir / ".lock"

    # Kafka ------------------------------------------------------------------------------
    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def kafka_libs(self) -> Path:
        return self.kafka_dir / "libs"

    @property
    def kafka_data(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def kafka_logs(self) -> Path:
        return self.kafka_dir / "logs"

    @property
    def kafka_log_file(self) -> Path:
        return self.kafka_logs / "server.log"

    @property
    def kafka_stdout_file(self) -> Path:
        return self.kafka_logs / "stdout.log"

    @property
    def kafka_config(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def kafka_pid_file(self) -> Path:
        return self.kafka_dir / "kafka.pid"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{HOST}:{self.kafka_port}"

    # PostgreSQL -------------------------------------------------------------------------
    @property
    def postgres_dir(self) -> Path:
        """``.infra/postgres``; may be a symlink to /var/tmp (see :mod:`infra.postgres_server`)."""
        return self.state_dir / "postgres"
