"""Coverage's HTTP API for billing, invoices, payments, agreements, policies and reports:
the real app and handlers over a real PostgreSQL schema (the broker is not started; the
events they cause are checked in the outbox)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import date
from typing import cast

import asyncpg
import httpx
import pytest

from services.coverage.app import SPEC, create_app
from services.coverage.settings import CoverageSettings
from shared.relay import OutboxRelay
from shared.service import Resources
from tests.conftest import ServicePool, bearer, make_api_key
from tests.integration.coverage_helpers import assert_ledger_holds, enrol, outbox_counts

pytestmark = pytest.mark.integration

CITY = "KOTA-PASURUAN-DBHCHT"


@pytest.fixture
async def pool(service_pool: ServicePool) -> AsyncIterator[asyncpg.Pool]:
    pool = await service_pool(SPEC, max_size=4)
    yield pool
    await assert_ledger_holds(pool)


@pytest.fixture
async def api(pool: asyncpg.Pool, topic_prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = CoverageSettings.model_construct(topic_prefix=topic_prefix)
    app = create_app(Resources(SPEC, settings, pool, cast(OutboxRelay, None)))
    transport = httpx.ASGITransport(app=app)
    key = await make_api_key(pool)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://coverage", headers=bearer(key)
    ) as client:
        yield client


async def test_a_billing_run_by_api_invoices_the_month_with_its_breakdowns(
    pool: asyncpg.Pool, api: httpx.AsyncClient
) -> None:
    await enrol(pool, 40, date(2026, 5, 10))

    run = await api.post("/v1/billing-runs", json={"period": "2026-06"})
    again = await api.post("/v1/billing-runs", json={"period": "2026-06"})

    assert run.status_code == 200
    assert (run.json()["postings_created"], run.json()["invoice_total"]) == (40, 40 * 16_800)
    assert (again.json()["postings_created"], again.json()["postings_existing"]) == (0, 40)
    typo = await api.post("/v1/billing-runs", json={"period": "2062-11"})
    assert typo.status_code == 409
    assert typo.json()["type"] == "/problems/period-too-far-ahead"
    [listed] = (await api.get("/v1/invoices", params={"period": "2026-06"})).json()
    invoice = (await api.get(f"/v1/invoices/{listed['invoice_id']}")).json()
    assert (invoice["headcount"], invoice["total"], invoice["status"]) == (40, 672_000, "pending")
    assert sum(g["amount"] for g in invoice["by_kecamatan"]) == 672_000
    assert sum(g["headcount"] for g in invoice["by_occupation"]) == 40
    assert {g["kecamatan_code"] for g in invoice["by_kecamatan"]} == {
        "35.75.01",
        "35.75.02",
        "35.75.03",
        "35.75.04",
    }
    assert sum(g["amount"] for g in invoice["by_kecamatan_and_occupation"]) == 672_000


async def test_an_invoice_as_the_finance_office_spreadsheet(
    pool: asyncpg.Pool, api: httpx.AsyncClient
) -> None:
    await enrol(pool, 9, date(2026, 5, 10))
    await api.post("/v1/billing-runs", json={"period": "2026-05"})
    [invoice] = (await api.get("/v1/invoices")).json()

    by_query = await api.get(f"/v1/invoices/{invoice['invoice_id']}", params={"format": "csv"})
    by_accept = await api.get(
        f"/v1/invoices/{invoice['invoice_id']}", headers={"Accept": "text/csv"}
    )
    lines = await api.get(f"/v1/invoices/{invoice['invoice_id']}/lines")

    assert by_query.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in by_query.headers["content-disposition"]
    assert by_query.content == by_accept.content
    assert by_query.content.startswith(b"\xef\xbb\xbf")  # UTF-8 byte order mark
    rows = list(csv.DictReader(io.StringIO(by_query.content.decode("utf-8-sig")), delimiter=";"))
    details = [r for r in rows if r["row_type"] == "detail"]
    [total] = [r for r in rows if r["row_type"] == "total"]
    assert sum(int(r["amount_rupiah"]) for r in details) == int(total["amount_rupiah"]) == 151_200
    assert sum(int(r["headcount"]) for r in details) == int(total["headcount"]) == 9
    assert "\r\n" in by_query.text
    line_rows = list(csv.DictReader(io.StringIO(lines.content.decode("utf-8-sig")), delimiter=";"))
    assert len(line_rows) == 9 and {r["amount_rupiah"] for r in line_rows} == {"16800"}
    ledger_ids = {
        str(r["entry_id"]) for r in await pool.fetch("SELECT entry_id FROM premium_ledger")
    }
    assert {r["entry_id"] for r in line_rows} <= ledger_ids


async def test_payments_and_voids_answer_with_status_and_problems(
    pool: asyncpg.Pool, api: httpx.AsyncClient
) -> None:
    await enrol(pool, 2, date(2026, 5, 10))
    await api.post("/v1/billing-runs", json={"period": "2026-05"})
    await api.post("/v1/billing-runs", json={"period": "2026-06"})
    may, june = (await api.get("/v1/invoices")).json()
    payment = {"amount": 33_600, "paid_on": "2026-05-28", "reference": "SP2D 0042/2026"}

    paid = await api.post(f"/v1/invoices/{may['invoice_id']}/payments", json=payment)
    replay = await api.post(f"/v1/invoices/{may['invoice_id']}/payments", json=payment)
    over = await api.post(
        f"/v1/invoices/{june['invoice_id']}/payments", json={**payment, "amount": 40_000}
    )
    voided = await api.post(f"/v1/invoices/{june['invoice_id']}/void", json={"reason": "test"})
    missing = await api.post(
        "/v1/invoices/00000000-0000-0000-0000-000000000000/void", json={"reason": "x"}
    )
    bad = await api.post(f"/v1/invoices/{may['invoice_id']}/payments", json={"amount": "1"})

    assert paid.status_code == 201 and paid.json()["status"] == "paid"
    assert replay.status_code == 200 and replay.json()["paid_amount"] == 33_600
    assert over.status_code == 409
    assert over.headers["content-type"] == "application/problem+json"
    assert over.json()["type"] == "/problems/overpayment"
    assert "Rp 40,000 is more than the Rp 33,600 outstanding" in over.json()["detail"]
    assert voided.status_code == 200 and voided.json()["reversed"] == 33_600
    assert missing.status_code == 404
    assert bad.status_code == 422
    assert {e["location"] for e in bad.json()["errors"]} >= {"body.amount", "body.paid_on"}
    topics = await outbox_counts(pool)
    assert topics["invoice.paid.v1"] == 1 and topics["invoice.voided.v1"] == 1
    assert topics["premium.reversed.v1"] == 2


async def test_agreements_by_api_with_their_budget(
    pool: asyncpg.Pool, api: httpx.AsyncClient
) -> None:
    await enrol(pool, 3, date(2026, 5, 10))
    renewal = {
        "code": "KOTA-PASURUAN-DBHCHT-2027",
        "payer": "Pemerintah Kota Pasuruan",
        "payer_type": "apbd",
        "funding_source": "DBHCHT",
        "valid_from": "2027-01-01",
        "valid_to": "2028-01-01",
        "budget_ceiling": 1_822_060_800,
    }

    overlapping = await api.post("/v1/agreements", json=renewal)
    closed = await api.post(f"/v1/agreements/{CITY}/end", json={"valid_to": "2027-01-01"})
    added = await api.post("/v1/agreements", json=renewal)
    same = await api.post("/v1/agreements", json=renewal)
    invalid = await api.post(
        "/v1/agreements", json={**renewal, "budget_ceiling": 0, "valid_to": "2026-01-01"}
    )
    listed = (await api.get("/v1/agreements")).json()
    shown = await api.get(f"/v1/agreements/{renewal['code']}")

    assert overlapping.status_code == 409
    assert overlapping.json()["type"] == "/problems/agreement-overlaps"
    assert closed.status_code == 200 and closed.json()["valid_to"] == "2027-01-01"
    assert (added.status_code, same.status_code) == (201, 200)
    assert invalid.status_code == 422
    assert [a["code"] for a in listed] == [CITY, renewal["code"]]
    budget = shown.json()["budget"]
    assert (budget["ceiling"], budget["committed"], budget["remaining"]) == (
        1_822_060_800,
        0,
        1_822_060_800,
    )
    assert budget["active_policies"] == 3
    assert (await api.get("/v1/agreements/NOPE")).status_code == 404


async def test_ending_a_policy_by_api_and_the_reports(
    pool: asyncpg.Pool, api: httpx.AsyncClient
) -> None:
    workers = await enrol(pool, 6, date(2026, 5, 10))
    await api.post("/v1/billing-runs", json={"period": "2026-05"})
    url = f"/v1/workers/{workers[0].worker_id}/policy/end"

    ended = await api.post(url, json={"on": "2026-05-31", "reason": "moved out of the city"})
    twice = await api.post(url, json={"on": "2026-06-30", "reason": "again"})
    coverage = await api.get("/v1/reports/coverage", params={"period": "2026-05"})
    coverage_csv = await api.get(
        "/v1/reports/coverage", params={"period": "2026-05", "format": "csv"}
    )
    billing = await api.get("/v1/reports/billing", params={"from": "2026-05", "to": "2026-06"})
    backwards = await api.get("/v1/reports/billing", params={"from": "2026-06", "to": "2026-05"})
    check = await api.get("/v1/ledger/check")

    assert ended.status_code == 200 and ended.json()["event_type"] == "policy.ended"
    assert twice.status_code == 409 and twice.json()["type"] == "/problems/transition-forbidden"
    assert coverage.json()["active_policies"] == 5
    assert coverage_csv.content.startswith(b"\xef\xbb\xbfkecamatan_code;occupation;")
    months = {m["period"]: m for m in billing.json()["months"]}
    assert (months["2026-05"]["due"], months["2026-05"]["posted"]) == (6 * 16_800, 6 * 16_800)
    assert months["2026-05"]["invoiced"] == 6 * 16_800
    assert months["2026-06"]["due"] == 5 * 16_800 and months["2026-06"]["posted"] == 0
    assert backwards.status_code == 422
    assert check.json()["ok"] is True
