"""Feedback's handler called directly: a decoded record and a plain-dict lifecycle table in, the effects out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.feedback.deadlines import calendar_for
from services.feedback.decisions import STATE, Answer, FeedbackDecisions
from services.feedback.lifecycle import Refusal, SignalRecord, Status
from services.feedback.metrics import FeedbackMetrics
from services.feedback.sla_config import sla_config_for
from shared.events import (
    CloudEvent,
    Contact,
    Contract,
    LifecycleChange,
    LifecycleReplied,
    LifecycleRequested,
    Route,
    SignalAssigned,
    SignalLifecycleChanged,
    SignalReadRequested,
    SlaBreached,
    SlaCheckRequested,
    SlaWarned,
    Urgency,
    decode_event,
    deterministic_id,
    encode_event,
    make_event,
    source_urn,
    utcnow,
)
from shared.municipality import load_municipality
from shared.record_loop import Effects, Incoming, Publish, TableView
from shared.settings import REPO_ROOT
from shared.topics import (
    LIFECYCLE_REPLIES,
    LIFECYCLE_REQUESTS,
    SIGNALS_ASSIGNED,
    SIGNALS_LIFECYCLE,
    SLA_BREACHED,
    SLA_WARNING,
)

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
WORKER = "feedback-worker-a"
OTHER_WORKER = "feedback-worker-b"
SIGNAL_ID = deterministic_id("feedback-decisions-test", "1")


def assigned(*, at: datetime | None = None, attempt: int = 1) -> SignalAssigned:
    when = at or utcnow()
    return SignalAssigned(
        signal_id=SIGNAL_ID, reference="SK-2026-00000001", category="KLAS", urgency=Urgency.U2, route=Route.ZAT,
        body_id="zat-12ab", body_name="ZAT OBS De Linde", rule_id="zat", rule_description="zat",
        partner_id="obs-de-linde", partner_kind="school", school_brin="12AB",
        reporter=Contact(name="Melder", email="melder@school.example"), received_at=when, assigned_at=when,
        attempt=attempt,
    )


def requested(request_id: str, change: LifecycleChange, *, partner: str = "obs-de-linde",
              reply_to: str | None = None, signal_id: str = SIGNAL_ID) -> LifecycleRequested:
    return LifecycleRequested(request_id=request_id, signal_id=signal_id, change=change, partner_id=partner,
                              requested_at=utcnow(), reply_to=reply_to)


def incoming(data: Contract, *, topic: str) -> Incoming:
    """The record as the loop hands it over: encoded, then decoded again."""
    signal_id = str(getattr(data, "signal_id", ""))
    envelope, decoded = decode_event(encode_event(make_event(data, source=source_urn("test"), subject=signal_id)))
    return Incoming(envelope, decoded, signal_id.encode(), topic)


def from_publish(record: Publish) -> tuple[CloudEvent, Contract]:
    return decode_event(record.value)


class Feedback:
    """The decisions over the example municipality, a plain dict as the lifecycle table, answers collected."""

    def __init__(self) -> None:
        municipality = load_municipality(EXAMPLE)
        self.metrics = FeedbackMetrics(CollectorRegistry())
        self.answers: list[tuple[str, Answer]] = []
        self.decisions = FeedbackDecisions(
            municipality, calendar_for(municipality), sla_config_for(municipality), self.metrics,
            lambda request_id, answer: self.answers.append((request_id, answer)), worker_id=WORKER,
        )
        self.tables: dict[str, dict[Any, Any]] = {STATE: {}}
        self.view = TableView(self.tables)

    def handle(self, data: Contract) -> Effects:
        """Decide one record in the current batch; its writes are seen by the records after it."""
        topic = SIGNALS_ASSIGNED.name if isinstance(data, SignalAssigned) else LIFECYCLE_REQUESTS.name
        effects = self.decisions.handle(incoming(data, topic=topic), self.view)
        self.view.stage(effects.writes)
        return effects

    def stored(self) -> SignalRecord:
        raw = self.view.get(STATE, SIGNAL_ID.encode())
        return SignalRecord.model_validate_json(raw)


def run_after(effects: Effects) -> None:
    for callback in effects.after:
        callback()


@pytest.fixture
def feedback() -> Feedback:
    return Feedback()


def test_an_assignment_starts_the_lifecycle_with_a_deterministic_record_and_a_state_write(
        feedback: Feedback) -> None:
    effects = feedback.handle(assigned())
    [record] = effects.publish
    assert record.topic == SIGNALS_LIFECYCLE.name and record.key == SIGNAL_ID.encode()
    envelope, event = from_publish(record)
    assert envelope.id == deterministic_id("lifecycle", SIGNAL_ID, "assigned", "1")
    assert isinstance(event, SignalLifecycleChanged) and event.change is LifecycleChange.ASSIGNED
    [write] = effects.writes
    assert (write.table, write.key) == (STATE, SIGNAL_ID.encode())
    stored = SignalRecord.model_validate_json(write.value)
    assert (stored.status, stored.body_id, stored.body_partner_ids) == (Status.ASSIGNED, "zat-12ab", ["obs-de-linde"])
    assert {d.clock for d in stored.deadlines} == {"acknowledge", "feedback", "close"}
    assert effects.answers == [] and feedback.answers == []


def test_the_start_of_a_lifecycle_is_counted_only_when_the_after_callbacks_run(feedback: Feedback) -> None:
    effects = feedback.handle(assigned())
    counter = feedback.metrics.transitions.labels(change="assigned", route="zat")
    assert counter._value.get() == 0
    run_after(effects)
    assert counter._value.get() == 1


def test_a_redelivered_assignment_is_decided_to_nothing(feedback: Feedback) -> None:
    feedback.handle(assigned())
    again = feedback.handle(assigned())
    assert again == Effects()


def test_a_handed_off_assignment_restarts_the_lifecycle_with_its_attempt(feedback: Feedback) -> None:
    feedback.handle(assigned())
    effects = feedback.handle(assigned(attempt=2))
    envelope, _ = from_publish(effects.publish[0])
    assert envelope.id == deterministic_id("lifecycle", SIGNAL_ID, "assigned", "2")
    assert feedback.stored().attempt == 2


def test_an_acknowledgement_publishes_the_change_writes_the_record_and_answers_after_the_batch(
        feedback: Feedback) -> None:
    feedback.handle(assigned())
    effects = feedback.handle(requested("req-ack", LifecycleChange.ACKNOWLEDGED))
    [record] = effects.publish
    assert record.topic == SIGNALS_LIFECYCLE.name and record.key == SIGNAL_ID.encode()
    envelope, event = from_publish(record)
    assert envelope.id == deterministic_id("lifecycle", "req-ack")
    assert isinstance(event, SignalLifecycleChanged) and event.change is LifecycleChange.ACKNOWLEDGED
    [write] = effects.writes
    updated = SignalRecord.model_validate_json(write.value)
    assert updated.status is Status.ACKNOWLEDGED and updated.request_ids == ["req-ack"]
    assert "acknowledge" in updated.met
    assert effects.answers == []
    assert feedback.answers == []  # not before the batch is done
    run_after(effects)
    [(request_id, answer)] = feedback.answers
    assert request_id == "req-ack" and answer.outcome == updated and answer.current == updated
    assert feedback.metrics.transitions.labels(change="acknowledged", route="zat")._value.get() == 1


def test_a_redelivered_request_is_answered_again_but_not_applied_twice(feedback: Feedback) -> None:
    feedback.handle(assigned())
    feedback.handle(requested("req-ack", LifecycleChange.ACKNOWLEDGED))
    again = feedback.handle(requested("req-ack", LifecycleChange.ACKNOWLEDGED))
    assert again.publish == [] and again.writes == []
    run_after(again)
    [(request_id, answer)] = feedback.answers
    assert request_id == "req-ack" and isinstance(answer.outcome, SignalRecord)
    assert answer.outcome.status is Status.ACKNOWLEDGED


def test_a_refused_request_publishes_nothing_and_answers_with_the_refusal(feedback: Feedback) -> None:
    feedback.handle(assigned())
    effects = feedback.handle(requested("req-close", LifecycleChange.CLOSED))
    assert effects.publish == [] and effects.writes == [] and effects.answers == []
    refused = feedback.metrics.refused.labels(change="closed")
    assert refused._value.get() == 0 and feedback.answers == []
    run_after(effects)
    [(request_id, answer)] = feedback.answers
    assert request_id == "req-close"
    assert isinstance(answer.outcome, Refusal)
    assert (answer.outcome.status, answer.outcome.code) == (409, "feedback_required_before_closing")
    assert answer.current == feedback.stored()
    assert refused._value.get() == 1


def test_a_request_from_a_partner_outside_the_body_is_refused(feedback: Feedback) -> None:
    feedback.handle(assigned())
    effects = feedback.handle(requested("req-ack", LifecycleChange.ACKNOWLEDGED, partner="wijkteam-oost"))
    assert effects.publish == [] and effects.writes == []
    run_after(effects)
    [(_, answer)] = feedback.answers
    assert isinstance(answer.outcome, Refusal) and answer.outcome.status == 404


def test_a_request_for_an_unknown_signal_is_refused_with_404(feedback: Feedback) -> None:
    effects = feedback.handle(requested("req-ack", LifecycleChange.ACKNOWLEDGED))
    assert effects.publish == [] and effects.writes == []
    run_after(effects)
    [(_, answer)] = feedback.answers
    assert isinstance(answer.outcome, Refusal) and answer.outcome.status == 404 and answer.current is None


def test_a_request_another_worker_received_is_answered_on_the_replies_topic(feedback: Feedback) -> None:
    feedback.handle(assigned())
    effects = feedback.handle(requested("req-ack", LifecycleChange.ACKNOWLEDGED, reply_to=OTHER_WORKER))
    assert [r.topic for r in effects.publish] == [SIGNALS_LIFECYCLE.name]
    [reply] = effects.answers
    assert reply.topic == LIFECYCLE_REPLIES.name and reply.key == OTHER_WORKER.encode()
    envelope, data = from_publish(reply)
    assert envelope.id == deterministic_id("lifecycle-reply", "req-ack")
    assert isinstance(data, LifecycleReplied)
    assert (data.request_id, data.reply_to, data.signal_id) == ("req-ack", OTHER_WORKER, SIGNAL_ID)
    assert data.refusal_status is None and data.record is not None
    assert SignalRecord.model_validate(data.record) == SignalRecord.model_validate_json(effects.writes[0].value)
    run_after(effects)
    assert feedback.answers == []  # nobody waits on this worker


def test_a_request_this_worker_received_is_answered_in_process(feedback: Feedback) -> None:
    feedback.handle(assigned())
    effects = feedback.handle(requested("req-ack", LifecycleChange.ACKNOWLEDGED, reply_to=WORKER))
    assert effects.answers == []
    run_after(effects)
    assert [request_id for request_id, _ in feedback.answers] == ["req-ack"]


def test_a_refusal_for_another_worker_is_a_reply_with_the_refusal(feedback: Feedback) -> None:
    feedback.handle(assigned())
    effects = feedback.handle(requested("req-close", LifecycleChange.CLOSED, reply_to=OTHER_WORKER))
    assert effects.publish == [] and effects.writes == []
    [reply] = effects.answers
    _, data = from_publish(reply)
    assert isinstance(data, LifecycleReplied)
    assert (data.refusal_status, data.refusal_code) == (409, "feedback_required_before_closing")
    assert data.record is not None and SignalRecord.model_validate(data.record).status is Status.ASSIGNED


def test_reading_an_unknown_signal_for_this_worker_answers_404(feedback: Feedback) -> None:
    read = SignalReadRequested(request_id="read-1", signal_id=SIGNAL_ID, reply_to=WORKER, requested_at=utcnow())
    effects = feedback.handle(read)
    assert effects.publish == [] and effects.writes == [] and effects.answers == []
    run_after(effects)
    [(request_id, answer)] = feedback.answers
    assert request_id == "read-1" and answer.outcome == Refusal(404, "signal_not_found", "")
    assert answer.current is None


def test_reading_an_unknown_signal_for_another_worker_replies_404_without_a_record(feedback: Feedback) -> None:
    read = SignalReadRequested(request_id="read-1", signal_id=SIGNAL_ID, reply_to=OTHER_WORKER,
                               requested_at=utcnow())
    effects = feedback.handle(read)
    [reply] = effects.answers
    assert reply.topic == LIFECYCLE_REPLIES.name and reply.key == OTHER_WORKER.encode()
    _, data = from_publish(reply)
    assert isinstance(data, LifecycleReplied)
    assert (data.refusal_status, data.refusal_code, data.record) == (404, "signal_not_found", None)


def test_reading_a_known_signal_answers_with_its_record(feedback: Feedback) -> None:
    feedback.handle(assigned())
    read = SignalReadRequested(request_id="read-2", signal_id=SIGNAL_ID, reply_to=WORKER, requested_at=utcnow())
    effects = feedback.handle(read)
    assert effects.publish == [] and effects.writes == []
    run_after(effects)
    [(_, answer)] = feedback.answers
    assert answer.outcome == feedback.stored() == answer.current


def test_an_sla_check_publishes_the_due_breaches_and_remembers_them_so_a_second_check_does_nothing(
        feedback: Feedback) -> None:
    feedback.handle(assigned(at=utcnow() - timedelta(days=60)))
    feedback.decisions.checks_in_flight[SIGNAL_ID] = 1.0
    check = SlaCheckRequested(signal_id=SIGNAL_ID, requested_at=utcnow())
    effects = feedback.handle(check)
    [write] = effects.writes
    assert (write.table, write.key) == (STATE, SIGNAL_ID.encode())
    emitted = SignalRecord.model_validate_json(write.value).emitted
    breaches = [r for r in effects.publish if r.topic == SLA_BREACHED.name]
    warnings = [r for r in effects.publish if r.topic == SLA_WARNING.name]
    assert breaches and warnings and len(breaches) + len(warnings) == len(effects.publish) == len(emitted)
    assert all(r.key == SIGNAL_ID.encode() for r in effects.publish)
    breach_keys = [key for key in emitted if ":breach:" in key]
    assert [from_publish(r)[0].id for r in breaches] == [deterministic_id("sla", SIGNAL_ID, k) for k in breach_keys]
    first = from_publish(breaches[0])[1]
    assert isinstance(first, SlaBreached) and first.step == "handler" and first.step_index == 1
    assert all(isinstance(from_publish(r)[1], SlaWarned) for r in warnings)
    assert "a1:acknowledge:breach:handler" in emitted
    breached = feedback.metrics.breaches.labels(clock="acknowledge", route="zat")
    assert breached._value.get() == 0 and SIGNAL_ID in feedback.decisions.checks_in_flight
    run_after(effects)
    assert breached._value.get() == 1 and SIGNAL_ID not in feedback.decisions.checks_in_flight
    again = feedback.handle(check)
    assert again.publish == [] and again.writes == []


def test_an_sla_check_of_a_fresh_assignment_publishes_nothing(feedback: Feedback) -> None:
    feedback.handle(assigned())
    effects = feedback.handle(SlaCheckRequested(signal_id=SIGNAL_ID, requested_at=utcnow()))
    assert effects.publish == [] and effects.writes == []


def test_an_sla_check_of_an_unknown_signal_only_clears_the_check_in_flight(feedback: Feedback) -> None:
    feedback.decisions.checks_in_flight[SIGNAL_ID] = 1.0
    effects = feedback.handle(SlaCheckRequested(signal_id=SIGNAL_ID, requested_at=utcnow()))
    assert effects.publish == [] and effects.writes == []
    run_after(effects)
    assert feedback.decisions.checks_in_flight == {}
