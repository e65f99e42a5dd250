"""The numbered-SQL migration runner against a real PostgreSQL, and the real services'
migrations (including the coverage ledger's append-only and one-premium-a-month rules)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import asyncpg
import pytest

from services.coverage.store import LEDGER_CHECKS
from shared.migrations import SHARED_MIGRATIONS, MigrationError, apply_migrations

pytestmark = pytest.mark.integration

SERVICES = Path(__file__).resolve().parents[2] / "services"
SHARED = [f"shared/{path.name}" for path in sorted(SHARED_MIGRATIONS.glob("*.sql"))]


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


def write(folder: Path, name: str, sql: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(sql)


async def tables(conn: asyncpg.Connection, schema: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
    )
    return {row["table_name"] for row in rows}


async def recorded(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch(f"SELECT name FROM {schema}.schema_migrations ORDER BY name")
    return [row["name"] for row in rows]


async def test_apply_creates_schema_tables_and_records(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    write(folder, "0001_things.sql", "CREATE TABLE things (id int PRIMARY KEY);")
    write(folder, "0002_more.sql", "CREATE TABLE more_things (id int PRIMARY KEY);")
    (folder / "README.md").write_text("not a migration, ignored")

    applied = await apply_migrations(conn, "svc_a", folder)

    assert applied == [*SHARED, "svc_a/0001_things.sql", "svc_a/0002_more.sql"]
    assert await tables(conn, "svc_a") == {
        "schema_migrations",
        "outbox",
        "outbox_parked",
        "outbox_sources",
        "inbox",
        "inbox_conflicts",
        "api_keys",
        "personal_data_access",
        "dead_letters",
        "things",
        "more_things",
    }
    assert await recorded(conn, "svc_a") == sorted(applied)
    # Unqualified names in the SQL landed in the service's schema, not in public.
    assert "things" not in await tables(conn, "public")


async def test_reapply_applies_nothing_and_new_file_applied_later(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    write(folder, "0001_things.sql", "CREATE TABLE things (id int PRIMARY KEY);")
    assert len(await apply_migrations(conn, "svc_b", folder)) == len(SHARED) + 1

    assert await apply_migrations(conn, "svc_b", folder) == []

    write(folder, "0002_add_column.sql", "ALTER TABLE things ADD COLUMN label text;")
    assert await apply_migrations(conn, "svc_b", folder) == ["svc_b/0002_add_column.sql"]
    await conn.execute("INSERT INTO svc_b.things (id, label) VALUES (1, 'x')")
    assert await recorded(conn, "svc_b") == [
        *SHARED,
        "svc_b/0001_things.sql",
        "svc_b/0002_add_column.sql",
    ]
    assert await apply_migrations(conn, "svc_b", folder) == []


async def test_edited_applied_migration_is_refused(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    write(folder, "0001_things.sql", "CREATE TABLE things (id int PRIMARY KEY);")
    await apply_migrations(conn, "svc_c", folder)

    write(folder, "0001_things.sql", "CREATE TABLE things (id bigint PRIMARY KEY);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await apply_migrations(conn, "svc_c", folder)
    # The advisory lock was released: another run (after reverting) proceeds.
    write(folder, "0001_things.sql", "CREATE TABLE things (id int PRIMARY KEY);")
    assert await asyncio.wait_for(apply_migrations(conn, "svc_c", folder), 10) == []


BAD_NAMES = ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "00001_five.sql", "x001_a.sql"]


async def test_badly_named_files_and_duplicate_numbers_rejected(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    for bad_name in BAD_NAMES:
        folder = tmp_path / bad_name.replace(".", "_")
        write(folder, "0001_good.sql", "CREATE TABLE good (id int);")
        write(folder, bad_name, "CREATE TABLE bad (id int);")
        with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
            await apply_migrations(conn, "svc_d", folder)
    folder = tmp_path / "duplicates"
    write(folder, "0001_one.sql", "CREATE TABLE one (id int);")
    write(folder, "0001_other.sql", "CREATE TABLE other (id int);")
    with pytest.raises(MigrationError, match="share a number"):
        await apply_migrations(conn, "svc_d", folder)
    with pytest.raises(MigrationError, match="not a plain schema name"):
        await apply_migrations(conn, "bad; DROP SCHEMA public", tmp_path / "duplicates")
    # Nothing was applied, not even the shared tables: the whole set is checked first.
    assert await tables(conn, "svc_d") == set()


async def test_failing_migration_rolls_back_and_is_not_recorded(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    write(folder, "0001_ok.sql", "CREATE TABLE ok (id int);")
    write(folder, "0002_broken.sql", "CREATE TABLE half (id int); SELECT no_such_function();")
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await apply_migrations(conn, "svc_f", folder)
    assert "half" not in await tables(conn, "svc_f")
    assert await recorded(conn, "svc_f") == [*SHARED, "svc_f/0001_ok.sql"]


async def test_concurrent_apply_runs_each_migration_once(database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    # A slow first migration widens the race window; a non-idempotent second one
    # (no IF NOT EXISTS) would fail if both runners applied it.
    write(folder, "0001_slow.sql", "SELECT pg_sleep(0.5); CREATE TABLE slow (id int PRIMARY KEY);")
    write(
        folder, "0002_counter.sql", "CREATE TABLE counter (n int); INSERT INTO counter VALUES (1);"
    )
    first = await asyncpg.connect(database_url)
    second = await asyncpg.connect(database_url)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                apply_migrations(first, "svc_g", folder),
                apply_migrations(second, "svc_g", folder),
            ),
            timeout=20,
        )
        names = [*SHARED, "svc_g/0001_slow.sql", "svc_g/0002_counter.sql"]
        assert sorted(results, key=len) == [[], names], results
        assert await first.fetchval("SELECT count(*) FROM svc_g.counter") == 1
        assert await recorded(first, "svc_g") == names
    finally:
        await first.close()
        await second.close()


EXPECTED_TABLES = {
    "registration": {"workers", "enrolment_requests"},
    "coverage": {"funding_agreements", "policies", "premium_ledger"},
    "notifications": {"confirmations", "deliveries"},
}


async def test_real_service_migrations_apply_cleanly(conn: asyncpg.Connection) -> None:
    """All three services' migrations, each into its own schema of one fresh database."""
    for service, expected in EXPECTED_TABLES.items():
        folder = SERVICES / service / "migrations"
        applied = await apply_migrations(conn, service, folder)
        own = sorted(f"{service}/{p.name}" for p in folder.glob("*.sql"))
        assert own, f"no migrations found for {service}"
        assert applied == [*SHARED, *own]
        common = {"outbox", "outbox_parked", "outbox_sources", "inbox", "schema_migrations"}
        assert await tables(conn, service) >= expected | common, service
        assert await apply_migrations(conn, service, folder) == []


async def _coverage_with_policy(conn: asyncpg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    await apply_migrations(conn, "coverage", SERVICES / "coverage" / "migrations")
    return await _add_policy(conn)


async def _add_policy(conn: asyncpg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    await conn.execute("SET search_path TO coverage, public")
    policy_id, worker_id = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        """INSERT INTO policies (policy_id, worker_id, participant_number, agreement_code,
                                 status, coverage_start, declared_income, kecamatan_code,
                                 occupation, payer)
           VALUES ($1, $2, '00000000018', 'KOTA-PASURUAN-DBHCHT', 'active', '2026-01-05',
                   1000000, '35.75.01', 'pedagang', 'Pemerintah Kota Pasuruan')""",
        policy_id,
        worker_id,
    )
    return policy_id, worker_id


async def _post(
    conn: asyncpg.Connection,
    policy_id: uuid.UUID,
    worker_id: uuid.UUID,
    period: date,
    entry_type: str = "premium",
    reverses: uuid.UUID | None = None,
) -> uuid.UUID:
    entry_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO premium_ledger (entry_id, policy_id, worker_id, period, entry_type,
                                       jkk_amount, jkm_amount, amount, tariff_code,
                                       debit_account, credit_account, reverses)
           VALUES ($1, $2, $3, $4, $5, 10000, 6800, 16800, 'BPU-STANDARD',
                   'payer:KOTA-PASURUAN-DBHCHT', 'bpjstk:receivable', $6)""",
        entry_id,
        policy_id,
        worker_id,
        period,
        entry_type,
        reverses,
    )
    return entry_id


async def test_premium_ledger_is_append_only(conn: asyncpg.Connection) -> None:
    policy_id, worker_id = await _coverage_with_policy(conn)
    entry = await _post(conn, policy_id, worker_id, date(2026, 1, 1))

    with pytest.raises(asyncpg.RaiseError, match="append-only: UPDATE refused"):
        await conn.execute("UPDATE premium_ledger SET amount = 0 WHERE entry_id = $1", entry)
    with pytest.raises(asyncpg.RaiseError, match="append-only: DELETE refused"):
        await conn.execute("DELETE FROM premium_ledger WHERE entry_id = $1", entry)
    with pytest.raises(asyncpg.RaiseError, match="append-only: TRUNCATE refused"):
        await conn.execute("TRUNCATE premium_ledger CASCADE")
    assert await conn.fetchval("SELECT amount FROM premium_ledger WHERE entry_id = $1", entry) == (
        16800
    )


async def test_a_policy_the_ledger_names_is_never_deleted_or_renumbered(
    conn: asyncpg.Connection,
) -> None:
    policy_id, worker_id = await _coverage_with_policy(conn)
    await _post(conn, policy_id, worker_id, date(2026, 1, 1))

    for statement, operation in [
        ("DELETE FROM policies WHERE policy_id = $1", "DELETE"),
        ("UPDATE policies SET policy_id = gen_random_uuid() WHERE policy_id = $1", "UPDATE"),
    ]:
        with pytest.raises(asyncpg.RaiseError, match=rf"never deleted or renumbered.*{operation}"):
            await conn.execute(statement, policy_id)
    with pytest.raises(asyncpg.RaiseError, match=r"never deleted or renumbered.*TRUNCATE"):
        await conn.execute("TRUNCATE policies CASCADE")
    await conn.execute("UPDATE policies SET occupation = 'petani' WHERE policy_id = $1", policy_id)
    assert await conn.fetchval("SELECT count(*) FROM policies WHERE policy_id = $1", policy_id) == 1


COVERAGE_MIGRATIONS = sorted((SERVICES / "coverage" / "migrations").glob("*.sql"))


async def _coverage_migrations_up_to(
    conn: asyncpg.Connection, tmp_path: Path, count: int | None
) -> list[str]:
    """Apply coverage's first ``count`` migrations (all with None) from a folder under
    ``tmp_path`` that grows with each call, as a deployment's would."""
    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    for path in COVERAGE_MIGRATIONS[:count]:
        (folder / path.name).write_text(path.read_text())
    return await apply_migrations(conn, "coverage", folder)


async def test_a_ledger_with_postings_upgrades_to_run_postings_and_policy_rules(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """Coverage's migrations up to 0004, postings made under them, then the rest: the
    postings stay as they were, with no run; the foreign key is gone, the rule stands."""
    await _coverage_migrations_up_to(conn, tmp_path, 4)
    policy_id, worker_id = await _add_policy(conn)
    entries = [await _post(conn, policy_id, worker_id, date(2026, m, 1)) for m in (1, 2)]

    applied = await _coverage_migrations_up_to(conn, tmp_path, None)

    assert applied == [f"coverage/{path.name}" for path in COVERAGE_MIGRATIONS[4:]]
    rows = await conn.fetch("SELECT entry_id, billing_run_id FROM premium_ledger ORDER BY period")
    assert [(r["entry_id"], r["billing_run_id"]) for r in rows] == [(e, None) for e in entries]
    foreign_keys = await conn.fetchval(
        """SELECT count(*) FROM pg_constraint
           WHERE conrelid = 'coverage.premium_ledger'::regclass AND contype = 'f'
             AND conname = 'premium_ledger_policy_id_fkey'"""
    )
    assert foreign_keys == 0
    with pytest.raises(asyncpg.RaiseError, match="never deleted or renumbered"):
        await conn.execute("DELETE FROM policies WHERE policy_id = $1", policy_id)
    assert await conn.fetchval("SELECT uuid_v7()") != await conn.fetchval("SELECT uuid_v7()")


async def test_invoices_lined_one_by_one_before_0007_keep_their_lines(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """A run made under 0006 listed each posting as an invoice line; after 0007 the
    invoice_lines view shows those lines once, the invariants hold, and a new run
    posting must say where it was billed."""
    await _coverage_migrations_up_to(conn, tmp_path, 6)
    policy_id, worker_id = await _add_policy(conn)
    run_id, invoice_id = uuid.uuid4(), uuid.uuid4()
    entry = await conn.fetchval(  # a posting of a run, as 0006's runs made them
        """INSERT INTO premium_ledger (entry_id, policy_id, worker_id, period, entry_type,
                                       jkk_amount, jkm_amount, amount, tariff_code,
                                       debit_account, credit_account, billing_run_id)
           VALUES (uuid_v7(), $1, $2, '2026-02-01', 'premium', 10000, 6800, 16800, 'T',
                   'payer:KOTA-PASURUAN-DBHCHT', 'bpjstk:receivable', $3)
           RETURNING entry_id""",
        policy_id,
        worker_id,
        run_id,
    )
    await conn.execute(
        """INSERT INTO invoices (invoice_id, agreement_code, period, headcount, total)
           VALUES ($1, 'KOTA-PASURUAN-DBHCHT', '2026-02-01', 1, 16800)""",
        invoice_id,
    )
    await conn.execute(
        """INSERT INTO invoice_lines (entry_id, invoice_id, policy_id, amount,
                                      kecamatan_code, occupation)
           SELECT entry_id, $1, policy_id, amount, '35.75.01', 'pedagang' FROM premium_ledger""",
        invoice_id,
    )

    await _coverage_migrations_up_to(conn, tmp_path, None)

    lines = await conn.fetch("SELECT entry_id, kecamatan_code FROM invoice_lines")
    assert [tuple(r) for r in lines] == [(entry, "35.75.01")]
    for name in (
        "invoice_total_differs_from_lines",
        "invoice_line_not_a_posting_of_its_month",
        "posting_listed_and_lined_by_its_run",
    ):
        assert await conn.fetch(LEDGER_CHECKS[name]) == [], name
    with pytest.raises(asyncpg.CheckViolationError, match="run_postings_say_where"):
        await conn.execute(
            """INSERT INTO premium_ledger (entry_id, policy_id, worker_id, period, entry_type,
                                           jkk_amount, jkm_amount, amount, tariff_code,
                                           debit_account, credit_account, billing_run_id)
               VALUES (gen_random_uuid(), $1, $2, '2026-03-01', 'premium', 10000, 6800, 16800,
                       'T', 'payer:KOTA-PASURUAN-DBHCHT', 'bpjstk:receivable', $3)""",
            policy_id,
            worker_id,
            run_id,
        )


async def test_premium_ledger_one_premium_per_policy_and_month(conn: asyncpg.Connection) -> None:
    policy_id, worker_id = await _coverage_with_policy(conn)
    first = await _post(conn, policy_id, worker_id, date(2026, 1, 1))

    with pytest.raises(asyncpg.UniqueViolationError, match="premium_ledger_one_premium_per_month"):
        await _post(conn, policy_id, worker_id, date(2026, 1, 1))

    # A reversal of that month and the next month's premium are both fine.
    await _post(conn, policy_id, worker_id, date(2026, 1, 1), "reversal", reverses=first)
    await _post(conn, policy_id, worker_id, date(2026, 2, 1))
    assert await conn.fetchval("SELECT count(*) FROM premium_ledger") == 3


async def test_a_reversal_must_name_an_entry_of_the_ledger(conn: asyncpg.Connection) -> None:
    policy_id, worker_id = await _coverage_with_policy(conn)
    premium = await _post(conn, policy_id, worker_id, date(2026, 1, 1))
    nowhere = uuid.uuid4()

    with pytest.raises(asyncpg.ForeignKeyViolationError, match=f"names no ledger entry: {nowhere}"):
        await _post(conn, policy_id, worker_id, date(2026, 1, 1), "reversal", reverses=nowhere)

    await _post(conn, policy_id, worker_id, date(2026, 1, 1), "reversal", reverses=premium)
    assert await conn.fetchval("SELECT count(*) FROM premium_ledger") == 2
    foreign_keys = await conn.fetchval(
        "SELECT count(*) FROM pg_constraint "
        "WHERE conrelid = 'coverage.premium_ledger'::regclass AND contype = 'f'"
    )
    assert foreign_keys == 0, "premiums queue no key check"
