"""Intake's metrics (docs/metrics.md): signals accepted and rejected, request durations, replays, hop metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS, HopMetrics, combos, precreate
from shared.taxonomy import PARTNER_KINDS
from shared.topics import INTAKE_IDEMPOTENCY, PRIVACY_KEYS, SIGNALS_INBOUND, SIGNALS_INBOUND_DLQ, SIGNALS_RECEIVED

# Every stable code a refusal can carry (HTTP problem code or dead-letter error code); a closed set.
FIELD_CODES = (
    "unknown_category", "invalid_urgency", "missing_identifiers", "invalid_bsn", "invalid_postcode_area",
    "summary_too_long", "unknown_flag", "observed_in_future", "naive_datetime", "unknown_legal_basis",
    "missing_field", "unknown_field", "wrong_type", "invalid_format", "too_short", "too_long", "invalid_value",
    "invalid_datetime", "invalid_email", "validation_failed", "invalid_idempotency_key",
)
REQUEST_CODES = (
    "unauthenticated", "forbidden", "payload_too_large", "unsupported_media_type", "bad_json",
    "idempotency_conflict", "idempotency_in_progress", "rate_limited",
)
INBOUND_CODES = (
    "empty_record", "missing_partner", "unknown_partner", "bad_signature", "bad_envelope", "unknown_event_type",
)
REJECTION_REASONS = (*FIELD_CODES, *REQUEST_CODES, *INBOUND_CODES)
ROUTES = (("/v1/signals", "POST"),)


class IntakeMetrics:
    """Every metric intake exposes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.hop = HopMetrics(
            "intake", registry=registry, consumes=[SIGNALS_INBOUND.name, INTAKE_IDEMPOTENCY.name],
            produces=[SIGNALS_RECEIVED.name, SIGNALS_INBOUND_DLQ.name, INTAKE_IDEMPOTENCY.name, PRIVACY_KEYS.name],
        )
        self.accepted = Counter(
            "intake_signals_accepted_total", "Signals accepted and published.", ["partner_kind", "channel"],
            registry=registry,
        )
        self.rejected = Counter(
            "intake_signals_rejected_total", "Signals refused, by stable reason code.", ["partner_kind", "reason"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "intake_request_duration_seconds", "HTTP request duration by route template.", ["route", "method"],
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.replays = Counter(
            "intake_idempotent_replays_total", "Requests answered from the idempotency record.", registry=registry
        )
        self.last_accepted = Gauge(
            "intake_last_accepted_timestamp_seconds", "Unix time of the last accepted signal.", registry=registry
        )
        precreate(self.accepted, combos(partner_kind=PARTNER_KINDS, channel=("http", "kafka")))
        precreate(self.rejected, combos(partner_kind=(*PARTNER_KINDS, "unknown"), reason=REJECTION_REASONS))
        precreate(self.request_duration, [{"route": r, "method": m} for r, m in ROUTES])
        precreate(self.hop.dead_letters, combos(topic=[SIGNALS_INBOUND.name], reason=REJECTION_REASONS))

    def count_rejection(self, *, partner_kind: str, reason: str) -> None:
        """Count a refusal; an unforeseen code is counted as 'invalid_value' so labels stay a closed set."""
        kind = partner_kind if partner_kind in PARTNER_KINDS else "unknown"
        self.rejected.labels(partner_kind=kind, reason=reason if reason in REJECTION_REASONS else "invalid_value").inc()

    def count_dead_letter(self, *, topic: str, reason: str) -> None:
        """Count a record written to the dead-letter topic."""
        known = reason if reason in REJECTION_REASONS else "invalid_value"
        self.hop.dead_letters.labels(topic=topic, reason=known).inc()
