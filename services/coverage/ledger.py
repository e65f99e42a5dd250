"""The ledger's invariants, checked against the database: ``python -m services.coverage
ledger check`` and every coverage test run them."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.coverage import store


async def check(conn: asyncpg.Connection) -> dict[str, Any]:
    """``ok`` is False when any invariant is broken; ``violations`` says which and
    shows examples; ``notices`` are states operations should know of, not errors."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        violations = await store.ledger_findings(conn, store.LEDGER_CHECKS)
        notices = await store.ledger_findings(conn, store.LEDGER_NOTICES)
        sizes = await store.ledger_sizes(conn)
    return {
        "ok": not violations,
        "checked": {**sizes, "invariants": sorted(store.LEDGER_CHECKS)},
        "violations": violations,
        "notices": notices,
    }
