"""The sweep's index (services.feedback.index): the next moment something falls due, kept as records are written."""

from __future__ import annotations

from datetime import timedelta

from services.feedback.breaches import due_emissions, next_due_at
from services.feedback.index import DueIndex
from services.feedback.lifecycle import SignalRecord, Status
from shared.events import LifecycleChange, utcnow
from shared.record_loop import Effects
from tests.unit.test_feedback_decisions import SIGNAL_ID, Feedback, assigned, requested

MICROSECOND = timedelta(microseconds=1)


def record_assigned_days_ago(days: int) -> SignalRecord:
    feedback = Feedback()
    feedback.handle(assigned(at=utcnow() - timedelta(days=days)))
    return feedback.stored()


def test_nothing_is_due_just_before_the_next_due_moment_and_something_is_at_it() -> None:
    for days in (0, 1, 3, 30):
        record = record_assigned_days_ago(days)
        at = next_due_at(record)
        assert at is not None
        assert due_emissions(record, now=at - MICROSECOND) == [] or at <= utcnow()
        assert due_emissions(record, now=at) != []


def test_after_every_emission_is_published_the_next_one_is_later_and_after_all_there_is_none() -> None:
    record = record_assigned_days_ago(0)
    far = utcnow() + timedelta(days=400)
    for emission in due_emissions(record, now=far):
        before = next_due_at(record)
        record = record.model_copy(update={"emitted": [*record.emitted, emission.key]})
        after = next_due_at(record)
        assert before is not None and (after is None or after >= before)
    assert next_due_at(record) is None


def test_a_met_or_stopped_clock_has_nothing_due() -> None:
    record = record_assigned_days_ago(30)
    assert next_due_at(record.model_copy(update={"status": Status.CLOSED})) is None
    met = {d.clock: d.due_at for d in record.deadlines}
    assert next_due_at(record.model_copy(update={"met": met})) is None


def carry_out(feedback: Feedback, effects: Effects, table: dict[bytes, bytes]) -> None:
    """What the record loop does with the effects: the writes, then the after-callbacks."""
    for write in effects.writes:
        table[write.key] = write.value
    for callback in effects.after:
        callback()


def test_every_record_the_handler_stores_keeps_due_and_open_signals_current() -> None:
    feedback = Feedback()
    index = DueIndex()
    feedback.decisions.written = index.update
    table: dict[bytes, bytes] = {}
    carry_out(feedback, feedback.handle(assigned(at=utcnow() - timedelta(days=30))), table)
    assert index.due(utcnow()) == [SIGNAL_ID]
    assert sum(index.open_counts().values()) == 1
    rebuilt = DueIndex()
    rebuilt.rebuild(table.values(), assignment=frozenset({"p0"}))
    assert rebuilt.next_due == index.next_due and rebuilt.open == index.open and rebuilt.built_for == {"p0"}
    carry_out(feedback, feedback.handle(requested("r-ack", LifecycleChange.ACKNOWLEDGED, partner="obs-de-linde")),
              table)
    assert feedback.stored().status is Status.ACKNOWLEDGED
