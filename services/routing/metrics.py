"""Routing's metrics (docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.routing.rules import HANDOFF_EXHAUSTED, SYMBOLIC_TARGETS, RuleBook
from shared.events import Route
from shared.metrics import LATENCY_BUCKETS, RECORD_DEAD_LETTER_REASONS, Children, HopMetrics, combos, precreate
from shared.municipality import Municipality
from shared.topics import (
    PRIVACY_ERASURES,
    SIGNALS_ASSIGNED,
    SIGNALS_LIFECYCLE,
    SIGNALS_MATCHED,
    SIGNALS_RECEIVED,
    SIGNALS_RECEIVED_DLQ,
)

# The internal topic routing repartitions first assignments through, keyed by family key.
FAMILY_TOPIC = "schakel-routing-by-family"

ROUTES = tuple(route.value for route in Route)


class RoutingMetrics:
    """Every metric routing exposes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.hop = HopMetrics(
            "routing", registry=registry,
            consumes=[SIGNALS_RECEIVED.name, SIGNALS_LIFECYCLE.name, SIGNALS_ASSIGNED.name, FAMILY_TOPIC,
                      PRIVACY_ERASURES.name],
            produces=[SIGNALS_ASSIGNED.name, SIGNALS_MATCHED.name, SIGNALS_RECEIVED_DLQ.name, FAMILY_TOPIC],
            dead_letter_reasons=RECORD_DEAD_LETTER_REASONS,
        )
        self.assigned = Counter(
            "routing_signals_assigned_total", "Assignments, by route and rule.", ["route", "rule"], registry=registry
        )
        self.matched = Counter("routing_signals_matched_total", "Cross-partner matches found.", registry=registry)
        self.rejections = Counter(
            "routing_rejections_total", "Rejections by the assigned body.", ["route"], registry=registry
        )
        self.latency = Histogram(
            "routing_assignment_latency_seconds", "From acceptance at intake to assignment.", ["route"],
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.config_reloads = Counter(
            "routing_config_reloads_total", "Routing configuration loads.", ["outcome"], registry=registry
        )
        self.assigned_of, self.latency_of = Children(self.assigned), Children(self.latency)
        precreate(self.latency, combos(route=ROUTES))
        precreate(self.rejections, combos(route=ROUTES))
        precreate(self.config_reloads, combos(outcome=("ok", "refused")))

    def precreate_rules(self, book: RuleBook, municipality: Municipality) -> None:
        """Create the assignment series of every rule for the routes its targets can give."""
        for rule in (*book.rules, book.default):
            for target in (rule.target, *rule.handoff):
                route = SYMBOLIC_TARGETS.get(target) or municipality.bodies[target].route
                self.assigned.labels(route=route.value, rule=rule.id)
        self.assigned.labels(route=Route.COORDINATOR.value, rule=HANDOFF_EXHAUSTED)
