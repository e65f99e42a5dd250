"""Feed a cohort through a running stack and wait until every confirmation is out:
the main job's core, shared by the run command and the end-to-end tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from devtools.cohort import CohortEntry
from devtools.feeder import DEFAULT_RETRY_FOR_S, OnRetry, feed
from devtools.stack import LocalStack


class PipelineTimeout(Exception):
    pass


@dataclass(frozen=True)
class Expected:
    enrolled: int
    sms: int
    emails: int

    @classmethod
    def from_results(cls, entries: Sequence[CohortEntry], results: Sequence[dict]) -> Expected:
        by_request = {e.request_id: e for e in entries}
        enrolled = [r for r in results if r["outcome"] == "enrolled"]
        emails = sum(1 for r in enrolled if by_request[r["request_id"]].worker.email)
        return cls(enrolled=len(enrolled), sms=len(enrolled), emails=emails)


@dataclass(frozen=True)
class RunReport:
    results: list[dict]
    expected: Expected
    summary: dict[str, Any]
    feed_seconds: float
    total_seconds: float


def _finished(summary: dict[str, Any], channel: str) -> int:
    statuses = summary["notifications"]["deliveries"].get(channel, {})
    return int(statuses.get("sent", 0)) + int(statuses.get("failed", 0))


async def run_cohort(
    stack: LocalStack,
    entries: Sequence[CohortEntry],
    *,
    timeout_s: float = 600.0,
    on_feed_progress: Callable[[int, int], None] | None = None,
    on_delivery_progress: Callable[[int, int], None] | None = None,
    on_retry: OnRetry | None = None,
    retry_for_s: float = DEFAULT_RETRY_FOR_S,
) -> RunReport:
    """Feed ``entries`` through registration's HTTP API, then wait until coverage has a
    policy for every enrolled worker and every SMS and email has finished (sent or
    failed). Raises PipelineTimeout with the last figures if that takes too long."""
    started = time.monotonic()
    results = await feed(
        stack.config.registration_url,
        entries,
        on_progress=on_feed_progress,
        on_retry=on_retry,
        retry_for_s=retry_for_s,
        api_key=stack.feeder_key,
    )
    fed = time.monotonic()
    expected = Expected.from_results(entries, results)
    summary = await wait_until_delivered(
        stack, expected, timeout_s=timeout_s - (fed - started), on_progress=on_delivery_progress
    )
    return RunReport(results, expected, summary, fed - started, time.monotonic() - started)


async def wait_until_delivered(
    stack: LocalStack,
    expected: Expected,
    *,
    timeout_s: float,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Poll the services' figures until every expected policy exists and every expected
    message has finished; return the last figures. A service that cannot answer for a
    while (a database outage: 503) is asked again until the deadline."""
    target = expected.sms + expected.emails
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while True:
            try:
                summary = await stack.summary(client)
            except httpx.HTTPError as error:
                if time.monotonic() > deadline:
                    raise PipelineTimeout(
                        f"after {timeout_s:.0f} s the services still cannot report: {error}"
                    ) from error
                await asyncio.sleep(1)
                continue
            done = _finished(summary, "sms") + _finished(summary, "email")
            policies = sum(summary["coverage"]["policies"].values())
            if on_progress is not None:
                on_progress(done, target)
            if done >= target and policies >= expected.enrolled:
                return summary
            if time.monotonic() > deadline:
                raise PipelineTimeout(
                    f"after {timeout_s:.0f} s: {done}/{target} messages finished, "
                    f"{policies}/{expected.enrolled} policies; last figures: {summary}"
                )
            await asyncio.sleep(0.5)
