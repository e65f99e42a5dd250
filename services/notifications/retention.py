"""Retention: a finished delivery (sent or failed) keeps its recipient and its text for
``PERISAI_DELIVERY_RETENTION_DAYS`` days; then both are removed and a masked recipient
stays, with the status, channel, template, attempts and times (so counts and reports do
not change)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import asyncpg
import structlog

from services.notifications import store
from services.notifications.domain import mask_recipient
from shared import db

log = structlog.get_logger(__name__)

CHUNK = 5_000
"""Deliveries purged per transaction: a big backlog never holds long locks."""


async def purge(pool: asyncpg.Pool, now: datetime, days: int) -> int:
    """Purge every finished delivery created more than ``days`` before ``now``; returns
    how many."""
    before = now - timedelta(days=days)
    purged = 0
    while True:
        async with db.transaction(pool) as conn:
            due = await store.purgeable(conn, before, CHUNK)
            await store.purge(conn, [(d, mask_recipient(r)) for d, r in due])
        purged += len(due)
        if len(due) < CHUNK:
            return purged


async def run(pool: asyncpg.Pool, days: int, interval_s: float) -> None:
    """Purge now, then every ``interval_s``; a failed sweep is logged and tried again at
    the next one."""
    while True:
        try:
            purged = await purge(pool, datetime.now().astimezone(), days)
            if purged:
                log.info("delivery retention: recipients and texts removed", deliveries=purged)
        except Exception as error:  # the next sweep tries again
            log.warning("delivery retention sweep failed", error=repr(error)[:300])
        await asyncio.sleep(interval_s)
