"""Routing's faust agents: decode, match, assign, publish, remember, count.

Three agents, each partition-local:
- route-received: `signals.received` (keyed by subject key) with the subject match table;
  routes, publishes `signals.assigned` and `signals.matched`, and forwards first assignments
  that carry a family key to the repartition topic keyed by family key.
- match-family: that repartition topic with the family match table; publishes family matches.
- hand-off: `signals.assigned` + `signals.lifecycle` (both keyed by signal id, co-partitioned)
  with the last assignment per signal; a rejection becomes the next assignment.
Each table write comes after the sends it records were acknowledged, so a redelivered record
found in a table was fully handled and is skipped; resends carry deterministic ids anyway.
"""

from __future__ import annotations

from typing import Any

import faust
import structlog

from services.routing.config import RoutingConfig
from services.routing.handlers import SOURCE, assigned_event, hand_off, route_signal
from services.routing.matching import Seen, look_up, matched_event, remember
from services.routing.metrics import FAMILY_TOPIC, RoutingMetrics
from shared.events import (
    CloudEvent,
    Contract,
    LifecycleChange,
    SignalAssigned,
    SignalLifecycleChanged,
    SignalReceived,
    UndecodableRecord,
    encode_event,
    make_event,
    utcnow,
)
from shared.kafka import RecordLoop, publish, raw_topic, send_and_wait
from shared.topics import SIGNALS_ASSIGNED, SIGNALS_LIFECYCLE, SIGNALS_MATCHED, SIGNALS_RECEIVED, SIGNALS_RECEIVED_DLQ

log = structlog.get_logger(__name__)



def _json_table(app: faust.App, name: str, partitions: int) -> Any:
    return app.Table(name, default=None, partitions=partitions, key_type=str, value_type=None)


def register_agents(  # noqa: PLR0915 - the handlers are closures over the app, tables and metrics
    app: faust.App, *, config: RoutingConfig, metrics: RoutingMetrics
) -> list[RecordLoop]:
    """Attach routing's agents and tables to the faust app; returns their record loops."""
    partitions = SIGNALS_RECEIVED.partitions
    subjects = _json_table(app, "routing-subjects", partitions)
    families = _json_table(app, "routing-families", partitions)
    assignments = _json_table(app, "routing-assignments", SIGNALS_ASSIGNED.partitions)
    family_topic = app.topic(FAMILY_TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw",
                             value_serializer="raw", partitions=partitions, internal=True)
    handoff_topic = app.topic(SIGNALS_ASSIGNED.name, SIGNALS_LIFECYCLE.name, key_type=bytes, value_type=bytes,
                              key_serializer="raw", value_serializer="raw")

    def loop() -> RecordLoop:
        return RecordLoop(app, service="routing", metrics=metrics.hop, dlq_topic=SIGNALS_RECEIVED_DLQ.name)

    received_loop, family_loop, handoff_loop = loop(), loop(), loop()

    async def on_received(envelope: CloudEvent, data: Contract, key: bytes | None) -> None:
        if not isinstance(data, SignalReceived):
            raise UndecodableRecord("unexpected_event_type", f"expected a received signal, got {envelope.type}")
        loaded = config.current
        me = Seen(data.signal_id, data.reference, data.partner_id, data.partner_kind, data.received_at,
                  subject_key=data.subject_key)
        entry = subjects.get(data.subject_key)
        state = look_up(entry, me, window=loaded.book.window)
        if state.duplicate:
            log.info("signal_already_routed", signal_id=data.signal_id)
            return
        now = utcnow()
        assigned = route_signal(data, book=loaded.book, municipality=loaded.municipality, match=state, now=now)
        await publish(app, metrics.hop, topic=SIGNALS_ASSIGNED.name, key=assigned.signal_id,
                      event=assigned_event(assigned))
        me = Seen(**{**me.__dict__, "body_id": assigned.body_id})
        if state.new_partner_match:
            await _publish_match("subject", data.subject_key, me, state, now)
        if data.family_key:
            await send_and_wait(app, topic=FAMILY_TOPIC, key=data.family_key.encode(),
                                value=encode_event(assigned_event(assigned)))
            metrics.hop.produced.labels(topic=FAMILY_TOPIC).inc()
        subjects[data.subject_key] = remember(entry, me, window=loaded.book.window)
        metrics.assigned.labels(route=assigned.route.value, rule=assigned.rule_id).inc()
        metrics.latency.labels(route=assigned.route.value).observe((now - data.received_at).total_seconds())
        log.info("signal_routed", signal_id=assigned.signal_id, route=assigned.route.value, body=assigned.body_id,
                 rule=assigned.rule_id, matched=assigned.matched, inform=assigned.inform_body_ids)

    async def on_family(envelope: CloudEvent, data: Contract, key: bytes | None) -> None:
        if not isinstance(data, SignalAssigned) or not data.family_key:
            raise UndecodableRecord("unexpected_event_type", f"expected a family assignment, got {envelope.type}")
        window = config.current.book.window
        me = Seen(data.signal_id, data.reference, data.partner_id, data.partner_kind, data.received_at,
                  body_id=data.body_id, subject_key=data.subject_key or "")
        entry = families.get(data.family_key)
        state = look_up(entry, me, window=window, other_subjects_only=True)
        if state.duplicate:
            return
        if state.new_partner_match:
            await _publish_match("family", data.family_key, me, state, utcnow())
        families[data.family_key] = remember(entry, me, window=window)

    async def _publish_match(kind: str, key: str, me: Seen, state: Any, now: Any) -> None:
        matched = matched_event(key_kind=kind, key=key, signal=me, state=state, now=now)
        event = make_event(matched, source=SOURCE, subject=me.signal_id, event_id=matched.match_id)
        await publish(app, metrics.hop, topic=SIGNALS_MATCHED.name, key=key, event=event)
        metrics.matched.inc()
        log.info("signals_matched", key_kind=kind, signal_id=me.signal_id, partners=matched.partner_ids,
                 bodies=matched.body_ids)

    async def on_handoff(envelope: CloudEvent, data: Contract, key: bytes | None) -> None:
        if isinstance(data, SignalAssigned):
            await _remember_assignment(data)
        elif isinstance(data, SignalLifecycleChanged) and data.change is LifecycleChange.REJECTED:
            await _on_rejected(data)

    async def _remember_assignment(assigned: SignalAssigned) -> None:
        entry = assignments.get(assigned.signal_id) or {}
        last = entry.get("assigned")
        if last is not None and last["attempt"] >= assigned.attempt:
            return
        entry = {**entry, "assigned": assigned.model_dump(mode="json")}
        assignments[assigned.signal_id] = entry
        pending = entry.get("pending")
        if pending is not None and pending["attempt"] == assigned.attempt:
            await _on_rejected(SignalLifecycleChanged.model_validate(pending))

    async def _on_rejected(rejection: SignalLifecycleChanged) -> None:
        entry = assignments.get(rejection.signal_id) or {}
        last = entry.get("assigned")
        if last is None or last["attempt"] < rejection.attempt:
            # The assignment it rejects has not reached this worker yet: keep it until it does.
            assignments[rejection.signal_id] = {**entry, "pending": rejection.model_dump(mode="json")}
            log.info("rejection_waits_for_assignment", signal_id=rejection.signal_id, attempt=rejection.attempt)
            return
        if last["attempt"] > rejection.attempt:
            return  # handled before (redelivery) or stale
        current = SignalAssigned.model_validate(last)
        loaded = config.current
        metrics.rejections.labels(route=current.route.value).inc()
        nxt = hand_off(current, rejection, book=loaded.book, municipality=loaded.municipality, now=utcnow())
        await publish(app, metrics.hop, topic=SIGNALS_ASSIGNED.name, key=nxt.signal_id, event=assigned_event(nxt))
        assignments[rejection.signal_id] = {"assigned": nxt.model_dump(mode="json"), "pending": None}
        metrics.assigned.labels(route=nxt.route.value, rule=nxt.rule_id).inc()
        log.info("signal_handed_off", signal_id=nxt.signal_id, rejected_by=rejection.body_id, body=nxt.body_id,
                 rule=nxt.rule_id, attempt=nxt.attempt)

    @app.agent(raw_topic(app, SIGNALS_RECEIVED.name), name="route-received", concurrency=1)
    async def route_received(stream: faust.StreamT) -> None:
        await received_loop.run(stream, on_received)

    @app.agent(family_topic, name="match-family", concurrency=1)
    async def match_family(stream: faust.StreamT) -> None:
        await family_loop.run(stream, on_family)

    @app.agent(handoff_topic, name="hand-off", concurrency=1)
    async def handoff(stream: faust.StreamT) -> None:
        await handoff_loop.run(stream, on_handoff)

    return [received_loop, family_loop, handoff_loop]
