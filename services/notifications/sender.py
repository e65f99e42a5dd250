"""The delivery loop: claim due deliveries in batches and send them concurrently through
their channel, in chunks (100 SMS to one gateway request, one email per SMTP
transaction). For each chunk, in order:

1. mark it 'sending' in a committed transaction of its own (fenced by the attempt
   number), so that after a crash a delivery still 'claimed' is known never to have
   left, and one found 'sending' is known to be uncertain;
2. hand it to the provider, within the round's time;
3. record its results and their events as soon as the provider answers, retrying while
   the database is unavailable for as long as the lease lasts: a result lost is a
   message sent again.

A message whose outcome is unknown (no answer from the provider, a connection lost
during SMTP DATA, a sender that died while sending) is sent again with the same
idempotency key / Message-ID and counted in ``uncertain_sends``: with a provider that
does not deduplicate, each of those may reach the worker twice."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import stamina
import structlog

from services.notifications import store
from services.notifications.domain import (
    ClaimedDelivery,
    DeliveryUpdate,
    RetryPolicy,
    SendResult,
    after_send,
)
from shared import db, outbox
from shared.events import NotificationFailed, NotificationSent
from shared.failures import is_retryable, is_unavailable

log = structlog.get_logger(__name__)

ROUND_SHARE_OF_LEASE = 0.8
"""A round's sends must end well before its lease does: past the lease, another sender
may claim the same deliveries. The rest of the lease is for recording the results."""
DEFAULT_CONCURRENCY = 4
"""Chunks of one channel at a provider at once, unless the channel says otherwise."""
RELEASE_RETRY_S = 1.0
"""A chunk whose turn did not come within the round is due again after this."""
LEASE_SAFETY = 0.95
"""Recording is retried until this share of the lease (clocks differ a little)."""

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
        concurrency: dict[str, int] | None = None,
        batch_size: int = 200,
        lease_s: float = 120.0,
        poll_interval_s: float = 0.5,
    ) -> None:
        self._pool = pool
        self._channels = channels
        self._chunk_sizes = chunk_sizes or {}
        # A chunk is marked 'sending' only once it holds one of its channel's slots, so
        # that no more deliveries are in doubt at a crash than are really at a provider.
        self._slots = {
            channel: asyncio.Semaphore((concurrency or {}).get(channel, DEFAULT_CONCURRENCY))
            for channel in channels
        }
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
        async with db.connection(self._pool) as conn:
            claimed = await store.claim_due(
                conn, self._batch_size, self._lease_s, self._policy.max_attempts
            )
        if not claimed:
            return 0
        loop = asyncio.get_running_loop()
        lease_ends = loop.time() + self._lease_s * LEASE_SAFETY
        send_by = loop.time() + self.longest_round_s
        by_channel: dict[str, list[ClaimedDelivery]] = {}
        for delivery in claimed:
            by_channel.setdefault(delivery.channel, []).append(delivery)
        chunks = [
            group[i : i + size]
            for channel, group in by_channel.items()
            for size in [self._chunk_sizes.get(channel, 1)]
            for i in range(0, len(group), size)
        ]
        await asyncio.gather(*(self._deliver(chunk, send_by, lease_ends) for chunk in chunks))
        return len(claimed)

    async def _deliver(
        self, chunk: list[ClaimedDelivery], send_by: float, lease_ends: float
    ) -> None:
        """One chunk: take a slot of its channel, mark it sending, send it, record what
        came back (see the module docstring). The slot is held until the results are
        recorded, so no more deliveries are ever 'sending' than the channel's
        concurrency: that bounds what a crash can leave in doubt. A chunk that cannot be
        marked, or whose turn does not come within the round, is left 'claimed', unsent."""
        channel = chunk[0].channel
        slot = self._slots[channel]
        try:
            async with asyncio.timeout_at(send_by):
                await slot.acquire()
        except TimeoutError:
            await self._release(chunk)
            return
        try:
            try:
                async with db.transaction(self._pool) as conn:
                    sending = await store.mark_sending(conn, chunk)
            except Exception as error:
                log.warning("chunk not sent: cannot mark it sending", error=repr(error))
                return
            chunk = [d for d in chunk if d.delivery_id in sending]
            if not chunk:
                return
            try:
                async with asyncio.timeout_at(send_by):
                    results = await self._channels[channel](chunk)
            except TimeoutError:
                # Handed over, no answer within the round: it may have been taken.
                results = [
                    SendResult(ok=False, error="no answer within the round", unknown=True)
                ] * len(chunk)
            except Exception as error:  # an adapter bug must not stop the other chunks
                results = [
                    SendResult(ok=False, error=f"sender error: {error!r}", unknown=True)
                ] * len(chunk)
            await self._record_until(chunk, results, lease_ends)
        finally:
            slot.release()

    async def _release(self, chunk: Sequence[ClaimedDelivery]) -> None:
        """Hand back a chunk that never went out; if that fails too, its lease will."""
        try:
            async with db.transaction(self._pool) as conn:
                await store.release(conn, chunk, RELEASE_RETRY_S)
        except Exception as error:
            log.warning("unsent chunk not released; due again after its lease", error=repr(error))

    async def _record_until(
        self,
        chunk: Sequence[ClaimedDelivery],
        results: Sequence[SendResult],
        lease_ends: float,
    ) -> None:
        """Record the chunk's results, retrying while the database is unavailable, until
        the lease ends (after it, another sender may hold these deliveries)."""
        try:
            await self._record_retrying(chunk, results, lease_ends)
            return
        except Exception as error:
            if is_unavailable(error):
                log.error(
                    "send results lost: these deliveries will be sent again after their lease",
                    count=len(chunk),
                    channel=chunk[0].channel,
                    error=repr(error),
                )
                return
            log.error("a chunk's results cannot be recorded; one by one", error=repr(error))
        # Something in one result (a provider's odd reply) must not lose the others.
        for delivery, result in zip(chunk, results, strict=True):
            try:
                await self._record_retrying([delivery], [result], lease_ends)
            except Exception as error:
                log.error(
                    "send result lost: this delivery will be sent again after its lease",
                    delivery_id=str(delivery.delivery_id),
                    channel=delivery.channel,
                    error=repr(error),
                )

    async def _record_retrying(
        self,
        chunk: Sequence[ClaimedDelivery],
        results: Sequence[SendResult],
        lease_ends: float,
    ) -> None:
        remaining = lease_ends - asyncio.get_running_loop().time()
        async for attempt in stamina.retry_context(
            on=is_retryable,
            attempts=None,
            timeout=max(remaining, 0.001),
            wait_initial=0.2,
            wait_max=5.0,
        ):
            with attempt:
                await self._record(chunk, results)

    async def _fail_abandoned(self) -> None:
        """Deliveries whose sender died holding them, on every one of max_attempts
        attempts, fail (with their event) instead of being claimed forever."""
        async with db.transaction(self._pool) as conn:
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
        async with db.transaction(self._pool) as conn:
            recorded = await store.record(conn, updates)
            await outbox.enqueue_events(
                conn,
                [e for e in events if e.delivery_id in recorded],  # type: ignore[attr-defined]
            )
        if len(recorded) < len(updates):
            log.warning("results of expired leases ignored", count=len(updates) - len(recorded))
