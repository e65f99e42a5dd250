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
from dataclasses import dataclass
from pathlib import Path

import asyncpg

SHARED_MIGRATIONS = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]*$")


class MigrationError(Exception):
    pass


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


async def apply_migrations(conn: asyncpg.Connection, schema: str, folder: Path) -> list[str]:
    """Apply the shared and the service's pending migrations; return the names applied."""
    if not _SCHEMA.match(schema):
        raise MigrationError(f"not a plain schema name: {schema!r}")
    migrations = discover("shared", SHARED_MIGRATIONS) + discover(schema, folder)
    digest = hashlib.sha256(f"migrations:{schema}".encode()).digest()
    lock_key = int.from_bytes(digest[:8], "big", signed=True)
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
