"""Feedback's record handler: an assignment, a lifecycle request or an SLA check in, the effects out (no I/O).

The lifecycle table (`signal-state`, keyed by signal id) has one writer: this handler, through the record
loop, which writes it only after the lifecycle and SLA records it describes were acknowledged. An HTTP
request waits for its answer: on this worker the loop gives it once the batch is done (`after`); a request
another worker received gets its answer as a `LifecycleReplied` record on `signals.lifecycle.replies`
(ADR 0015).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from services.feedback.breaches import Emission, due_emissions, emission_event_id, sla_event
from services.feedback.calendar import DutchCalendar
from services.feedback.deadlines import deadlines_for
from services.feedback.lifecycle import (
    ChangeRequest,
    ErasedStub,
    PersonScope,
    Refusal,
    SignalRecord,
    apply,
    check,
    decode_stored,
    erased_stub,
    on_assigned,
)
from services.feedback.metrics import FeedbackMetrics
from services.feedback.sla_config import SlaConfig
from shared.erasure import NOT_A_SIGNAL
from shared.events import (
    LifecycleChange,
    LifecycleReplied,
    LifecycleRequested,
    SignalAssigned,
    SignalErased,
    SignalErasureRequested,
    SignalLifecycleChanged,
    SignalReadRequested,
    SlaBreached,
    SlaCheckRequested,
    SubjectErased,
    UndecodableRecord,
    deterministic_id,
    make_event,
    source_urn,
    utcnow,
)
from shared.municipality import Municipality
from shared.record_loop import Effects, Incoming, Publish, TableView, TableWrite
from shared.topics import LIFECYCLE_REPLIES, LIFECYCLE_REQUESTS, SIGNALS_LIFECYCLE, SLA_BREACHED, SLA_WARNING

log = structlog.get_logger(__name__)
STATE = "signal-state"
REQUEST_IDS_KEPT = 200



@dataclass(frozen=True)
class Answer:
    """What a waiting HTTP request gets: the outcome, and the signal's record as it stands after it."""

    outcome: SignalRecord | Refusal
    current: SignalRecord | None


Resolve = Callable[[str, Answer], None]


def read_stored(view: TableView, signal_id: str) -> SignalRecord | ErasedStub | None:
    """A signal's record, or its stub when it was erased, as the batch sees it."""
    raw = view.get(STATE, signal_id.encode())
    return decode_stored(raw) if raw else None


def read_record(view: TableView, signal_id: str) -> SignalRecord | None:
    """A signal's record as the batch sees it (None: no such signal, or erased)."""
    stored = read_stored(view, signal_id)
    return stored if isinstance(stored, SignalRecord) else None


def write_record(record: SignalRecord | ErasedStub) -> TableWrite:
    """The table write that stores a record (or a stub)."""
    return TableWrite(STATE, record.signal_id.encode(), record.model_dump_json().encode())


def lifecycle_publish(event: SignalLifecycleChanged, *, event_id: str) -> Publish:
    """A lifecycle event for `signals.lifecycle`, keyed by signal id."""
    cloud = make_event(event, source=source_urn("feedback"), subject=event.signal_id, event_id=event_id)
    return Publish.event(SIGNALS_LIFECYCLE.name, key=event.signal_id, event=cloud)


@dataclass
class FeedbackDecisions:
    """The handler, over the municipality's bodies, calendar and SLA policies."""

    municipality: Municipality
    calendar: DutchCalendar
    sla: SlaConfig
    metrics: FeedbackMetrics
    resolve: Resolve
    worker_id: str = ""
    written: Callable[[SignalRecord | ErasedStub], None] = lambda record: None  # told of every record stored
    # Drops a child's keys from this process's key store (all of them when the key ids are None).
    forget_keys: Callable[[str, list[str] | None], None] = lambda subject, kids: None
    checks_in_flight: dict[str, float] = field(default_factory=dict)

    def handle(self, record: Incoming, view: TableView) -> Effects:
        """Apply one assignment, one lifecycle request or one SLA check."""
        data = record.data
        if isinstance(data, SignalAssigned):
            return self._on_assigned(data, view)
        if isinstance(data, LifecycleRequested):
            return self._on_request(data, view)
        if isinstance(data, SlaCheckRequested):
            return self._on_sla_check(data, view)
        if isinstance(data, SubjectErased):
            return self._on_subject_erased(data)
        if isinstance(data, SignalErasureRequested):
            return self._on_erasure_requested(data, view)
        if isinstance(data, SignalReadRequested):
            found = read_record(view, data.signal_id)
            return self._answer(data.request_id, data.reply_to, data.signal_id,
                                Answer(found or Refusal(404, "signal_not_found", ""), found))
        raise UndecodableRecord("unexpected_event_type", f"feedback does not handle {record.envelope.type}")

    def _on_subject_erased(self, erased: SubjectErased) -> Effects:
        """Forget the child's keys here, and ask the owner of each erased signal's partition to drop its row."""
        requests = []
        for signal_id in erased.signal_ids:
            if signal_id.startswith(NOT_A_SIGNAL):
                continue
            asked = SignalErasureRequested(erasure_id=erased.erasure_id, signal_id=signal_id, reason=erased.reason,
                                           requested_at=erased.at)
            event = make_event(asked, source=source_urn("feedback"), subject=signal_id,
                               event_id=deterministic_id("erasure-request", erased.erasure_id, signal_id))
            requests.append(Publish.event(LIFECYCLE_REQUESTS.name, key=signal_id, event=event))
        kids = None if erased.scope == "subject" else list(erased.signal_ids)

        def forgotten() -> None:
            self.forget_keys(erased.subject_key, kids)
            log.info("subject_erased_seen", erasure_id=erased.erasure_id, signals=len(requests),
                     reason=erased.reason)

        return Effects(publish=requests, after=[forgotten])

    def _on_erasure_requested(self, asked: SignalErasureRequested, view: TableView) -> Effects:
        """Replace the signal's record by a content-free stub and tell the others (SignalErased)."""
        stored = read_stored(view, asked.signal_id)
        if isinstance(stored, ErasedStub):
            return Effects()  # redelivered, or erased twice
        stub = erased_stub(stored, signal_id=asked.signal_id, erasure_id=asked.erasure_id, reason=asked.reason,
                           at=asked.requested_at)
        gone = SignalErased(signal_id=asked.signal_id, erasure_id=asked.erasure_id, reason=asked.reason,
                            at=asked.requested_at)
        event = make_event(gone, source=source_urn("feedback"), subject=asked.signal_id,
                           event_id=deterministic_id("erased", asked.erasure_id, asked.signal_id))

        def counted() -> None:
            self.metrics.erased.labels(reason=asked.reason).inc()
            log.info("signal_erased", signal_id=asked.signal_id, reason=asked.reason, had_record=stored is not None)

        return Effects(publish=[Publish.event(SIGNALS_LIFECYCLE.name, key=asked.signal_id, event=event)],
                       after=[counted]).add(self._store(stub))

    def _on_assigned(self, assigned: SignalAssigned, view: TableView) -> Effects:
        if isinstance(read_stored(view, assigned.signal_id), ErasedStub):
            return Effects(after=[lambda: log.info("assignment_of_erased_signal_ignored",
                                                   signal_id=assigned.signal_id)])
        current = read_record(view, assigned.signal_id)
        if current is not None and current.attempt >= assigned.attempt:
            return Effects()  # redelivered: the clocks were fixed when it first arrived
        body = self.municipality.bodies.get(assigned.body_id)
        deadlines, interval = deadlines_for(assigned, municipality=self.municipality, calendar=self.calendar,
                                            sla=self.sla)
        result = on_assigned(
            current, assigned, body_partner_ids=sorted(body.partner_ids) if body else [], deadlines=deadlines,
            escalation_interval_s=interval.total_seconds(),
        )
        if result is None:
            return Effects(after=[lambda: log.info("assignment_ignored", signal_id=assigned.signal_id,
                                                   attempt=assigned.attempt,
                                                   status=current.status.value if current else None)])
        record, event = result

        def counted() -> None:
            self.metrics.transitions.labels(change="assigned", route=record.route.value).inc()
            log.info("signal_lifecycle_started", signal_id=record.signal_id, body=record.body_id)

        event_id = deterministic_id("lifecycle", record.signal_id, "assigned", str(record.attempt))
        return Effects(publish=[lifecycle_publish(event, event_id=event_id)], after=[counted]).add(
            self._store(record))

    def _on_request(self, request: LifecycleRequested, view: TableView) -> Effects:
        record = read_record(view, request.signal_id)
        if record is not None and request.request_id in record.request_ids:
            return self._answer(request.request_id, request.reply_to, request.signal_id, Answer(record, record))
        change = ChangeRequest(
            change=request.change, actor_partner_id=request.partner_id, at=request.requested_at,
            outcome=request.outcome, reason=request.reason, message_sealed=request.message_sealed,
            person=self.person_scope(request.person_email, request.partner_id), regie_body_id=request.regie_body_id,
        )
        refusal = check(record, change)
        if refusal is not None or record is None:
            answer = Answer(refusal or Refusal(404, "signal_not_found", ""), record)
            effects = self._answer(request.request_id, request.reply_to, request.signal_id, answer)
            effects.after.append(lambda: self.metrics.refused.labels(change=request.change.value).inc())
            return effects
        updated, event = apply(record, change)
        updated = updated.model_copy(
            update={"request_ids": [*updated.request_ids, request.request_id][-REQUEST_IDS_KEPT:]})

        def done() -> None:
            self._observe(record, updated, change)
            log.info("signal_lifecycle_changed", signal_id=updated.signal_id, change=change.change.value,
                     status=updated.status.value)

        changed = lifecycle_publish(event, event_id=deterministic_id("lifecycle", request.request_id))
        effects = Effects(publish=[changed], after=[done]).add(self._store(updated))
        return effects.add(self._answer(request.request_id, request.reply_to, request.signal_id,
                                        Answer(updated, updated)))

    def person_scope(self, email: str | None, partner_id: str) -> PersonScope | None:
        """What the municipality file says a person acts for; None for a partner system."""
        if email is None:
            return None
        return PersonScope(email=email.lower(), roles=self.municipality.roles_of_person(email, partner_id))

    def _answer(self, request_id: str, reply_to: str | None, signal_id: str, answer: Answer) -> Effects:
        """Answer a waiting HTTP request: here once the batch is done, or on the replies topic for another worker."""
        if reply_to is None or reply_to == self.worker_id:
            return Effects(after=[lambda: self.resolve(request_id, answer)])
        outcome = answer.outcome
        refusal = outcome if isinstance(outcome, Refusal) else None
        reply = LifecycleReplied(
            request_id=request_id, reply_to=reply_to, signal_id=signal_id,
            record=answer.current.model_dump(mode="json") if answer.current is not None else None,
            refusal_status=refusal.status if refusal else None, refusal_code=refusal.code if refusal else None,
            refusal_message=refusal.message if refusal else None,
        )
        event = make_event(reply, source=source_urn("feedback"), subject=signal_id,
                           event_id=deterministic_id("lifecycle-reply", request_id))
        return Effects(answers=[Publish.event(LIFECYCLE_REPLIES.name, key=reply_to, event=event)])

    def _on_sla_check(self, request: SlaCheckRequested, view: TableView) -> Effects:
        """Publish every warning, breach and escalation step due now that was not published before."""
        def checked() -> None:
            self.checks_in_flight.pop(request.signal_id, None)

        effects = Effects(after=[checked])
        record = read_record(view, request.signal_id)
        if record is None:
            return effects
        now = utcnow()
        emissions = due_emissions(record, now=now)
        if not emissions:
            return effects
        for emission in emissions:
            event = sla_event(record, emission, at=now)
            topic = SLA_BREACHED.name if isinstance(event, SlaBreached) else SLA_WARNING.name
            cloud = make_event(event, source=source_urn("feedback"), subject=record.signal_id,
                               event_id=emission_event_id(record, emission))
            effects.publish.append(Publish.event(topic, key=record.signal_id, event=cloud))
            effects.after.append(self._counter(record, emission, now))
        return effects.add(self._store(record.model_copy(
            update={"emitted": [*record.emitted, *(e.key for e in emissions)]})))

    def _store(self, record: SignalRecord | ErasedStub) -> Effects:
        """Store a record in the lifecycle table, and tell `written` once the batch is done."""
        return Effects(writes=[write_record(record)], after=[lambda: self.written(record)])

    def _counter(self, record: SignalRecord, emission: Emission, now: datetime) -> Callable[[], None]:
        def counted() -> None:
            route = record.route.value
            if emission.kind == "warning":
                self.metrics.warnings.labels(clock=emission.deadline.clock, route=route).inc()
            else:
                if emission.step_index == 1:
                    self.metrics.breaches.labels(clock=emission.deadline.clock, route=route).inc()
                self.metrics.escalations.labels(step=emission.step or "handler").inc()
            log.info("sla_emitted", signal_id=record.signal_id, kind=emission.kind, clock=emission.deadline.clock,
                     step=emission.step, lateness_s=round(_lateness(emission, now, record), 3))

        return counted

    def _observe(self, before: SignalRecord, after: SignalRecord, change: ChangeRequest) -> None:
        route = after.route.value
        self.metrics.transitions.labels(change=change.change.value, route=route).inc()
        for clock, histogram in self.metrics.time_to.items():
            if clock in after.met and clock not in before.met:
                histogram.labels(route=route).observe((after.met[clock] - after.assigned_at).total_seconds())
        if change.change is LifecycleChange.CLOSED:
            with_feedback = "true" if before.feedback_count > 0 else "false"
            self.metrics.closures.labels(route=route, with_feedback=with_feedback).inc()


def _lateness(emission: Emission, now: datetime, record: SignalRecord) -> float:
    """Seconds between when an emission fell due and when it was published."""
    if emission.kind == "warning":
        due = emission.deadline.warn_at
    else:
        due = emission.deadline.due_at + (emission.step_index - 1) * timedelta(seconds=record.escalation_interval_s)
    return (now - due).total_seconds()
