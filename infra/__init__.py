"""Local infrastructure for Perisai without Docker: a Kafka 4.1 broker and PostgreSQL 15.

Command line: ``python -m infra up|down|status [kafka|postgres]``. The same operations are
available from Python (for pytest fixtures and scripts) through the names exported here.
"""

from infra.errors import InfraError
from infra.stack import (
    admin_dsn,
    create_database,
    create_database_async,
    down,
    drop_database,
    drop_database_async,
    kafka_bootstrap,
    kafka_log_file,
    kafka_tool_command,
    postgres_dsn,
    postgres_log_file,
    runtime_dsn,
    status,
    up,
)

__all__ = [
    "InfraError",
    "admin_dsn",
    "create_database",
    "create_database_async",
    "down",
    "drop_database",
    "drop_database_async",
    "kafka_bootstrap",
    "kafka_log_file",
    "kafka_tool_command",
    "postgres_dsn",
    "postgres_log_file",
    "runtime_dsn",
    "status",
    "up",
]
