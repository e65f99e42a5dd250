"""``python -m services.<name> keys create|list|revoke``, run as an operator would, on a
real PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import asyncpg
import pytest

pytestmark = pytest.mark.integration


def keys(database_url: str, service: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"services.{service}", "keys", *args],
        env={**os.environ, "PERISAI_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("service", ["registration", "coverage", "notifications"])
async def test_a_key_is_shown_once_kept_hashed_listed_and_revoked(
    database_url: str, service: str
) -> None:
    made = keys(database_url, service, "create", "--name", "clerks", "--scope", "enrol,read",
                "--expires-in-days", "30")  # fmt: skip
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    key = created["key"]
    assert created["scopes"] == ["enrol", "read"] and created["usable"] is True
    assert created["expires_at"] is not None and "not shown again" in made.stderr

    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(f"SELECT * FROM {service}.api_keys")
        assert row is not None
        assert bytes(row["key_hash"]) == hashlib.sha256(key.encode()).digest()
        assert key not in json.dumps({k: str(v) for k, v in row.items()})
    finally:
        await conn.close()

    listed = keys(database_url, service, "list")
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout and key[12:] not in listed.stdout
    [entry] = json.loads(listed.stdout)
    assert (entry["name"], entry["shown"], entry["usable"]) == ("clerks", key[:12], True)

    revoked = keys(database_url, service, "revoke", key[:12])
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(keys(database_url, service, "list").stdout)[0]["usable"] is False
    again = keys(database_url, service, "revoke", created["key_id"])
    assert again.returncode == 0  # revoking twice keeps the first revocation
    nothing = keys(database_url, service, "revoke", "psk_nosuchkey")
    assert nothing.returncode == 1 and "no key" in nothing.stderr


def test_a_bad_scope_or_name_is_a_usage_error(database_url: str) -> None:
    bad_scope = keys(database_url, "registration", "create", "--name", "x", "--scope", "root")
    assert bad_scope.returncode == 2 and "unknown scope root" in bad_scope.stderr
    no_name = keys(database_url, "registration", "create", "--name", " ", "--scope", "read")
    assert no_name.returncode == 2 and "--name" in no_name.stderr
    unreachable = keys("postgresql://nobody@127.0.0.1:1/none", "registration", "list")
    assert unreachable.returncode == 2 and "cannot connect" in unreachable.stderr
