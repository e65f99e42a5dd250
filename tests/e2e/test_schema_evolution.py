"""Old consumers, new producer: during a rolling deploy the producer is upgraded first
and may add optional fields to an event. The running services (the old consumers) must
apply such events as before, and dead-letter nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from devtools.stack import LocalStack
from services.coverage.domain import policy_id_for
from services.registration.domain import participant_number
from shared.events import Event, PolicyActivated, WorkerEnrolled, derive_event_id
from shared.topics import CONSUMED_TOPICS, POLICY_ACTIVATED, dead_letter_topic
from tests.e2e.kafka_tools import group_lags, publish
from tests.factories import worker_enrolled
from tests.integration.kafka_helpers import end_offsets, eventually

pytestmark = pytest.mark.e2e

AGREEMENT = "KOTA-PASURUAN-DBHCHT"
NEWER_FIELDS: dict[str, Any] = {
    "kpj_number": "12345678901",
    "verified_by": {"system": "dukcapil", "at": "2026-12-01T08:00:00Z"},
    "tags": ["pilot", 2026],
}
"""Fields a later release might add: of every JSON shape."""


def with_newer_fields(event: Event) -> bytes:
    data = json.loads(event.model_dump_json())
    return json.dumps({**data, **NEWER_FIELDS}).encode()


async def publish_event(stack: LocalStack, event: Event, value: bytes) -> None:
    await publish(
        stack.config.kafka_bootstrap,
        stack.config.topic_prefix + event.TOPIC,
        value,
        key=event.kafka_key(),
        headers=event.kafka_headers(),
    )


def new_worker(n: int) -> WorkerEnrolled:
    worker_id = uuid.uuid4()
    return worker_enrolled(
        event_id=uuid.uuid4(),
        correlation_id=f"evolution-{worker_id}",
        worker_id=worker_id,
        participant_number=participant_number(8_000_000 + n),
        request_id=f"evolution-{worker_id}",
        phone_e164=f"+62813{n:08d}",
        email=f"worker{n}.{worker_id.hex[:6]}@example.com",
    )


async def test_events_with_fields_a_newer_producer_added_are_applied(
    fresh_stack: LocalStack,
) -> None:
    config = fresh_stack.config
    # A: a WorkerEnrolled from a newer registration, read by coverage and notifications.
    first = new_worker(1)
    await publish_event(fresh_stack, first, with_newer_fields(first))

    # B: a PolicyActivated from a newer coverage, read by notifications before the
    # worker's contact arrives. Its payer is marked, so that the email shows it was
    # this event (not the one the running coverage emits later, a duplicate by id)
    # that notifications applied.
    second = new_worker(2)
    policy_id = policy_id_for(second.worker_id, AGREEMENT)
    activated = PolicyActivated(
        event_id=derive_event_id("policy.activated", policy_id),
        correlation_id=second.correlation_id,
        policy_id=policy_id,
        worker_id=second.worker_id,
        participant_number=second.participant_number,
        agreement_code=AGREEMENT,
        payer="Pemerintah Kota Pasuruan (newer producer)",
        funding_source="DBHCHT",
        programmes=("JKK", "JKM"),
        coverage_start=second.enrolled_on,
        monthly_premium=16_800,
    )
    await publish_event(fresh_stack, activated, with_newer_fields(activated))
    group = f"{config.topic_prefix}notifications.policy-activated"
    await eventually(
        lambda: group_lags(group),
        lambda lags: (
            any(t.endswith(POLICY_ACTIVATED) for _, t, _ in lags)
            and all(lag == 0 for lag in lags.values())
        ),
        timeout_s=60,
        interval_s=1,
        what="notifications to consume the newer PolicyActivated",
    )
    await publish_event(fresh_stack, second, with_newer_fields(second))

    async with httpx.AsyncClient(auth=fresh_stack.auth, timeout=10) as client:
        for worker in (first, second):
            url = f"{config.coverage_url}/v1/workers/{worker.worker_id}/policy"

            async def policy(url: str = url) -> dict[str, Any] | None:
                response = await client.get(url)
                return response.json() if response.status_code == 200 else None

            found = await eventually(
                policy, bool, timeout_s=60, interval_s=0.5, what="coverage's policy"
            )
            assert found is not None and found["status"] == "active"

            async def email(worker: WorkerEnrolled = worker) -> list[dict[str, Any]]:
                url = f"{config.smtp_http_url}/v1/messages"
                response = await client.get(url, params={"to": worker.email})
                return response.json()["messages"]

            [message] = await eventually(
                email, bool, timeout_s=60, interval_s=0.5, what="the confirmation email"
            )
            sms = await client.get(
                f"{config.sms_url}/v1/messages", params={"to": worker.phone_e164}
            )
            assert len(sms.json()["messages"]) == 1
        assert "(newer producer)" in message["text"], "the newer PolicyActivated was applied"

    for topic in CONSUMED_TOPICS:
        dlq = config.topic_prefix + dead_letter_topic(topic)
        assert sum((await end_offsets(config.kafka_bootstrap, dlq)).values()) == 0, dlq
