"""All of notifications' SQL. Every function takes a connection and so joins the
caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from services.notifications.domain import (
    ClaimedDelivery,
    Confirmation,
    DeliveryUpdate,
    Message,
)
from shared.events import PolicyActivated, WorkerDetailsChanged, WorkerEnrolled

_COMPLETE = """RETURNING worker_id, policy_id, full_name, participant_number, nik_masked,
                         phone_e164, email, language, coverage_start, payer,
                         correlation_id, policy_event_id, membership, policy_membership"""


def _complete(rows: Sequence[asyncpg.Record]) -> list[Confirmation]:
    return [
        Confirmation(
            worker_id=r["worker_id"],
            policy_id=r["policy_id"],
            full_name=r["full_name"],
            participant_number=r["participant_number"],
            nik_masked=r["nik_masked"],
            phone_e164=r["phone_e164"],
            email=r["email"],
            language=r["language"],
            coverage_start=r["coverage_start"],
            payer=r["payer"],
            correlation_id=r["correlation_id"],
            causation_id=r["policy_event_id"],
        )
        for r in rows
        if r["full_name"] is not None
        and r["policy_id"] is not None
        and r["membership"] == r["policy_membership"]
    ]


async def add_contacts(
    conn: asyncpg.Connection, enrolled: Sequence[WorkerEnrolled]
) -> list[Confirmation]:
    """Store each worker's contact half; return confirmations now complete."""
    if not enrolled:
        return []
    rows = await conn.fetch(
        f"""INSERT INTO confirmations AS c (worker_id, full_name, participant_number,
                                            nik_masked, phone_e164, email, language,
                                            correlation_id, contact_revision, membership)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::text[], $7::text[], $8::text[], $9::int[], $10::int[])
            ON CONFLICT (worker_id) DO UPDATE SET
                full_name = {_IF_MEMBERSHIP.format(column="full_name")},
                participant_number = {_IF_MEMBERSHIP.format(column="participant_number")},
                nik_masked = {_IF_MEMBERSHIP.format(column="nik_masked")},
                correlation_id = {_IF_MEMBERSHIP.format(column="correlation_id")},
                membership = greatest(excluded.membership, c.membership),
                phone_e164 = {_IF_NEWER.format(column="phone_e164")},
                email = {_IF_NEWER.format(column="email")},
                language = {_IF_NEWER.format(column="language")},
                contact_revision = greatest(excluded.contact_revision, c.contact_revision),
                updated_at = now()
            {_COMPLETE}""",
        [e.worker_id for e in enrolled],
        [e.full_name for e in enrolled],
        [e.participant_number for e in enrolled],
        [e.nik_masked for e in enrolled],
        [e.phone_e164 for e in enrolled],
        [e.email for e in enrolled],
        [e.preferred_language for e in enrolled],
        [e.correlation_id for e in enrolled],
        [e.revision for e in enrolled],
        [e.membership for e in enrolled],
    )
    return _complete(rows)


_IF_MEMBERSHIP = """CASE WHEN excluded.membership >= c.membership
                         THEN excluded.{column} ELSE c.{column} END"""
"""A column of the worker's identity: the newest membership's."""
_IF_NEWER = """CASE WHEN excluded.contact_revision > c.contact_revision
                    THEN excluded.{column} ELSE c.{column} END"""
"""A contact column: the newest revision's (a details change may arrive first)."""


async def change_contacts(
    conn: asyncpg.Connection, changed: Sequence[WorkerDetailsChanged]
) -> None:
    """The newest contact of each worker, from now on: for later messages, and for those
    queued and not yet sent (or waiting for a retry). A change that arrives before the
    worker's enrolment is kept, and the enrolment then fills in the rest."""
    if not changed:
        return
    await conn.execute(
        f"""INSERT INTO confirmations AS c (worker_id, phone_e164, email, language,
                                            contact_revision)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[])
            ON CONFLICT (worker_id) DO UPDATE SET
                phone_e164 = {_IF_NEWER.format(column="phone_e164")},
                email = {_IF_NEWER.format(column="email")},
                language = {_IF_NEWER.format(column="language")},
                contact_revision = greatest(excluded.contact_revision, c.contact_revision),
                updated_at = now()""",
        [e.worker_id for e in changed],
        [e.phone_e164 for e in changed],
        [e.email for e in changed],
        [e.preferred_language for e in changed],
        [e.revision for e in changed],
    )
    await conn.execute(
        """UPDATE deliveries d
           SET recipient = CASE d.channel WHEN 'sms' THEN c.phone_e164 ELSE c.email END
           FROM confirmations c
           WHERE c.worker_id = ANY($1::uuid[]) AND d.worker_id = c.worker_id
             AND d.status IN ('queued', 'retrying')
             AND (d.channel = 'sms' OR c.email IS NOT NULL)""",
        [e.worker_id for e in changed],
    )


async def add_policies(
    conn: asyncpg.Connection, activated: Sequence[PolicyActivated]
) -> list[Confirmation]:
    """Store each worker's policy half; return confirmations now complete."""
    if not activated:
        return []
    rows = await conn.fetch(
        f"""INSERT INTO confirmations AS c (worker_id, policy_id, coverage_start, payer,
                                            policy_event_id, policy_membership)
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::date[], $4::text[], $5::uuid[],
                                 $6::int[])
            ON CONFLICT (worker_id) DO UPDATE SET
                policy_id = {_IF_POLICY_MEMBERSHIP.format(column="policy_id")},
                coverage_start = {_IF_POLICY_MEMBERSHIP.format(column="coverage_start")},
                payer = {_IF_POLICY_MEMBERSHIP.format(column="payer")},
                policy_event_id = {_IF_POLICY_MEMBERSHIP.format(column="policy_event_id")},
                policy_membership = greatest(excluded.policy_membership, c.policy_membership),
                updated_at = now()
            {_COMPLETE}""",
        [e.worker_id for e in activated],
        [e.policy_id for e in activated],
        [e.coverage_start for e in activated],
        [e.payer for e in activated],
        [e.event_id for e in activated],
        [e.membership for e in activated],
    )
    return _complete(rows)


_IF_POLICY_MEMBERSHIP = """CASE WHEN excluded.policy_membership >= c.policy_membership
                                THEN excluded.{column} ELSE c.{column} END"""


async def queue(conn: asyncpg.Connection, messages: Sequence[Message]) -> int:
    """Queue messages for sending; one already queued (same delivery id) is skipped."""
    if not messages:
        return 0
    rows = await conn.fetch(
        """INSERT INTO deliveries (delivery_id, worker_id, channel, template, recipient,
                                   subject, body, correlation_id, causation_id)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                                $6::text[], $7::text[], $8::text[], $9::uuid[])
           ON CONFLICT (delivery_id) DO NOTHING
           RETURNING delivery_id""",
        [m.delivery_id for m in messages],
        [m.worker_id for m in messages],
        [m.channel for m in messages],
        [m.template for m in messages],
        [m.recipient for m in messages],
        [m.subject for m in messages],
        [m.body for m in messages],
        [m.correlation_id for m in messages],
        [m.causation_id for m in messages],
    )
    return len(rows)


_CLAIMED = """d.delivery_id, d.worker_id, d.channel, d.template, d.recipient, d.subject,
              d.body, d.attempts, d.correlation_id, d.causation_id"""


async def claim_due(
    conn: asyncpg.Connection, limit: int, lease_s: float, max_attempts: int | None = None
) -> list[ClaimedDelivery]:
    """Take up to ``limit`` deliveries that are due, or whose sender died holding them
    (lease expired), and lease them to this process as 'claimed'. One found 'sending'
    had reached the provider or was about to: its outcome is unknown, and
    uncertain_sends counts it."""
    rows = await conn.fetch(
        f"""WITH due AS (
               SELECT delivery_id FROM deliveries
               WHERE (status IN ('queued', 'retrying') AND next_attempt_at <= now())
                  OR (status IN ('claimed', 'sending') AND lease_until < now()
                      AND ($3::integer IS NULL OR attempts < $3))
               ORDER BY next_attempt_at
               LIMIT $1
               FOR UPDATE SKIP LOCKED)
           UPDATE deliveries d
           SET status = 'claimed', attempts = d.attempts + 1,
               uncertain_sends = d.uncertain_sends + (d.status = 'sending')::integer,
               lease_until = now() + make_interval(secs => $2)
           FROM due WHERE d.delivery_id = due.delivery_id
           RETURNING {_CLAIMED}""",
        limit,
        lease_s,
        max_attempts,
    )
    return [ClaimedDelivery(**row) for row in rows]


async def mark_sending(
    conn: asyncpg.Connection, deliveries: Sequence[ClaimedDelivery]
) -> set[UUID]:
    """Record that these deliveries are about to go to the provider; return those still
    held by this attempt (a sender whose lease ran out sends nothing)."""
    if not deliveries:
        return set()
    rows = await conn.fetch(
        """UPDATE deliveries d
           SET status = 'sending', sending_since = now()
           FROM unnest($1::uuid[], $2::integer[]) AS u(id, attempt)
           WHERE d.delivery_id = u.id AND d.attempts = u.attempt AND d.status = 'claimed'
                 AND d.lease_until > now()
           RETURNING d.delivery_id""",
        [d.delivery_id for d in deliveries],
        [d.attempts for d in deliveries],
    )
    return {row["delivery_id"] for row in rows}


async def release(
    conn: asyncpg.Connection, deliveries: Sequence[ClaimedDelivery], retry_in_s: float
) -> set[UUID]:
    """Give back claimed deliveries that never went to the provider (their turn did not
    come within the round): due again shortly, the attempt not counted."""
    if not deliveries:
        return set()
    rows = await conn.fetch(
        """UPDATE deliveries d
           SET status = CASE WHEN d.attempts = 1 THEN 'queued' ELSE 'retrying' END,
               attempts = d.attempts - 1,
               lease_until = NULL,
               next_attempt_at = now() + make_interval(secs => $3)
           FROM unnest($1::uuid[], $2::integer[]) AS u(id, attempt)
           WHERE d.delivery_id = u.id AND d.attempts = u.attempt AND d.status = 'claimed'
           RETURNING d.delivery_id""",
        [d.delivery_id for d in deliveries],
        [d.attempts for d in deliveries],
        retry_in_s,
    )
    return {row["delivery_id"] for row in rows}


async def abandoned(conn: asyncpg.Connection, max_attempts: int) -> list[ClaimedDelivery]:
    """Deliveries whose lease expired on their last allowed attempt (their sender died
    each time), locked for the caller's transaction."""
    rows = await conn.fetch(
        f"""SELECT {_CLAIMED}
            FROM deliveries d
            WHERE d.status IN ('claimed', 'sending') AND d.lease_until < now()
                  AND d.attempts >= $1
            FOR UPDATE SKIP LOCKED""",
        max_attempts,
    )
    return [ClaimedDelivery(**row) for row in rows]


async def record(conn: asyncpg.Connection, updates: Sequence[DeliveryUpdate]) -> set[UUID]:
    """Record send results; return the deliveries actually updated. The attempt number
    is a fencing token: a sender whose lease expired (and whose delivery another sender
    re-claimed) records nothing."""
    if not updates:
        return set()
    rows = await conn.fetch(
        """UPDATE deliveries d
           SET status = u.status,
               provider_message_id = coalesce(u.provider_id, d.provider_message_id),
               last_error = u.error,
               next_attempt_at = now() + make_interval(secs => u.retry_in),
               lease_until = NULL,
               sending_since = NULL,
               uncertain_sends = d.uncertain_sends + u.uncertain::integer,
               sent_at = CASE WHEN u.status = 'sent' THEN now() ELSE d.sent_at END
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::float8[],
                       $6::integer[], $7::boolean[])
                AS u(id, status, provider_id, error, retry_in, attempt, uncertain)
           WHERE d.delivery_id = u.id AND d.status IN ('claimed', 'sending')
                 AND d.attempts = u.attempt
           RETURNING d.delivery_id""",
        [u.delivery_id for u in updates],
        [u.status for u in updates],
        [u.provider_message_id for u in updates],
        [u.error for u in updates],
        [u.retry_in_s for u in updates],
        [u.attempt for u in updates],
        [u.uncertain for u in updates],
    )
    return {row["delivery_id"] for row in rows}


async def counts(conn: asyncpg.Connection) -> dict[str, object]:
    rows = await conn.fetch(
        "SELECT channel, status, count(*) AS n FROM deliveries GROUP BY 1, 2 ORDER BY 1, 2"
    )
    by_channel: dict[str, dict[str, int]] = {}
    for row in rows:
        by_channel.setdefault(row["channel"], {})[row["status"]] = row["n"]
    waiting = await conn.fetchval(
        "SELECT count(*) FROM confirmations WHERE full_name IS NULL OR policy_id IS NULL"
    )
    uncertain = await conn.fetch(
        """SELECT channel, sum(uncertain_sends)::bigint AS n FROM deliveries
           WHERE uncertain_sends > 0 GROUP BY channel ORDER BY channel"""
    )
    return {
        "deliveries": by_channel,
        "confirmations_waiting_for_other_half": waiting,
        "uncertain_sends": {row["channel"]: row["n"] for row in uncertain},
    }


async def purgeable(
    conn: asyncpg.Connection, before: datetime, limit: int
) -> list[tuple[UUID, str]]:
    """Finished deliveries created before ``before`` that still hold their recipient."""
    rows = await conn.fetch(
        """SELECT delivery_id, recipient FROM deliveries
           WHERE purged_at IS NULL AND status IN ('sent', 'failed') AND created_at < $1
           ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        before,
        limit,
    )
    return [(row["delivery_id"], row["recipient"]) for row in rows]


async def purge(conn: asyncpg.Connection, masked: Sequence[tuple[UUID, str]]) -> None:
    await conn.execute(
        """UPDATE deliveries d
           SET recipient = NULL, subject = NULL, body = NULL,
               recipient_masked = m.masked, purged_at = now()
           FROM unnest($1::uuid[], $2::text[]) AS m(delivery_id, masked)
           WHERE d.delivery_id = m.delivery_id""",
        [d for d, _ in masked],
        [m for _, m in masked],
    )
