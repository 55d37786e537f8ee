"""Intake's metrics (docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS, HopMetrics, combos, precreate
from shared.taxonomy import PARTNER_KINDS
from shared.topics import SIGNALS_INBOUND, SIGNALS_INBOUND_DLQ, SIGNALS_RECEIVED

REJECTION_REASONS = (
    "unauthenticated", "forbidden", "payload_too_large", "unsupported_media_type", "bad_json",
    "validation_failed", "idempotency_conflict", "rate_limited",
)


class IntakeMetrics:
    """Every metric intake exposes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.hop = HopMetrics(
            "intake", registry=registry, consumes=[SIGNALS_INBOUND.name],
            produces=[SIGNALS_RECEIVED.name, SIGNALS_INBOUND_DLQ.name],
        )
        self.accepted = Counter(
            "intake_signals_accepted_total", "Signals accepted and published.", ["partner_kind", "channel"],
            registry=registry,
        )
        self.rejected = Counter(
            "intake_signals_rejected_total", "Signals refused, by reason code.", ["partner_kind", "reason"],
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
        precreate(self.request_duration, [{"route": "/v1/signals", "method": "POST"}])
