"""Every Kafka topic name, defined once.

Names carry their schema's major version: a breaking change to a message gets a new
topic (``.v2``) so old and new consumers can run side by side during a migration.
"""

from typing import Final

ENROLMENT_REQUESTED: Final = "enrolment.requested.v1"
WORKER_ENROLLED: Final = "worker.enrolled.v1"
ENROLMENT_REJECTED: Final = "enrolment.rejected.v1"
POLICY_ACTIVATED: Final = "policy.activated.v1"
PREMIUM_POSTED: Final = "premium.posted.v1"
NOTIFICATION_SENT: Final = "notification.sent.v1"
NOTIFICATION_FAILED: Final = "notification.failed.v1"
COVERAGE_REFUSED: Final = "coverage.refused.v1"
INVOICE_ISSUED: Final = "invoice.issued.v1"
INVOICE_PAID: Final = "invoice.paid.v1"
INVOICE_VOIDED: Final = "invoice.voided.v1"
POLICY_LAPSED: Final = "policy.lapsed.v1"
POLICY_REINSTATED: Final = "policy.reinstated.v1"
POLICY_ENDED: Final = "policy.ended.v1"
PREMIUM_REVERSED: Final = "premium.reversed.v1"
WORKER_DETAILS_CHANGED: Final = "worker.details-changed.v1"
WORKER_DEREGISTERED: Final = "worker.deregistered.v1"

DEAD_LETTER_SUFFIX: Final = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic that holds messages of ``topic`` no consumer could read."""
    return f"{topic}{DEAD_LETTER_SUFFIX}"


EVENT_TOPICS: Final = (
    ENROLMENT_REQUESTED,
    WORKER_ENROLLED,
    ENROLMENT_REJECTED,
    POLICY_ACTIVATED,
    PREMIUM_POSTED,
    NOTIFICATION_SENT,
    NOTIFICATION_FAILED,
    COVERAGE_REFUSED,
    INVOICE_ISSUED,
    INVOICE_PAID,
    INVOICE_VOIDED,
    POLICY_LAPSED,
    POLICY_REINSTATED,
    POLICY_ENDED,
    PREMIUM_REVERSED,
    WORKER_DETAILS_CHANGED,
    WORKER_DEREGISTERED,
)
CONSUMED_TOPICS: Final = (
    ENROLMENT_REQUESTED,
    WORKER_ENROLLED,
    POLICY_ACTIVATED,
    WORKER_DETAILS_CHANGED,
    WORKER_DEREGISTERED,
)
ALL_TOPICS: Final = EVENT_TOPICS + tuple(dead_letter_topic(t) for t in CONSUMED_TOPICS)

# Partitions bound how many consumers of one group can work in parallel; keys
# (worker / request ids) keep one worker's events in order within a partition.
DEFAULT_PARTITIONS: Final = 4
