"""The hand-off repair's decisions (schakel.handoff_repair), over records as the topics hold them (no broker).

What is checked here without Kafka: a rejection routing refused for want of facts, once repaired, is one that
routing's own handler hands on, exactly as it would have handed on the rejection with facts.
"""

from __future__ import annotations

import pytest

from schakel.handoff_repair import Assignments, Lifecycle, Verdict, decide
from schakel.replay_kafka import Record
from shared.events import (
    CLOUDEVENT_HEADERS,
    LifecycleChange,
    SignalAssigned,
    SignalErased,
    SignalLifecycleChanged,
    UndecodableRecord,
    decode_as,
    encode_event,
    make_event,
    source_urn,
)
from tests.unit.test_routing_decisions import Routing, assignment_of, received, rejected


def lifecycle_record(data: SignalLifecycleChanged | SignalErased, *, offset: int = 7,
                     event_id: str = "rejection-1") -> Record:
    """A record of signals.lifecycle as feedback (or an old feedback worker) wrote it."""
    value = encode_event(make_event(data, source=source_urn("feedback"), subject=data.signal_id, event_id=event_id))
    return Record(1, offset, value, data.signal_id.encode(), tuple(CLOUDEVENT_HEADERS))


def lifecycle_of(*records: Record) -> Lifecycle:
    found = Lifecycle()
    for record in records:
        found.add(record)
    return found


def assignment_record(assigned: SignalAssigned, offset: int = 0) -> Record:
    value = encode_event(make_event(assigned, source=source_urn("routing"), subject=assigned.signal_id))
    return Record(0, offset, value, assigned.signal_id.encode(), tuple(CLOUDEVENT_HEADERS))


def assignments_of(*assigned: SignalAssigned, wanted: frozenset[str]) -> Assignments:
    found = Assignments(wanted=frozenset(wanted))
    for n, a in enumerate(assigned):
        found.add(assignment_record(a, n))
    return found


@pytest.fixture
def routing() -> Routing:
    return Routing()


def test_a_repaired_rejection_is_handed_on_by_routing_as_the_rejection_with_facts_would_be(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    with pytest.raises(UndecodableRecord):  # what stranded it: no facts, nothing kept
        routing.handoff(rejected(first, with_facts=False), routing.view())
    lifecycle = lifecycle_of(lifecycle_record(rejected(first, with_facts=False)))
    [repair] = decide(lifecycle, assignments_of(first, wanted=lifecycle.signal_ids))
    assert repair.verdict is Verdict.REPUBLISH and repair.value is not None
    envelope, mended = decode_as(repair.value, SignalLifecycleChanged)
    assert envelope == repair.stranded.envelope.model_copy(update={"data": envelope.data})  # a redelivery to others
    assert envelope.id == "rejection-1"
    assert mended == rejected(first, with_facts=True)
    nxt = assignment_of(routing.handoff(mended, routing.view()))
    expected = assignment_of(Routing().handoff(rejected(first, with_facts=True), routing.view()))
    assert nxt.model_dump(exclude={"assigned_at"}) == expected.model_dump(exclude={"assigned_at"})
    assert (nxt.attempt, nxt.previous_body_ids) == (2, ["zat-12ab"])


def test_handed_on_erased_and_unassigned_signals_each_get_their_verdict(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    second = assignment_of(routing.handoff(rejected(first), routing.view()))
    other = assignment_of(routing.received(received(2, subject="sk_other"), routing.view()))
    gone = assignment_of(routing.received(received(3, subject="sk_gone"), routing.view()))
    erased = SignalErased(signal_id=gone.signal_id, erasure_id="e-1", reason="request", at=gone.received_at)
    lifecycle = lifecycle_of(lifecycle_record(rejected(first, with_facts=False), offset=1, event_id="a"),
                             lifecycle_record(rejected(other, with_facts=False), offset=2, event_id="b"),
                             lifecycle_record(rejected(gone, with_facts=False), offset=3, event_id="c"),
                             lifecycle_record(erased, offset=4, event_id="d"))
    repairs = decide(lifecycle, assignments_of(first, second, gone, wanted=lifecycle.signal_ids))
    assert [(r.signal_id, r.verdict, r.value) for r in repairs] == [
        (first.signal_id, Verdict.HANDED_ON, None), (other.signal_id, Verdict.NO_ASSIGNMENT, None),
        (gone.signal_id, Verdict.ERASED, None)]


def test_only_the_rejected_attempts_assignment_gives_the_facts(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    second = assignment_of(routing.handoff(rejected(first), routing.view()))
    lifecycle = lifecycle_of(lifecycle_record(rejected(second, with_facts=False)))
    [repair] = decide(lifecycle, assignments_of(first, wanted=lifecycle.signal_ids))
    assert repair.verdict is Verdict.NO_ASSIGNMENT  # attempt 1's facts are not attempt 2's
    [repair] = decide(lifecycle, assignments_of(first, second, wanted=lifecycle.signal_ids))
    assert repair.verdict is Verdict.REPUBLISH and repair.value is not None
    _, mended = decode_as(repair.value, SignalLifecycleChanged)
    assert mended.handoff is not None and mended.handoff.previous_body_ids == ["zat-12ab"]


def test_rejections_with_facts_other_changes_and_garbage_are_not_taken_for_stranded_rejections(
        routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    acknowledged = rejected(first).model_copy(update={"change": LifecycleChange.ACKNOWLEDGED, "handoff": None,
                                                      "status": "acknowledged", "reason": None})
    lifecycle = lifecycle_of(lifecycle_record(rejected(first)), lifecycle_record(acknowledged),
                             Record(1, 9, b'{"not": "rejected"', first.signal_id.encode()))
    assert lifecycle.stranded == {} and lifecycle.erased == set() and lifecycle.unreadable == 1


def test_a_rejection_delivered_twice_is_repaired_once(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    twice = [lifecycle_record(rejected(first, with_facts=False), offset=n) for n in (3, 9)]
    lifecycle = lifecycle_of(*twice)
    assert [(s.offset, s.envelope.id) for s in lifecycle.stranded.values()] == [(3, "rejection-1")]


def test_assignments_of_other_signals_are_not_decoded(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    found = Assignments(wanted=frozenset({"someone-else"}))
    found.add(Record(0, 0, b"not even json", first.signal_id.encode()))
    found.add(assignment_record(first))
    assert found.by_attempt == {} and found.unreadable == 0
    found = Assignments(wanted=frozenset({first.signal_id}))
    found.add(Record(0, 0, b"not even json", first.signal_id.encode()))
    assert found.unreadable == 1
