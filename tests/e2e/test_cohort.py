"""The whole 9,038-worker cohort (plus deliberately invalid requests) through the
three services as separate processes: every count matches exactly, nothing twice."""

from __future__ import annotations

import httpx
import pytest

from devtools.cohort import generate_cohort, summary_expectations
from devtools.feeder import mismatches
from devtools.pipeline import run_cohort
from devtools.stack import LocalStack

pytestmark = pytest.mark.e2e

COHORT_SIZE = 9_038
INVALID = 40
MINIMUM_PACKAGE = 16_800


async def test_whole_cohort_counts_match_exactly_with_no_duplicates(
    fresh_stack: LocalStack,
) -> None:
    entries = generate_cohort(COHORT_SIZE, invalid=INVALID)
    expected = summary_expectations(entries)

    report = await run_cohort(fresh_stack, entries, timeout_s=900)

    assert mismatches(entries, report.results) == []
    registration = report.summary["registration"]
    assert registration["enrolled"] == COHORT_SIZE
    assert registration["workers"] == COHORT_SIZE
    assert registration["rejected"] == INVALID
    assert registration["rejected_by_reason"] == expected["rejected_by_reason"]

    coverage = report.summary["coverage"]
    assert coverage["policies"] == {"active": COHORT_SIZE}
    assert coverage["premium_total"] == COHORT_SIZE * MINIMUM_PACKAGE == 151_838_400

    deliveries = report.summary["notifications"]["deliveries"]
    assert deliveries["sms"] == {"sent": COHORT_SIZE}
    assert deliveries["email"] == {"sent": report.expected.emails}
    assert report.summary["sms_gateway"] == {
        "accepted": COHORT_SIZE,
        "duplicates": 0,
        "rejected": 0,
    }
    assert report.summary["smtp_server"]["accepted"] == report.expected.emails
    assert report.summary["smtp_server"]["duplicates"] == 0

    async with httpx.AsyncClient(auth=fresh_stack.auth) as client:
        url = f"{fresh_stack.config.sms_url}/v1/messages"
        messages = (await client.get(url, params={"limit": 10_000})).json()["messages"]
    recipients = [m["to"] for m in messages]
    assert len(recipients) == len(set(recipients)) == COHORT_SIZE
