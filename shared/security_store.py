"""The SQL of API keys and of the personal-data access log, in a service's own schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from shared.api_keys import Caller, Scope, StoredKey, key_digest, new_key, shown_part

_COLUMNS = "key_id, name, shown, scopes, created_at, expires_at, revoked_at"


def _stored(row: Any) -> StoredKey:
    return StoredKey(
        key_id=row["key_id"],
        name=row["name"],
        shown=row["shown"],
        scopes=frozenset(Scope(s) for s in row["scopes"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


async def create_key(
    conn: asyncpg.Connection, name: str, scopes: Iterable[Scope], expires_at: datetime | None
) -> tuple[StoredKey, str]:
    """A new key: what is stored, and the key itself (to be shown once, then forgotten)."""
    key = new_key()
    row = await conn.fetchrow(
        f"""INSERT INTO api_keys (key_id, name, shown, key_hash, scopes, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}""",
        uuid.uuid4(),
        name,
        shown_part(key),
        key_digest(key),
        sorted(scopes),
        expires_at,
    )
    return _stored(row), key


async def list_keys(conn: asyncpg.Connection) -> list[StoredKey]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, key_id")
    return [_stored(row) for row in rows]


async def revoke_keys(conn: asyncpg.Connection, which: str) -> list[StoredKey]:
    """Revoke the keys named by ``which``: a key id, or the shown part of a key (the
    first 12 characters, as ``keys list`` prints them). Already revoked keys keep their
    revocation time. Returns the keys it names."""
    try:
        key_id: UUID | None = UUID(which)
    except ValueError:
        key_id = None
    rows = await conn.fetch(
        f"""UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
            WHERE key_id = $1 OR shown = $2 RETURNING {_COLUMNS}""",
        key_id,
        which,
    )
    return [_stored(row) for row in rows]


async def find_key(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> StoredKey | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = $1", key_digest(key)
    )
    return None if row is None else _stored(row)


async def record_access(
    conn: asyncpg.Connection | asyncpg.Pool,
    caller: Caller,
    actor: str | None,
    method: str,
    endpoint: str,
    subjects: Iterable[str],
) -> None:
    """One access-log row per worker whose personal data the caller was given."""
    await conn.execute(
        """INSERT INTO personal_data_access (key_id, actor, method, endpoint, subject)
           SELECT $1, $2, $3, $4, subject FROM unnest($5::text[]) AS subject""",
        caller.key_id,
        actor,
        method,
        endpoint,
        list(subjects),
    )


async def access_log(conn: asyncpg.Connection, subject: str | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT a.accessed_at, a.key_id, k.name AS key_name, a.actor, a.method, a.endpoint,
                  a.subject
           FROM personal_data_access a JOIN api_keys k USING (key_id)
           WHERE $1::text IS NULL OR a.subject = $1
           ORDER BY a.id""",
        subject,
    )
    return [dict(row) for row in rows]
