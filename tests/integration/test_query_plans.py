"""The lookups that run for every batch must use an index on tables that grow without
bound: a sequential scan makes each batch cost time in proportion to everyone already
enrolled (measured: 16.7 s per 1,000 NIKs among 520,000 workers). Each store function
runs against a real PostgreSQL with 200,000 rows, and PostgreSQL's own plan for every
statement it issued is checked."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import asyncpg
import pytest

from services.coverage import domain as coverage_domain
from services.coverage import store as coverage_store
from services.coverage.app import SPEC as COVERAGE
from services.notifications.app import SPEC as NOTIFICATIONS
from services.registration import search, store
from services.registration.app import SPEC as REGISTRATION
from shared import inbox
from tests.conftest import ServicePool

pytestmark = pytest.mark.integration

ROWS = 200_000


@dataclass
class StatementRecorder:
    """Passes a store function's statements to the real connection and keeps them."""

    conn: asyncpg.Connection
    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        self.statements.append((sql, args))
        return await getattr(self.conn, method)(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> Any:
        return await self._run("fetch", sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchrow", sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchval", sql, *args)

    async def execute(self, sql: str, *args: Any) -> Any:
        return await self._run("execute", sql, *args)


def scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(node type, relation) of every node of a JSON plan."""
    found = [(plan["Node Type"], plan.get("Relation Name", ""))]
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


async def sequential_scans(
    conn: asyncpg.Connection, call: Callable[[Any], Awaitable[Any]], tables: set[str]
) -> list[str]:
    """Run ``call`` with a recording connection (in a transaction rolled back after), then
    EXPLAIN each statement it issued: the sequential scans of ``tables``, described."""
    recorder = StatementRecorder(conn)
    transaction = conn.transaction()
    await transaction.start()
    try:
        await call(recorder)
        found = []
        for sql, args in recorder.statements:
            plan_json = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
            plan = json.loads(plan_json)[0]["Plan"]
            found += [
                f"{node} on {relation}: {' '.join(sql.split())[:120]}"
                for node, relation in scans(plan)
                if node == "Seq Scan" and relation in tables
            ]
        return found
    finally:
        await transaction.rollback()


async def indexes_used(conn: asyncpg.Connection, call: Callable[[Any], Awaitable[Any]]) -> set[str]:
    """The indexes the plans of ``call``'s statements scan (run in a transaction rolled
    back after)."""
    recorder = StatementRecorder(conn)
    transaction = conn.transaction()
    await transaction.start()
    try:
        await call(recorder)
        used: set[str] = set()
        for sql, args in recorder.statements:
            plan_json = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
            used |= set(_index_names(json.loads(plan_json)[0]["Plan"]))
        return used
    finally:
        await transaction.rollback()


def _index_names(plan: dict[str, Any]) -> list[str]:
    names = [plan["Index Name"]] if "Index Name" in plan else []
    for child in plan.get("Plans", []):
        names += _index_names(child)
    return names


def nik(n: int) -> str:
    return f"3575{n:012d}"


async def test_registration_lookups_use_indexes_on_200k_workers(service_pool: ServicePool) -> None:
    pool = await service_pool(REGISTRATION)
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO workers (worker_id, participant_number, nik, full_name, birth_date,
                                    gender, address, kelurahan, kecamatan_code, phone_e164,
                                    occupation, declared_income, preferred_language,
                                    request_id, enrolled_on, name_key)
               SELECT gen_random_uuid(), lpad(n::text, 11, '0'), '3575' || lpad(n::text, 12, '0'),
                      'Worker ' || n, DATE '1960-01-01' + n % 15000, 'M', 'Jl. 1', 'Gadingrejo',
                      '35.75.01', '+62812' || lpad(n::text, 8, '0'), 'pedagang', 1000000, 'id',
                      'req-' || n, CURRENT_DATE, 'worker ' || n
               FROM generate_series(1, $1) AS n""",
            ROWS,
        )
        await conn.execute(
            """INSERT INTO enrolment_requests (request_id, source, outcome, worker_id,
                                               participant_number)
               SELECT request_id, 'api', 'enrolled', worker_id, participant_number
               FROM workers"""
        )
        await conn.execute("ANALYZE workers; ANALYZE enrolment_requests")
        niks = [nik(n) for n in range(1, 200_000, 200)]
        request_ids = [f"req-{n}" for n in range(1, 200_000, 200)]
        big = {"workers", "enrolment_requests"}

        assert await sequential_scans(conn, lambda c: store.participants_by_nik(c, niks), big) == []
        assert await sequential_scans(conn, lambda c: store.holders_by_nik(c, niks), big) == []
        assert await sequential_scans(conn, lambda c: store.answered(c, request_ids), big) == []
        number = await conn.fetchval("SELECT participant_number FROM workers LIMIT 1")
        assert await sequential_scans(conn, lambda c: store.worker_summary(c, number), big) == []
        for query in (
            search.ByName("worker 1234"),
            search.ByNikTailAndBirthDate("1234", date(1960, 1, 1) + timedelta(days=1234)),
            search.ByPhone("+6281200001234"),
        ):
            for after in (None, ("worker 1234", "00000001234")):
                look = lambda c, q=query, a=after: store.search(c, q, 21, a)  # noqa: E731
                assert await sequential_scans(conn, look, big) == [], query
        [found] = await store.search(conn, search.ByPhone("+6281200001234"), 21, None)
        assert found["participant_number"] == "00000001234"
        names = await store.search(conn, search.ByName("worker 1234"), 21, None)
        assert [r["name_key"] for r in names][:3] == [
            "worker 1234",
            "worker 12340",
            "worker 123400",
        ]

        found = await store.participants_by_nik(conn, niks[:3])
        assert found == {
            n: await conn.fetchval("SELECT participant_number FROM workers WHERE nik = $1", n)
            for n in niks[:3]
        }


@pytest.mark.parametrize("spec", [REGISTRATION, COVERAGE, NOTIFICATIONS], ids=lambda s: s.name)
async def test_inbox_claims_use_the_index_on_200k_rows(
    service_pool: ServicePool, spec: Any
) -> None:
    pool = await service_pool(spec)
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO inbox (consumer, event_id)
               SELECT 'c', gen_random_uuid() FROM generate_series(1, $1)""",
            ROWS,
        )
        await conn.execute("ANALYZE inbox")
        # Half of them already claimed: the claim then also reads their content hashes.
        known = [r["event_id"] for r in await conn.fetch("SELECT event_id FROM inbox LIMIT 500")]
        ids = known + [uuid.uuid4() for _ in range(500)]
        entries = [inbox.Entry(i, inbox.content_hash(b"x"), "t/0/0") for i in ids]
        assert await sequential_scans(conn, lambda c: inbox.claim(c, "c", entries), {"inbox"}) == []


async def test_no_service_stores_char_n_columns(service_pool: ServicePool) -> None:
    """char(n) compared with text parameters or arrays can cost the index (above): every
    fixed-length code is text with a check instead."""
    for spec in (REGISTRATION, COVERAGE, NOTIFICATIONS):
        pool = await service_pool(spec)
        rows = await pool.fetch(
            """SELECT table_name, column_name FROM information_schema.columns
               WHERE table_schema = $1 AND data_type = 'character'""",
            spec.name,
        )
        assert [tuple(r) for r in rows] == [], f"{spec.name} has char(n) columns"


async def test_coverage_billing_uses_indexes_on_200k_policies(service_pool: ServicePool) -> None:
    """A chunk of the billing run, a worker's activation lookup and the month's invoice
    must not scan every policy or ledger entry (the run's chunks would each cost the
    whole table)."""
    pool = await service_pool(COVERAGE)
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO policies (policy_id, worker_id, participant_number, agreement_code,
                                     status, coverage_start, declared_income, kecamatan_code,
                                     occupation, payer)
               SELECT gen_random_uuid(), gen_random_uuid(), lpad(n::text, 11, '0'),
                      'KOTA-PASURUAN-DBHCHT', 'active', DATE '2026-05-10', 1000000,
                      '35.75.01', 'pedagang', 'Pemerintah Kota Pasuruan'
               FROM generate_series(1, $1) AS n""",
            ROWS,
        )
        await conn.execute(
            """INSERT INTO premium_ledger (entry_id, policy_id, worker_id, period, entry_type,
                                           jkk_amount, jkm_amount, amount, tariff_code,
                                           debit_account, credit_account)
               SELECT gen_random_uuid(), policy_id, worker_id, DATE '2026-05-01', 'premium',
                      10000, 6800, 16800, 'CITY-MINIMUM-PACKAGE',
                      'payer:KOTA-PASURUAN-DBHCHT', 'bpjstk:receivable'
               FROM policies"""
        )
        await conn.execute("ANALYZE policies; ANALYZE premium_ledger")
        [city] = await coverage_store.agreements(conn)
        june = date(2026, 6, 1)
        tariff = coverage_domain.agreement_tariff(city, june)
        middle = await conn.fetchval(
            "SELECT policy_id FROM policies ORDER BY policy_id OFFSET 1000"
        )
        workers = [
            r["worker_id"] for r in await conn.fetch("SELECT worker_id FROM policies LIMIT 50")
        ]
        big = {"policies", "premium_ledger"}

        async def chunk(c: Any) -> None:
            await coverage_store.bill_chunk(
                c,
                city,
                june,
                tariff,
                run_id=run_id,
                after=middle,
                limit=1_000,
            )

        async def relay_page(c: Any) -> None:
            await coverage_store.run_posting_events(
                c,
                june,
                run_id,
                city.payer_account,
                after=middle,
                limit=1_000,
                occurred_at="2026-06-01T00:00:00Z",
                correlation_id="plan",
            )

        async def first_months(c: Any) -> None:
            invoice = coverage_store.OpenInvoice(uuid.uuid4(), created=True)
            await coverage_store.line_first_months(c, invoice, city, june)

        async def invoice_read(c: Any) -> coverage_store.OpenInvoice:
            await chunk(c)
            invoice = await coverage_store.open_invoice(c, city, june, uuid.uuid4())
            assert invoice is not None
            await coverage_store.line_run_postings(c, invoice, run_id)
            shown = await coverage_store.invoice(c, invoice.invoice_id)
            assert shown is not None and shown["by_kecamatan"] == [
                {"kecamatan_code": "35.75.01", "headcount": 1_000, "amount": 16_800_000}
            ]
            assert len(await coverage_store.invoice_lines(c, invoice.invoice_id)) == 1_000
            return invoice

        async def lapse_and_reinstate(c: Any) -> None:
            invoice = await invoice_read(c)  # June's invoice, unpaid: overdue in November
            await coverage_store.settle_invoice(c, invoice, 1_000, 16_800_000)
            lapsed = await coverage_store.lapse_overdue(c, date(2026, 11, 1))
            assert len(lapsed) == 1_000
            assert await coverage_store.reinstate_settled(c, date(2026, 11, 1)) == []

        run_id = uuid.uuid4()
        assert await sequential_scans(conn, chunk, big) == []
        assert await sequential_scans(conn, invoice_read, big) == []
        assert await sequential_scans(conn, lapse_and_reinstate, {"premium_ledger"}) == []
        assert "premium_ledger_month_payer_run" in await indexes_used(conn, invoice_read)
        assert await sequential_scans(conn, relay_page, big) == []
        assert await sequential_scans(conn, first_months, big) == []
        assert await indexes_used(conn, relay_page) == {"premium_ledger_month_payer_run"}
        assert await indexes_used(conn, first_months) >= {"premium_ledger_first_months"}
        lookup = lambda c: coverage_store.workers_with_policies(c, workers)  # noqa: E731
        assert await sequential_scans(conn, lookup, big) == []
        shown = lambda c: coverage_store.policy_of(c, workers[0])  # noqa: E731
        assert await sequential_scans(conn, shown, big) == []
