"""All of coverage's SQL. Every function takes a connection and so joins the caller's
transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

import asyncpg

from services.coverage.domain import (
    BPJSTK_RECEIVABLE_ACCOUNT,
    Agreement,
    Budget,
    LedgerEntry,
    Policy,
    Tariff,
    month_end,
)
from services.coverage.lifecycle import PolicyFacts
from shared.events import EVENT_ID_NAMESPACE, PremiumReversed
from shared.outbox import encode_headers

AGREEMENT_COLUMNS = """code, payer, payer_type, funding_source, valid_from, valid_to,
                       budget_ceiling, grace_months, programmes"""


def _agreement(row: asyncpg.Record) -> Agreement:
    return Agreement(**{**dict(row), "programmes": tuple(row["programmes"])})


async def agreements(conn: asyncpg.Connection) -> list[Agreement]:
    rows = await conn.fetch(
        f"SELECT {AGREEMENT_COLUMNS} FROM funding_agreements ORDER BY valid_from, code"
    )
    return [_agreement(row) for row in rows]


async def agreement(conn: asyncpg.Connection, code: str) -> Agreement | None:
    row = await conn.fetchrow(
        f"SELECT {AGREEMENT_COLUMNS} FROM funding_agreements WHERE code = $1", code
    )
    return None if row is None else _agreement(row)


async def lock_budgets(conn: asyncpg.Connection, codes: Iterable[str]) -> dict[str, Budget]:
    """The agreements' budgets, their rows locked until the transaction ends: whoever
    commits money against an agreement (activations, billing runs) takes this lock
    first, always in code order, so the ceiling check and the commitment are atomic."""
    rows = await conn.fetch(
        """SELECT code, budget_ceiling, committed FROM funding_agreements
           WHERE code = ANY($1::text[]) ORDER BY code FOR UPDATE""",
        sorted(set(codes)),
    )
    return {row["code"]: Budget(row["budget_ceiling"], row["committed"]) for row in rows}


async def commit_amounts(conn: asyncpg.Connection, amounts: Mapping[str, int]) -> None:
    """Add what was just posted to each agreement's committed total (in the caller's
    transaction, under lock_budgets). The table's check refuses going past a ceiling."""
    items = [(code, amount) for code, amount in sorted(amounts.items()) if amount]
    if not items:
        return
    await conn.execute(
        """UPDATE funding_agreements a SET committed = a.committed + x.amount
           FROM unnest($1::text[], $2::bigint[]) AS x(code, amount) WHERE a.code = x.code""",
        [code for code, _ in items],
        [amount for _, amount in items],
    )


async def workers_with_policies(
    conn: asyncpg.Connection, worker_ids: Sequence[UUID]
) -> set[tuple[UUID, int]]:
    """The (worker, membership) pairs that already have a policy."""
    rows = await conn.fetch(
        "SELECT worker_id, membership FROM policies WHERE worker_id = ANY($1::uuid[])",
        list(worker_ids),
    )
    return {(row["worker_id"], row["membership"]) for row in rows}


async def open_policies_before(
    conn: asyncpg.Connection, worker_id: UUID, membership: int
) -> list[tuple[UUID, int, date]]:
    """The worker's policies of earlier memberships that have not ended, with their
    first day of cover."""
    rows = await conn.fetch(
        """SELECT policy_id, membership, coverage_start FROM policies
           WHERE worker_id = $1 AND membership < $2 AND status <> 'ended'""",
        worker_id,
        membership,
    )
    return [(row["policy_id"], row["membership"], row["coverage_start"]) for row in rows]


async def policy_of_membership(
    conn: asyncpg.Connection, worker_id: UUID, membership: int
) -> tuple[UUID, str, date] | None:
    """The policy of one membership: id, status, first day of cover."""
    row = await conn.fetchrow(
        """SELECT policy_id, status, coverage_start FROM policies
           WHERE worker_id = $1 AND membership = $2""",
        worker_id,
        membership,
    )
    return None if row is None else (row["policy_id"], row["status"], row["coverage_start"])


async def record_deregistration(
    conn: asyncpg.Connection,
    worker_id: UUID,
    membership: int,
    effective_date: date,
    reason: str,
    event_id: UUID,
) -> None:
    await conn.execute(
        """INSERT INTO deregistrations (worker_id, membership, effective_date, reason, event_id)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (worker_id, membership) DO NOTHING""",
        worker_id,
        membership,
        effective_date,
        reason,
        event_id,
    )


async def deregistrations_of(
    conn: asyncpg.Connection, workers: Sequence[tuple[UUID, int]]
) -> dict[tuple[UUID, int], tuple[date, str]]:
    """Recorded deregistrations of these (worker, membership) pairs."""
    rows = await conn.fetch(
        """SELECT d.worker_id, d.membership, d.effective_date, d.reason
           FROM deregistrations d
           JOIN unnest($1::uuid[], $2::int[]) AS t(w, m)
             ON d.worker_id = t.w AND d.membership = t.m""",
        [w for w, _ in workers],
        [m for _, m in workers],
    )
    return {
        (row["worker_id"], row["membership"]): (row["effective_date"], row["reason"])
        for row in rows
    }


async def insert_policies(conn: asyncpg.Connection, policies: Sequence[Policy]) -> set[UUID]:
    """Insert new policies; return the ids inserted (a worker's existing policy stays)."""
    if not policies:
        return set()
    rows = await conn.fetch(
        """INSERT INTO policies (policy_id, worker_id, participant_number, agreement_code,
                                 status, coverage_start, declared_income, kecamatan_code,
                                 occupation, status_reason, payer, membership)
           SELECT p, w, n, nullif(a, ''), s, c, i, k, o, r, nullif(y, ''), m FROM unnest(
               $1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::date[],
               $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int[])
               AS t(p, w, n, a, s, c, i, k, o, r, y, m)
           ON CONFLICT (worker_id, membership) DO NOTHING
           RETURNING policy_id""",
        [p.policy_id for p in policies],
        [p.worker_id for p in policies],
        [p.participant_number for p in policies],
        [p.agreement_code for p in policies],
        [p.status for p in policies],
        [p.coverage_start for p in policies],
        [p.declared_income for p in policies],
        [p.kecamatan_code for p in policies],
        [p.occupation for p in policies],
        [p.status_reason for p in policies],
        [p.payer for p in policies],
        [p.membership for p in policies],
    )
    return {row["policy_id"] for row in rows}


async def post_premiums(conn: asyncpg.Connection, entries: Sequence[LedgerEntry]) -> set[UUID]:
    """Append premium postings; a (policy, month) already posted is skipped. Returns
    the entry ids posted."""
    if not entries:
        return set()
    rows = await conn.fetch(
        """INSERT INTO premium_ledger (entry_id, policy_id, worker_id, period, entry_type,
                                       jkk_amount, jkm_amount, amount, tariff_code,
                                       debit_account, credit_account)
           SELECT e, p, w, d, 'premium', k, m, k + m, t, dr, cr FROM unnest(
               $1::uuid[], $2::uuid[], $3::uuid[], $4::date[], $5::bigint[], $6::bigint[],
               $7::text[], $8::text[], $9::text[]) AS x(e, p, w, d, k, m, t, dr, cr)
           ON CONFLICT (policy_id, period) WHERE entry_type = 'premium' DO NOTHING
           RETURNING entry_id""",
        [e.entry_id for e in entries],
        [e.policy_id for e in entries],
        [e.worker_id for e in entries],
        [e.period for e in entries],
        [e.premium.jkk for e in entries],
        [e.premium.jkm for e in entries],
        [e.premium.tariff_code for e in entries],
        [e.debit_account for e in entries],
        [e.credit_account for e in entries],
    )
    return {row["entry_id"] for row in rows}


async def counts(conn: asyncpg.Connection, period: date) -> dict[str, object]:
    """Policies by status and the premium posted for one month (net of reversals)."""
    by_status = await conn.fetch("SELECT status, count(*) AS n FROM policies GROUP BY status")
    premium = await conn.fetchrow(
        """SELECT coalesce(sum(CASE WHEN entry_type = 'premium' THEN amount ELSE -amount END),
                           0)::bigint AS amount,
                  count(*) FILTER (WHERE entry_type = 'premium') AS postings
           FROM premium_ledger WHERE period = $1""",
        period,
    )
    assert premium is not None
    total = await conn.fetchval(
        """SELECT coalesce(sum(CASE WHEN entry_type = 'premium' THEN amount ELSE -amount END),
                           0)::bigint FROM premium_ledger"""
    )
    return {
        "policies": {row["status"]: row["n"] for row in by_status},
        "period": f"{period:%Y-%m}",
        "premium_due": premium["amount"],
        "premium_postings": premium["postings"],
        "premium_total": total,
    }


async def policy_of(conn: asyncpg.Connection, worker_id: UUID) -> dict[str, object] | None:
    """A worker's policy with its ledger entries, oldest first."""
    policy = await conn.fetchrow(
        """SELECT policy_id, worker_id, participant_number, agreement_code, status,
                  coverage_start, coverage_end, status_reason, declared_income,
                  kecamatan_code, occupation, membership
           FROM policies WHERE worker_id = $1 ORDER BY membership DESC LIMIT 1""",
        worker_id,
    )
    if policy is None:
        return None
    # The ledger's only policy-led index holds premiums; a reversal is found through the
    # premium it reverses (same policy: a ledger check invariant). A plain "policy_id = $1"
    # read every entry of the ledger.
    entries = await conn.fetch(
        """WITH premiums AS (
               SELECT * FROM premium_ledger WHERE policy_id = $1 AND entry_type = 'premium'
           ), entries AS (
               SELECT * FROM premiums
               UNION ALL
               SELECT r.* FROM premiums p JOIN premium_ledger r ON r.reverses = p.entry_id
           )
           SELECT entry_id, to_char(period, 'YYYY-MM') AS period, entry_type, jkk_amount,
                  jkm_amount, amount, tariff_code, debit_account, credit_account, posted_at
           FROM entries ORDER BY posted_at, period""",
        policy["policy_id"],
    )
    return {**dict(policy), "ledger": [dict(e) for e in entries]}


# -- The billing run ------------------------------------------------------------------

BILLABLE = """p.payer = (SELECT payer FROM funding_agreements WHERE code = $1)
              AND p.status IN ('active', 'ended')
              AND p.coverage_start <= $3 AND (p.coverage_end IS NULL OR p.coverage_end >= $2)"""
"""A policy is billed for a month when cover started on or before its last day ($3) and
did not end before its first ($2), by the agreement ($1) of its payer in force that
month (its own, or a renewal). Lapsed and pending policies are not billed."""


BILLING_WORK_MEM = "64MB"
"""Enough for a 50,000-policy chunk's intermediate rows to stay in memory instead of
spilling to temporary files (measured: the default 4MB spills)."""


async def size_work_memory(conn: asyncpg.Connection) -> None:
    """For the rest of the caller's transaction only."""
    await conn.execute(f"SET LOCAL work_mem = '{BILLING_WORK_MEM}'")


@dataclass(frozen=True)
class ChunkResult:
    last_policy_id: UUID | None
    """Where the next chunk starts; None when this chunk found nothing left."""
    billable: int
    created: int
    amount: int


async def bill_chunk(
    conn: asyncpg.Connection,
    agreement: Agreement,
    period: date,
    tariff: Tariff,
    *,
    run_id: UUID,
    after: UUID,
    limit: int,
) -> ChunkResult:
    """Post the month's premium for the next ``limit`` billable policies after
    ``after`` (by policy id), in one statement, each ledger row naming the run and the
    policy's kecamatan and occupation (its invoice line: ``line_run_postings``). A
    (policy, month) already posted is skipped by the ledger's unique index, so any
    number of runs posts it once. The premium is Tariff.premium in SQL: JKK = income
    basis x basis points / 10,000 (truncated), plus the flat JKM. Entry ids are one
    UUIDv7 series per chunk, in policy order. The PremiumPosted events are the run's
    outbox source (``run_postings``), not rows written here."""
    row = await conn.fetchrow(
        f"""WITH due AS (
               SELECT p.policy_id, p.worker_id, p.kecamatan_code, p.occupation,
                      coalesce($4::bigint, p.declared_income) * $5::bigint / 10000 AS jkk,
                      row_number() OVER (ORDER BY p.policy_id) AS n
               FROM policies p
               WHERE {BILLABLE} AND p.policy_id > $6
               ORDER BY p.policy_id LIMIT $7
           ), series AS (
               SELECT uuid_v7() AS base
           ), posted AS (
               INSERT INTO premium_ledger (entry_id, policy_id, worker_id, period, entry_type,
                                           jkk_amount, jkm_amount, amount, tariff_code,
                                           debit_account, credit_account, billing_run_id,
                                           kecamatan_code, occupation)
               SELECT uuid_v7_series(s.base, d.n), d.policy_id, d.worker_id, $2, 'premium',
                      d.jkk, $8::bigint, d.jkk + $8::bigint, $9, $10, $11, $12,
                      d.kecamatan_code, d.occupation
               FROM due d CROSS JOIN series s
               ON CONFLICT (policy_id, period) WHERE entry_type = 'premium' DO NOTHING
               RETURNING amount
           )
           SELECT (SELECT policy_id FROM due ORDER BY policy_id DESC LIMIT 1) AS last,
                  (SELECT count(*) FROM due) AS billable,
                  count(*) AS created, coalesce(sum(amount), 0)::bigint AS amount
           FROM posted""",
        agreement.code,
        period,
        month_end(period),
        tariff.jkk_income_basis,
        tariff.jkk_basis_points,
        after,
        limit,
        tariff.jkm_monthly,
        tariff.code,
        agreement.payer_account,
        BPJSTK_RECEIVABLE_ACCOUNT,
        run_id,
    )
    assert row is not None
    return ChunkResult(row["last"], row["billable"], row["created"], row["amount"])


async def run_posting_events(
    conn: asyncpg.Connection,
    period: date,
    run_id: UUID,
    debit_account: str,
    *,
    after: UUID,
    limit: int,
    occurred_at: str,
    correlation_id: str,
) -> list[asyncpg.Record]:
    """The PremiumPosted events of the premiums a billing run posted for a month and
    payer, in policy order after policy ``after``: each posting's ``worker_id`` (the
    key), ``event_id`` (domain.billing_event_id) and ``value`` (the event's JSON, built
    here because building a million in Python would make the relay the bottleneck;
    domain.run_posting_event is the same event, and a test holds them equal)."""
    return await conn.fetch(
        """SELECT l.policy_id, l.worker_id, e.event_id,
                  convert_to(json_build_object(
                      'event_id', e.event_id, 'occurred_at', $6::text,
                      'correlation_id', $7::text, 'causation_id', NULL,
                      'event_type', 'premium.posted', 'schema_version', 1,
                      'entry_id', l.entry_id, 'policy_id', l.policy_id,
                      'worker_id', l.worker_id, 'period', to_char(l.period, 'YYYY-MM'),
                      'jkk_amount', l.jkk_amount, 'jkm_amount', l.jkm_amount,
                      'amount', l.amount, 'debit_account', l.debit_account,
                      'credit_account', l.credit_account)::text, 'UTF8') AS value
           FROM premium_ledger l
           CROSS JOIN LATERAL (
               SELECT uuid_v3($8, 'premium.posted:' || l.entry_id) AS event_id) e
           WHERE l.period = $1 AND l.debit_account = $3 AND l.billing_run_id = $2
             AND l.policy_id > $4 AND l.entry_type = 'premium'
           ORDER BY l.policy_id LIMIT $5""",
        period,
        run_id,
        debit_account,
        after,
        limit,
        occurred_at,
        correlation_id,
        EVENT_ID_NAMESPACE,
    )


@dataclass(frozen=True)
class InvoiceChange:
    invoice_id: UUID
    revision: int
    headcount: int
    total: int
    lines_added: int
    amount_added: int


@dataclass(frozen=True)
class OpenInvoice:
    invoice_id: UUID
    created: bool
    """Created by this transaction (and removed again if it gets no line)."""


async def open_invoice(
    conn: asyncpg.Connection, agreement: Agreement, period: date, invoice_id: UUID
) -> OpenInvoice | None:
    """The agreement's invoice for the month, created empty with ``invoice_id`` if it
    has none. None when it is void: a void invoice takes no new lines."""
    created = await conn.fetchval(
        """INSERT INTO invoices (invoice_id, agreement_code, period, headcount, total)
           VALUES ($1, $2, $3, 0, 0)
           ON CONFLICT (agreement_code, period) DO NOTHING RETURNING true""",
        invoice_id,
        agreement.code,
        period,
    )
    invoice_id, status = await conn.fetchrow(  # type: ignore[misc]
        "SELECT invoice_id, status FROM invoices WHERE agreement_code = $1 AND period = $2",
        agreement.code,
        period,
    )
    return None if status == "void" else OpenInvoice(invoice_id, bool(created))


async def line_run_postings(conn: asyncpg.Connection, invoice: OpenInvoice, run_id: UUID) -> None:
    """Make every premium the run ``run_id`` posted for the invoice's agreement and month
    a line of ``invoice`` (one row, read through the ``invoice_lines`` view)."""
    await conn.execute(
        "INSERT INTO invoice_run_lines (invoice_id, billing_run_id) VALUES ($1, $2)",
        invoice.invoice_id,
        run_id,
    )


async def line_first_months(
    conn: asyncpg.Connection, invoice: OpenInvoice, agreement: Agreement, period: date
) -> tuple[int, int]:
    """List the month's premiums posted at activation (not by a billing run, whose
    postings are lined by ``line_run_postings``) that no invoice holds yet on
    ``invoice``. Returns how many lines, and their Rupiah."""
    added = await conn.fetchrow(
        """WITH added AS (
               INSERT INTO invoice_listed_lines (entry_id, invoice_id, policy_id, amount,
                                          kecamatan_code, occupation)
               SELECT l.entry_id, $1, l.policy_id, l.amount, p.kecamatan_code, p.occupation
               FROM premium_ledger l JOIN policies p USING (policy_id)
               WHERE l.period = $2 AND l.billing_run_id IS NULL AND l.entry_type = 'premium'
                 AND l.debit_account = $3
                 AND NOT EXISTS (SELECT 1 FROM invoice_listed_lines i
                                 WHERE i.entry_id = l.entry_id)
               RETURNING amount)
           SELECT count(*) AS n, coalesce(sum(amount), 0)::bigint AS amount FROM added""",
        invoice.invoice_id,
        period,
        agreement.payer_account,
    )
    assert added is not None
    return added["n"], added["amount"]


async def settle_invoice(
    conn: asyncpg.Connection, invoice: OpenInvoice, lines_added: int, amount_added: int
) -> InvoiceChange | None:
    """Account for the lines just put on ``invoice``: a new revision with the new
    headcount and total (revision 1 for a new invoice). None when nothing was added (a
    new invoice is then removed again)."""
    if lines_added == 0:
        if invoice.created:
            await conn.execute("DELETE FROM invoices WHERE invoice_id = $1", invoice.invoice_id)
        return None
    row = await conn.fetchrow(
        """UPDATE invoices
           SET headcount = headcount + $2, total = total + $3,
               revision = CASE WHEN $4 THEN 1 ELSE revision + 1 END,
               status = CASE WHEN paid_amount >= total + $3 THEN status ELSE 'pending' END,
               updated_at = now()
           WHERE invoice_id = $1
           RETURNING revision, headcount, total""",
        invoice.invoice_id,
        lines_added,
        amount_added,
        invoice.created,
    )
    assert row is not None
    return InvoiceChange(
        invoice.invoice_id,
        row["revision"],
        row["headcount"],
        row["total"],
        lines_added,
        amount_added,
    )


async def invoice_month(
    conn: asyncpg.Connection, agreement: Agreement, period: date, invoice_id: UUID
) -> InvoiceChange | None:
    """Put the month's first-month premiums that no invoice holds yet on the agreement's
    invoice for the month (created if needed). None when there was nothing to add or the
    invoice is void."""
    invoice = await open_invoice(conn, agreement, period, invoice_id)
    if invoice is None:
        return None
    lines, amount = await line_first_months(conn, invoice, agreement, period)
    return await settle_invoice(conn, invoice, lines, amount)


async def billing_periods_run(conn: asyncpg.Connection, period: date) -> int:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT count(*) FROM billing_runs WHERE period = $1", period
    )


async def record_run(
    conn: asyncpg.Connection,
    run_id: UUID,
    period: date,
    trigger: str,
    started_at: datetime,
    summary: Mapping[str, object],
) -> None:
    await conn.execute(
        """INSERT INTO billing_runs (run_id, period, trigger, started_at, summary)
           VALUES ($1, $2, $3, $4, $5::jsonb)""",
        run_id,
        period,
        trigger,
        started_at,
        json.dumps(summary),
    )


BILLING_LOCK_CLASS = 0x5045_5249  # "PERI": the billing run's advisory-lock namespace


async def try_lock_period(conn: asyncpg.Connection, period: date) -> bool:
    """A session lock on the billing of one month, held by at most one connection in the
    whole cluster (whatever process or machine runs it); released by unlock_period or
    when the connection ends, e.g. because the process was killed."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT pg_try_advisory_lock($1, $2)", BILLING_LOCK_CLASS, period.year * 100 + period.month
    )


async def unlock_period(conn: asyncpg.Connection, period: date) -> None:
    await conn.execute(
        "SELECT pg_advisory_unlock($1, $2)", BILLING_LOCK_CLASS, period.year * 100 + period.month
    )


async def count_billable(conn: asyncpg.Connection, agreement: Agreement, period: date) -> int:
    return await conn.fetchval(  # type: ignore[no-any-return]
        f"SELECT count(*) FROM policies p WHERE {BILLABLE}",
        agreement.code,
        period,
        month_end(period),
    )


# -- Invoices -------------------------------------------------------------------------

INVOICE_COLUMNS = """i.invoice_id, i.agreement_code, a.payer, a.funding_source,
                     to_char(i.period, 'YYYY-MM') AS period, i.status, i.revision,
                     i.headcount, i.total, i.paid_amount, i.total - i.paid_amount AS outstanding,
                     i.void_reason, i.issued_at, i.updated_at"""


async def invoice_of(
    conn: asyncpg.Connection, agreement_code: str, period: date
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT {INVOICE_COLUMNS} FROM invoices i JOIN funding_agreements a
                ON a.code = i.agreement_code
            WHERE i.agreement_code = $1 AND i.period = $2""",
        agreement_code,
        period,
    )


async def invoices(conn: asyncpg.Connection, period: date | None) -> list[dict[str, object]]:
    rows = await conn.fetch(
        f"""SELECT {INVOICE_COLUMNS} FROM invoices i JOIN funding_agreements a
                ON a.code = i.agreement_code
            WHERE $1::date IS NULL OR i.period = $1
            ORDER BY i.period, i.agreement_code""",
        period,
    )
    return [dict(row) for row in rows]


async def invoice(conn: asyncpg.Connection, invoice_id: UUID) -> dict[str, object] | None:
    """An invoice with its lines summed by kecamatan and by occupation, and by both."""
    row = await conn.fetchrow(
        f"""SELECT {INVOICE_COLUMNS} FROM invoices i JOIN funding_agreements a
                ON a.code = i.agreement_code
            WHERE i.invoice_id = $1""",
        invoice_id,
    )
    if row is None:
        return None
    groups = await conn.fetch(
        """SELECT kecamatan_code, occupation, count(*) AS headcount,
                  sum(amount)::bigint AS amount
           FROM invoice_lines WHERE invoice_id = $1
           GROUP BY GROUPING SETS ((kecamatan_code), (occupation), (kecamatan_code, occupation))
           ORDER BY kecamatan_code NULLS FIRST, occupation NULLS FIRST""",
        invoice_id,
    )

    def breakdown(*, kecamatan: bool, occupation: bool) -> list[dict[str, object]]:
        return [
            {k: v for k, v in dict(g).items() if v is not None}
            for g in groups
            if (g["kecamatan_code"] is not None) == kecamatan
            and (g["occupation"] is not None) == occupation
        ]

    return {
        **dict(row),
        "by_kecamatan": breakdown(kecamatan=True, occupation=False),
        "by_occupation": breakdown(kecamatan=False, occupation=True),
        "by_kecamatan_and_occupation": breakdown(kecamatan=True, occupation=True),
    }


async def invoice_lines(conn: asyncpg.Connection, invoice_id: UUID) -> list[asyncpg.Record]:
    """Every line with its ledger entry: which policy, worker and month it bills."""
    return await conn.fetch(
        """SELECT i.entry_id, i.policy_id, p.participant_number, i.kecamatan_code,
                  i.occupation, to_char(l.period, 'YYYY-MM') AS period, l.tariff_code,
                  l.jkk_amount, l.jkm_amount, i.amount
           FROM invoice_lines i
           JOIN premium_ledger l USING (entry_id)
           JOIN policies p ON p.policy_id = i.policy_id
           WHERE i.invoice_id = $1
           ORDER BY i.kecamatan_code, i.occupation, p.participant_number""",
        invoice_id,
    )


# -- Policy lifecycle -----------------------------------------------------------------

POLICY_COLUMNS = """policy_id, worker_id, participant_number,
                    coalesce(agreement_code, '') AS agreement_code, status, coverage_start,
                    declared_income, kecamatan_code, occupation, status_reason, membership"""


async def pending_policies(conn: asyncpg.Connection, reasons: Sequence[str]) -> list[Policy]:
    """Pending policies waiting for one of ``reasons``, locked, in worker order."""
    rows = await conn.fetch(
        f"""SELECT {POLICY_COLUMNS} FROM policies
            WHERE status = 'pending' AND status_reason = ANY($1::text[])
            ORDER BY worker_id FOR UPDATE""",
        list(reasons),
    )
    return [Policy(**row) for row in rows]


async def activate_pending(conn: asyncpg.Connection, policies: Sequence[Policy]) -> set[UUID]:
    """Pending policies become what the domain decided (active under an agreement, or
    still pending with a new reason)."""
    if not policies:
        return set()
    rows = await conn.fetch(
        """UPDATE policies p
           SET status = x.status, agreement_code = nullif(x.agreement_code, ''),
               coverage_start = x.coverage_start, status_reason = x.reason,
               payer = nullif(x.payer, '')
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::date[], $5::text[], $6::text[])
                AS x(policy_id, status, agreement_code, coverage_start, reason, payer)
           WHERE p.policy_id = x.policy_id AND p.status = 'pending'
             AND (p.status, p.status_reason) IS DISTINCT FROM (x.status, x.reason)
           RETURNING p.policy_id, p.status""",
        [p.policy_id for p in policies],
        [p.status for p in policies],
        [p.agreement_code for p in policies],
        [p.coverage_start for p in policies],
        [p.status_reason for p in policies],
        [p.payer for p in policies],
    )
    return {row["policy_id"] for row in rows if row["status"] == "active"}


async def policy_facts(
    conn: asyncpg.Connection,
    *,
    policy_id: UUID | None = None,
    worker_id: UUID | None = None,
    lock: bool = False,
) -> PolicyFacts | None:
    """A policy; with ``lock``, locked for a status change (FOR NO KEY UPDATE, which
    ledger inserts referencing the policy do not wait for)."""
    row = await conn.fetchrow(
        f"""SELECT policy_id, worker_id, participant_number, agreement_code, status,
                   coverage_start
            FROM policies WHERE policy_id = $1 OR worker_id = $2
            ORDER BY membership DESC LIMIT 1
            {"FOR NO KEY UPDATE" if lock else ""}""",
        policy_id,
        worker_id,
    )
    return None if row is None else PolicyFacts(**row)


async def payer_agreements(conn: asyncpg.Connection, policy_id: UUID) -> list[str]:
    """Codes of every agreement of the policy's payer (any of them may bill it)."""
    rows = await conn.fetch(
        """SELECT a.code FROM funding_agreements a
           JOIN policies p ON p.payer = a.payer WHERE p.policy_id = $1 ORDER BY a.code""",
        policy_id,
    )
    return [row["code"] for row in rows]


async def end_policy(
    conn: asyncpg.Connection, policy_id: UUID, coverage_end: date, reason: str
) -> None:
    await conn.execute(
        """UPDATE policies SET status = 'ended', coverage_end = $2, status_reason = $3,
                               lapsed_by = NULL
           WHERE policy_id = $1""",
        policy_id,
        coverage_end,
        reason,
    )


REVERSIBLE_SOURCES = {
    "invoice": "SELECT entry_id FROM invoice_lines WHERE invoice_id = $1",
    "after_end": """SELECT entry_id FROM premium_ledger
                    WHERE policy_id = $1 AND period > $2 AND entry_type = 'premium'""",
}


async def reverse_entries(
    conn: asyncpg.Connection,
    source: str,
    params: Sequence[object],
    *,
    reason: str,
    correlation_id: str,
    occurred_at: str,
) -> dict[str, int]:
    """Append a reversing entry (accounts swapped, same amounts) for each premium
    entry that ``source`` selects and nothing reversed yet, each with its
    PremiumReversed event in the outbox. Returns the Rupiah reversed per agreement."""
    offset = len(params)
    headers = encode_headers(
        [
            ("content-type", b"application/json"),
            ("event_type", b"premium.reversed"),
            ("schema_version", b"1"),
            ("correlation_id", correlation_id.encode()),
        ]
    )
    rows = await conn.fetch(
        f"""WITH reversed AS (
               INSERT INTO premium_ledger (entry_id, policy_id, worker_id, period,
                                           entry_type, jkk_amount, jkm_amount, amount,
                                           tariff_code, debit_account, credit_account,
                                           reverses)
               SELECT gen_random_uuid(), l.policy_id,
                      l.worker_id, l.period, 'reversal', l.jkk_amount, l.jkm_amount,
                      l.amount, l.tariff_code, l.credit_account, l.debit_account, l.entry_id
               FROM premium_ledger l
               WHERE l.entry_id IN ({REVERSIBLE_SOURCES[source]})
                 AND l.entry_type = 'premium'
               ON CONFLICT (reverses) WHERE reverses IS NOT NULL DO NOTHING
               RETURNING entry_id, reverses, policy_id, worker_id, period, amount,
                         debit_account, credit_account
           ), events AS (
               INSERT INTO outbox (event_id, topic, key, value, headers)
               SELECT e.event_id, ${offset + 1}, convert_to(r.worker_id::text, 'UTF8'),
                      convert_to(json_build_object(
                          'event_id', e.event_id, 'occurred_at', ${offset + 2}::text,
                          'correlation_id', ${offset + 3}::text, 'causation_id', NULL,
                          'event_type', 'premium.reversed', 'schema_version', 1,
                          'entry_id', r.entry_id, 'reverses', r.reverses,
                          'policy_id', r.policy_id, 'worker_id', r.worker_id,
                          'period', to_char(r.period, 'YYYY-MM'), 'amount', r.amount,
                          'debit_account', r.debit_account,
                          'credit_account', r.credit_account,
                          'reason', ${offset + 4}::text)::text, 'UTF8'),
                      ${offset + 5}::jsonb
               FROM reversed r
               CROSS JOIN LATERAL (
                   SELECT uuid_v3(${offset + 6}, 'premium.reversed:' || r.entry_id)
                          AS event_id) e
           )
           SELECT substr(credit_account, length('payer:') + 1) AS agreement_code,
                  sum(amount)::bigint AS amount
           FROM reversed GROUP BY credit_account""",
        *params,
        PremiumReversed.TOPIC,
        occurred_at,
        correlation_id,
        reason,
        headers,
        EVENT_ID_NAMESPACE,
    )
    return {row["agreement_code"]: row["amount"] for row in rows}


LINES_OF_INVOICE = """SELECT policy_id FROM invoice_lines WHERE invoice_id = o.invoice_id
                      OFFSET 0"""
"""The policies on invoice ``o`` (laterally): joined to the ``invoice_lines`` view, the
view's run half (a join) would be computed whole, every run posting of every month;
given the invoice, each half is an index range. OFFSET 0 keeps it a subquery."""


@dataclass(frozen=True)
class Lapse:
    policy: PolicyFacts
    invoice_id: UUID
    period: date
    grace_months: int
    invoice_revision: int


async def lapse_overdue(conn: asyncpg.Connection, today: date) -> list[Lapse]:
    """Active policies on an invoice unpaid past its agreement's grace become lapsed
    (the oldest such invoice is named)."""
    rows = await conn.fetch(
        f"""WITH overdue AS (
               SELECT i.invoice_id, i.period, a.grace_months, i.revision
               FROM invoices i JOIN funding_agreements a ON a.code = i.agreement_code
               WHERE i.status = 'pending' AND i.paid_amount < i.total
                 AND i.period < date_trunc('month', $1::date)
                                - make_interval(months => a.grace_months)
           ), chosen AS (
               SELECT DISTINCT ON (l.policy_id) l.policy_id, o.invoice_id, o.period,
                      o.grace_months, o.revision
               FROM overdue o CROSS JOIN LATERAL ({LINES_OF_INVOICE}) l
               ORDER BY l.policy_id, o.period
           )
           UPDATE policies p SET status = 'lapsed', lapsed_by = c.invoice_id,
                                 status_reason = 'UNPAID'
           FROM chosen c
           WHERE p.policy_id = c.policy_id AND p.status = 'active'
           RETURNING p.policy_id, p.worker_id, p.participant_number, p.agreement_code,
                     p.coverage_start, c.invoice_id, c.period, c.grace_months, c.revision""",
        today,
    )
    return [
        Lapse(
            PolicyFacts(
                row["policy_id"],
                row["worker_id"],
                row["participant_number"],
                row["agreement_code"],
                "active",
                row["coverage_start"],
            ),
            row["invoice_id"],
            row["period"],
            row["grace_months"],
            row["revision"],
        )
        for row in rows
    ]


async def reinstate_settled(
    conn: asyncpg.Connection, today: date, invoice_id: UUID | None = None
) -> list[tuple[PolicyFacts, UUID, int]]:
    """Lapsed policies whose lapsing invoice (``invoice_id``, or any) is settled (paid or
    void) and that no other overdue invoice covers become active again. Returns each
    with the invoice and its revision."""
    rows = await conn.fetch(
        f"""WITH overdue AS (
               SELECT i.invoice_id
               FROM invoices i JOIN funding_agreements a ON a.code = i.agreement_code
               WHERE i.status = 'pending' AND i.paid_amount < i.total
                 AND i.period < date_trunc('month', $1::date)
                                - make_interval(months => a.grace_months)
           ), still_overdue AS MATERIALIZED (
               SELECT DISTINCT l.policy_id
               FROM overdue o CROSS JOIN LATERAL ({LINES_OF_INVOICE}) l
           ), settled AS (
               SELECT p.policy_id, p.lapsed_by, i.revision
               FROM policies p JOIN invoices i ON i.invoice_id = p.lapsed_by
               WHERE p.status = 'lapsed' AND i.status IN ('paid', 'void')
                 AND ($2::uuid IS NULL OR p.lapsed_by = $2)
                 AND NOT EXISTS (SELECT 1 FROM still_overdue s WHERE s.policy_id = p.policy_id)
           )
           UPDATE policies p SET status = 'active', lapsed_by = NULL, status_reason = NULL
           FROM settled s
           WHERE p.policy_id = s.policy_id
             AND p.status = 'lapsed' AND p.lapsed_by = s.lapsed_by
           RETURNING p.policy_id, p.worker_id, p.participant_number, p.agreement_code,
                     p.coverage_start, s.lapsed_by, s.revision""",
        today,
        invoice_id,
    )
    return [
        (
            PolicyFacts(
                row["policy_id"],
                row["worker_id"],
                row["participant_number"],
                row["agreement_code"],
                "lapsed",
                row["coverage_start"],
            ),
            row["lapsed_by"],
            row["revision"],
        )
        for row in rows
    ]


# -- Payments and voiding -------------------------------------------------------------


async def invoice_agreement(conn: asyncpg.Connection, invoice_id: UUID) -> str | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT agreement_code FROM invoices WHERE invoice_id = $1", invoice_id
    )


async def lock_invoice(conn: asyncpg.Connection, invoice_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT invoice_id, agreement_code, period, status, revision, total, paid_amount,
                  void_reason
           FROM invoices WHERE invoice_id = $1 FOR NO KEY UPDATE""",
        invoice_id,
    )


async def payment_by_reference(
    conn: asyncpg.Connection, invoice_id: UUID, reference: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT payment_id, amount, paid_on, reference FROM invoice_payments
           WHERE invoice_id = $1 AND reference = $2""",
        invoice_id,
        reference,
    )


async def record_payment(
    conn: asyncpg.Connection,
    payment_id: UUID,
    invoice_id: UUID,
    amount: int,
    paid_on: date,
    reference: str,
) -> asyncpg.Record:
    """Record a payment and add it to the invoice, which becomes paid when covered."""
    await conn.execute(
        """INSERT INTO invoice_payments (payment_id, invoice_id, amount, paid_on, reference)
           VALUES ($1, $2, $3, $4, $5)""",
        payment_id,
        invoice_id,
        amount,
        paid_on,
        reference,
    )
    row = await conn.fetchrow(
        """UPDATE invoices
           SET paid_amount = paid_amount + $2,
               status = CASE WHEN paid_amount + $2 >= total THEN 'paid' ELSE status END,
               updated_at = now()
           WHERE invoice_id = $1
           RETURNING status, total, paid_amount""",
        invoice_id,
        amount,
    )
    assert row is not None
    return row


async def payments(conn: asyncpg.Connection, invoice_id: UUID) -> list[dict[str, object]]:
    rows = await conn.fetch(
        """SELECT payment_id, amount, paid_on, reference, recorded_at FROM invoice_payments
           WHERE invoice_id = $1 ORDER BY recorded_at, payment_id""",
        invoice_id,
    )
    return [dict(row) for row in rows]


async def void_invoice(conn: asyncpg.Connection, invoice_id: UUID, reason: str) -> None:
    await conn.execute(
        """UPDATE invoices SET status = 'void', void_reason = $2, updated_at = now()
           WHERE invoice_id = $1""",
        invoice_id,
        reason,
    )


# -- Agreements -----------------------------------------------------------------------

AGREEMENT_LOCK_CLASS = 0x5045_5241  # "PERA": agreements of one payer are added one at a time


async def lock_payer(conn: asyncpg.Connection, payer: str) -> None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))", AGREEMENT_LOCK_CLASS, payer
    )


async def insert_agreement(conn: asyncpg.Connection, agreement: Agreement) -> None:
    await conn.execute(
        """INSERT INTO funding_agreements (code, payer, payer_type, funding_source, valid_from,
                                           valid_to, budget_ceiling, grace_months, programmes)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        agreement.code,
        agreement.payer,
        agreement.payer_type,
        agreement.funding_source,
        agreement.valid_from,
        agreement.valid_to,
        agreement.budget_ceiling,
        agreement.grace_months,
        list(agreement.programmes),
    )


@dataclass(frozen=True)
class BudgetFigures:
    committed: int
    active_policies: int
    monthly_cost: int
    """What one month of the currently active policies costs at ``tariff``."""
    last_posted_period: date | None


async def budget_figures(
    conn: asyncpg.Connection, agreement: Agreement, tariff: Tariff
) -> BudgetFigures:
    row = await conn.fetchrow(
        """SELECT a.committed,
                  (SELECT count(*) FROM policies p
                   WHERE p.payer = a.payer AND p.status = 'active') AS active,
                  (SELECT coalesce(sum(coalesce($2::bigint, p.declared_income) * $3::bigint
                                       / 10000 + $4::bigint), 0)::bigint
                   FROM policies p
                   WHERE p.payer = a.payer AND p.status = 'active') AS monthly_cost,
                  (SELECT max(l.period) FROM premium_ledger l
                   WHERE l.debit_account = 'payer:' || a.code
                     AND l.entry_type = 'premium') AS last_posted
           FROM funding_agreements a WHERE a.code = $1""",
        agreement.code,
        tariff.jkk_income_basis,
        tariff.jkk_basis_points,
        tariff.jkm_monthly,
    )
    assert row is not None
    return BudgetFigures(row["committed"], row["active"], row["monthly_cost"], row["last_posted"])


# -- Ledger invariants ----------------------------------------------------------------

LEDGER_CHECKS: dict[str, str] = {
    "premium_posted_twice": """
        SELECT policy_id, to_char(period, 'YYYY-MM') AS period, count(*) AS postings
        FROM premium_ledger WHERE entry_type = 'premium'
        GROUP BY policy_id, period HAVING count(*) > 1""",
    "posting_names_no_policy_of_its_worker": """
        SELECT e.entry_id, e.policy_id FROM premium_ledger e
        LEFT JOIN policies p USING (policy_id)
        WHERE p.policy_id IS NULL OR p.worker_id <> e.worker_id""",
    "debits_differ_from_credits": """
        SELECT sum(debit) AS debits, sum(credit) AS credits FROM (
            SELECT amount AS debit, 0 AS credit FROM premium_ledger
            UNION ALL SELECT 0, amount FROM premium_ledger) AS sides
        HAVING sum(debit) <> sum(credit)""",
    "entry_accounts_wrong": """
        SELECT entry_id, entry_type, debit_account, credit_account FROM premium_ledger
        WHERE NOT ((entry_type = 'premium' AND debit_account LIKE 'payer:%'
                    AND credit_account = 'bpjstk:receivable')
                OR (entry_type = 'reversal' AND debit_account = 'bpjstk:receivable'
                    AND credit_account LIKE 'payer:%'))""",
    "entry_amount_not_its_parts": """
        SELECT entry_id, amount, jkk_amount, jkm_amount FROM premium_ledger
        WHERE amount <> jkk_amount + jkm_amount OR amount < 0
           OR debit_account = credit_account""",
    "reversal_does_not_mirror_its_premium": """
        SELECT r.entry_id, r.reverses FROM premium_ledger r
        LEFT JOIN premium_ledger p ON p.entry_id = r.reverses
        WHERE r.entry_type = 'reversal'
          AND (p.entry_id IS NULL OR p.entry_type <> 'premium' OR p.amount <> r.amount
               OR p.debit_account <> r.credit_account OR p.credit_account <> r.debit_account
               OR p.policy_id <> r.policy_id OR p.period <> r.period)""",
    "committed_differs_from_ledger": """
        SELECT a.code, a.committed, coalesce(l.net, 0) AS ledger
        FROM funding_agreements a LEFT JOIN (
            SELECT account, sum(amount) AS net FROM (
                SELECT debit_account AS account, amount FROM premium_ledger
                UNION ALL SELECT credit_account, -amount FROM premium_ledger) AS s
            GROUP BY account) l ON l.account = 'payer:' || a.code
        WHERE a.committed <> coalesce(l.net, 0)""",
    "committed_past_ceiling": """
        SELECT code, committed, budget_ceiling FROM funding_agreements
        WHERE committed > budget_ceiling""",
    "invoice_total_differs_from_lines": """
        SELECT i.invoice_id, i.total, coalesce(sum(l.amount), 0) AS lines_total,
               i.headcount, count(l.entry_id) AS lines
        FROM invoices i LEFT JOIN invoice_lines l USING (invoice_id)
        GROUP BY i.invoice_id
        HAVING i.total <> coalesce(sum(l.amount), 0) OR i.headcount <> count(l.entry_id)""",
    "invoice_line_not_a_posting_of_its_month": """
        SELECT l.entry_id, l.invoice_id FROM invoice_listed_lines l
        LEFT JOIN invoices i USING (invoice_id)
        LEFT JOIN premium_ledger e ON e.entry_id = l.entry_id
        WHERE i.invoice_id IS NULL OR e.entry_id IS NULL
           OR e.entry_type <> 'premium' OR e.period <> i.period OR e.amount <> l.amount
           OR e.debit_account <> 'payer:' || i.agreement_code
           OR e.policy_id <> l.policy_id""",
    "posting_listed_and_lined_by_its_run": """
        SELECT l.entry_id, l.invoice_id, e.billing_run_id FROM invoice_listed_lines l
        JOIN premium_ledger e USING (entry_id)
        JOIN invoice_run_lines r
          ON r.invoice_id = l.invoice_id AND r.billing_run_id = e.billing_run_id""",
    "void_invoice_not_reversed": """
        SELECT l.invoice_id, l.entry_id FROM invoice_lines l JOIN invoices i USING (invoice_id)
        WHERE i.status = 'void'
          AND NOT EXISTS (SELECT 1 FROM premium_ledger r WHERE r.reverses = l.entry_id)""",
    "payments_differ_from_paid_amount": """
        SELECT i.invoice_id, i.paid_amount, coalesce(sum(p.amount), 0) AS payments, i.total
        FROM invoices i LEFT JOIN invoice_payments p USING (invoice_id)
        GROUP BY i.invoice_id
        HAVING i.paid_amount <> coalesce(sum(p.amount), 0) OR i.paid_amount > i.total
            OR (i.status = 'paid') <> (i.paid_amount >= i.total AND i.total > 0)""",
}
"""Each query returns the rows that break one invariant; none may return a row."""

LEDGER_NOTICES: dict[str, str] = {
    "posting_of_an_invoiced_month_not_yet_invoiced": """
        SELECT e.entry_id, i.invoice_id, to_char(e.period, 'YYYY-MM') AS period
        FROM premium_ledger e
        JOIN invoices i ON i.period = e.period AND 'payer:' || i.agreement_code = e.debit_account
        WHERE e.entry_type = 'premium' AND i.status <> 'void'
          AND NOT EXISTS (SELECT 1 FROM invoice_listed_lines l WHERE l.entry_id = e.entry_id)
          AND NOT EXISTS (SELECT 1 FROM invoice_run_lines r
                          WHERE r.invoice_id = i.invoice_id
                            AND r.billing_run_id = e.billing_run_id)""",
    "reversed_posting_on_an_open_invoice": """
        SELECT l.invoice_id, l.entry_id FROM invoice_lines l JOIN invoices i USING (invoice_id)
        WHERE i.status <> 'void'
          AND EXISTS (SELECT 1 FROM premium_ledger r WHERE r.reverses = l.entry_id)""",
}
"""Not errors, but for operations to see: postings made after their month was
invoiced (the next billing run of that month adds them), and postings reversed after
they were invoiced (a policy ended after it was billed: the payer is owed a credit)."""

EXAMPLES = 10


async def ledger_findings(
    conn: asyncpg.Connection, queries: Mapping[str, str]
) -> dict[str, dict[str, object]]:
    """For each query with rows: how many, and the first few."""
    found: dict[str, dict[str, object]] = {}
    for name, query in queries.items():
        count = await conn.fetchval(f"SELECT count(*) FROM ({query}) AS q")
        if count:
            rows = await conn.fetch(f"SELECT * FROM ({query}) AS q LIMIT {EXAMPLES}")
            found[name] = {"count": count, "examples": [dict(row) for row in rows]}
    return found


async def ledger_sizes(conn: asyncpg.Connection) -> dict[str, int]:
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM premium_ledger) AS entries,
                  (SELECT count(*) FROM invoices) AS invoices,
                  (SELECT count(*) FROM funding_agreements) AS agreements"""
    )
    assert row is not None
    return dict(row)


# -- Reports --------------------------------------------------------------------------


async def coverage_groups(conn: asyncpg.Connection, period: date) -> list[dict[str, object]]:
    """Active policies by kecamatan and occupation, with the premium posted for them
    for ``period`` (net of reversals)."""
    rows = await conn.fetch(
        """SELECT p.kecamatan_code, p.occupation, count(*) AS active_policies,
                  coalesce(sum(l.net), 0)::bigint AS monthly_premium_rupiah
           FROM policies p
           LEFT JOIN (
               SELECT policy_id,
                      sum(CASE WHEN entry_type = 'premium' THEN amount ELSE -amount END) AS net
               FROM premium_ledger WHERE period = $1 GROUP BY policy_id
           ) l USING (policy_id)
           WHERE p.status = 'active'
           GROUP BY p.kecamatan_code, p.occupation
           ORDER BY p.kecamatan_code, p.occupation""",
        period,
    )
    return [dict(row) for row in rows]


async def month_figures(
    conn: asyncpg.Connection, agreement: Agreement, period: date, tariff: Tariff
) -> dict[str, object]:
    """One agreement's month: what the billing rule says is due for it (at today's
    policies), what the ledger holds for it, what was invoiced and paid."""
    row = await conn.fetchrow(
        f"""SELECT
               (SELECT count(*) FROM policies p WHERE {BILLABLE}) AS billable_policies,
               (SELECT coalesce(sum(coalesce($4::bigint, p.declared_income) * $5::bigint
                                    / 10000 + $6::bigint), 0)::bigint
                FROM policies p WHERE {BILLABLE}) AS due,
               (SELECT coalesce(sum(CASE WHEN entry_type = 'premium' THEN amount
                                         ELSE -amount END), 0)::bigint
                FROM premium_ledger
                WHERE period = $2 AND 'payer:' || $1 IN (debit_account, credit_account)
               ) AS posted,
               (SELECT count(*) FROM premium_ledger
                WHERE period = $2 AND debit_account = 'payer:' || $1
                  AND entry_type = 'premium') AS postings,
               i.invoice_id, i.status AS invoice_status,
               coalesce(i.total, 0) AS invoiced, coalesce(i.paid_amount, 0) AS paid
           FROM (SELECT 1) AS one
           LEFT JOIN invoices i ON i.agreement_code = $1 AND i.period = $2""",
        agreement.code,
        period,
        month_end(period),
        tariff.jkk_income_basis,
        tariff.jkk_basis_points,
        tariff.jkm_monthly,
    )
    assert row is not None
    return dict(row)


async def committed_of(conn: asyncpg.Connection, code: str) -> int:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT committed FROM funding_agreements WHERE code = $1", code
    )


async def end_agreement(conn: asyncpg.Connection, code: str, valid_to: date) -> None:
    await conn.execute(
        "UPDATE funding_agreements SET valid_to = $2 WHERE code = $1", code, valid_to
    )


async def postings_from(conn: asyncpg.Connection, code: str, period: date) -> int:
    """Premium postings of the agreement for months starting on or after ``period``."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """SELECT count(*) FROM premium_ledger
           WHERE debit_account = 'payer:' || $1 AND entry_type = 'premium' AND period >= $2""",
        code,
        period,
    )


async def uninvoiced_months(conn: asyncpg.Connection, since: date) -> list[tuple[str, date]]:
    """(agreement, month) pairs from ``since`` whose month was billed (a run is recorded)
    but that hold premium postings no invoice has: first months posted after the run (a
    run's own postings are lined by the run, unless the month's invoice is void)."""
    rows = await conn.fetch(
        """SELECT DISTINCT a.code, l.period
           FROM premium_ledger l
           JOIN funding_agreements a ON l.debit_account = 'payer:' || a.code
           WHERE l.entry_type = 'premium' AND l.period >= $1
             AND l.billing_run_id IS NULL
             AND EXISTS (SELECT 1 FROM billing_runs r WHERE r.period = l.period)
             AND NOT EXISTS (SELECT 1 FROM invoice_listed_lines i WHERE i.entry_id = l.entry_id)
           ORDER BY a.code, l.period""",
        since,
    )
    return [(row["code"], row["period"]) for row in rows]
