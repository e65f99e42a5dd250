"""Migrations as a separate job: ``python -m services.<name> migrate`` runs as the
schema's owner (PostgreSQL only, no Kafka), and a service started with
``PERISAI_MIGRATE_ON_START=false`` holds only its runtime role's URL and checks, read
only, that nothing is pending."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg
import pytest
from pydantic import SecretStr

import infra
from services.coverage.app import SPEC as COVERAGE
from services.coverage.settings import CoverageSettings
from shared.errors import StartupError
from shared.service import open_database

pytestmark = pytest.mark.integration


def runtime_only(database_url: str) -> CoverageSettings:
    return CoverageSettings.model_construct(
        database_url=SecretStr(infra.runtime_dsn(database_url, "coverage")),
        migrate_on_start=False,
    )


async def migrate_job(database_url: str) -> tuple[int, str]:
    """The migration job as an operator runs it; Kafka points nowhere on purpose."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.coverage", "migrate",
        env={
            **os.environ,
            "PERISAI_DATABASE_URL": infra.runtime_dsn(database_url, "coverage"),
            "PERISAI_MIGRATION_DATABASE_URL": database_url,
            "PERISAI_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def test_a_service_that_may_not_migrate_refuses_an_unmigrated_schema(
    database_url: str,
) -> None:
    with pytest.raises(StartupError) as error:
        async with open_database(COVERAGE, runtime_only(database_url)):
            pass
    message = str(error.value)
    assert "schema coverage lacks" in message
    assert "shared/0001_outbox_inbox.sql" in message
    assert "python -m services.coverage migrate" in message


async def test_after_the_migration_job_the_service_runs_as_its_role_alone(
    database_url: str,
) -> None:
    code, output = await migrate_job(database_url)
    assert code == 0, output
    async with open_database(COVERAGE, runtime_only(database_url)) as pool:
        assert await pool.fetchval("SELECT current_user") == "perisai_coverage"
        assert await pool.fetchval("SELECT count(*) FROM policies") == 0
    code, output = await migrate_job(database_url)
    assert code == 0, output  # a second run finds nothing to do


async def test_a_migration_edited_after_it_was_applied_stops_the_service(
    database_url: str,
) -> None:
    code, output = await migrate_job(database_url)
    assert code == 0, output
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE coverage.schema_migrations SET checksum = 'edited' "
            "WHERE name = 'shared/0001_outbox_inbox.sql'"
        )
    finally:
        await conn.close()
    with pytest.raises(StartupError, match="changed after it was applied"):
        async with open_database(COVERAGE, runtime_only(database_url)):
            pass
