"""Feedback's metrics (docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.feedback.sla import CLOCKS
from shared.events import LifecycleChange, Route, Urgency
from shared.metrics import LIFECYCLE_BUCKETS, RECORD_DEAD_LETTER_REASONS, HopMetrics, combos, precreate
from shared.topics import (
    AUDIT_LOG,
    LIFECYCLE_REQUESTS,
    PRIVACY_ERASURES,
    PRIVACY_KEYS,
    SIGNALS_ASSIGNED,
    SIGNALS_LIFECYCLE,
    SIGNALS_LIFECYCLE_DLQ,
    SLA_BREACHED,
    SLA_WARNING,
)

ROUTES = tuple(r.value for r in Route)
URGENCIES = tuple(u.value for u in Urgency)
CHANGES = tuple(c.value for c in LifecycleChange)
STEPS = ("handler", "team_lead", "coordinator")


ERASURE_REASONS = ("request", "retention")


class FeedbackMetrics:
    """Every metric feedback exposes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.hop = HopMetrics(
            "feedback", registry=registry,
            consumes=[SIGNALS_ASSIGNED.name, LIFECYCLE_REQUESTS.name, PRIVACY_ERASURES.name],
            produces=[SIGNALS_LIFECYCLE.name, SLA_WARNING.name, SLA_BREACHED.name, SIGNALS_LIFECYCLE_DLQ.name,
                      LIFECYCLE_REQUESTS.name, AUDIT_LOG.name, PRIVACY_KEYS.name, PRIVACY_ERASURES.name],
            dead_letter_reasons=RECORD_DEAD_LETTER_REASONS,
        )
        self.open = Gauge("feedback_open_signals", "Signals not closed or withdrawn.", ["route", "urgency"],
                          registry=registry)
        self.transitions = Counter("feedback_lifecycle_transitions_total", "Accepted lifecycle changes.",
                                   ["change", "route"], registry=registry)
        self.refused = Counter("feedback_lifecycle_refused_total", "Refused lifecycle requests.", ["change"],
                               registry=registry)
        self.time_to = {
            clock: Histogram(f"feedback_time_to_{name}_seconds", f"Time from assignment to {name.replace('_', ' ')}.",
                             ["route"], buckets=LIFECYCLE_BUCKETS, registry=registry)
            for clock, name in (("acknowledge", "acknowledge"), ("feedback", "first_feedback"), ("close", "close"))
        }
        self.warnings = Counter("feedback_sla_warnings_total", "SLA warnings (80 % of a term).", ["clock", "route"],
                                registry=registry)
        self.breaches = Counter("feedback_sla_breaches_total", "SLA breaches.", ["clock", "route"], registry=registry)
        self.escalations = Counter("feedback_sla_escalations_total", "Escalation steps emitted.", ["step"],
                                   registry=registry)
        self.closures = Counter("feedback_closures_total", "Closed signals, with or without feedback before.",
                                ["route", "with_feedback"], registry=registry)
        self.erased = Counter("feedback_signals_erased_total",
                              "Signals whose record became a content-free stub (erasure on request or retention).",
                              ["reason"], registry=registry)
        self.retention_due = Gauge("feedback_retention_due_signals",
                                   "Signals of this worker past their retention term and not erased yet.",
                                   registry=registry)
        precreate(self.erased, combos(reason=ERASURE_REASONS))
        precreate(self.open, combos(route=ROUTES, urgency=URGENCIES))
        precreate(self.transitions, combos(change=CHANGES, route=ROUTES))
        precreate(self.refused, combos(change=CHANGES))
        for histogram in self.time_to.values():
            precreate(histogram, combos(route=ROUTES))
        precreate(self.warnings, combos(clock=CLOCKS, route=ROUTES))
        precreate(self.breaches, combos(clock=CLOCKS, route=ROUTES))
        precreate(self.escalations, combos(step=STEPS))
        precreate(self.closures, combos(route=ROUTES, with_feedback=("true", "false")))
