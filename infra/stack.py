"""The public API: start, stop and inspect the local Kafka + PostgreSQL stack.

Typical pytest use::

    @pytest.fixture(scope="session")
    def stack():
        started = infra.up()
        yield
        infra.down(**started)   # stop only what this session started
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from infra import kafka_server, postgres_server
from infra.aio import run_sync
from infra.errors import InfraError
from infra.paths import HOST, Settings
from infra.process import file_lock

SERVERS = ("kafka", "postgres")


def up(kafka: bool = True, postgres: bool = True) -> dict[str, bool]:
    """Start the selected servers and wait until they are ready.

    Returns, per selected server, whether this call started it (False: it was already
    running), so a caller can later stop only what it started via ``down(**result)``.
    """
    settings = Settings.from_env()
    started: dict[str, bool] = {}
    with file_lock(settings.lock_file):
        kafka_pid = None
        if kafka:
            # Launch the JVM first and set PostgreSQL up while it boots.
            kafka_pid, started["kafka"] = kafka_server.start(settings)
        if postgres:
            started["postgres"] = postgres_server.up(settings)
        if kafka_pid is not None:
            kafka_server.wait_ready(settings, kafka_pid)
    return {name: started[name] for name in SERVERS if name in started}


def down(kafka: bool = True, postgres: bool = True) -> dict[str, bool]:
    """Stop the selected servers; returns, per server, whether it had been running."""
    settings = Settings.from_env()
    stopped: dict[str, bool] = {}
    with file_lock(settings.lock_file):
        if kafka:
            stopped["kafka"] = kafka_server.stop(settings)
        if postgres:
            stopped["postgres"] = postgres_server.stop(settings)
    return stopped


def status() -> dict[str, bool]:
    """Whether each server is running (its process is alive and its port accepts connections)."""
    settings = Settings.from_env()
    return {
        "kafka": kafka_server.is_running(settings),
        "postgres": postgres_server.is_running(settings),
    }


def kafka_bootstrap() -> str:
    """Bootstrap servers for Kafka clients, e.g. ``"127.0.0.1:19092"``."""
    return Settings.from_env().kafka_bootstrap


def postgres_dsn(
    database: str = postgres_server.DATABASE,
    user: str = postgres_server.ROLE,
    password: str | None = None,
) -> str:
    """DSN for the local cluster, e.g. ``postgresql://perisai:perisai@127.0.0.1:15432/perisai``.

    The password defaults to the ``perisai`` role's password for that role and to none
    for any other user (the cluster trusts local TCP connections anyway).
    """
    if password is None and user == postgres_server.ROLE:
        password = postgres_server.PASSWORD
    auth = f"{user}:{password}" if password else user
    return f"postgresql://{auth}@{HOST}:{Settings.from_env().postgres_port}/{database}"


def admin_dsn(database: str = "postgres") -> str:
    """DSN for the ``postgres`` superuser (no password: trust authentication)."""
    return postgres_dsn(database=database, user=postgres_server.SUPERUSER)


def runtime_dsn(owner_dsn: str, service: str) -> str:
    """``owner_dsn`` with the service's runtime role (``perisai_<service>``) as its user."""
    parts = urlsplit(owner_dsn)
    role = f"perisai_{service}"
    if role not in postgres_server.SERVICE_ROLES:
        raise InfraError(f"no runtime role for a service named {service!r}")
    host = parts.hostname or postgres_server.HOST
    netloc = f"{role}:{role}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def create_database_async(
    name: str, owner: str = postgres_server.ROLE, replace: bool = True
) -> str:
    """Create database ``name`` owned by ``owner`` and return its DSN (as ``owner``).

    With ``replace`` (the default) an existing database of that name is dropped first,
    so a test always starts from an empty database.
    """
    settings = Settings.from_env()
    await postgres_server.create_database(settings.postgres_port, name, owner, replace)
    return postgres_dsn(database=name, user=owner)


async def drop_database_async(name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting any remaining sessions."""
    await postgres_server.drop_database(Settings.from_env().postgres_port, name)


def create_database(name: str, owner: str = postgres_server.ROLE, replace: bool = True) -> str:
    """Synchronous :func:`create_database_async`."""
    return run_sync(create_database_async(name, owner, replace))


def drop_database(name: str) -> None:
    """Synchronous :func:`drop_database_async`."""
    run_sync(drop_database_async(name))


def kafka_tool_command(tool: str, *args: str) -> list[str]:
    """The command for one of Kafka's own tools (``console-producer``,
    ``console-consumer``, ``consumer-groups``, ``get-offsets``) against the local broker."""
    return kafka_server.tool_command(Settings.from_env(), tool, list(args))


def kafka_log_file() -> str:
    return str(Settings.from_env().kafka_log_file)


def postgres_log_file() -> str:
    return str(postgres_server.layout(Settings.from_env()).log_file)
