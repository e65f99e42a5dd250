"""One membership per NIK holds under concurrency: many transactions enrolling the same
person at once (different requests, as from two clerks or two service instances) leave
exactly one worker, and every other request is answered as a duplicate naming it."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
import stamina

from services.registration import service
from services.registration.app import RACE_ERRORS, SPEC
from services.registration.domain import Enrolled, EnrolmentCommand, Rejected
from tests.conftest import ServicePool
from tests.factories import TODAY, requested_worker

pytestmark = pytest.mark.integration

CONTENDERS = 12


@pytest.fixture
async def registration_pool(service_pool: ServicePool) -> asyncpg.Pool:
    return await service_pool(SPEC, max_size=CONTENDERS)


async def enrol_alone(pool: asyncpg.Pool, command: EnrolmentCommand) -> Enrolled | Rejected:
    async for attempt in stamina.retry_context(on=RACE_ERRORS, attempts=5, timeout=30):
        with attempt:
            async with pool.acquire() as conn, conn.transaction():
                [outcome] = (await service.enrol(conn, [command], TODAY))[0]
    return outcome


async def test_concurrent_enrolments_of_one_nik_yield_exactly_one_worker(
    registration_pool: asyncpg.Pool,
) -> None:
    worker = requested_worker()
    commands = [
        EnrolmentCommand(f"race-{uuid.uuid4()}", "api", worker, "race") for _ in range(CONTENDERS)
    ]
    outcomes = await asyncio.gather(*(enrol_alone(registration_pool, c) for c in commands))

    enrolled = [o for o in outcomes if isinstance(o, Enrolled)]
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    assert len(enrolled) == 1
    assert len(rejected) == CONTENDERS - 1
    for rejection in rejected:
        [reason] = rejection.reasons
        assert reason.code == "DUPLICATE_NIK"
        assert rejection.existing_participant == enrolled[0].participant_number
    async with registration_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM workers") == 1
        assert await conn.fetchval("SELECT count(*) FROM enrolment_requests") == CONTENDERS


async def test_concurrent_repeats_of_one_request_get_one_answer(
    registration_pool: asyncpg.Pool,
) -> None:
    command = EnrolmentCommand(f"same-{uuid.uuid4()}", "api", requested_worker(), "repeat")
    outcomes = await asyncio.gather(
        *(enrol_alone(registration_pool, command) for _ in range(CONTENDERS))
    )
    assert all(isinstance(o, Enrolled) for o in outcomes)
    assert len({o.participant_number for o in outcomes}) == 1  # type: ignore[union-attr]
    async with registration_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM workers") == 1
        assert await conn.fetchval("SELECT count(*) FROM enrolment_requests") == 1
