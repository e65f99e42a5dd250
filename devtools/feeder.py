"""Feed a cohort through the registration service's batch HTTP API.

Batches are posted concurrently. A batch that meets a connection error, a 5xx or a 429
is retried with exponential backoff (``Retry-After`` honoured) for up to ``retry_for_s``
(default 5 minutes: a database restart or a deploy), with a line saying so; the batches
already answered are not sent again, so the run resumes where it was. Re-posting a batch
is safe: ``request_id`` is registration's idempotency key, so a batch that was processed
but whose answer was lost yields the same outcomes again and creates nothing new.

    python -m devtools.feeder --base-url http://127.0.0.1:8001 --cohort cohort.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

import httpx
import stamina

from devtools.cohort import CohortEntry, load_cohort, summary_expectations

BATCH_PATH: Final = "/v1/enrolments/batch"
RETRYABLE_STATUS: Final = frozenset({429, 500, 502, 503, 504})
DEFAULT_RETRY_FOR_S: Final = 300.0
"""How long one batch is retried while registration is unavailable before giving up."""

OnRetry = Callable[[str, float], None]
"""Told, before each retry of a batch, what went wrong and how long that batch has been
retried (seconds)."""


class FeederError(RuntimeError):
    """The registration service answered in a way the feeder cannot use."""


class RegistrationUnavailable(FeederError):
    """The registration service could not be reached (or kept failing) within the bound."""


class _RetryableResponse(Exception):
    def __init__(self, status: int, retry_after: float | None, body: str) -> None:
        super().__init__(f"HTTP {status}: {_problem_detail(body)}")
        self.status = status
        self.retry_after = retry_after


def _problem_detail(body: str) -> str:
    """The detail of a problem-details body, else the start of the body."""
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else body[:200]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: not worth parsing for a dev tool
        return None


def _backoff_hook(max_wait_s: float) -> Callable[[Exception], bool | float]:
    """stamina hook: retry transport errors and retryable statuses; honour Retry-After."""

    def hook(error: Exception) -> bool | float:
        if isinstance(error, _RetryableResponse):
            return min(error.retry_after, max_wait_s) if error.retry_after is not None else True
        return isinstance(error, httpx.TransportError)

    return hook


def _payload(batch: Sequence[CohortEntry]) -> dict[str, Any]:
    return {
        "enrolments": [
            {"request_id": e.request_id, "worker": e.worker.model_dump(mode="json")} for e in batch
        ]
    }


def _results_in_order(batch: Sequence[CohortEntry], response: httpx.Response) -> list[dict]:
    try:
        results = response.json()["results"]
        by_id = {result["request_id"]: result for result in results}
    except (ValueError, KeyError, TypeError) as error:
        raise FeederError(f"unexpected batch response: {response.text[:300]!r}") from error
    missing = [e.request_id for e in batch if e.request_id not in by_id]
    if missing:
        raise FeederError(f"batch response lacks {len(missing)} request(s), e.g. {missing[:3]}")
    return [by_id[e.request_id] for e in batch]


async def _post_batch(
    client: httpx.AsyncClient,
    batch: Sequence[CohortEntry],
    *,
    retry_for_s: float,
    max_wait_s: float,
    on_retry: OnRetry | None,
) -> list[dict]:
    payload = _payload(batch)
    problem = ""
    first_failure: float | None = None
    try:
        async for attempt in stamina.retry_context(
            on=_backoff_hook(max_wait_s),
            attempts=None,
            timeout=retry_for_s,
            wait_initial=0.2,
            wait_max=max_wait_s,
        ):
            if first_failure is not None and on_retry is not None:
                on_retry(problem, time.monotonic() - first_failure)
            with attempt:
                try:
                    response = await client.post(BATCH_PATH, json=payload)
                    if response.status_code in RETRYABLE_STATUS:
                        raise _RetryableResponse(
                            response.status_code, _retry_after(response), response.text
                        )
                except (httpx.TransportError, _RetryableResponse) as error:
                    problem = (
                        f"{type(error).__name__}: {error}"
                        if isinstance(error, httpx.TransportError)
                        else str(error)
                    )
                    first_failure = first_failure or time.monotonic()
                    raise
                if response.is_error:
                    raise FeederError(
                        f"registration refused a batch: HTTP {response.status_code} "
                        f"{response.text[:300]}"
                    )
                return _results_in_order(batch, response)
    except (httpx.TransportError, _RetryableResponse) as error:
        raise RegistrationUnavailable(
            f"registration service at {client.base_url} still unavailable after "
            f"{retry_for_s:.0f} s: {problem or error}"
        ) from error
    raise AssertionError("unreachable: stamina either returns, retries or raises")


async def feed(
    base_url: str,
    entries: Sequence[CohortEntry],
    *,
    batch_size: int = 500,
    concurrency: int = 4,
    on_progress: Callable[[int, int], None] | None = None,
    on_retry: OnRetry | None = None,
    retry_for_s: float = DEFAULT_RETRY_FOR_S,
    max_wait_s: float = 5.0,
    timeout_s: float = 120.0,
    api_key: str | None = None,
) -> list[dict]:
    """POST ``entries`` to ``{base_url}/v1/enrolments/batch``; return the results in input order.
    ``api_key`` (with the 'enrol' scope) goes in each request's Authorization header.

    Up to ``concurrency`` batches are in flight. ``on_progress(done, total)`` is called
    after each batch, ``on_retry(problem, seconds)`` before each retry of one. Raises
    :class:`RegistrationUnavailable` when a batch still fails (connection error, 5xx,
    429) after ``retry_for_s``, :class:`FeederError` on any other error answer.
    """
    if batch_size < 1 or concurrency < 1:
        raise ValueError("batch_size and concurrency must be >= 1")
    batches = [entries[i : i + batch_size] for i in range(0, len(entries), batch_size)]
    results: list[list[dict] | None] = [None] * len(batches)
    gate = asyncio.Semaphore(concurrency)
    done = 0
    timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
    limits = httpx.Limits(max_connections=concurrency)

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    async with httpx.AsyncClient(
        base_url=base_url, timeout=timeout, limits=limits, headers=headers
    ) as client:

        async def run(index: int) -> None:
            nonlocal done
            async with gate:
                batch = batches[index]
                results[index] = await _post_batch(
                    client, batch, retry_for_s=retry_for_s, max_wait_s=max_wait_s, on_retry=on_retry
                )
                done += len(batch)
                if on_progress is not None:
                    on_progress(done, len(entries))

        try:
            async with asyncio.TaskGroup() as group:
                for index in range(len(batches)):
                    group.create_task(run(index))
        except ExceptionGroup as group_error:
            # One failing batch cancels the others; report its error, not a group.
            first = group_error.exceptions[0]
            first.__suppress_context__ = True
            raise first  # noqa: B904 (its own __cause__ is kept)

    return [result for batch_results in results if batch_results for result in batch_results]


def mismatches(entries: Sequence[CohortEntry], results: Sequence[dict]) -> list[dict[str, Any]]:
    """Entries whose outcome differs from what the cohort expects (same order as input).

    Requests sharing a NIK (a valid worker and its deliberate DUPLICATE_NIK copies) are
    judged together: batches are sent concurrently, so whichever arrives first may be
    the one enrolled; exactly one of them must be, the others rejected as duplicates.
    """
    found = []
    by_nik: dict[str, list[tuple[CohortEntry, dict]]] = {}
    for entry, result in zip(entries, results, strict=True):
        if entry.expected_reason in (None, "DUPLICATE_NIK"):
            by_nik.setdefault(entry.worker.nik, []).append((entry, result))
    shared_nik = {e.request_id for group in by_nik.values() if len(group) > 1 for e, _ in group}
    for group in by_nik.values():
        if len(group) > 1 and sum(r.get("outcome") == "enrolled" for _, r in group) != 1:
            found += [_mismatch(e, r) for e, r in group]
    for entry, result in zip(entries, results, strict=True):
        if entry.request_id in shared_nik:
            if result.get("outcome") == "rejected" and "DUPLICATE_NIK" not in _codes(result):
                found.append(_mismatch(entry, result))
            continue
        if entry.expected_reason is None:
            ok = result.get("outcome") == "enrolled"
        else:
            ok = result.get("outcome") == "rejected" and entry.expected_reason in _codes(result)
        if not ok:
            found.append(_mismatch(entry, result))
    return found


def _codes(result: dict) -> list[str]:
    return [reason.get("code") for reason in result.get("reasons") or []]


def _mismatch(entry: CohortEntry, result: dict) -> dict[str, Any]:
    return {
        "request_id": entry.request_id,
        "expected": entry.expected_reason or "enrolled",
        "outcome": result.get("outcome"),
        "reasons": _codes(result),
    }


class ProgressLine:
    """A one-line progress display; usable directly as ``feed(..., on_progress=line)``.

    On a terminal the line is redrawn in place (``\\r``). Otherwise (CI logs, pipes) it
    prints a plain line each time another 10% is done, so logs stay short.
    """

    def __init__(
        self,
        total: int,
        label: str = "progress",
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock
        self.started = clock()
        self.done = 0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1
        self._finished = False

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self.update(done)

    def render(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        percent = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.done / elapsed
        return f"{self.label}: {self.done}/{self.total} ({percent:5.1f}%) {rate:,.0f}/s"

    def update(self, done: int) -> None:
        self.done = done
        if self._tty:
            self.stream.write("\r" + self.render())
            self.stream.flush()
            return
        decile = 10 if not self.total else min(10, self.done * 10 // self.total)
        if decile > self._last_decile:
            self._last_decile = decile
            self.stream.write(self.render() + "\n")
            self.stream.flush()

    def finish(self) -> None:
        """End the line (terminal) or print the last line if 100% was never reported."""
        if self._finished:
            return
        self._finished = True
        if self._tty:
            self.stream.write("\r" + self.render() + "\n")
        elif self._last_decile < 10:
            self.stream.write(self.render() + "\n")
        self.stream.flush()


class RetryNotice:
    """Prints, at most every ``every_s`` seconds, that registration is unavailable and
    the feed is waiting for it; usable as ``feed(..., on_retry=notice)``."""

    def __init__(
        self,
        retry_for_s: float,
        *,
        every_s: float = 5.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retry_for_s = retry_for_s
        self.every_s = every_s
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock
        self.notices = 0
        self._last: float | None = None

    def __call__(self, problem: str, waited_s: float) -> None:
        now = self.clock()
        if self._last is not None and now - self._last < self.every_s:
            return
        self._last = now
        self.notices += 1
        self.stream.write(
            f"registration unavailable ({problem}); retrying, {waited_s:.0f} s of at most "
            f"{self.retry_for_s:.0f} s; answered batches are kept\n"
        )
        self.stream.flush()


# --- CLI --------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.feeder",
        description="Feed a cohort (JSONL) through registration's batch API and check outcomes.",
    )
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8001")
    parser.add_argument("--cohort", type=Path, required=True, help="cohort .jsonl")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--results", type=Path, default=None, help="write results as JSONL")
    parser.add_argument(
        "--retry-for",
        type=float,
        default=DEFAULT_RETRY_FOR_S,
        metavar="SECONDS",
        help="how long to keep retrying a batch while registration is unavailable "
        f"(default {DEFAULT_RETRY_FOR_S:.0f})",
    )
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> int:
    entries = load_cohort(args.cohort)
    progress = ProgressLine(len(entries), "enrolment requests")
    try:
        results = await feed(
            args.base_url,
            entries,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            on_progress=progress,
            on_retry=RetryNotice(args.retry_for),
            retry_for_s=args.retry_for,
        )
    except FeederError as error:
        progress.finish()
        print(f"error: {error}", file=sys.stderr)
        return 2
    progress.finish()
    if args.results is not None:
        with args.results.open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(result, ensure_ascii=False) + "\n" for result in results)
    expected = summary_expectations(entries)
    enrolled = sum(1 for result in results if result.get("outcome") == "enrolled")
    print(f"enrolled {enrolled} (expected {expected['enrolled']}), ", end="")
    print(f"rejected {len(results) - enrolled} (expected {expected['rejected']})")
    wrong = mismatches(entries, results)
    for item in wrong[:20]:
        print(f"  mismatch: {json.dumps(item, ensure_ascii=False)}")
    if len(wrong) > 20:
        print(f"  ... and {len(wrong) - 20} more")
    return 1 if wrong else 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(_run(_parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
