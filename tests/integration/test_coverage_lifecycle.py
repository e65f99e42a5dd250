"""Agreements, payments, voids, lapses and the end of cover on a real PostgreSQL schema;
every test ends with the ledger's invariants checked."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest

from services.coverage import agreements, billing, invoices, ledger, policies, store
from services.coverage.app import SPEC
from services.coverage.errors import Refused
from services.coverage.schedule import Scheduler
from shared.events import (
    InvoicePaid,
    InvoiceVoided,
    PolicyActivated,
    PolicyEnded,
    PolicyLapsed,
    PolicyReinstated,
    PremiumReversed,
)
from shared.outbox import enqueue_events
from tests.conftest import ServicePool
from tests.integration.coverage_helpers import CITY, assert_ledger_holds, enrol, set_ceiling

pytestmark = pytest.mark.integration

MAY, JUNE, JULY, AUGUST = (date(2026, m, 1) for m in (5, 6, 7, 8))
MINIMUM_PACKAGE = 16_800
PAYER = "Pemerintah Kota Pasuruan"


@pytest.fixture
async def pool(service_pool: ServicePool) -> AsyncIterator[asyncpg.Pool]:
    pool = await service_pool(SPEC, max_size=4)
    yield pool
    await assert_ledger_holds(pool)


def draft(**overrides: object) -> agreements.AgreementDraft:
    values: dict[str, object] = {
        "code": "KOTA-PASURUAN-DBHCHT-2026B",
        "payer": PAYER,
        "payer_type": "apbd",
        "funding_source": "DBHCHT",
        "valid_from": AUGUST,
        "budget_ceiling": 1_000_000_000,
    }
    values.update(overrides)
    return agreements.AgreementDraft.model_validate(values)


async def invoice_id(pool: asyncpg.Pool, period: date, code: str = CITY) -> object:
    return await pool.fetchval(
        "SELECT invoice_id FROM invoices WHERE agreement_code = $1 AND period = $2", code, period
    )


async def statuses(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM policies GROUP BY status")
    return {row["status"]: row["n"] for row in rows}


async def test_a_renewal_starts_where_the_last_agreement_ends_and_goes_on_billing(
    pool: asyncpg.Pool,
) -> None:
    await enrol(pool, 10, date(2026, 5, 10))
    await billing.run(pool, JULY, trigger="command")
    renewal_draft = draft(budget_ceiling=2_000_000)
    async with pool.acquire() as conn, conn.transaction():
        with pytest.raises(Refused) as overlapping:
            await agreements.add(conn, draft(), date(2026, 7, 15))
        assert overlapping.value.code == "AGREEMENT_OVERLAPS"
        with pytest.raises(Refused) as billed:
            await agreements.end(conn, CITY, JULY)
        assert billed.value.code == "AGREEMENT_ALREADY_BILLED"
        await agreements.end(conn, CITY, AUGUST)
        renewal, added, _ = await agreements.add(conn, renewal_draft, date(2026, 7, 15))
        assert added
        again = await agreements.add(conn, renewal_draft, date(2026, 7, 15))
        assert again[1] is False  # the same agreement again changes nothing
        with pytest.raises(Refused) as taken:
            await agreements.add(conn, draft(budget_ceiling=5), date(2026, 7, 15))
        assert taken.value.code == "AGREEMENT_CODE_TAKEN"

    august = await billing.run(pool, AUGUST, trigger="command")

    assert [(a.agreement_code, a.postings_created) for a in august.agreements] == [
        (renewal.code, 10)
    ]
    async with pool.acquire() as conn:
        report = await agreements.report(conn, renewal.code, date(2026, 8, 20))
    budget = report["budget"]
    assert isinstance(budget, dict)
    assert budget["committed"] == 10 * MINIMUM_PACKAGE
    assert budget["monthly_cost"] == 10 * MINIMUM_PACKAGE
    assert budget["paid_through"] == "2026-08"
    # Rp 2,000,000 - 168,000 left at Rp 168,000 a month: 10 more months from September.
    assert budget["runs_out"] == "2027-07"


async def test_pending_policies_start_when_an_agreement_comes_into_force(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        await agreements.end(conn, CITY, date(2026, 5, 1))
    await enrol(pool, 5, date(2026, 6, 10))
    assert await statuses(pool) == {"pending": 5}

    async with pool.acquire() as conn, conn.transaction():
        _, _, events = await agreements.add(conn, draft(valid_from=JULY), date(2026, 6, 20))
        assert events == []  # not in force yet
        early = await policies.daily_sweep(conn, date(2026, 6, 30))
        started = await policies.daily_sweep(conn, date(2026, 7, 1))
        await enqueue_events(conn, started)

    assert early == []
    assert await statuses(pool) == {"active": 5}
    activated = [e for e in started if isinstance(e, PolicyActivated)]
    assert len(activated) == 5
    assert {e.coverage_start for e in activated} == {JULY}
    assert await pool.fetchval("SELECT count(*) FROM premium_ledger WHERE period = $1", JULY) == 5


async def test_a_month_unpaid_past_grace_lapses_its_policies_and_payment_reinstates_them(
    pool: asyncpg.Pool,
) -> None:
    await enrol(pool, 20, date(2026, 5, 10))
    await billing.run(pool, MAY, trigger="command")
    may_invoice = await invoice_id(pool, MAY)
    async with pool.acquire() as conn, conn.transaction():
        assert await policies.settle_lapses(conn, date(2026, 8, 31)) == []  # 3 months' grace
        lapsed = await policies.settle_lapses(conn, date(2026, 9, 1))
    assert len(lapsed) == 20 and all(isinstance(e, PolicyLapsed) for e in lapsed)
    assert await statuses(pool) == {"lapsed": 20}
    september = await billing.run(pool, date(2026, 9, 1), trigger="command")
    assert september.policies_billed == 0  # nothing is billed while lapsed

    async with pool.acquire() as conn, conn.transaction():
        part = await invoices.pay(
            conn,
            may_invoice,
            amount=100_000,
            paid_on=date(2026, 9, 2),
            reference="SP2D-1",
            today=date(2026, 9, 2),
        )
        rest = await invoices.pay(
            conn,
            may_invoice,
            amount=20 * MINIMUM_PACKAGE - 100_000,
            paid_on=date(2026, 9, 3),
            reference="SP2D-2",
            today=date(2026, 9, 3),
        )

    assert (part.status, part.outstanding, part.events) == ("pending", 236_000, [])
    assert rest.status == "paid" and rest.outstanding == 0
    assert [type(e) for e in rest.events[:1]] == [InvoicePaid]
    assert sum(isinstance(e, PolicyReinstated) for e in rest.events) == 20
    assert await statuses(pool) == {"active": 20}
    october = await billing.run(pool, date(2026, 10, 1), trigger="command")
    assert october.postings_created == 20


async def test_payments_are_recorded_once_per_reference_and_never_past_the_total(
    pool: asyncpg.Pool,
) -> None:
    await enrol(pool, 2, date(2026, 5, 10))
    await billing.run(pool, MAY, trigger="command")
    invoice = await invoice_id(pool, MAY)
    async with pool.acquire() as conn, conn.transaction():
        first = await invoices.pay(
            conn,
            invoice,
            amount=10_000,
            paid_on=date(2026, 5, 20),
            reference="TRX 1",
            today=date(2026, 5, 20),
        )
        replay = await invoices.pay(
            conn,
            invoice,
            amount=10_000,
            paid_on=date(2026, 5, 20),
            reference="TRX 1",
            today=date(2026, 5, 21),
        )
        assert (first.recorded_now, replay.recorded_now) == (True, False)
        assert replay.paid_amount == 10_000
        with pytest.raises(Refused) as reused:
            await invoices.pay(
                conn,
                invoice,
                amount=9_000,
                paid_on=date(2026, 5, 20),
                reference="TRX 1",
                today=date(2026, 5, 21),
            )
        assert reused.value.code == "PAYMENT_REFERENCE_REUSED"
        with pytest.raises(Refused) as over:
            await invoices.pay(
                conn,
                invoice,
                amount=2 * MINIMUM_PACKAGE,
                paid_on=date(2026, 5, 22),
                reference="TRX 2",
                today=date(2026, 5, 22),
            )
        assert over.value.code == "OVERPAYMENT"
        with pytest.raises(Refused) as paid_void:
            await invoices.void(conn, invoice, reason="wrong month", today=date(2026, 5, 22))
        assert paid_void.value.code == "INVOICE_HAS_PAYMENTS"


async def test_voiding_reverses_every_line_frees_the_budget_and_never_rebills(
    pool: asyncpg.Pool,
) -> None:
    await enrol(pool, 30, date(2026, 5, 10))
    await billing.run(pool, JUNE, trigger="command")
    june = await invoice_id(pool, JUNE)
    async with pool.acquire() as conn, conn.transaction():
        reversed_amount, events = await invoices.void(
            conn, june, reason="billed before the PKS was signed", today=date(2026, 6, 5)
        )
        await enqueue_events(conn, events)

    assert reversed_amount == 30 * MINIMUM_PACKAGE
    assert [type(e) for e in events] == [InvoiceVoided]
    assert (
        await pool.fetchval("SELECT committed FROM funding_agreements WHERE code = $1", CITY)
        == 30 * MINIMUM_PACKAGE
    )  # May only
    rows = await pool.fetch("SELECT value FROM outbox WHERE topic = $1", PremiumReversed.TOPIC)
    reversals = [PremiumReversed.model_validate_json(r["value"]) for r in rows]
    assert len(reversals) == 30 and {r.period for r in reversals} == {"2026-06"}
    assert {r.credit_account for r in reversals} == {f"payer:{CITY}"}

    rerun = await billing.run(pool, JUNE, trigger="command")
    assert (rerun.postings_created, rerun.postings_existing) == (0, 30)
    async with pool.acquire() as conn, conn.transaction():
        with pytest.raises(Refused) as void_paid:
            await invoices.pay(
                conn,
                june,
                amount=1,
                paid_on=date(2026, 6, 6),
                reference="x",
                today=date(2026, 6, 6),
            )
        assert void_paid.value.code == "INVOICE_VOID"


async def test_an_ended_policy_is_not_billed_after_its_end_and_later_months_are_reversed(
    pool: asyncpg.Pool,
) -> None:
    workers = await enrol(pool, 3, date(2026, 5, 10))
    await billing.run(pool, JUNE, trigger="command")
    await billing.run(pool, JULY, trigger="command")
    async with pool.acquire() as conn, conn.transaction():
        event, reversed_amount = await policies.end(
            conn, worker_id=workers[0].worker_id, on=date(2026, 6, 20), reason="deceased"
        )
        with pytest.raises(Refused) as twice:
            await policies.end(
                conn, worker_id=workers[0].worker_id, on=date(2026, 6, 21), reason="again"
            )
        assert twice.value.code == "TRANSITION_FORBIDDEN"
        with pytest.raises(Refused) as before_start:
            await policies.end(
                conn, worker_id=workers[1].worker_id, on=date(2026, 1, 1), reason="typo"
            )
        assert before_start.value.code == "END_BEFORE_START"

    assert isinstance(event, PolicyEnded)
    assert (event.previous_status, event.coverage_end) == ("active", date(2026, 6, 20))
    assert reversed_amount == MINIMUM_PACKAGE  # July's premium
    august = await billing.run(pool, AUGUST, trigger="command")
    assert august.policies_billed == 2
    async with pool.acquire() as conn:
        report = await ledger.check(conn)
        shown = await store.policy_of(conn, workers[0].worker_id)
    assert "reversed_posting_on_an_open_invoice" in report["notices"]  # July's credit
    assert shown is not None
    assert [(e["period"], e["entry_type"]) for e in shown["ledger"]] == [  # type: ignore[attr-defined]
        ("2026-05", "premium"),
        ("2026-06", "premium"),
        ("2026-07", "premium"),
        ("2026-07", "reversal"),
    ]


async def test_the_ledger_check_names_each_broken_invariant(pool: asyncpg.Pool) -> None:
    await enrol(pool, 4, date(2026, 5, 10))
    await billing.run(pool, JUNE, trigger="command")
    await pool.execute("UPDATE funding_agreements SET committed = committed + 1")
    await pool.execute("UPDATE invoices SET total = total + 5")
    policy_id, worker_id = await pool.fetchrow("SELECT policy_id, worker_id FROM policies LIMIT 1")
    await pool.execute(
        "UPDATE policies SET worker_id = $2 WHERE policy_id = $1", policy_id, uuid.uuid4()
    )
    listed_twice = await pool.fetchval(
        """INSERT INTO invoice_listed_lines (entry_id, invoice_id, policy_id, amount,
                                            kecamatan_code, occupation)
           SELECT e.entry_id, r.invoice_id, e.policy_id, e.amount, 'x', 'y'
           FROM premium_ledger e JOIN invoice_run_lines r USING (billing_run_id)
           LIMIT 1 RETURNING entry_id"""
    )

    async with pool.acquire() as conn:
        report = await ledger.check(conn)

    assert report["ok"] is False
    assert set(report["violations"]) == {
        "committed_differs_from_ledger",
        "invoice_total_differs_from_lines",
        "posting_names_no_policy_of_its_worker",
        "posting_listed_and_lined_by_its_run",
    }
    twice = report["violations"]["posting_listed_and_lined_by_its_run"]
    assert [row["entry_id"] for row in twice["examples"]] == [listed_twice]
    await pool.execute("DELETE FROM invoice_listed_lines WHERE entry_id = $1", listed_twice)
    orphans = report["violations"]["posting_names_no_policy_of_its_worker"]
    assert {row["policy_id"] for row in orphans["examples"]} == {policy_id}
    await pool.execute("UPDATE funding_agreements SET committed = committed - 1")
    await pool.execute("UPDATE invoices SET total = total - 5")
    await pool.execute(
        "UPDATE policies SET worker_id = $2 WHERE policy_id = $1", policy_id, worker_id
    )


async def test_the_schedule_bills_each_month_once_from_its_billing_day(
    pool: asyncpg.Pool,
) -> None:
    await enrol(pool, 50, date(2026, 5, 10))

    def scheduler() -> Scheduler:
        return Scheduler(pool, today=lambda: date(2026, 6, 3), billing_day=3, interval_s=3600)

    assert await scheduler().tick(date(2026, 6, 2)) is None  # before the billing day
    first, second = await asyncio.gather(
        scheduler().tick(date(2026, 6, 3)), scheduler().tick(date(2026, 6, 3))
    )
    later = await scheduler().tick(date(2026, 6, 20))

    runs = [r for r in (first, second, later) if r is not None]
    assert len(runs) == 1 and runs[0].postings_created == 50
    assert runs[0].trigger == "schedule"
    assert await pool.fetchval("SELECT count(*) FROM billing_runs WHERE period = $1", JUNE) == 1


async def test_the_schedule_puts_late_first_months_on_their_months_invoice(
    pool: asyncpg.Pool,
) -> None:
    await enrol(pool, 10, date(2026, 5, 10))
    scheduler = Scheduler(pool, today=lambda: MAY, billing_day=1, interval_s=3600)
    assert (await scheduler.tick(date(2026, 5, 12))) is not None  # May's own run
    await enrol(pool, 4, date(2026, 5, 25), first=100)  # first months posted after it

    again = await scheduler.tick(date(2026, 5, 26))

    assert again is None  # May is not billed twice...
    may = await pool.fetchrow("SELECT headcount, revision FROM invoices WHERE period = $1", MAY)
    assert (may["headcount"], may["revision"]) == (14, 2)  # ...but its invoice has them all
    issued = await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = 'invoice.issued.v1'")
    assert issued == 2


async def test_a_paid_invoice_reopened_by_late_lines_is_paid_again_with_a_new_event(
    pool: asyncpg.Pool,
) -> None:
    await enrol(pool, 2, date(2026, 5, 10))
    await billing.run(pool, MAY, trigger="command")
    may = await invoice_id(pool, MAY)
    async with pool.acquire() as conn, conn.transaction():
        first = await invoices.pay(
            conn,
            may,
            amount=2 * MINIMUM_PACKAGE,
            paid_on=date(2026, 5, 20),
            reference="A",
            today=date(2026, 5, 20),
        )
    await enrol(pool, 1, date(2026, 5, 28), first=50)
    assert await billing.invoice_stragglers(pool, date(2026, 5, 29)) == 1
    assert await pool.fetchval("SELECT status FROM invoices WHERE invoice_id = $1", may) == (
        "pending"
    )
    async with pool.acquire() as conn, conn.transaction():
        second = await invoices.pay(
            conn,
            may,
            amount=MINIMUM_PACKAGE,
            paid_on=date(2026, 5, 30),
            reference="B",
            today=date(2026, 5, 30),
        )

    [paid_first] = [e for e in first.events if isinstance(e, InvoicePaid)]
    [paid_second] = [e for e in second.events if isinstance(e, InvoicePaid)]
    assert paid_first.event_id != paid_second.event_id
    assert paid_second.paid_amount == paid_second.total == 3 * MINIMUM_PACKAGE


async def test_a_renewal_starts_the_policies_the_last_budget_could_not_take(
    pool: asyncpg.Pool,
) -> None:
    await set_ceiling(pool, 2 * MINIMUM_PACKAGE)
    await enrol(pool, 3, date(2026, 5, 10))
    assert await statuses(pool) == {"active": 2, "pending": 1}
    async with pool.acquire() as conn, conn.transaction():
        await agreements.end(conn, CITY, AUGUST)
        _, _, events = await agreements.add(conn, draft(), date(2026, 8, 5))
        await enqueue_events(conn, events)

    [activated] = [e for e in events if isinstance(e, PolicyActivated)]
    assert (activated.agreement_code, activated.coverage_start) == (draft().code, AUGUST)
    assert await statuses(pool) == {"active": 3}


async def test_ending_a_policy_a_renewal_billed_reverses_against_the_renewal(
    pool: asyncpg.Pool,
) -> None:
    workers = await enrol(pool, 2, date(2026, 5, 10))
    async with pool.acquire() as conn, conn.transaction():
        await agreements.end(conn, CITY, AUGUST)
        renewal, _, _ = await agreements.add(conn, draft(), date(2026, 7, 15))
    await billing.run(pool, AUGUST, trigger="command")
    async with pool.acquire() as conn, conn.transaction():
        _, reversed_amount = await policies.end(
            conn, worker_id=workers[0].worker_id, on=date(2026, 7, 31), reason="moved out"
        )

    assert reversed_amount == MINIMUM_PACKAGE
    committed = await pool.fetchval(
        "SELECT committed FROM funding_agreements WHERE code = $1", renewal.code
    )
    assert committed == MINIMUM_PACKAGE  # August of the other worker only
