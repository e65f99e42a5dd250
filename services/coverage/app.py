"""Coverage's process: consumes WorkerEnrolled, opens policies, posts premiums."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import FastAPI, HTTPException, Query
from faststream.kafka.annotations import KafkaMessage

from services.coverage import domain, service, store
from services.coverage.settings import CoverageSettings
from shared import db, topics
from shared.events import Event, PolicyActivated, PremiumPosted, WorkerEnrolled
from shared.http import problems
from shared.service import (
    Resources,
    ServiceSpec,
    batch_subscriber,
    new_broker,
    service_app,
)

SPEC = ServiceSpec("coverage", Path(__file__).with_name("migrations"))

PeriodQuery = Query(
    pattern=r"^[12][0-9]{3}-(0[1-9]|1[0-2])$",
    description="A calendar month, YYYY-MM (years 1000-2999).",
    examples=["2026-11"],
)


def create_app(resources: Resources) -> FastAPI:
    settings = resources.settings
    assert isinstance(settings, CoverageSettings)
    pool = resources.pool
    timezone = ZoneInfo(settings.timezone)

    def today() -> date:
        return datetime.now(timezone).date()

    async def handle_enrolled(conn: asyncpg.Connection, batch: list[WorkerEnrolled]) -> list[Event]:
        return await service.activate(conn, batch, today())

    consume_enrolled = resources.consumer("worker-enrolled", WorkerEnrolled, handle_enrolled)
    broker = new_broker(settings, SPEC)

    @batch_subscriber(
        broker,
        resources,
        topics.WORKER_ENROLLED,
        "worker-enrolled",
        description="Each enrolled worker gets an active JKK + JKM policy under the funding "
        "agreement in force and the first month's premium posted.",
    )
    async def on_worker_enrolled(message: KafkaMessage) -> None:
        await consume_enrolled(message.raw_message)  # type: ignore[arg-type]

    for event_type in (PolicyActivated, PremiumPosted):
        broker.publisher(
            settings.topic_prefix + event_type.TOPIC,
            schema=event_type,
            description=event_type.__doc__,
        )

    app = service_app(
        resources,
        broker,
        title="Perisai coverage",
        summary="Policies and the premium ledger of city-funded JKK + JKM cover.",
    )

    @app.get("/v1/summary", responses=problems(422))
    async def summary(period: Annotated[str | None, PeriodQuery] = None) -> dict[str, object]:
        """Policies by status and the premium due for a month (default: this month)."""
        month = date.fromisoformat(f"{period}-01") if period else domain.month_of(today())
        async with db.connection(pool) as conn:
            return await store.counts(conn, month)

    @app.get("/v1/workers/{worker_id}/policy", responses=problems(404, 422))
    async def worker_policy(worker_id: UUID) -> dict[str, object]:
        """A worker's policy and its premium ledger entries."""
        async with db.connection(pool) as conn:
            policy = await store.policy_of(conn, worker_id)
        if policy is None:
            raise HTTPException(404, "no policy for this worker (yet)")
        return policy

    return app
