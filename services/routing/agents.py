"""Routing's faust agent: decode, assign, publish, count."""

from __future__ import annotations

import faust
import structlog

from shared.events import CloudEvent, Contract, SignalReceived, UndecodableRecord, deterministic_id, make_event, utcnow
from shared.kafka import RecordLoop, publish, raw_topic
from shared.municipality import Municipality
from shared.topics import SIGNALS_ASSIGNED, SIGNALS_RECEIVED, SIGNALS_RECEIVED_DLQ
from services.routing.handlers import assign_by_default
from services.routing.metrics import RoutingMetrics

log = structlog.get_logger(__name__)


def register_agents(app: faust.App, *, municipality: Municipality, metrics: RoutingMetrics) -> list[RecordLoop]:
    """Attach routing's agents to the faust app; returns their record loops."""
    received_loop = RecordLoop(app, service="routing", metrics=metrics.hop, dlq_topic=SIGNALS_RECEIVED_DLQ.name)

    async def on_received(envelope: CloudEvent, data: Contract, key: bytes | None) -> None:
        if not isinstance(data, SignalReceived):
            raise UndecodableRecord("unexpected_event_type", f"expected a received signal, got {envelope.type}")
        assigned = assign_by_default(data, municipality, now=utcnow())
        event = make_event(
            assigned, source="schakel/routing", subject=assigned.signal_id,
            event_id=deterministic_id("assigned", assigned.signal_id, str(assigned.attempt)),
        )
        await publish(app, metrics.hop, topic=SIGNALS_ASSIGNED.name, key=assigned.signal_id, event=event)
        metrics.assigned.labels(route=assigned.route.value, rule=assigned.rule_id).inc()
        metrics.latency.labels(route=assigned.route.value).observe(
            (assigned.assigned_at - assigned.received_at).total_seconds()
        )
        log.info("signal_routed", signal_id=assigned.signal_id, route=assigned.route.value, body=assigned.body_id,
                 rule=assigned.rule_id)

    @app.agent(raw_topic(app, SIGNALS_RECEIVED.name), name="route-received", concurrency=1)
    async def route_received(stream: faust.StreamT) -> None:
        await received_loop.run(stream, on_received)

    return [received_loop]
