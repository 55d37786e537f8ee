"""Feedback's agent: the only writer of the lifecycle table, fed by assignments and HTTP requests."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import faust
import structlog
from faust.types import TableT

from services.feedback.breaches import Emission, due_emissions, emission_event_id, sla_event
from services.feedback.calendar import DutchCalendar
from services.feedback.deadlines import calendar_for, deadlines_for
from services.feedback.lifecycle import ChangeRequest, Refusal, SignalRecord, Status, apply, check, on_assigned
from services.feedback.metrics import ROUTES, URGENCIES, FeedbackMetrics
from services.feedback.sla_config import SlaConfig, sla_config_for
from shared.events import (
    CloudEvent,
    Contract,
    LifecycleChange,
    LifecycleRequested,
    SignalAssigned,
    SignalLifecycleChanged,
    SlaBreached,
    SlaCheckRequested,
    UndecodableRecord,
    deterministic_id,
    encode_event,
    make_event,
    utcnow,
)
from shared.kafka import RecordLoop, faust_ready, publish, send_and_wait
from shared.municipality import Municipality
from shared.topics import (
    LIFECYCLE_REQUESTS,
    SIGNALS_ASSIGNED,
    SIGNALS_LIFECYCLE,
    SIGNALS_LIFECYCLE_DLQ,
    SLA_BREACHED,
    SLA_WARNING,
)

log = structlog.get_logger(__name__)
CLOSED_STATES = frozenset({Status.CLOSED, Status.WITHDRAWN})
REQUEST_IDS_KEPT = 200


@dataclass
class FeedbackCore:
    """The lifecycle table, the agent that writes it, and the futures HTTP requests wait on."""

    app: faust.App
    municipality: Municipality
    metrics: FeedbackMetrics
    partitions: int
    sweep_interval_s: float = 30.0
    calendar: DutchCalendar = field(init=False)
    sla: SlaConfig = field(init=False)
    table: TableT = field(init=False)
    loop: RecordLoop = field(init=False)
    pending: dict[str, asyncio.Future[SignalRecord | Refusal]] = field(default_factory=dict)
    # Signals a sweep asked to check (monotonic time of the ask) and the agent has not checked yet; not asked
    # again for three sweep intervals, so a lost answer cannot hold a signal back for long.
    checks_in_flight: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.calendar = calendar_for(self.municipality)
        self.sla = sla_config_for(self.municipality)
        self.table = self.app.Table(
            "signal-state", default=None, partitions=self.partitions, key_type=bytes, value_type=bytes,
        )
        self.loop = RecordLoop(self.app, service="feedback", metrics=self.metrics.hop,
                               dlq_topic=SIGNALS_LIFECYCLE_DLQ.name)
        topic = self.app.topic(
            SIGNALS_ASSIGNED.name, LIFECYCLE_REQUESTS.name, key_type=bytes, value_type=bytes,
            key_serializer="raw", value_serializer="raw",
        )
        self.app.agent(topic, name="lifecycle", concurrency=1)(self._agent)
        self.app.timer(self.sweep_interval_s)(self.sweep)

    async def _agent(self, stream: faust.StreamT) -> None:
        await self.loop.run(stream, self.handle)

    def get(self, signal_id: str) -> SignalRecord | None:
        """The current record of a signal (this worker's partitions)."""
        raw = self.table.get(signal_id.encode())
        return SignalRecord.model_validate_json(raw) if raw else None

    def _put(self, record: SignalRecord) -> None:
        self.table[record.signal_id.encode()] = record.model_dump_json().encode()

    async def handle(self, envelope: CloudEvent, data: Contract, key: bytes | None) -> None:
        """Apply one assignment or one lifecycle request."""
        if isinstance(data, SignalAssigned):
            await self._on_assigned(data)
        elif isinstance(data, LifecycleRequested):
            await self._on_request(data)
        elif isinstance(data, SlaCheckRequested):
            await self._on_sla_check(data)
        else:
            raise UndecodableRecord("unexpected_event_type", f"feedback does not handle {envelope.type}")

    async def _emit(self, event: SignalLifecycleChanged, *, event_id: str) -> None:
        cloud = make_event(event, source="schakel/feedback", subject=event.signal_id, event_id=event_id)
        await publish(self.app, self.metrics.hop, topic=SIGNALS_LIFECYCLE.name, key=event.signal_id, event=cloud)

    async def _on_assigned(self, assigned: SignalAssigned) -> None:
        current = self.get(assigned.signal_id)
        if current is not None and current.attempt >= assigned.attempt:
            return  # redelivered: the clocks were fixed when it first arrived
        body = self.municipality.bodies.get(assigned.body_id)
        deadlines, interval = deadlines_for(assigned, municipality=self.municipality, calendar=self.calendar,
                                            sla=self.sla)
        result = on_assigned(
            current, assigned, body_partner_ids=sorted(body.partner_ids) if body else [], deadlines=deadlines,
            escalation_interval_s=interval.total_seconds(),
        )
        if result is None:
            log.info("assignment_ignored", signal_id=assigned.signal_id, attempt=assigned.attempt,
                     status=current.status.value if current else None)
            return
        record, event = result
        await self._emit(event, event_id=deterministic_id("lifecycle", record.signal_id, "assigned",
                                                          str(record.attempt)))
        self._put(record)
        self.metrics.transitions.labels(change="assigned", route=record.route.value).inc()
        log.info("signal_lifecycle_started", signal_id=record.signal_id, body=record.body_id)

    async def _on_request(self, request: LifecycleRequested) -> None:
        record = self.get(request.signal_id)
        if record is not None and request.request_id in record.request_ids:
            self._resolve(request.request_id, record)
            return
        change = ChangeRequest(
            change=request.change, actor_partner_id=request.partner_id, at=request.requested_at,
            outcome=request.outcome, reason=request.reason, message_sealed=request.message_sealed,
        )
        refusal = check(record, change)
        if refusal is not None or record is None:
            self.metrics.refused.labels(change=request.change.value).inc()
            self._resolve(request.request_id, refusal or Refusal(404, "signal_not_found", ""))
            return
        updated, event = apply(record, change)
        updated = updated.model_copy(
            update={"request_ids": [*updated.request_ids, request.request_id][-REQUEST_IDS_KEPT:]})
        await self._emit(event, event_id=deterministic_id("lifecycle", request.request_id))
        self._put(updated)
        self._observe(record, updated, change)
        self._resolve(request.request_id, updated)
        log.info("signal_lifecycle_changed", signal_id=updated.signal_id, change=change.change.value,
                 status=updated.status.value)

    async def _on_sla_check(self, request: SlaCheckRequested) -> None:
        """Publish every warning, breach and escalation step due now that was not published before."""
        self.checks_in_flight.pop(request.signal_id, None)
        record = self.get(request.signal_id)
        if record is None:
            return
        now = utcnow()
        emissions = due_emissions(record, now=now)
        if not emissions:
            return
        for emission in emissions:
            event = sla_event(record, emission, at=now)
            topic = SLA_BREACHED.name if isinstance(event, SlaBreached) else SLA_WARNING.name
            cloud = make_event(event, source="schakel/feedback", subject=record.signal_id,
                               event_id=emission_event_id(record, emission))
            await publish(self.app, self.metrics.hop, topic=topic, key=record.signal_id, event=cloud)
            route = record.route.value
            if emission.kind == "warning":
                self.metrics.warnings.labels(clock=emission.deadline.clock, route=route).inc()
            else:
                if emission.step_index == 1:
                    self.metrics.breaches.labels(clock=emission.deadline.clock, route=route).inc()
                self.metrics.escalations.labels(step=emission.step or "handler").inc()
            log.info("sla_emitted", signal_id=record.signal_id, kind=emission.kind, clock=emission.deadline.clock,
                     step=emission.step, lateness_s=round(_lateness(emission, now, record), 3))
        self._put(record.model_copy(update={"emitted": [*record.emitted, *(e.key for e in emissions)]}))

    async def sweep(self) -> None:
        """Timer: ask the agent to check every signal of this worker with an emission due (survives restarts)."""
        if not faust_ready(self.app):
            return
        now = utcnow()
        asked = 0
        patience = 3 * self.sweep_interval_s
        for raw in list(self.table.values()):
            if not raw:
                continue
            record = SignalRecord.model_validate_json(raw)
            since = self.checks_in_flight.get(record.signal_id)
            if since is not None and time.monotonic() - since < patience:
                continue
            if not due_emissions(record, now=now):
                continue
            request = SlaCheckRequested(signal_id=record.signal_id, attempt=record.attempt, requested_at=now)
            event = make_event(request, source="schakel/feedback", subject=record.signal_id)
            # Marked before the send: the agent may handle the check while this coroutine awaits the ack.
            self.checks_in_flight[record.signal_id] = time.monotonic()
            await send_and_wait(self.app, topic=LIFECYCLE_REQUESTS.name, key=record.signal_id.encode(),
                                value=encode_event(event))
            self.metrics.hop.produced.labels(topic=LIFECYCLE_REQUESTS.name).inc()
            asked += 1
        if asked:
            log.info("sla_sweep_requested_checks", signals=asked)

    def _observe(self, before: SignalRecord, after: SignalRecord, change: ChangeRequest) -> None:
        route = after.route.value
        self.metrics.transitions.labels(change=change.change.value, route=route).inc()
        for clock, histogram in self.metrics.time_to.items():
            if clock in after.met and clock not in before.met:
                histogram.labels(route=route).observe((after.met[clock] - after.assigned_at).total_seconds())
        if change.change is LifecycleChange.CLOSED:
            with_feedback = "true" if before.feedback_count > 0 else "false"
            self.metrics.closures.labels(route=route, with_feedback=with_feedback).inc()

    def _resolve(self, request_id: str, outcome: SignalRecord | Refusal) -> None:
        future = self.pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(outcome)

    def update_open_gauge(self) -> None:
        """Count open signals by route and urgency from the table."""
        counts: dict[tuple[str, str], int] = {}
        for raw in self.table.values():
            if not raw:
                continue
            record = SignalRecord.model_validate_json(raw)
            if record.status not in CLOSED_STATES:
                slot = (record.route.value, record.urgency.value)
                counts[slot] = counts.get(slot, 0) + 1
        for route in ROUTES:
            for urgency in URGENCIES:
                self.metrics.open.labels(route=route, urgency=urgency).set(counts.get((route, urgency), 0))



def _lateness(emission: Emission, now: datetime, record: SignalRecord) -> float:
    """Seconds between when an emission fell due and when it was published."""
    if emission.kind == "warning":
        due = emission.deadline.warn_at
    else:
        due = emission.deadline.due_at + (emission.step_index - 1) * timedelta(seconds=record.escalation_interval_s)
    return (now - due).total_seconds()
