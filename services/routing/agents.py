"""Routing's faust agents: a record loop around each handler of services.routing.decisions."""

from __future__ import annotations

from typing import Any

import faust

from services.routing.config import RoutingConfig
from services.routing.decisions import ASSIGNMENTS, FAMILIES, SUBJECTS, RoutingDecisions
from services.routing.metrics import FAMILY_TOPIC, RoutingMetrics
from shared.record_loop import LINGER_S, RecordLoop
from shared.topics import PRIVACY_ERASURES, SIGNALS_LIFECYCLE, SIGNALS_RECEIVED, SIGNALS_RECEIVED_DLQ


def _json_table(app: faust.App, name: str, partitions: int) -> Any:
    return app.Table(name, default=None, partitions=partitions, key_type=str, value_type=None)


def register_agents(app: faust.App, *, config: RoutingConfig, metrics: RoutingMetrics,
                    linger_s: float = LINGER_S) -> list[RecordLoop]:
    """Attach routing's agents and tables to the faust app; returns their record loops."""
    partitions = SIGNALS_RECEIVED.partitions
    tables = {
        SUBJECTS: _json_table(app, SUBJECTS, partitions),
        FAMILIES: _json_table(app, FAMILIES, partitions),
        ASSIGNMENTS: _json_table(app, ASSIGNMENTS, SIGNALS_LIFECYCLE.partitions),
    }
    family_topic = app.topic(FAMILY_TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw",
                             value_serializer="raw", partitions=partitions, internal=True)
    handoff_topic = app.topic(SIGNALS_LIFECYCLE.name, key_type=bytes, value_type=bytes, key_serializer="raw",
                              value_serializer="raw")
    decide = RoutingDecisions(config, metrics)

    def loop() -> RecordLoop:
        return RecordLoop(app, service="routing", metrics=metrics.hop, dlq_topic=SIGNALS_RECEIVED_DLQ.name,
                          tables=tables, linger_s=linger_s)

    received_loop, family_loop, handoff_loop = loop(), loop(), loop()

    received_topic = app.topic(SIGNALS_RECEIVED.name, PRIVACY_ERASURES.name, key_type=bytes, value_type=bytes,
                               key_serializer="raw", value_serializer="raw")

    @app.agent(received_topic, name="route-received", concurrency=1)
    async def route_received(stream: faust.StreamT) -> None:
        await received_loop.run(stream, decide.on_received)

    @app.agent(family_topic, name="match-family", concurrency=1)
    async def match_family(stream: faust.StreamT) -> None:
        await family_loop.run(stream, decide.on_family)

    @app.agent(handoff_topic, name="hand-off", concurrency=1)
    async def handoff(stream: faust.StreamT) -> None:
        await handoff_loop.run(stream, decide.on_handoff)

    return [received_loop, family_loop, handoff_loop]
