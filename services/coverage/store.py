"""All of coverage's SQL. Every function takes a connection and so joins the caller's
transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from uuid import UUID

import asyncpg

from services.coverage.domain import Agreement, LedgerEntry, Policy


async def agreements(conn: asyncpg.Connection) -> list[Agreement]:
    rows = await conn.fetch(
        """SELECT code, payer, payer_type, funding_source, valid_from, valid_to
           FROM funding_agreements ORDER BY valid_from"""
    )
    return [Agreement(**row) for row in rows]


async def insert_policies(conn: asyncpg.Connection, policies: Sequence[Policy]) -> set[UUID]:
    """Insert new policies; return the ids inserted (a worker's existing policy stays)."""
    if not policies:
        return set()
    rows = await conn.fetch(
        """INSERT INTO policies (policy_id, worker_id, participant_number, agreement_code,
                                 status, coverage_start, declared_income, kecamatan_code,
                                 occupation)
           SELECT p, w, n, nullif(a, ''), s, c, i, k, o FROM unnest(
               $1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::date[],
               $7::bigint[], $8::text[], $9::text[]) AS t(p, w, n, a, s, c, i, k, o)
           ON CONFLICT (worker_id) DO NOTHING
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
                  coverage_start, declared_income, kecamatan_code, occupation
           FROM policies WHERE worker_id = $1""",
        worker_id,
    )
    if policy is None:
        return None
    entries = await conn.fetch(
        """SELECT entry_id, to_char(period, 'YYYY-MM') AS period, entry_type, jkk_amount,
                  jkm_amount, amount, tariff_code, debit_account, credit_account, posted_at
           FROM premium_ledger WHERE policy_id = $1 ORDER BY posted_at, period""",
        policy["policy_id"],
    )
    return {**dict(policy), "ledger": [dict(e) for e in entries]}
