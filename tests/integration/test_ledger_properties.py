"""Property test on a real PostgreSQL: any sequence of enrolments, billing runs (also
repeated and concurrent), payments, voids, ends of cover and sweeps leaves a ledger that
balances, never posts a (policy, month) twice and never passes a budget ceiling.

Each example runs on a fresh schema; the number of examples is bounded to keep the
suite's time (raise PERISAI_LEDGER_EXAMPLES to search longer)."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import date
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.coverage import billing, domain, invoices, ledger, policies
from services.coverage.app import SPEC
from services.coverage.errors import Refused
from shared.db import create_pool
from shared.migrations import apply_migrations
from shared.outbox import enqueue_events
from tests.integration.coverage_helpers import CITY, enrol, set_ceiling

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("PERISAI_LEDGER_EXAMPLES", "12"))
MONTHS = [date(2026, m, 1) for m in range(1, 7)]
month_index = st.integers(min_value=0, max_value=len(MONTHS) - 1)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("enrol"), st.integers(min_value=1, max_value=15), month_index),
        st.tuples(st.just("bill"), month_index),
        st.tuples(st.just("bill_concurrently"), month_index),
        st.tuples(st.just("pay"), st.integers(0, 20), st.sampled_from([0.3, 0.5, 1.0, 1.5])),
        st.tuples(st.just("void"), st.integers(0, 20)),
        st.tuples(st.just("end"), st.integers(0, 200), month_index),
        st.tuples(st.just("sweep"), month_index),
    ),
    min_size=1,
    max_size=14,
)
ceilings = st.one_of(st.none(), st.integers(min_value=16_800, max_value=3_000_000))


async def apply(pool: asyncpg.Pool, operation: tuple[Any, ...], counter: list[int]) -> None:
    kind = operation[0]
    if kind == "enrol":
        _, count, index = operation
        counter[0] += count
        await enrol(pool, count, MONTHS[index], first=counter[0])
    elif kind == "bill":
        await billing.run(pool, MONTHS[operation[1]], trigger="command", chunk=7)
    elif kind == "bill_concurrently":
        period = MONTHS[operation[1]]
        await asyncio.gather(
            billing.run(pool, period, trigger="command", chunk=5),
            billing.run(pool, period, trigger="api", chunk=5),
            return_exceptions=True,
        )
    elif kind in ("pay", "void"):
        ids = [r["invoice_id"] for r in await pool.fetch("SELECT invoice_id FROM invoices")]
        if not ids:
            return
        invoice_id = ids[operation[1] % len(ids)]
        async with pool.acquire() as conn, conn.transaction():
            try:
                if kind == "pay":
                    row = await conn.fetchrow(
                        "SELECT total, paid_amount FROM invoices WHERE invoice_id = $1",
                        invoice_id,
                    )
                    amount = max(1, int((row["total"] - row["paid_amount"]) * operation[2]))
                    outcome = await invoices.pay(
                        conn,
                        invoice_id,
                        amount=amount,
                        paid_on=MONTHS[-1],
                        reference=str(uuid.uuid4()),
                        today=MONTHS[-1],
                    )
                    await enqueue_events(conn, outcome.events)
                else:
                    _, events = await invoices.void(
                        conn, invoice_id, reason="property test", today=MONTHS[-1]
                    )
                    await enqueue_events(conn, events)
            except Refused:
                return  # a refusal (overpayment, void after payment...) is an outcome
    elif kind == "end":
        workers = [r["worker_id"] for r in await pool.fetch("SELECT worker_id FROM policies")]
        if not workers:
            return
        async with pool.acquire() as conn, conn.transaction():
            try:
                event, _ = await policies.end(
                    conn,
                    worker_id=workers[operation[1] % len(workers)],
                    on=domain.month_end(MONTHS[operation[2]]),
                    reason="property test",
                )
                await enqueue_events(conn, [event])
            except Refused:
                return  # a refusal (overpayment, void after payment...) is an outcome
    elif kind == "sweep":
        async with pool.acquire() as conn, conn.transaction():
            await enqueue_events(conn, await policies.daily_sweep(conn, MONTHS[operation[1]]))


async def scenario(dsn: str, schema: str, ceiling: int | None, ops: list[Any]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await apply_migrations(conn, schema, SPEC.migrations)
    finally:
        await conn.close()
    pool = await create_pool(dsn, schema, min_size=1, max_size=4)
    try:
        await set_ceiling(pool, ceiling)
        counter = [0]
        for operation in ops:
            await apply(pool, operation, counter)
        async with pool.acquire() as conn:
            report = await ledger.check(conn)
            assert report["ok"], (ops, report["violations"])
            committed = await conn.fetchval(
                "SELECT committed FROM funding_agreements WHERE code = $1", CITY
            )
        assert ceiling is None or committed <= ceiling
    finally:
        await pool.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ceiling=ceilings, ops=operations)
def test_any_sequence_of_runs_payments_and_reversals_keeps_the_ledger_whole(
    database_url: str, ceiling: int | None, ops: list[Any]
) -> None:
    schema = f"coverage_{uuid.uuid4().hex[:8]}"
    asyncio.run(scenario(database_url, schema, ceiling, ops))
