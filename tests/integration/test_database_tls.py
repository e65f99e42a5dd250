"""PostgreSQL's TLS settings travel in the database URL (libpq's parameters, read by
asyncpg): ``sslmode=require`` against a server without TLS is refused, not silently
downgraded."""

from __future__ import annotations

import pytest

from shared.db import create_pool
from shared.errors import StartupError

pytestmark = pytest.mark.integration


async def test_sslmode_in_the_url_reaches_the_driver(database_url: str) -> None:
    pool = await create_pool(database_url + "?sslmode=disable", "public", min_size=1, max_size=1)
    await pool.close()
    with pytest.raises(StartupError, match=r"(?i)ssl") as refused:
        await create_pool(database_url + "?sslmode=require", "public", min_size=1, max_size=1)
    assert "perisai:perisai" not in str(refused.value)  # the password is never shown
