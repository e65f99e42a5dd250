"""Prometheus metrics every service exposes at ``/metrics``.

Defined once per process (the client's default registry refuses a second definition),
labelled by consumer name, which starts with the service's name.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONSUMED = Counter(
    "perisai_consumer_records",
    "Records a consumer finished with, by outcome: handled, duplicate (seen before), "
    "dead_lettered.",
    ["consumer", "outcome"],
)
INBOX_CONFLICTS = Counter(
    "perisai_inbox_conflicts",
    "Events that arrived under an id already handled but with different content (both "
    "origins are kept in the service's inbox_conflicts table).",
    ["consumer"],
)
FAILED_ROUNDS = Counter(
    "perisai_consumer_failed_rounds",
    "Batches that failed and were re-read.",
    ["consumer"],
)
STALLED = Gauge(
    "perisai_consumer_stalled",
    "1 while the consumer's batch keeps failing (see /health/ready), else 0.",
    ["consumer"],
)
