"""Notify's metrics (docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.notify.rendering import KINDS
from shared.metrics import LATENCY_BUCKETS, RECORD_DEAD_LETTER_REASONS, HopMetrics, combos, precreate
from shared.topics import (
    NOTIFICATIONS_DIGEST,
    NOTIFICATIONS_DLQ,
    NOTIFICATIONS_SENT,
    SIGNALS_ASSIGNED,
    SIGNALS_LIFECYCLE,
    SIGNALS_MATCHED,
    SLA_BREACHED,
    SLA_WARNING,
)

CONSUMED = (SIGNALS_ASSIGNED.name, SIGNALS_LIFECYCLE.name, SIGNALS_MATCHED.name, SLA_WARNING.name,
            SLA_BREACHED.name)
OUTCOMES = ("sent", "retried", "permanent_failure")
# A 'sent' mark is one acks=all produce: about a millisecond on an idle broker, more under load.
MARK_BUCKETS = (0.0005, 0.001, 0.0025, *LATENCY_BUCKETS)


class NotifyMetrics:
    """Every metric notify exposes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.hop = HopMetrics("notify", registry=registry, consumes=(*CONSUMED, NOTIFICATIONS_DIGEST.name),
                              produces=[NOTIFICATIONS_SENT.name, NOTIFICATIONS_DLQ.name, NOTIFICATIONS_DIGEST.name],
                              dead_letter_reasons=RECORD_DEAD_LETTER_REASONS)
        self.emails = Counter("notify_emails_total", "E-mails by template and outcome.", ["template", "outcome"],
                              registry=registry)
        self.send_duration = Histogram("notify_email_send_duration_seconds", "Time to hand one e-mail to SMTP.",
                                       buckets=LATENCY_BUCKETS, registry=registry)
        self.end_to_end = Histogram("notify_email_end_to_end_latency_seconds",
                                    "From acceptance at intake to the e-mail accepted by SMTP.", ["template"],
                                    buckets=LATENCY_BUCKETS, registry=registry)
        self.mark_duration = Histogram(
            "notify_sent_mark_duration_seconds",
            "From the 'sent' mark's write, as SMTP accepted an e-mail, to the broker's acknowledgement; the "
            "connection's next e-mail waits for it (ADR 0022).", buckets=MARK_BUCKETS, registry=registry)
        self.oldest_unsent = Gauge("notify_oldest_unsent_email_age_seconds",
                                   "Age of the oldest e-mail that is due but not yet accepted by SMTP.",
                                   registry=registry)
        self.digest_size = Histogram("notify_digest_size_signals", "Signals per digest e-mail.",
                                     buckets=(1, 2, 5, 10, 20, 50, 100), registry=registry)
        precreate(self.emails, combos(template=KINDS, outcome=OUTCOMES))
        precreate(self.end_to_end, combos(template=KINDS))
