"""How long coverage's billing run takes for many active policies, on the local
PostgreSQL: the first run of a month (posting every premium and its event), a second
run of the same month (posting nothing), and the ledger check. Prints its figures.

    python -m devtools.bench_billing --policies 1000000

Uses (and then drops) its own database, ``perisai_bench``; the policies are inserted
directly in SQL, as the WorkerEnrolled consumer would have left them.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections.abc import Sequence
from datetime import date

import asyncpg

import infra
from services.coverage import billing, ledger
from services.coverage.app import SPEC
from shared.db import create_pool
from shared.migrations import apply_migrations

BENCH_DATABASE = "perisai_bench"
PERIOD = date(2026, 6, 1)
CITY = "KOTA-PASURUAN-DBHCHT"


async def seed(pool: asyncpg.Pool, count: int) -> None:
    await pool.execute(
        """INSERT INTO policies (policy_id, worker_id, participant_number, agreement_code,
                                 status, coverage_start, declared_income, kecamatan_code,
                                 occupation, payer)
           SELECT md5('p' || n)::uuid, md5('w' || n)::uuid, lpad(n::text, 11, '0'), $2,
                  'active', date '2026-05-10', 1000000,
                  '35.75.0' || (1 + n % 4), (ARRAY['pedagang', 'tukang kayu', 'marbot masjid',
                  'pemilik warung kopi', 'buruh tani'])[1 + n % 5],
                  (SELECT payer FROM funding_agreements WHERE code = $2)
           FROM generate_series(1, $1) AS n""",
        count,
        CITY,
    )
    await pool.execute("ANALYZE policies")


async def bench(count: int, chunk: int) -> None:
    await asyncio.to_thread(infra.up)
    dsn = await infra.create_database_async(BENCH_DATABASE)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await apply_migrations(conn, SPEC.name, SPEC.migrations)
        finally:
            await conn.close()
        pool = await create_pool(dsn, SPEC.name, min_size=1, max_size=2)
        try:
            clock = time.perf_counter()
            await seed(pool, count)
            print(f"seeded {count:,} active policies in {time.perf_counter() - clock:.1f} s")

            def progress(p: billing.Progress) -> None:
                print(
                    f"  {p.policies_done:,}/{p.policies_total:,} ({p.elapsed_s:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )

            for label in ("first run (posts every premium)", "second run (posts nothing)"):
                clock = time.perf_counter()
                summary = await billing.run(
                    pool, PERIOD, trigger="command", chunk=chunk, progress=progress
                )
                seconds = time.perf_counter() - clock
                print(
                    f"{label}: {seconds:.1f} s, {summary.postings_created:,} posted, "
                    f"{summary.postings_existing:,} existing, "
                    f"{summary.policies_billed / seconds:,.0f} policies/s, "
                    f"invoice Rp {summary.invoice_total:,}"
                )
            clock = time.perf_counter()
            async with pool.acquire() as conn:
                report = await ledger.check(conn)
            print(
                f"ledger check: {'ok' if report['ok'] else report['violations']} "
                f"in {time.perf_counter() - clock:.1f} s"
            )
            outbox = await pool.fetchval("SELECT count(*) FROM outbox")
            print(f"outbox rows waiting for the relay: {outbox:,}")
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"peak memory of this process: {peak_mib:.0f} MiB")
        finally:
            await pool.close()
    finally:
        await infra.drop_database_async(BENCH_DATABASE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench_billing", description=__doc__)
    parser.add_argument("--policies", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=billing.DEFAULT_CHUNK)
    args = parser.parse_args(argv)
    asyncio.run(bench(args.policies, args.chunk))
    return 0


if __name__ == "__main__":
    sys.exit(main())
