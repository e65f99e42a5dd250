"""How long coverage's billing run takes for many active policies, on the local
PostgreSQL: the first run of a month (posting every premium, lining the invoice), a
second run of the same month (posting nothing), the ledger check, and then the relay
publishing the run's PremiumPosted events to the local Kafka. Prints its figures.

    python -m devtools.bench_billing --policies 1000000

Uses (and then drops) its own database, ``perisai_bench``, and its own topics
(``bench-<id>.``, deleted after); the policies are inserted directly in SQL, as the
WorkerEnrolled consumer would have left them.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import date

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

import infra
from services.coverage import billing, ledger, run_postings
from services.coverage.app import SPEC
from shared.db import create_pool
from shared.events import InvoiceIssued, PremiumPosted
from shared.kafka import ensure_topics, new_producer
from shared.migrations import apply_migrations
from shared.relay import OutboxRelay
from shared.settings import ServiceSettings

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


async def bare_insert_seconds(pool: asyncpg.Pool, count: int) -> float:
    """The floor on this machine: ``count`` rows of the ledger's shape into a table with
    no index, key or trigger, in one statement (rolled back)."""
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute("CREATE TABLE bench_bare (LIKE premium_ledger)")
            clock = time.perf_counter()
            await conn.execute(
                """INSERT INTO bench_bare (entry_id, policy_id, worker_id, period, entry_type,
                                     jkk_amount, jkm_amount, amount, tariff_code,
                                     debit_account, credit_account, posted_at)
                   SELECT gen_random_uuid(), policy_id, worker_id, $1, 'premium', 10000,
                          6800, 16800, 'CITY-MINIMUM-PACKAGE', 'payer:x', 'bpjstk:receivable',
                          now()
                   FROM policies LIMIT $2""",
                PERIOD,
                count,
            )
            return time.perf_counter() - clock
        finally:
            await transaction.rollback()


async def publish_outbox(pool: asyncpg.Pool, expected: int, batch_size: int) -> None:
    """Publish what the runs left in the outbox, as the coverage service's relay does,
    to topics of this benchmark's own."""
    bootstrap = infra.kafka_bootstrap()
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    topics = [prefix + PremiumPosted.TOPIC, prefix + InvoiceIssued.TOPIC]
    await ensure_topics(bootstrap, topics)
    relay = OutboxRelay(
        pool,
        SPEC.name,
        lambda: new_producer(bootstrap, "perisai-bench-relay"),
        topic_prefix=prefix,
        sources=run_postings.SOURCES,
        batch_size=batch_size,
    )
    try:
        clock = time.perf_counter()
        await relay.drain(timeout_s=3600)
        seconds = time.perf_counter() - clock
        left = await pool.fetchval("SELECT count(*) FROM outbox")
        print(
            f"relay ({batch_size:,} records a round): {relay.published:,} records published "
            f"in {seconds:.1f} s "
            f"({relay.published / seconds:,.0f}/s), {left} outbox rows left"
        )
        if relay.published < expected:
            raise SystemExit(f"the relay published {relay.published:,} of {expected:,}")
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(topics)
        finally:
            await admin.close()


async def bench(count: int, chunk: int, publish: bool, relay_batch: int) -> None:
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

            floor = await bare_insert_seconds(pool, count)
            print(
                f"floor: {count:,} rows into a bare table (no index, key or trigger) "
                f"in {floor:.1f} s"
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
                    f"{seconds / floor:.1f} x the floor, invoice Rp {summary.invoice_total:,}"
                )
            clock = time.perf_counter()
            async with pool.acquire() as conn:
                report = await ledger.check(conn)
            print(
                f"ledger check: {'ok' if report['ok'] else report['violations']} "
                f"in {time.perf_counter() - clock:.1f} s"
            )
            outbox = await pool.fetchval("SELECT count(*) FROM outbox")
            sources = await pool.fetchval("SELECT count(*) FROM outbox_sources")
            print(
                f"outbox rows waiting for the relay: {outbox:,}, "
                f"and {sources:,} standing for the runs' postings"
            )
            if publish:
                await publish_outbox(pool, count, relay_batch)
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
    parser.add_argument(
        "--no-publish",
        dest="publish",
        action="store_false",
        help="stop after the ledger check (no Kafka needed)",
    )
    parser.add_argument(
        "--relay-batch",
        type=int,
        default=ServiceSettings.model_fields["relay_batch_size"].default,
        help="records per relay round (PERISAI_RELAY_BATCH_SIZE; default %(default)s)",
    )
    args = parser.parse_args(argv)
    asyncio.run(bench(args.policies, args.chunk, args.publish, args.relay_batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
