"""The city's list as a CSV of 100,000 rows, imported by the command on the real
PostgreSQL: killed midway (SIGKILL), imported again, and every row is enrolled (or
rejected) exactly once, with one event each; the command's memory stays flat while
it runs (sampled from /proc, not assumed)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from devtools.cohort import generate_cohort, write_cohort_csv
from services.registration.app import SPEC
from tests.conftest import ServicePool

pytestmark = pytest.mark.integration

ROWS = int(os.environ.get("PERISAI_IMPORT_ROWS", "100000"))
INVALID = ROWS // 100
KILL_AT = 0.4
FLAT_MIB = 40
"""Most the command's resident memory may grow once it is past its first 10% of rows:
holding the file (tens of MB) or every row's outcome would exceed it."""


def resident_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def start(database_url: str, path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PERISAI_DATABASE_URL": database_url}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.registration",
            "import",
            str(path),
            "--batch-size",
            "1000",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
    )


async def watch(
    process: subprocess.Popen[bytes], pool: asyncpg.Pool, kill_at: int | None
) -> list[tuple[int, float]]:
    """(rows stored, resident MiB) samples until the process ends, or until ``kill_at``
    rows are stored, when it is killed."""
    samples: list[tuple[int, float]] = []
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        done = await pool.fetchval("SELECT count(*) FROM import_rows")
        rss = resident_mib(process.pid)
        if rss is not None:
            samples.append((done, rss))
        if kill_at is not None and done >= kill_at:
            process.send_signal(signal.SIGKILL)
            process.wait()
            break
        await asyncio.sleep(0.2)
    return samples


def assert_flat(samples: list[tuple[int, float]], since_rows: int) -> None:
    steady = [rss for done, rss in samples if done >= since_rows]
    assert len(steady) >= 5, f"too few samples to judge memory: {samples}"
    assert max(steady) - min(steady) < FLAT_MIB, (
        f"memory grew {max(steady) - min(steady):.0f} MiB after row {since_rows:,}: {steady}"
    )


@pytest.mark.timeout(900)
async def test_100k_rows_killed_midway_and_imported_again_enrol_every_row_once(
    service_pool: ServicePool, database_url: str, tmp_path: Path
) -> None:
    pool = await service_pool(SPEC, max_size=2)
    path = tmp_path / "daftar-peserta.csv"
    write_cohort_csv(generate_cohort(ROWS - INVALID, invalid=INVALID, seed=100), path)

    first = start(database_url, path, tmp_path / "first.log")
    before_kill = await watch(first, pool, kill_at=int(ROWS * KILL_AT))
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()
    stored_at_kill = await pool.fetchval("SELECT count(*) FROM import_rows")
    assert ROWS * KILL_AT <= stored_at_kill < ROWS

    second = start(database_url, path, tmp_path / "second.log")
    after_kill = await watch(second, pool, kill_at=None)
    out = second.stdout.read() if second.stdout else b""
    assert second.returncode == 0, (tmp_path / "second.log").read_text()

    status = json.loads(out)
    assert (status["status"], status["rows_total"], status["rows_done"]) == ("done", ROWS, ROWS)
    assert (status["enrolled"], status["rejected"], status["uploads"]) == (
        ROWS - INVALID,
        INVALID,
        2,
    )
    counts = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM import_rows) AS rows,
                  (SELECT count(*) FROM enrolment_requests) AS requests,
                  (SELECT count(*) FROM workers) AS workers,
                  (SELECT count(*) FROM outbox WHERE topic LIKE '%worker.enrolled%') AS enrolled,
                  (SELECT count(DISTINCT key) FROM outbox
                   WHERE topic LIKE '%worker.enrolled%') AS enrolled_workers,
                  (SELECT count(*) FROM outbox
                   WHERE topic LIKE '%enrolment.rejected%') AS rejected"""
    )
    assert dict(counts) == {
        "rows": ROWS,
        "requests": ROWS,
        "workers": ROWS - INVALID,
        "enrolled": ROWS - INVALID,
        "enrolled_workers": ROWS - INVALID,
        "rejected": INVALID,
    }
    assert_flat(before_kill, since_rows=ROWS // 10)
    assert_flat(after_kill, since_rows=stored_at_kill + ROWS // 10)
    peak = max(rss for _, rss in before_kill + after_kill)
    print(f"import of {ROWS:,} rows: peak resident memory {peak:.0f} MiB")
