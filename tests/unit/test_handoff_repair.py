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
    SignalErasureRequested,
    SignalLifecycleChanged,
    SubjectErased,
    UndecodableRecord,
    decode_as,
    encode_event,
    make_event,
    source_urn,
)
from tests.unit.test_routing_decisions import Routing, assignment_of, received, rejected


def lifecycle_record(data: SignalLifecycleChanged | SignalErased | SignalErasureRequested, *, offset: int = 7,
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
    # a second rejection of the same attempt under another event id is the same rejection: repaired once
    lifecycle = lifecycle_of(*twice, lifecycle_record(rejected(first, with_facts=False), offset=11, event_id="again"))
    assert len(decide(lifecycle, assignments_of(first, wanted=lifecycle.signal_ids))) == 1


def later(rejection: SignalLifecycleChanged, change: LifecycleChange) -> SignalLifecycleChanged:
    return rejection.model_copy(update={"change": change, "status": change.value, "handoff": None, "reason": None})


def test_a_rejection_taken_up_since_is_left_alone_but_one_only_chosen_for_is_not(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    stranded = rejected(first, with_facts=False)
    for change in (LifecycleChange.WITHDRAWN, LifecycleChange.CLOSED, LifecycleChange.REOPENED):
        lifecycle = lifecycle_of(lifecycle_record(stranded, offset=3),
                                 lifecycle_record(later(stranded, change), offset=5, event_id=f"then-{change}"))
        [repair] = decide(lifecycle, assignments_of(first, wanted=lifecycle.signal_ids))
        assert repair.verdict is Verdict.MOVED_ON, change
    lifecycle = lifecycle_of(lifecycle_record(stranded, offset=3),
                             lifecycle_record(later(stranded, LifecycleChange.REGIE), offset=5, event_id="regie"))
    [repair] = decide(lifecycle, assignments_of(first, wanted=lifecycle.signal_ids))
    assert repair.verdict is Verdict.REPUBLISH  # a regie choice changes no status: still stranded


def test_a_change_before_a_later_attempts_rejection_does_not_count_for_it(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    second = assignment_of(routing.handoff(rejected(first), routing.view()))
    stranded = rejected(second, with_facts=False)
    # attempt 1's rejection came without facts too, but routing still had the assignment and handed it on
    lifecycle = lifecycle_of(lifecycle_record(rejected(first, with_facts=False), offset=1, event_id="r1"),
                             lifecycle_record(later(rejected(second), LifecycleChange.ACKNOWLEDGED), offset=2,
                                              event_id="ack2"),
                             lifecycle_record(stranded, offset=3, event_id="r2"))
    repairs = decide(lifecycle, assignments_of(first, second, wanted=lifecycle.signal_ids))
    assert [(r.stranded.rejection.attempt, r.verdict) for r in repairs] == [(1, Verdict.HANDED_ON),
                                                                             (2, Verdict.REPUBLISH)]


def test_a_copy_already_republished_is_pending_not_published_again(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    lifecycle = lifecycle_of(lifecycle_record(rejected(first, with_facts=False), offset=3))
    [repair] = decide(lifecycle, assignments_of(first, wanted=lifecycle.signal_ids))
    assert repair.value is not None
    lifecycle.add(Record(1, 8, repair.value, first.signal_id.encode(), tuple(CLOUDEVENT_HEADERS)))
    [again] = decide(lifecycle, assignments_of(first, wanted=lifecycle.signal_ids))
    assert (again.verdict, again.value) == (Verdict.PENDING, None)


def test_erasures_on_privacy_erasures_count_and_so_do_erasure_requests(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    other = assignment_of(routing.received(received(2, subject="sk_other"), routing.view()))
    lifecycle = lifecycle_of(lifecycle_record(rejected(first, with_facts=False), offset=1, event_id="a"),
                             lifecycle_record(rejected(other, with_facts=False), offset=2, event_id="b"))
    erased = SubjectErased(erasure_id="e-1", subject_key="sk_child", signal_ids=[first.signal_id], scope="subject",
                           reason="request", at=first.received_at)
    lifecycle.add_erasure(Record(0, 0, encode_event(make_event(erased, source=source_urn("cli"), subject=None)),
                                 b"sk_child", tuple(CLOUDEVENT_HEADERS)))
    asked = SignalErasureRequested(erasure_id="e-2", signal_id=other.signal_id, reason="retention",
                                   requested_at=other.received_at)
    lifecycle.add(lifecycle_record(asked, offset=4, event_id="c"))
    repairs = decide(lifecycle, assignments_of(first, other, wanted=lifecycle.signal_ids))
    assert [r.verdict for r in repairs] == [Verdict.ERASED, Verdict.ERASED]


def test_the_first_assignment_of_the_attempt_gives_the_facts_and_must_name_the_rejecting_body(
        routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    replayed = first.model_copy(update={"body_id": "wijkteam-centrum"})  # a replay under other rules wrote another
    lifecycle = lifecycle_of(lifecycle_record(rejected(first, with_facts=False)))
    [repair] = decide(lifecycle, assignments_of(first, replayed, wanted=lifecycle.signal_ids))
    assert repair.verdict is Verdict.REPUBLISH
    [repair] = decide(lifecycle, assignments_of(replayed, first, wanted=lifecycle.signal_ids))
    assert repair.verdict is Verdict.BODY_MISMATCH and repair.value is None


def test_assignments_of_other_signals_are_not_decoded(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    found = Assignments(wanted=frozenset({"someone-else"}))
    found.add(Record(0, 0, b"not even json", first.signal_id.encode()))
    found.add(assignment_record(first))
    assert found.by_attempt == {} and found.unreadable == 0
    found = Assignments(wanted=frozenset({first.signal_id}))
    found.add(Record(0, 0, b"not even json", first.signal_id.encode()))
    assert found.unreadable == 1
