"""The whole 9,038-worker cohort (plus deliberately invalid requests) through the
three services as separate processes: every count matches exactly, nothing twice; and
no full NIK, phone number or email address of the cohort is found in any log line,
topic record or HTTP response where it does not belong."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from devtools.cohort import generate_cohort, summary_expectations
from devtools.feeder import mismatches
from devtools.pipeline import run_cohort
from devtools.stack import LocalStack
from shared import topics
from tests.e2e.leaks import Findings, PersonalData, log_lines, topic_records

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

    await assert_no_personal_data_leaks(fresh_stack, entries, report.results, report.summary)


CONTACT_TOPICS = {topics.WORKER_ENROLLED, topics.WORKER_DETAILS_CHANGED}
"""Where notifications gets its phone numbers and addresses: they may hold them."""
PROVIDER_RECORDS = {"sms-gateway.jsonl", "sms-gateway.log", "smtp.jsonl", "smtp-server.log"}
"""The stand-ins are the SMS and mail providers: they see phone numbers and addresses."""


async def assert_no_personal_data_leaks(
    stack: LocalStack,
    entries: list,  # type: ignore[type-arg]
    results: list[dict],  # type: ignore[type-arg]
    summary: dict,  # type: ignore[type-arg]
) -> None:
    data = PersonalData.of(entries)
    findings = Findings()
    config = stack.config
    for index, result in enumerate(results):
        findings.scan(f"batch result {index}", json.dumps(result), data, set())
    findings.scan("summaries", json.dumps(summary), data, set())
    enrolled = [r for r in results if r.get("outcome") == "enrolled"]
    sample = random.Random(7).sample(enrolled, 40)
    async with httpx.AsyncClient(auth=stack.auth, timeout=30) as client:
        for result in sample:
            number, worker_id = result["participant_number"], result["worker_id"]
            for url in (
                f"{config.registration_url}/v1/workers/{number}",
                f"{config.registration_url}/v1/workers/{number}/history",
                f"{config.registration_url}/v1/enrolments/{result['request_id']}",
                f"{config.coverage_url}/v1/workers/{worker_id}/policy",
            ):
                response = await client.get(url)
                assert response.status_code == 200, (url, response.text)
                findings.scan(url, response.text, data, set())
        for entry in random.Random(8).sample(entries, 20):
            for q in (entry.worker.phone, entry.worker.full_name[:6]):
                response = await client.get(
                    f"{config.registration_url}/v1/workers", params={"q": q}
                )
                findings.scan(f"search {q!r}", response.text, data, set())
    for place, text in await topic_records(config.kafka_bootstrap, config.topic_prefix):
        topic = place.split("[", 1)[0].removeprefix(config.topic_prefix)
        allowed = {"phone", "email"} if topic in CONTACT_TOPICS else set()
        if topic == topics.ENROLMENT_REQUESTED:
            allowed = {"nik", "phone", "email"}  # the upstream systems' own requests
        findings.scan(place, text, data, allowed)
    for place, line in log_lines(config.log_dir):
        allowed = {"phone", "email"} if place.split(":")[0] in PROVIDER_RECORDS else set()
        findings.scan(place, line, data, allowed)
    assert findings.scanned > 9_038 * 3
    assert findings.places == {}, dict(list(findings.places.items())[:20])
