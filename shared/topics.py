"""The one registry of every Kafka topic Schakel uses."""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """A topic: its name, what it is keyed by, and how it is kept."""

    name: str
    key: str
    description: str
    partitions: int = 4
    retention_ms: int = 730 * DAY_MS
    cleanup_policy: str = "delete"
    extra_config: tuple[tuple[str, str], ...] = ()

    def config(self) -> dict[str, str]:
        """Topic-level configuration for CreateTopics."""
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **dict(self.extra_config),
        }


HOUR_MS = 60 * 60 * 1000
# How long a key store record may wait for compaction, and a tombstone survive it (ADR 0020). Kafka's defaults
# (max.compaction.lag.ms unbounded, delete.retention.ms 24 h, segment.ms 7 days) would keep an erased key on
# disk for as long as the active segment lives.
KEY_COMPACTION = (
    ("segment.ms", str(HOUR_MS)),
    ("max.compaction.lag.ms", str(6 * HOUR_MS)),
    ("delete.retention.ms", str(HOUR_MS)),
    ("min.cleanable.dirty.ratio", "0.01"),
)


SIGNALS_INBOUND = TopicSpec(
    "signals.inbound",
    "partner id",
    "raw, untrusted events from Kafka-connected partners (raw identifiers: kept 7 days only)",
    retention_ms=7 * DAY_MS,
)
SIGNALS_INBOUND_DLQ = TopicSpec(
    "signals.inbound.dlq", "partner id", "rejected inbound records, with provenance headers"
)
SIGNALS_RECEIVED = TopicSpec(
    "signals.received", "subject key", "validated, normalised signals; keyed by child"
)
SIGNALS_RECEIVED_DLQ = TopicSpec(
    "signals.received.dlq", "original key", "records routing could not parse, with provenance"
)
SIGNALS_ASSIGNED = TopicSpec(
    "signals.assigned", "signal id", "routing decisions: body, rule id, explanation"
)
SIGNALS_MATCHED = TopicSpec(
    "signals.matched", "subject key", "two or more partners signalled the same child"
)
LIFECYCLE_REQUESTS = TopicSpec(
    "signals.lifecycle.requests",
    "signal id",
    "lifecycle changes asked for over HTTP, applied in order by the feedback agent",
    retention_ms=7 * DAY_MS,
)
LIFECYCLE_REPLIES = TopicSpec(
    "signals.lifecycle.replies",
    "feedback worker id",
    "the owning feedback worker's answers to reads and changes another worker received over HTTP (ADR 0015)",
    partitions=1,
    retention_ms=DAY_MS,
)
SIGNALS_LIFECYCLE = TopicSpec(
    "signals.lifecycle", "signal id", "acknowledged, feedback given, rejected, closed, reopened"
)
SIGNALS_LIFECYCLE_DLQ = TopicSpec(
    "signals.lifecycle.dlq", "original key", "records feedback could not parse, with provenance"
)
SLA_WARNING = TopicSpec("sla.warning", "signal id", "deadlines about to pass")
SLA_BREACHED = TopicSpec("sla.breached", "signal id", "deadlines passed")
NOTIFICATIONS_SENT = TopicSpec(
    "notifications.sent", "signal id", "what was mailed to whom (no content)"
)
NOTIFICATIONS_DLQ = TopicSpec(
    "notifications.dlq", "signal id", "records or e-mails notify could not handle"
)
NOTIFICATIONS_DIGEST = TopicSpec(
    "notifications.digest",
    "keyed hash of the recipient's address",
    "notify's own queue of digest items and 'digest due' ticks, so one agent sends and clears a digest (ADR 0008)",
    retention_ms=14 * DAY_MS,
)
INTAKE_IDEMPOTENCY = TopicSpec(
    "intake.idempotency",
    "claim:/done: + partner id + keyed hash of the Idempotency-Key",
    "intake's durable idempotency record: claims and completed answers (ADR 0005)",
    partitions=1,
    cleanup_policy="compact",
)
PRIVACY_KEYS = TopicSpec(
    "privacy.keys",
    "subject pseudonym / key id",
    "every child's data keys, wrapped by the master key; a tombstone erases one (ADR 0020)",
    partitions=1,
    cleanup_policy="compact",
    extra_config=KEY_COMPACTION,
)
PRIVACY_ERASURES = TopicSpec(
    "privacy.erasures",
    "subject pseudonym",
    "content-free SubjectErased events: which child's (or which signals') keys were destroyed, and why",
)
AUDIT_LOG = TopicSpec(
    "audit.log", "signal id", "who read or changed which signal, when, on whose behalf (NEN 7513 style)"
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    SIGNALS_INBOUND,
    SIGNALS_INBOUND_DLQ,
    SIGNALS_RECEIVED,
    SIGNALS_RECEIVED_DLQ,
    SIGNALS_ASSIGNED,
    SIGNALS_MATCHED,
    LIFECYCLE_REQUESTS,
    LIFECYCLE_REPLIES,
    SIGNALS_LIFECYCLE,
    SIGNALS_LIFECYCLE_DLQ,
    SLA_WARNING,
    SLA_BREACHED,
    NOTIFICATIONS_SENT,
    NOTIFICATIONS_DLQ,
    NOTIFICATIONS_DIGEST,
    AUDIT_LOG,
    INTAKE_IDEMPOTENCY,
    PRIVACY_KEYS,
    PRIVACY_ERASURES,
)

BY_NAME: dict[str, TopicSpec] = {topic.name: topic for topic in ALL_TOPICS}
