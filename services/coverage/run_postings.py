"""The PremiumPosted events of a billing run, published from the ledger itself.

A run posting a million premiums would write a million outbox rows (each with its JSON)
in its transaction, as many rows again as the postings. Instead each agreement's
transaction writes one outbox row naming this source, with the run, month and payer;
the relay reads the postings back in policy order, page by page, each with its event
(built in SQL, see store.run_posting_events), and publishes them. The row commits with
the postings or not at all, so no posting is left without its event, and an event read
twice (a relay crash mid-page) has the same id and bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from services.coverage import store
from shared.events import PremiumPosted, wire_time
from shared.outbox import OutboxRecord, SourcePage, enqueue_source

SOURCE = "coverage.billing-run-postings"
FIRST_POLICY = uuid.UUID(int=0)


@dataclass(frozen=True)
class RunPostings:
    """Which postings an outbox row stands for: one run's, for one month and payer."""

    run_id: uuid.UUID
    period: date
    debit_account: str
    run_started_at: datetime

    def as_args(self) -> dict[str, str]:
        return {
            "run_id": str(self.run_id),
            "period": self.period.isoformat(),
            "debit_account": self.debit_account,
            "run_started_at": self.run_started_at.isoformat(),
        }

    @classmethod
    def of_args(cls, args: Mapping[str, Any]) -> RunPostings:
        return cls(
            uuid.UUID(args["run_id"]),
            date.fromisoformat(args["period"]),
            args["debit_account"],
            datetime.fromisoformat(args["run_started_at"]),
        )

    @property
    def correlation_id(self) -> str:
        return f"billing-run:{self.run_id}"


async def enqueue(conn: asyncpg.Connection, postings: RunPostings) -> None:
    """In the transaction that made the postings."""
    await enqueue_source(conn, SOURCE, PremiumPosted.TOPIC, postings.as_args())


class RunPostingsSource:
    """The relay's reader of RunPostings rows; the cursor is the last policy read."""

    async def read(
        self, conn: asyncpg.Connection, args: Mapping[str, Any], cursor: str | None, limit: int
    ) -> SourcePage:
        postings = RunPostings.of_args(args)
        rows = await store.run_posting_events(
            conn,
            postings.period,
            postings.run_id,
            postings.debit_account,
            after=uuid.UUID(cursor) if cursor else FIRST_POLICY,
            limit=limit,
            occurred_at=wire_time(postings.run_started_at),
            correlation_id=postings.correlation_id,
        )
        if not rows:
            return SourcePage([], None)
        # Every event of the run has the same headers. Taking them from the page's first
        # event, parsed by the model, also checks the SQL-built JSON once per page.
        headers = PremiumPosted.model_validate_json(rows[0]["value"]).kafka_headers()
        records = [
            OutboxRecord(
                topic=PremiumPosted.TOPIC,
                value=row["value"],
                key=str(row["worker_id"]).encode(),
                headers=headers,
                event_id=row["event_id"],
            )
            for row in rows
        ]
        return SourcePage(records, str(rows[-1]["policy_id"]))


SOURCES = {SOURCE: RunPostingsSource()}
