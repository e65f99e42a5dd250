"""Numbered-SQL migrations, one schema per service.

Files are named ``NNNN_description.sql`` and applied in order, each in its own
transaction, with ``search_path`` set to the service's schema so the SQL names its
tables unqualified. The shared tables every service needs (outbox, inbox) come first,
from this package's own ``migrations/`` folder. A session-level advisory lock makes
concurrent starts of the same service safe. Editing a migration that was already
applied is refused (its checksum no longer matches): write a new one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

SHARED_MIGRATIONS = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]*$")


class MigrationError(Exception):
    pass


SHARED_APPEND_ONLY = ("personal_data_access",)
"""Tables of every schema the runtime role may only read and add to."""


def quote_ident(name: str) -> str:
    """An SQL identifier, quoted (role names cannot be query parameters)."""
    if not name or len(name.encode()) > 63 or "\0" in name:
        raise MigrationError(f"not a PostgreSQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


async def grant_runtime(
    conn: asyncpg.Connection, schema: str, role: str, append_only: Sequence[str] = ()
) -> None:
    """What the service's runtime role may do, run by the schema's owner after its
    migrations: read and write the schema's tables, except the append-only ones (read
    and insert only), the API keys and the migration record (read only); use its
    sequences. It is
    granted nothing in any other schema, owns nothing, and so can neither change a
    table's definition nor disable its triggers."""
    if not _SCHEMA.match(schema):
        raise MigrationError(f"not a plain schema name: {schema!r}")
    who = quote_ident(role)
    statements = [
        f"GRANT USAGE ON SCHEMA {schema} TO {who}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {who}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {who}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {schema}.schema_migrations FROM {who}",
        # Keys are made and revoked by the owner (the keys command): a compromised
        # service cannot mint itself a key or bring a revoked one back.
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {schema}.api_keys FROM {who}",
        *(
            f"REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.{quote_ident(table)} FROM {who}"
            for table in (*SHARED_APPEND_ONLY, *append_only)
        ),
    ]
    async with conn.transaction():
        # Under the schema's migration lock: concurrent GRANTs on one object can fail
        # ("tuple concurrently updated") when several processes start at once.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(schema))
        for statement in statements:
            await conn.execute(statement)


def _lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"migrations:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class Migration:
    name: str  # "<source>/<file name>", unique across sources
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(source: str, folder: Path) -> list[Migration]:
    files = sorted(p for p in folder.iterdir() if p.suffix == ".sql")
    bad = [p.name for p in files if not _NAME.match(p.name)]
    if bad:
        raise MigrationError(f"migration files must be named NNNN_name.sql: {', '.join(bad)}")
    numbers = [p.name[:4] for p in files]
    if len(set(numbers)) != len(numbers):
        raise MigrationError(f"two migrations in {folder} share a number")
    return [Migration(f"{source}/{p.name}", p.read_text()) for p in files]


async def pending_migrations(conn: asyncpg.Connection, schema: str, folder: Path) -> list[str]:
    """The migrations this code has that the schema lacks, read without changing
    anything (what a runtime role may do). MigrationError for one applied and edited
    since."""
    if not _SCHEMA.match(schema):
        raise MigrationError(f"not a plain schema name: {schema!r}")
    migrations = discover("shared", SHARED_MIGRATIONS) + discover(schema, folder)
    try:
        rows = await conn.fetch(f"SELECT name, checksum FROM {schema}.schema_migrations")
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return [migration.name for migration in migrations]
    applied = {row["name"]: row["checksum"] for row in rows}
    for migration in migrations:
        if migration.name in applied and applied[migration.name] != migration.checksum:
            raise MigrationError(
                f"{migration.name} changed after it was applied; add a new migration instead"
            )
    return [migration.name for migration in migrations if migration.name not in applied]


async def apply_migrations(conn: asyncpg.Connection, schema: str, folder: Path) -> list[str]:
    """Apply the shared and the service's pending migrations; return the names applied."""
    if not _SCHEMA.match(schema):
        raise MigrationError(f"not a plain schema name: {schema!r}")
    migrations = discover("shared", SHARED_MIGRATIONS) + discover(schema, folder)
    lock_key = _lock_key(schema)
    await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                    name text PRIMARY KEY,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch(f"SELECT name, checksum FROM {schema}.schema_migrations")
        applied = {row["name"]: row["checksum"] for row in rows}
        done: list[str] = []
        for migration in migrations:
            if migration.name in applied:
                if applied[migration.name] != migration.checksum:
                    raise MigrationError(
                        f"{migration.name} changed after it was applied; "
                        "add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {schema}, public")
                await conn.execute(migration.sql)
                await conn.execute(
                    f"INSERT INTO {schema}.schema_migrations (name, checksum) VALUES ($1, $2)",
                    migration.name,
                    migration.checksum,
                )
            done.append(migration.name)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
