"""Coverage's operations commands as operators run them: separate processes against a
real PostgreSQL, killed midway, run twice at once, given bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest

from services.coverage.app import SPEC
from tests.conftest import ServicePool
from tests.integration.coverage_helpers import assert_ledger_holds, enrol

pytestmark = pytest.mark.integration

JUNE = date(2026, 6, 1)
WORKERS = 5_000


@pytest.fixture
async def pool(service_pool: ServicePool) -> AsyncIterator[asyncpg.Pool]:
    pool = await service_pool(SPEC, max_size=3)
    yield pool
    await assert_ledger_holds(pool)


def command(database_url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PERISAI_DATABASE_URL": database_url}
    return subprocess.Popen(
        [sys.executable, "-m", "services.coverage", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


async def test_a_billing_run_killed_midway_posts_nothing_and_the_next_posts_each_month_once(
    pool: asyncpg.Pool, database_url: str
) -> None:
    await enrol(pool, WORKERS, date(2026, 5, 10))
    run = command(database_url, "bill", "--period", "2026-06", "--chunk", "100")
    assert run.stderr is not None
    first_progress = run.stderr.readline()
    run.send_signal(signal.SIGSTOP)  # frozen between two chunks of its transaction
    try:
        assert "billing KOTA-PASURUAN-DBHCHT: 100/5,000 policies" in first_progress
        assert (
            await pool.fetchval(
                """SELECT count(*) FROM pg_locks
                   WHERE locktype = 'advisory' AND granted AND objid = 202606
                     AND database = (SELECT oid FROM pg_database
                                     WHERE datname = current_database())"""
            )
            == 1
        ), "the run holds its month's lock"
        busy = finish(command(database_url, "bill", "--period", "2026-06"))
        assert busy[0] == 3
        assert "a billing run for 2026-06 is already in progress" in busy[2]
    finally:
        run.kill()
        run.communicate(timeout=30)
    assert run.returncode == -signal.SIGKILL
    assert await pool.fetchval("SELECT count(*) FROM premium_ledger WHERE period = $1", JUNE) == 0

    code, out, err = finish(command(database_url, "bill", "--period", "2026-06", "--chunk", "700"))

    assert code == 0, err
    summary = json.loads(out)
    assert (summary["postings_created"], summary["postings_existing"]) == (WORKERS, 0)
    assert summary["invoice_total"] == WORKERS * 16_800
    assert "5,000/5,000 policies (100%)" in err
    again = json.loads(finish(command(database_url, "bill", "--period", "2026-06"))[1])
    assert (again["postings_created"], again["postings_existing"]) == (0, WORKERS)
    assert (
        await pool.fetchval(
            "SELECT count(DISTINCT policy_id) FROM premium_ledger WHERE period = $1", JUNE
        )
        == WORKERS
    )


async def test_the_commands_show_agreements_invoices_and_the_ledger_check(
    pool: asyncpg.Pool, database_url: str
) -> None:
    await enrol(pool, 12, date(2026, 5, 10))
    assert finish(command(database_url, "bill", "--period", "2026-05"))[0] == 0

    code, out, _ = finish(command(database_url, "invoices", "list", "--period", "2026-05"))
    [invoice] = json.loads(out)
    assert code == 0 and invoice["total"] == 12 * 16_800
    code, csv_text, _ = finish(
        command(database_url, "invoices", "show", invoice["invoice_id"], "--csv")
    )
    assert code == 0 and csv_text.startswith("\ufeffrow_type;invoice_id;")
    assert csv_text.splitlines()[-1].endswith(f";;;12;{12 * 16_800}")
    code, out, _ = finish(command(database_url, "ledger", "check"))
    assert code == 0 and json.loads(out)["ok"] is True
    code, out, _ = finish(command(database_url, "agreements", "show", "KOTA-PASURUAN-DBHCHT"))
    assert code == 0 and json.loads(out)["budget"]["committed"] == 12 * 16_800


@pytest.mark.parametrize(
    ("args", "expected", "exit_code"),
    [
        (["bill", "--period", "2026-13"], "'2026-13' is not a month", 2),
        (["bill", "--period", "2026-06", "--chunk", "0"], "'0' is not a whole number", 2),
        (["bill", "--period", "2062-11"], "2062-11 is after", 1),
        (
            [
                "invoices",
                "pay",
                "00000000-0000-0000-0000-000000000000",
                "--amount",
                "0",
                "--paid-on",
                "2026-05-01",
                "--reference",
                "x",
            ],
            "amount: Input should be greater than 0",
            2,
        ),
        (
            [
                "agreements",
                "add",
                "--code",
                "kota",
                "--payer",
                "Kota",
                "--payer-type",
                "apbd",
                "--funding-source",
                "DBHCHT",
                "--from",
                "2027-01-01",
                "--ceiling",
                "100",
            ],
            "code: String should match pattern",
            2,
        ),
        (
            [
                "agreements",
                "add",
                "--code",
                "KOTA-2027",
                "--payer",
                "Pemerintah Kota Pasuruan",
                "--payer-type",
                "apbd",
                "--funding-source",
                "DBHCHT",
                "--from",
                "2027-01-01",
                "--ceiling",
                "100",
            ],
            "already has agreement KOTA-PASURUAN-DBHCHT",
            1,
        ),
        (
            ["invoices", "void", "00000000-0000-0000-0000-000000000000", "--reason", "x"],
            "no invoice 00000000-0000-0000-0000-000000000000",
            1,
        ),
    ],
)
async def test_bad_commands_say_what_is_wrong(
    pool: asyncpg.Pool, database_url: str, args: list[str], expected: str, exit_code: int
) -> None:
    code, _, err = finish(command(database_url, *args))
    assert code == exit_code
    assert expected in err
    assert "Traceback" not in err
