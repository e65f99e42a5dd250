"""The delivery loop: claim due deliveries in batches, send them concurrently through
their channel, then record every result and its event in one transaction."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import structlog

from services.notifications import store
from services.notifications.domain import (
    ClaimedDelivery,
    DeliveryUpdate,
    RetryPolicy,
    SendResult,
    after_send,
)
from shared import outbox
from shared.events import NotificationFailed, NotificationSent

log = structlog.get_logger(__name__)

ROUND_SHARE_OF_LEASE = 0.8
"""A round must end well before its lease does: past the lease, another sender may
claim the same deliveries."""

SendMany = Callable[[Sequence[ClaimedDelivery]], Awaitable[list[SendResult]]]
"""A channel: sends a chunk of deliveries (at most its chunk size; in bulk where the
provider allows it) and returns one result per delivery, in order. It bounds its own
concurrency."""


class DeliverySender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        channels: dict[str, SendMany],
        policy: RetryPolicy,
        *,
        chunk_sizes: dict[str, int] | None = None,
        batch_size: int = 200,
        lease_s: float = 120.0,
        poll_interval_s: float = 0.5,
    ) -> None:
        self._pool = pool
        self._channels = channels
        self._chunk_sizes = chunk_sizes or {}
        self._policy = policy
        self._batch_size = batch_size
        self._lease_s = lease_s
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._stopping = False
        self._rng = random.Random()

    def wake(self) -> None:
        """New deliveries were queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the round in progress, then return from run()."""
        self._stopping = True
        self._wake.set()

    @property
    def longest_round_s(self) -> float:
        return self._lease_s * ROUND_SHARE_OF_LEASE

    async def run(self) -> None:
        while not self._stopping:
            try:
                handled = await self.send_batch()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("delivery round failed", error=repr(error))
                await asyncio.sleep(1)
                continue
            if handled < self._batch_size and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
                self._wake.clear()

    async def send_batch(self) -> int:
        await self._fail_abandoned()
        async with self._pool.acquire() as conn:
            claimed = await store.claim_due(
                conn, self._batch_size, self._lease_s, self._policy.max_attempts
            )
        if not claimed:
            return 0
        sent = await self._send_within_round(claimed)
        await self._record([d for d, _ in sent], [r for _, r in sent])
        return len(claimed)

    async def _send_within_round(
        self, claimed: Sequence[ClaimedDelivery]
    ) -> list[tuple[ClaimedDelivery, SendResult]]:
        """Send every chunk concurrently; whatever has not finished when the round's
        time is up (it must end before its lease) is recorded as a transient failure,
        so it is retried (and counted against max_attempts), never silently re-sent."""
        by_channel: dict[str, list[ClaimedDelivery]] = {}
        for delivery in claimed:
            by_channel.setdefault(delivery.channel, []).append(delivery)
        chunks = {
            asyncio.create_task(self._send(channel, group[i : i + size])): group[i : i + size]
            for channel, group in by_channel.items()
            for size in [self._chunk_sizes.get(channel, 1)]
            for i in range(0, len(group), size)
        }
        done, pending = await asyncio.wait(chunks, timeout=self.longest_round_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            log.warning("sends unfinished at the end of the round", chunks=len(pending))
        sent: list[tuple[ClaimedDelivery, SendResult]] = []
        for task, chunk in chunks.items():
            if task in done:
                sent += task.result()
            else:
                unfinished = SendResult(ok=False, error="send did not finish within the round")
                sent += [(delivery, unfinished) for delivery in chunk]
        return sent

    async def _fail_abandoned(self) -> None:
        """Deliveries whose sender died holding them, on every one of max_attempts
        attempts, fail (with their event) instead of being claimed forever."""
        async with self._pool.acquire() as conn, conn.transaction():
            abandoned = await store.abandoned(conn, self._policy.max_attempts)
            if not abandoned:
                return
            results = [
                after_send(
                    delivery,
                    SendResult(
                        ok=False, error="its sender stopped on every attempt", permanent=True
                    ),
                    self._policy,
                    self._rng,
                )
                for delivery in abandoned
            ]
            recorded = await store.record(conn, [update for update, _ in results])
            await outbox.enqueue_events(
                conn,
                [e for _, e in results if e is not None and e.delivery_id in recorded],
            )

    async def _send(
        self, channel: str, deliveries: list[ClaimedDelivery]
    ) -> list[tuple[ClaimedDelivery, SendResult]]:
        try:
            results = await self._channels[channel](deliveries)
        except Exception as error:  # an adapter bug must not stop the other channels
            results = [SendResult(ok=False, error=f"sender error: {error!r}")] * len(deliveries)
        return list(zip(deliveries, results, strict=True))

    async def _record(
        self, claimed: Sequence[ClaimedDelivery], results: Sequence[SendResult]
    ) -> None:
        updates: list[DeliveryUpdate] = []
        events: list[NotificationSent | NotificationFailed] = []
        for delivery, result in zip(claimed, results, strict=True):
            update, event = after_send(delivery, result, self._policy, self._rng)
            updates.append(update)
            if event is not None:
                events.append(event)
        async with self._pool.acquire() as conn, conn.transaction():
            recorded = await store.record(conn, updates)
            await outbox.enqueue_events(
                conn,
                [e for e in events if e.delivery_id in recorded],  # type: ignore[attr-defined]
            )
        if len(recorded) < len(updates):
            log.warning("results of expired leases ignored", count=len(updates) - len(recorded))
