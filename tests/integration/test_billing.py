"""The monthly billing run on a real PostgreSQL schema: exactly once per (policy, month),
invoices that add up, and a budget ceiling that is never crossed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import asyncpg
import pytest

from services.coverage import billing, domain, run_postings, store
from services.coverage.app import SPEC
from shared.events import CoverageRefused, InvoiceIssued, PremiumPosted
from shared.kafka import ensure_topics, new_producer
from shared.outbox import waiting_records
from shared.relay import OutboxRelay
from tests.conftest import ServicePool
from tests.integration.coverage_helpers import (
    CITY,
    assert_ledger_holds,
    enrol,
    outbox_counts,
    set_ceiling,
)
from tests.integration.kafka_helpers import read_topic

pytestmark = pytest.mark.integration

COVERED_APRIL_2025 = 9_038
MINIMUM_PACKAGE = 16_800
MAY, JUNE, JULY = date(2026, 5, 1), date(2026, 6, 1), date(2026, 7, 1)


@pytest.fixture
async def pool(service_pool: ServicePool) -> AsyncIterator[asyncpg.Pool]:
    pool = await service_pool(SPEC, max_size=6)
    yield pool
    await assert_ledger_holds(pool)


async def test_sql_uuid_v3_is_pythons_uuid3(pool: asyncpg.Pool) -> None:
    names = ["", "premium:x:2026-06", "kelurahan Tapa'an", "ü" * 40, "a:b:c" * 50]
    for name in names:
        ours = await pool.fetchval("SELECT uuid_v3($1, $2)", domain.POLICY_NAMESPACE, name)
        assert ours == uuid.uuid3(domain.POLICY_NAMESPACE, name), name


async def test_sql_uuid_v7_series_numbers_one_base_in_order(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT uuid_v7_series(b.base, n) AS id, b.base FROM (SELECT uuid_v7() AS base) b, "
        "generate_series(1, 300) AS n ORDER BY n"
    )
    ids = [row["id"] for row in rows]
    base = rows[0]["base"]
    assert {i.version for i in ids} == {7}
    assert {i.variant for i in ids} == {uuid.RFC_4122}
    assert ids == sorted(ids) and len(set(ids)) == 300
    assert {i.int >> 48 for i in ids} == {base.int >> 48}, "the base's time and random bits"
    assert [i.int & (2**48 - 1) for i in ids] == list(range(1, 301))


async def test_the_cohort_gives_an_invoice_of_exactly_151_838_400_once(
    pool: asyncpg.Pool,
) -> None:
    await enrol(pool, COVERED_APRIL_2025, date(2026, 5, 10))
    before = await outbox_counts(pool)

    first = await billing.run(pool, JUNE, trigger="command", chunk=2_000)
    again = await billing.run(pool, JUNE, trigger="command", chunk=2_000)

    assert first.policies_billed == COVERED_APRIL_2025
    assert first.postings_created == COVERED_APRIL_2025
    assert first.amount_created == first.invoice_total == 151_838_400
    assert again.postings_created == 0
    assert again.postings_existing == COVERED_APRIL_2025
    assert again.invoice_total == 151_838_400
    assert (
        await pool.fetchval("SELECT count(*) FROM premium_ledger WHERE period = $1", JUNE)
        == COVERED_APRIL_2025
    )
    invoice = await pool.fetchrow("SELECT * FROM invoices WHERE period = $1", JUNE)
    assert (invoice["headcount"], invoice["total"], invoice["revision"]) == (
        COVERED_APRIL_2025,
        151_838_400,
        1,
    )
    assert (
        await pool.fetchval(
            "SELECT sum(amount) FROM invoice_lines WHERE invoice_id = $1", invoice["invoice_id"]
        )
        == 151_838_400
    )
    after = await outbox_counts(pool)
    assert after[PremiumPosted.TOPIC] - before[PremiumPosted.TOPIC] == COVERED_APRIL_2025
    assert after[InvoiceIssued.TOPIC] == 1
    committed = await pool.fetchval(
        "SELECT committed FROM funding_agreements WHERE code = $1", CITY
    )
    assert committed == 2 * 151_838_400  # May (posted at activation) and June


async def test_a_runs_premium_posted_events_read_back_from_the_ledger_are_the_models(
    pool: asyncpg.Pool,
) -> None:
    workers = await enrol(pool, 3, date(2026, 5, 10))
    before = await pool.fetchval("SELECT max(id) FROM outbox")
    summary = await billing.run(pool, JUNE, trigger="api")

    sources = await pool.fetch("SELECT topic, source FROM outbox_sources")
    assert [(r["topic"], r["source"]) for r in sources] == [
        (PremiumPosted.TOPIC, run_postings.SOURCE)
    ], "one row stands for the run's postings, not one row per posting"
    added = await pool.fetch("SELECT topic FROM outbox WHERE id > $1", before)
    assert [r["topic"] for r in added] == [InvoiceIssued.TOPIC]
    async with pool.acquire() as conn:
        records = await waiting_records(conn, run_postings.SOURCES, page=2)
    june = [
        (r, PremiumPosted.model_validate_json(r.value or b""))
        for r in records
        if r.topic == PremiumPosted.TOPIC
    ]
    june = [(r, e) for r, e in june if e.period == "2026-06"]
    assert sorted(e.worker_id for _, e in june) == sorted(w.worker_id for w in workers)
    assert [e.policy_id for _, e in june] == sorted(e.policy_id for _, e in june)
    entries = {
        r["entry_id"]: r
        for r in await pool.fetch(
            "SELECT * FROM premium_ledger WHERE period = $1 AND billing_run_id = $2",
            JUNE,
            uuid.UUID(summary.run_id),
        )
    }
    assert set(entries) == {e.entry_id for _, e in june}
    started_ms = datetime.fromisoformat(summary.started_at).timestamp() * 1000
    for entry_id in entries:  # uuid_v7: the run's ids carry the time they were made
        assert entry_id.version == 7
        assert abs(int(entry_id.hex[:12], 16) - started_ms) < 60_000
    for record, event in june:
        entry = entries[event.entry_id]
        posting = domain.LedgerEntry(
            entry["entry_id"],
            entry["policy_id"],
            entry["worker_id"],
            entry["period"],
            domain.Premium(entry["jkk_amount"], entry["jkm_amount"], entry["tariff_code"]),
            entry["debit_account"],
            entry["credit_account"],
        )
        started = datetime.fromisoformat(summary.started_at)
        model_built = domain.run_posting_event(posting, started, f"billing-run:{summary.run_id}")
        assert event == model_built, "the JSON built in SQL is the model's event"
        assert list(record.headers) == model_built.kafka_headers()
        assert record.event_id == event.event_id == domain.billing_event_id(event.entry_id)
        assert (event.policy_id, event.worker_id) == (entry["policy_id"], entry["worker_id"])
        assert (event.jkk_amount, event.jkm_amount, event.amount) == (10_000, 6_800, 16_800)
        assert event.debit_account == f"payer:{CITY}"
        assert event.correlation_id == f"billing-run:{summary.run_id}"
        assert event.occurred_at == datetime.fromisoformat(summary.started_at)
        assert record.key == str(event.worker_id).encode()
        assert dict(record.headers)["event_type"] == b"premium.posted"
    async with pool.acquire() as conn:
        again = await waiting_records(conn, run_postings.SOURCES)
    assert [r.value for r in again] == [r.value for r in records], "read back byte for byte"


async def test_the_coverage_relay_publishes_every_posting_of_a_run_to_kafka(
    pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await enrol(pool, 230, date(2026, 5, 10))
    await pool.execute("DELETE FROM outbox")  # May's activation events: not this test's
    summary = await billing.run(pool, JUNE, trigger="command", chunk=100)
    topics = [topic_prefix + PremiumPosted.TOPIC, topic_prefix + InvoiceIssued.TOPIC]
    await ensure_topics(kafka_bootstrap, topics)
    relay = OutboxRelay(
        pool,
        SPEC.name,
        lambda: new_producer(kafka_bootstrap, "perisai-test-relay"),
        batch_size=50,
        topic_prefix=topic_prefix,
        sources=SPEC.outbox_sources,
    )
    await relay.drain(timeout_s=60)

    assert relay.published == 231
    assert await pool.fetchval("SELECT count(*) FROM outbox_sources") == 0
    received = await read_topic(kafka_bootstrap, topics[0], at_least=230)
    events = [PremiumPosted.model_validate_json(m.value) for m in received]
    ledger = await pool.fetch(
        "SELECT entry_id, worker_id FROM premium_ledger WHERE billing_run_id = $1",
        uuid.UUID(summary.run_id),
    )
    assert sorted(e.entry_id for e in events) == sorted(r["entry_id"] for r in ledger)
    assert {m.key for m in received} == {str(r["worker_id"]).encode() for r in ledger}
    assert len(await read_topic(kafka_bootstrap, topics[1], at_least=1)) == 1


async def test_a_run_postings_row_reads_its_own_run_and_payer_page_by_page(
    service_pool: ServicePool,
) -> None:
    pool = await service_pool(SPEC)  # postings written directly: no ledger check after
    run_id = uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO premium_ledger (entry_id, policy_id, worker_id, period, entry_type,
                                           jkk_amount, jkm_amount, amount, tariff_code,
                                           debit_account, credit_account, billing_run_id,
                                           kecamatan_code, occupation)
               SELECT uuid_v7(), gen_random_uuid(), gen_random_uuid(), $1, 'premium', 10000,
                      6800, 16800, 'T', CASE WHEN n % 3 = 0 THEN 'payer:B' ELSE 'payer:A' END,
                      'bpjstk:receivable', r.run, r.kecamatan, r.occupation
               FROM generate_series(1, 200) AS n
               CROSS JOIN LATERAL (
                   SELECT CASE WHEN n % 7 = 0 THEN NULL WHEN n % 11 = 0 THEN $3::uuid
                               ELSE $2::uuid END AS run) AS pick
               CROSS JOIN LATERAL (
                   SELECT pick.run, CASE WHEN pick.run IS NULL THEN NULL ELSE '35.75.01' END
                                    AS kecamatan,
                          CASE WHEN pick.run IS NULL THEN NULL ELSE 'pedagang' END
                                    AS occupation) AS r""",
            JUNE,
            run_id,
            uuid.uuid4(),  # another run of the month
        )
        expected = {
            payer: await conn.fetch(
                """SELECT policy_id FROM premium_ledger
                   WHERE billing_run_id = $1 AND debit_account = $2 ORDER BY policy_id""",
                run_id,
                payer,
            )
            for payer in ("payer:A", "payer:B")
        }
        started = datetime.now(UTC)
        for payer in ("payer:B", "payer:A"):
            await run_postings.enqueue(conn, run_postings.RunPostings(run_id, JUNE, payer, started))
        records = await waiting_records(conn, run_postings.SOURCES, page=7)

    events = [PremiumPosted.model_validate_json(r.value or b"") for r in records]
    expected_ids = [r["policy_id"] for r in expected["payer:B"] + expected["payer:A"]]
    assert len(expected_ids) > 100
    assert [e.policy_id for e in events] == expected_ids
    assert [e.debit_account for e in events] == [
        payer for payer in ("payer:B", "payer:A") for _ in expected[payer]
    ]


async def test_a_runs_postings_are_its_invoices_lines_by_one_row_as_billed(
    pool: asyncpg.Pool,
) -> None:
    """The run does not copy its postings into invoice lines: one invoice_run_lines row
    stands for them, and each posting carries its kecamatan and occupation as billed.
    First months posted later are still listed one by one."""
    await enrol(pool, 10, date(2026, 5, 10))
    first = await billing.run(pool, JUNE, trigger="command", chunk=4)
    moved, billed_in = await pool.fetchrow(  # type: ignore[misc]
        "SELECT policy_id, kecamatan_code FROM policies ORDER BY policy_id LIMIT 1"
    )
    await pool.execute(
        "UPDATE policies SET kecamatan_code = 'elsewhere' WHERE policy_id = $1", moved
    )
    await enrol(pool, 1, date(2026, 6, 20), first=100)  # June's first month, posted now
    again = await billing.run(pool, JUNE, trigger="command", chunk=4)

    invoice_id = uuid.UUID(first.agreements[0].invoice_id or "")
    assert again.postings_created == 0 and again.agreements[0].invoice_revision == 2
    run_lines = await pool.fetch("SELECT invoice_id, billing_run_id FROM invoice_run_lines")
    assert [tuple(r) for r in run_lines] == [(invoice_id, uuid.UUID(first.run_id))]
    listed = await pool.fetch("SELECT entry_id FROM invoice_listed_lines")
    late = await pool.fetchval(
        "SELECT entry_id FROM premium_ledger WHERE period = $1 AND billing_run_id IS NULL", JUNE
    )
    assert [r["entry_id"] for r in listed] == [late]
    async with pool.acquire() as conn:
        lines = await store.invoice_lines(conn, invoice_id)
        shown = await store.invoice(conn, invoice_id)
    assert len(lines) == 11 and shown is not None and shown["headcount"] == 11
    billed_there = [line for line in lines if line["policy_id"] == moved]
    assert [line["kecamatan_code"] for line in billed_there] == [billed_in], "as billed"

    posted = await pool.fetch(
        "SELECT entry_id FROM premium_ledger WHERE billing_run_id = $1 ORDER BY policy_id",
        uuid.UUID(first.run_id),
    )
    ids = [r["entry_id"] for r in posted]
    assert len(set(ids)) == 10 and {i.version for i in ids} == {7}
    for chunk in (ids[0:4], ids[4:8], ids[8:10]):
        assert chunk == sorted(chunk), "a chunk numbers its postings in policy order"


async def test_a_policy_is_billed_from_the_month_cover_starts_until_the_month_it_ends(
    pool: asyncpg.Pool,
) -> None:
    await enrol(pool, 2, date(2026, 5, 10))
    later = await enrol(pool, 1, date(2026, 7, 20), first=100)
    ended = await pool.fetchrow(
        "SELECT policy_id FROM policies WHERE coverage_start < $1 ORDER BY policy_id LIMIT 1",
        JUNE,
    )
    await pool.execute(
        "UPDATE policies SET status = 'ended', coverage_end = '2026-06-03' WHERE policy_id = $1",
        ended["policy_id"],
    )

    june = await billing.run(pool, JUNE, trigger="command")
    july = await billing.run(pool, JULY, trigger="command")

    assert june.policies_billed == 2  # the later worker's cover starts in July
    assert july.policies_billed == 2  # the ended policy is not billed after June
    assert july.postings_existing == 1  # the July joiner's first month, from activation
    assert later[0].worker_id in {
        r["worker_id"]
        for r in await pool.fetch("SELECT worker_id FROM premium_ledger WHERE period = $1", JULY)
    }


async def test_a_run_stopped_midway_leaves_nothing_and_the_next_run_posts_each_month_once(
    pool: asyncpg.Pool,
) -> None:
    await enrol(pool, 3_000, date(2026, 5, 10))
    chunks = 0

    def stop_after_two_chunks(progress: billing.Progress) -> None:
        nonlocal chunks
        chunks += 1
        if chunks == 2:
            raise KeyboardInterrupt  # as a Ctrl-C would, between two statements

    with pytest.raises(KeyboardInterrupt):
        await billing.run(
            pool, JUNE, trigger="command", chunk=1_000, progress=stop_after_two_chunks
        )
    assert await pool.fetchval("SELECT count(*) FROM premium_ledger WHERE period = $1", JUNE) == 0
    assert await pool.fetchval("SELECT count(*) FROM invoices") == 0

    summary = await billing.run(pool, JUNE, trigger="command", chunk=1_000)

    assert summary.postings_created == 3_000
    assert (
        await pool.fetchval(
            "SELECT count(DISTINCT policy_id) FROM premium_ledger WHERE period = $1", JUNE
        )
        == 3_000
    )


async def test_a_month_the_budget_cannot_take_is_refused_whole(pool: asyncpg.Pool) -> None:
    await enrol(pool, 100, date(2026, 5, 10))
    await set_ceiling(pool, 100 * MINIMUM_PACKAGE * 2 - 1)  # May is posted; June is Rp 1 short

    summary = await billing.run(pool, JUNE, trigger="command")

    assert summary.refused == 1
    assert summary.postings_created == 0
    assert await pool.fetchval("SELECT count(*) FROM premium_ledger WHERE period = $1", JUNE) == 0
    assert await pool.fetchval("SELECT count(*) FROM invoices WHERE period = $1", JUNE) == 0
    refused = [
        CoverageRefused.model_validate_json(r["value"])
        for r in await pool.fetch(
            "SELECT value FROM outbox WHERE topic = $1", CoverageRefused.TOPIC
        )
    ]
    assert [(r.period, r.amount, r.committed) for r in refused] == [
        ("2026-06", 100 * MINIMUM_PACKAGE, 100 * MINIMUM_PACKAGE)
    ]
    assert "past its budget ceiling" in refused[0].detail

    await set_ceiling(pool, 100 * MINIMUM_PACKAGE * 2)
    assert (await billing.run(pool, JUNE, trigger="command")).postings_created == 100


async def test_two_runs_at_once_never_exceed_the_budget(pool: asyncpg.Pool) -> None:
    await enrol(pool, 500, date(2026, 5, 10))
    ceiling = 500 * MINIMUM_PACKAGE * 2  # May and one more month
    await set_ceiling(pool, ceiling)

    results = await asyncio.gather(
        billing.run(pool, JUNE, trigger="command", chunk=100),
        billing.run(pool, JULY, trigger="api", chunk=100),
        return_exceptions=True,
    )

    assert sorted(r.refused for r in results if isinstance(r, billing.BillingSummary)) == [0, 1]
    committed = await pool.fetchval(
        "SELECT committed FROM funding_agreements WHERE code = $1", CITY
    )
    posted = await pool.fetchval("SELECT sum(amount) FROM premium_ledger")
    assert committed == posted == ceiling


async def test_the_same_month_is_never_billed_by_two_runs_at_once(pool: asyncpg.Pool) -> None:
    await enrol(pool, 2_000, date(2026, 5, 10))

    results = await asyncio.gather(
        *(billing.run(pool, JUNE, trigger="command", chunk=200) for _ in range(3)),
        return_exceptions=True,
    )

    done = [r for r in results if isinstance(r, billing.BillingSummary)]
    busy = [r for r in results if isinstance(r, billing.BillingInProgress)]
    assert len(done) + len(busy) == 3 and done
    assert sum(r.postings_created for r in done) == 2_000
    assert (
        await pool.fetchval("SELECT count(*) FROM premium_ledger WHERE period = $1", JUNE) == 2_000
    )


async def test_a_first_month_the_budget_cannot_take_leaves_the_policy_pending(
    pool: asyncpg.Pool,
) -> None:
    await set_ceiling(pool, 2 * MINIMUM_PACKAGE)

    workers = await enrol(pool, 3, date(2026, 5, 10))

    rows = await pool.fetch("SELECT worker_id, status, status_reason FROM policies")
    statuses = {r["worker_id"]: (r["status"], r["status_reason"]) for r in rows}
    ordered = sorted(w.worker_id for w in workers)
    assert [statuses[w] for w in ordered] == [
        ("active", None),
        ("active", None),
        ("pending", "BUDGET_EXCEEDED"),
    ]
    refused = await pool.fetch("SELECT value FROM outbox WHERE topic = $1", CoverageRefused.TOPIC)
    assert [CoverageRefused.model_validate_json(r["value"]).worker_id for r in refused] == [
        ordered[2]
    ]
    assert (
        await pool.fetchval("SELECT committed FROM funding_agreements WHERE code = $1", CITY)
        == 2 * MINIMUM_PACKAGE
    )
