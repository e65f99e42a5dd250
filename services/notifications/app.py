"""Notifications' process: consumes WorkerEnrolled (contacts) and PolicyActivated
(policies), queues confirmations, and runs the delivery loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from fastapi import FastAPI
from faststream.kafka.annotations import KafkaMessage

from services.notifications import retention, service, store
from services.notifications.channels import SmsGateway, SmtpMailer
from services.notifications.domain import RetryPolicy
from services.notifications.sender import DeliverySender
from services.notifications.settings import NotificationSettings
from shared import db, topics
from shared.api_keys import Scope
from shared.events import (
    Event,
    NotificationFailed,
    NotificationSent,
    PolicyActivated,
    WorkerDetailsChanged,
    WorkerEnrolled,
)
from shared.guard import requires
from shared.http import problems
from shared.service import (
    Resources,
    ServiceSpec,
    batch_subscriber,
    new_broker,
    running,
    service_app,
)

SPEC = ServiceSpec("notifications", Path(__file__).with_name("migrations"))


def create_app(resources: Resources) -> FastAPI:
    settings = resources.settings
    assert isinstance(settings, NotificationSettings)
    pool = resources.pool
    help_line = settings.help_line

    sms = SmsGateway(
        settings.sms_gateway_url,
        settings.sms_sender_id,
        timeout_s=settings.send_timeout_s,
        bulk_size=settings.sms_bulk_size,
        concurrency=settings.sms_concurrency,
        token=settings.sms_gateway_token,
    )
    mailer = SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        settings.email_from,
        tls=settings.smtp_tls,
        ca_file=settings.smtp_ca_file,
        username=settings.smtp_username,
        password=settings.smtp_password,
        timeout_s=settings.send_timeout_s,
        connections=settings.smtp_connections,
    )
    sender = DeliverySender(
        pool,
        {"sms": sms.send_many, "email": mailer.send_many},
        RetryPolicy(settings.max_attempts, settings.retry_base_s, settings.retry_max_s),
        chunk_sizes={"sms": settings.sms_bulk_size, "email": 1},
        concurrency={"sms": settings.sms_concurrency, "email": settings.smtp_connections},
        batch_size=settings.send_batch_size,
        lease_s=settings.send_lease_s,
    )

    async def handle_enrolled(conn: asyncpg.Connection, batch: list[WorkerEnrolled]) -> list[Event]:
        await service.contacts_received(conn, batch, help_line)
        return []

    async def handle_activated(
        conn: asyncpg.Connection, batch: list[PolicyActivated]
    ) -> list[Event]:
        await service.policies_received(conn, batch, help_line)
        return []

    async def handle_details_changed(
        conn: asyncpg.Connection, batch: list[WorkerDetailsChanged]
    ) -> list[Event]:
        await service.details_changed(conn, batch)
        return []

    prefix = settings.topic_prefix
    consume_details_changed = resources.consumer(
        "worker-details-changed", WorkerDetailsChanged, handle_details_changed
    )
    consume_enrolled = resources.consumer("worker-enrolled", WorkerEnrolled, handle_enrolled)
    consume_activated = resources.consumer("policy-activated", PolicyActivated, handle_activated)
    broker = new_broker(settings, SPEC)

    @batch_subscriber(
        broker,
        resources,
        topics.WORKER_ENROLLED,
        "worker-enrolled",
        description="Keeps each enrolled worker's name, contact and language.",
    )
    async def on_worker_enrolled(message: KafkaMessage) -> None:
        await consume_enrolled(message.raw_message)  # type: ignore[arg-type]
        sender.wake()

    @batch_subscriber(
        broker,
        resources,
        topics.POLICY_ACTIVATED,
        "policy-activated",
        description="Queues the confirmation SMS (and email) of every activated policy.",
    )
    async def on_policy_activated(message: KafkaMessage) -> None:
        await consume_activated(message.raw_message)  # type: ignore[arg-type]
        sender.wake()

    @batch_subscriber(
        broker,
        resources,
        topics.WORKER_DETAILS_CHANGED,
        "worker-details-changed",
        description="A worker's new phone, email or language: every message from then on "
        "goes there (the newest revision wins, whatever order the events arrive in).",
    )
    async def on_worker_details_changed(message: KafkaMessage) -> None:
        await consume_details_changed(message.raw_message)  # type: ignore[arg-type]

    for event_type in (NotificationSent, NotificationFailed):
        broker.publisher(
            prefix + event_type.TOPIC, schema=event_type, description=event_type.__doc__
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with running(resources, broker):
            task = asyncio.create_task(sender.run(), name="delivery-sender")
            sweep = asyncio.create_task(
                retention.run(
                    pool, settings.delivery_retention_days, settings.retention_interval_s
                ),
                name="delivery-retention",
            )
            try:
                yield
            finally:
                sweep.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweep
                # Let the round in flight finish and record its results, so nothing
                # is left leased (and sent again after the lease) by a clean stop.
                sender.stop()
                # On timeout wait_for cancels it; its leases expire and it is resent.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(task, settings.shutdown_grace_s)
                await sms.aclose()
                await mailer.aclose()

    app = service_app(
        resources,
        broker,
        title="Perisai notifications",
        summary="Tells every covered worker so, by SMS and email, and tracks each delivery.",
        lifespan=lifespan,
    )

    @app.get("/v1/summary", responses=problems(), dependencies=[requires(Scope.OPS)])
    async def summary() -> dict[str, object]:
        """Deliveries by channel and status."""
        async with db.connection(pool) as conn:
            return await store.counts(conn)

    return app
