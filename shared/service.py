"""What every service does around its own logic: read settings, check and prepare
Kafka and PostgreSQL, apply migrations, run the outbox relay and the Kafka broker
beside an HTTP server, and stop in order. Start-up problems end the process with one
line on stderr (exit code 2), not a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import structlog
import uvicorn
import uvloop
from aiokafka import ConsumerRecord
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, Topic
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from shared import kafka_records
from shared.api_keys import Scope
from shared.consumer import BatchConsumer, BatchHandler
from shared.db import create_pool, describe_dsn
from shared.errors import StartupError
from shared.events import Event
from shared.guard import document_security, install_guard, requires
from shared.http import document_models, install_problem_handlers
from shared.kafka import ensure_topics, new_producer, topics_of
from shared.logs import SHOWN_ERRORS_ONLY, configure_logging
from shared.migrations import (
    MigrationError,
    apply_migrations,
    grant_runtime,
    pending_migrations,
)
from shared.outbox import RecordSource
from shared.rate_limit import RateLimiter
from shared.relay import OutboxRelay
from shared.settings import ServiceSettings
from shared.topics import dead_letter_topic

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # also the database schema and the consumer-group prefix
    migrations: Path
    append_only: tuple[str, ...] = ()
    """Tables the runtime role may only read and add to (beyond the shared ones)."""
    outbox_sources: Mapping[str, RecordSource] = field(default_factory=dict)
    """The record sources its outbox rows may name (see shared.outbox), by name."""


@dataclass
class Resources:
    """What a service's app is built from, opened before the HTTP server starts."""

    spec: ServiceSpec
    settings: ServiceSettings
    pool: asyncpg.Pool
    relay: OutboxRelay
    consumers: list[BatchConsumer[Any]] = field(default_factory=list)

    def consumer(self, name: str, model: type[E], handler: BatchHandler) -> BatchConsumer[E]:
        """The service's consumer ``<service>.<name>`` of ``model`` events; its health is
        part of the readiness check."""
        consumer = BatchConsumer(
            self.pool,
            f"{self.spec.name}.{name}",
            model,
            handler,
            topic_prefix=self.settings.topic_prefix,
        )
        self.consumers.append(consumer)
        return consumer


@asynccontextmanager
async def open_database(
    spec: ServiceSpec, settings: ServiceSettings, *, max_size: int | None = None
) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the service's schema, migrated. What a service's commands need; they
    write events to the outbox, which the running service's relay publishes. With a
    migration_database_url the schema's owner migrates and grants the runtime role
    (database_url's user) what it may do; the pool is the runtime role's. Without
    migrate_on_start the schema must have been migrated by a separate job."""
    if settings.migrate_on_start:
        await migrate(spec, settings)
    else:
        await check_migrated(spec, settings)
    pool = await create_pool(
        settings.database_url.get_secret_value(),
        spec.name,
        min_size=min(settings.db_pool_min_size, max_size or settings.db_pool_max_size),
        max_size=max_size or settings.db_pool_max_size,
        connect_timeout=settings.startup_timeout_s,
    )
    try:
        yield pool
    finally:
        await pool.close()


async def _connect(dsn: str, settings: ServiceSettings, purpose: str = "") -> asyncpg.Connection:
    """One connection of its own (StartupError, one line, when PostgreSQL refuses)."""
    try:
        return await asyncpg.connect(
            dsn, timeout=settings.startup_timeout_s, server_settings={"timezone": "UTC"}
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
        reason = str(error) or type(error).__name__
        raise StartupError(
            f"cannot connect to PostgreSQL at {describe_dsn(dsn)}{purpose}: {reason}"
        ) from None


async def check_migrated(spec: ServiceSpec, settings: ServiceSettings) -> None:
    """StartupError unless the schema has every migration this code has (read as the
    runtime role, which may not migrate)."""
    conn = await _connect(settings.database_url.get_secret_value(), settings)
    try:
        pending = await pending_migrations(conn, spec.name, spec.migrations)
    except asyncpg.InsufficientPrivilegeError as error:
        raise StartupError(
            f"cannot check the migrations of schema {spec.name}: {error}; the migrate job "
            "(run with PERISAI_MIGRATION_DATABASE_URL) grants the runtime role its rights"
        ) from None
    except (MigrationError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
        reason = str(error) or type(error).__name__
        raise StartupError(f"cannot check the migrations of schema {spec.name}: {reason}") from None
    finally:
        await conn.close()
    if pending:
        shown = ", ".join(pending[:3]) + (
            f" and {len(pending) - 3} more" if len(pending) > 3 else ""
        )
        raise StartupError(
            f"schema {spec.name} lacks {len(pending)} migration(s) ({shown}); run "
            f"`python -m services.{spec.name} migrate` (with PERISAI_MIGRATION_DATABASE_URL, "
            "as the schema's owner) before starting the service"
        )


async def migrate(spec: ServiceSpec, settings: ServiceSettings) -> None:
    """Apply the schema's migrations on a connection of its own, closed after: as the
    schema's owner when migration_database_url is set (then grant the runtime role,
    database_url's user, what it may do), else as database_url's user."""
    owner = settings.migration_database_url
    dsn = (owner or settings.database_url).get_secret_value()
    runtime_role = urlsplit(settings.database_url.get_secret_value()).username
    conn = await _connect(dsn, settings, " to migrate" if owner else "")
    try:
        try:
            applied = await apply_migrations(conn, spec.name, spec.migrations)
        except (MigrationError, asyncpg.PostgresError) as error:
            raise StartupError(f"cannot migrate schema {spec.name}: {error}") from None
        if applied:
            log.info("migrations applied", applied=applied)
        if owner and runtime_role and runtime_role != urlsplit(dsn).username:
            try:
                await grant_runtime(conn, spec.name, runtime_role, spec.append_only)
            except (MigrationError, asyncpg.PostgresError) as error:
                raise StartupError(
                    f"cannot grant {runtime_role} its rights on {spec.name}: {error}"
                ) from None
    finally:
        await conn.close()


@asynccontextmanager
async def open_resources(spec: ServiceSpec, settings: ServiceSettings) -> AsyncIterator[Resources]:
    """Check that the broker answers, open the pool, apply migrations."""
    security = settings.kafka_security()
    await ensure_topics(
        settings.kafka_bootstrap, [], wait_s=settings.startup_timeout_s, security=security
    )
    async with open_database(spec, settings) as pool:
        relay = OutboxRelay(
            pool,
            spec.name,
            lambda: new_producer(settings.kafka_bootstrap, f"perisai-{spec.name}-relay", security),
            batch_size=settings.relay_batch_size,
            poll_interval_s=settings.relay_poll_interval_s,
            topic_prefix=settings.topic_prefix,
            sources=spec.outbox_sources,
        )
        yield Resources(spec, settings, pool, relay)


def new_broker(settings: ServiceSettings, spec: ServiceSpec) -> KafkaBroker:
    kafka_records.install()  # a record aiokafka cannot decode must not stall a partition
    logger = logging.getLogger(f"perisai.{spec.name}.broker")
    logger.addFilter(SHOWN_ERRORS_ONLY)  # once: the same filter object is not added twice
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=f"perisai-{spec.name}",
        security=settings.kafka_security().for_faststream(),
        enable_idempotence=True,
        # Under our root logger (JSON lines), not FastStream's own coloured handler;
        # per-batch "Received"/"Processed" lines only at DEBUG.
        logger=logger,
        log_level=logging.DEBUG,
    )


@asynccontextmanager
async def running(resources: Resources, broker: KafkaBroker) -> AsyncIterator[None]:
    """The app's lifespan: relay and consumers run while the app serves."""
    relay_task = asyncio.create_task(resources.relay.run(), name="outbox-relay")
    await broker.start()
    log.info("service started", port=resources.settings.http_port)
    try:
        yield
    finally:
        # Consumers first, so nothing new reaches the outbox; then the relay, which
        # publishes what the last batches wrote before it stops.
        await broker.stop()
        relay_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay_task
        await resources.relay.drain()
        log.info("service stopped")


class ConsumerState(BaseModel):
    """How one consumer is doing (see shared.consumer.ConsumerHealth)."""

    stalled: bool = Field(description="True while a batch keeps failing (3 rounds or more).")
    failed_rounds: int = Field(description="Failed rounds in a row.")
    failing_since: str | None = Field(description="When the current run of failures began.")
    batch: str | None = Field(description="topic[partition]@offsets of the failing batch.")
    last_error: str | None = Field(description="The last failure.")
    dead_lettered: int = Field(description="Records dead-lettered since the service started.")
    inbox_conflicts: int = Field(
        description="Event ids seen again with other content since the service started."
    )


class Readiness(BaseModel):
    """Whether the service can do its work."""

    ready: bool = Field(description="All checks pass.")
    checks: dict[str, bool] = Field(
        description="database and kafka answer; consumers: none is stalled."
    )
    consumers: dict[str, ConsumerState] = Field(description="Each consumer, by name.")


def add_health_routes(router: APIRouter, resources: Resources, broker: KafkaBroker) -> None:
    """Metrics and health, on the app's own router (an included router would hide its
    routes from the guard, which then closes them)."""

    @router.get(
        "/metrics",
        tags=["operations"],
        dependencies=[requires(Scope.OPS)],
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
    )
    async def metrics() -> PlainTextResponse:
        """Prometheus metrics: consumers (records by outcome, failed rounds, stalled,
        inbox conflicts) and the process."""
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/health/live", tags=["operations"])
    async def live() -> dict[str, str]:
        """The process answers."""
        return {"status": "live"}

    @router.get(
        "/health/ready",
        tags=["operations"],
        responses={503: {"model": Readiness, "description": "Not ready: see checks."}},
    )
    async def ready() -> Readiness:
        """Ready when the database and the broker answer and no consumer is stalled."""
        checks: dict[str, bool] = {}
        try:
            async with asyncio.timeout(2):
                await resources.pool.fetchval("SELECT 1")
            checks["database"] = True
        except Exception:
            checks["database"] = False
        checks["kafka"] = await broker.ping(timeout=2)
        consumers = {c.name: c.health for c in resources.consumers}
        checks["consumers"] = not any(health.stalled for health in consumers.values())
        readiness = Readiness(
            ready=all(checks.values()),
            checks=checks,
            consumers={
                name: ConsumerState.model_validate(health.as_dict())
                for name, health in consumers.items()
            },
        )
        if not readiness.ready:
            return JSONResponse(readiness.model_dump(mode="json"), status_code=503)  # type: ignore[return-value]
        return readiness


def service_app(
    resources: Resources,
    broker: KafkaBroker,
    *,
    title: str,
    summary: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    models: Sequence[type[BaseModel]] = (),
) -> FastAPI:
    """A service's HTTP app: problem-details errors, health, metrics, and the broker for
    the AsyncAPI generator. ``models`` are documented though no route names them (raw
    JSON bodies)."""
    settings = resources.settings
    app = FastAPI(
        title=title,
        version="1",
        summary=summary,
        lifespan=lifespan or (lambda _: running(resources, broker)),
    )
    install_problem_handlers(app)
    install_guard(
        app,
        resources.pool,
        RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        max_body_bytes=settings.max_body_bytes,
    )
    add_health_routes(app.router, resources, broker)
    document_models(app, *models, extend=[lambda document: document_security(document, app.routes)])
    app.state.broker = broker
    return app


AppFactory = Callable[[Resources], FastAPI]


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so a clean stop
    would end with exit code 143. Here a signal only asks for the graceful shutdown
    (bounded by the services' own time limits), and the process then exits 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.handle_exit, signum, None)
        try:
            yield
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


async def _serve(spec: ServiceSpec, settings: ServiceSettings, build_app: AppFactory) -> None:
    async with open_resources(spec, settings) as resources:
        app = build_app(resources)
        await ensure_topics(
            settings.kafka_bootstrap,
            topics_of(app.state.broker).all,
            wait_s=settings.startup_timeout_s,
            security=settings.kafka_security(),
        )
        config = uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        await _Server(config).serve()


async def _migrate(spec: ServiceSpec, settings: ServiceSettings) -> None:
    """The migration job: PostgreSQL only (Kafka need not be reachable)."""
    await migrate(spec, settings)


def main(
    spec: ServiceSpec,
    settings_class: type[ServiceSettings],
    build_app: AppFactory,
    argv: list[str] | None = None,
) -> None:
    """Entry point of ``python -m services.<name> [serve|migrate]``."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    if command not in ("serve", "migrate"):
        sys.exit(f"usage: python -m services.{spec.name} [serve|migrate|keys ...]")
    try:
        settings = settings_class.load()
        configure_logging(spec.name, settings.log_level)
        if command == "migrate":
            uvloop.run(_migrate(spec, settings))
        else:
            uvloop.run(_serve(spec, settings, build_app))
    except StartupError as error:
        print(f"perisai-{spec.name}: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


def _decodable(value: object) -> bool:
    if not isinstance(value, bytes):
        return False
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


async def tolerant_batch_parser(
    records: tuple[ConsumerRecord, ...], original: Callable[..., Awaitable[Any]]
) -> Any:
    """FastStream decodes every header as UTF-8 while parsing a batch; one undecodable
    (or null) header value fails the whole batch before any handler runs, and that
    failure cannot even be nacked, since the nack parses again: the batch would be
    skipped for good. Parse a copy without such headers instead; the handler still
    receives the original records (and dead letters keep their headers as sent)."""
    try:
        return await original(records)
    except (UnicodeDecodeError, AttributeError):
        readable = tuple(
            dataclasses.replace(r, headers=tuple(h for h in r.headers if _decodable(h[1])))
            for r in records
        )
        message = await original(readable)
        message.raw_message = records
        return message


async def raw_batch_decoder(message: Any) -> Any:
    """No decoding by content-type: a record that claims to be JSON and is not would
    otherwise fail the batch before the handler, forever. BatchConsumer parses each
    record itself and dead-letters those that fail."""
    return message.body


def batch_subscriber(
    broker: KafkaBroker,
    resources: Resources,
    topic: str,
    consumer: str,
    *,
    description: str,
) -> Callable[..., object]:
    """The one way services subscribe: batches, the offset committed only after the
    handler returned (its transaction committed), a failed batch nacked so it is
    re-read instead of skipped. One consumer group per (service, consumer)."""
    settings = resources.settings
    broker.publisher(  # documentation only: the relay publishes dead letters
        settings.topic_prefix + dead_letter_topic(topic),
        title=f"{resources.spec.name}.{consumer}.dlq",
        description=f"Notices of records of {topic} that {resources.spec.name} could not "
        f"read or apply, without their content (kept in {resources.spec.name}.dead_letters), "
        "with headers dlq.reason (masked), dlq.consumer, dlq.origin.topic, "
        "dlq.origin.partition, dlq.origin.offset, dlq.failed_at and dlq.letter_id.",
    )
    return broker.subscriber(  # type: ignore[no-any-return]
        # Created before the broker starts (ensure_topics, with our partition count); a
        # service's Kafka user may not create topics on a cluster with ACLs.
        Topic(settings.topic_prefix + topic, declare=False),
        group_id=f"{settings.topic_prefix}{resources.spec.name}.{consumer}",
        batch=True,
        max_records=settings.consumer_batch_size,
        batch_timeout_ms=100,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=tolerant_batch_parser,
        decoder=raw_batch_decoder,
        title=f"{resources.spec.name}.{consumer}",
        description=description,
    )
