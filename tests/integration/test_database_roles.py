"""Each service runs as its own PostgreSQL role, granted what it needs in its own schema
and nothing elsewhere; the schema's owner (a separate role) migrates. Each runtime role
is connected as, and shown what it cannot do."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr

import infra
from services.coverage.app import SPEC as COVERAGE
from services.coverage.settings import CoverageSettings
from services.notifications.app import SPEC as NOTIFICATIONS
from services.notifications.settings import NotificationSettings
from services.registration.app import SPEC as REGISTRATION
from services.registration.settings import RegistrationSettings
from shared.service import ServiceSpec, open_database
from shared.settings import ServiceSettings

pytestmark = pytest.mark.integration

SERVICES: tuple[tuple[ServiceSpec, type[ServiceSettings]], ...] = (
    (REGISTRATION, RegistrationSettings),
    (COVERAGE, CoverageSettings),
    (NOTIFICATIONS, NotificationSettings),
)


@pytest.fixture
async def migrated(database_url: str) -> AsyncIterator[dict[str, asyncpg.Connection]]:
    """The three schemas migrated by the owner, and a connection as each runtime role."""
    connections: dict[str, asyncpg.Connection] = {}
    for spec, settings_class in SERVICES:
        settings = settings_class.model_construct(
            database_url=SecretStr(infra.runtime_dsn(database_url, spec.name)),
            migration_database_url=SecretStr(database_url),
        )
        async with open_database(spec, settings, max_size=1) as pool:
            assert await pool.fetchval("SELECT current_user") == f"perisai_{spec.name}"
        connections[spec.name] = await asyncpg.connect(infra.runtime_dsn(database_url, spec.name))
    yield connections
    for conn in connections.values():
        await conn.close()


async def refused(conn: asyncpg.Connection, statement: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute(statement)


async def test_a_service_role_reads_and_writes_its_own_schema_and_nothing_else(
    migrated: dict[str, asyncpg.Connection],
) -> None:
    registration, coverage, notifications = (
        migrated["registration"],
        migrated["coverage"],
        migrated["notifications"],
    )
    assert await registration.fetchval("SELECT count(*) FROM registration.workers") == 0
    await registration.execute("DELETE FROM registration.outbox")
    for conn, foreign in (
        (registration, "coverage.policies"),
        (registration, "notifications.deliveries"),
        (coverage, "registration.workers"),
        (coverage, "notifications.confirmations"),
        (notifications, "registration.workers"),
        (notifications, "coverage.premium_ledger"),
    ):
        await refused(conn, f"SELECT * FROM {foreign}")
    await refused(coverage, "INSERT INTO registration.api_keys (key_id) VALUES (gen_random_uuid())")


async def test_the_roles_own_nothing_and_cannot_change_definitions(
    migrated: dict[str, asyncpg.Connection],
) -> None:
    for name, conn in migrated.items():
        owned = await conn.fetchval(
            """SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
               WHERE r.rolname = current_user"""
        )
        schemas = await conn.fetchval(
            """SELECT count(*) FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
               WHERE r.rolname = current_user"""
        )
        assert (owned, schemas) == (0, 0), name
        await refused(conn, f"CREATE TABLE {name}.sneaky (id int)")
        await refused(conn, f"ALTER TABLE {name}.outbox ADD COLUMN sneaky int")
        await refused(conn, f"DROP TABLE {name}.inbox")
        await refused(
            conn, f"INSERT INTO {name}.schema_migrations (name, checksum) VALUES ('x', 'y')"
        )
        await refused(conn, f"DELETE FROM {name}.schema_migrations")


async def test_the_coverage_role_may_only_add_to_the_ledger(
    migrated: dict[str, asyncpg.Connection],
) -> None:
    coverage = migrated["coverage"]
    assert await coverage.fetchval("SELECT count(*) FROM coverage.premium_ledger") == 0
    assert await coverage.fetchval(
        "SELECT has_table_privilege('coverage.premium_ledger', 'INSERT')"
    )
    for statement in (
        "UPDATE coverage.premium_ledger SET amount = 0",
        "DELETE FROM coverage.premium_ledger",
        "TRUNCATE coverage.premium_ledger",
        "ALTER TABLE coverage.premium_ledger DISABLE TRIGGER ALL",
        "ALTER TABLE coverage.premium_ledger DISABLE TRIGGER USER",
        "SET session_replication_role = replica",
        "DELETE FROM coverage.invoice_run_lines",
        "UPDATE coverage.invoice_run_lines SET billing_run_id = gen_random_uuid()",
    ):
        await refused(coverage, statement)
    assert await coverage.fetchval(
        "SELECT has_table_privilege('coverage.invoice_run_lines', 'INSERT')"
    )


@pytest.mark.parametrize(
    ("service", "table"),
    [
        ("registration", "worker_history"),
        ("registration", "personal_data_access"),
        ("coverage", "personal_data_access"),
        ("notifications", "personal_data_access"),
    ],
)
async def test_the_history_and_the_access_log_cannot_be_altered_by_the_service(
    migrated: dict[str, asyncpg.Connection], service: str, table: str
) -> None:
    conn = migrated[service]
    assert await conn.fetchval(f"SELECT has_table_privilege('{service}.{table}', 'INSERT')")
    for statement in (
        f"UPDATE {service}.{table} SET recorded_at = now()"
        if table == "worker_history"
        else f"UPDATE {service}.{table} SET actor = 'someone else'",
        f"DELETE FROM {service}.{table}",
        f"TRUNCATE {service}.{table}",
        f"ALTER TABLE {service}.{table} DISABLE TRIGGER ALL",
    ):
        await refused(conn, statement)


async def test_a_migration_owner_that_cannot_connect_is_one_clear_line(database_url: str) -> None:
    from shared.errors import StartupError

    settings = RegistrationSettings.model_construct(
        database_url=SecretStr(infra.runtime_dsn(database_url, "registration")),
        migration_database_url=SecretStr("postgresql://perisai:secret@127.0.0.1:1/nowhere"),
    )
    with pytest.raises(StartupError, match="to migrate") as error:
        async with open_database(REGISTRATION, settings):
            pass
    assert "secret" not in str(error.value)


async def test_a_service_role_can_read_keys_but_not_make_or_revive_them(
    migrated: dict[str, asyncpg.Connection],
) -> None:
    for name, conn in migrated.items():
        assert await conn.fetchval(f"SELECT count(*) FROM {name}.api_keys") == 0
        await refused(
            conn,
            f"INSERT INTO {name}.api_keys (key_id, name, shown, key_hash, scopes) VALUES"
            " (gen_random_uuid(), 'x', 'psk_x', sha256('x'), '{admin}')",
        )
        await refused(conn, f"UPDATE {name}.api_keys SET revoked_at = NULL")
        await refused(conn, f"DELETE FROM {name}.api_keys")
