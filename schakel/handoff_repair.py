"""Rejections that reached routing without the rejected assignment's facts, and how each is repaired (ADR 0023).

A rejection written by a feedback worker from before ADR 0023 carries no `handoff` facts. When routing no
longer kept the assignment it rejected either (an upgrade that skipped the drain), the rejection became a dead
letter `rejection_without_assignment`, or, in the release before, was parked waiting for that assignment; in
both cases the signal stayed rejected with its clocks stopped. The facts are still on signals.assigned: the
rejected assignment has them all (`HandOffFacts.of`). The repair publishes the rejection again with them, with
the same event id and time, so routing hands the signal on as it would have, and every other consumer of
signals.lifecycle sees a redelivery of an event it has already handled.

Which rejections: every rejection on signals.lifecycle without facts (one per signal and attempt) whose
signal was not assigned again afterwards, not erased or asked to be erased (signals.lifecycle and
privacy.erasures), and not moved on since (withdrawn, closed or reopened by a person after the rejection: left
alone). That covers the dead-lettered and the parked ones alike (both are on signals.lifecycle), and a
rejection routing did hand on (from the assignment it kept) is recognised by the later assignment. A copy with
facts already on the topic (an earlier repair that routing has not handled yet) is not published again. The
facts come from the first assignment of the rejected attempt, and only when it names the body that rejected.
This module decides, without I/O; schakel.repair_cli reads the topics and publishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from schakel.replay_kafka import Record
from shared.events import (
    CloudEvent,
    HandOffFacts,
    LifecycleChange,
    SignalAssigned,
    SignalErased,
    SignalErasureRequested,
    SignalLifecycleChanged,
    SubjectErased,
    UndecodableRecord,
    content_type_of,
    decode_as,
    decode_event,
    encode_event,
)

ERASED_TYPE = SignalErased.model_fields["event_type"].default.encode()
ERASURE_REQUESTED_TYPE = SignalErasureRequested.model_fields["event_type"].default.encode()
# Changes after a rejection that mean a person took the signal up (a regie choice changes no status).
MOVES_ON = frozenset(LifecycleChange) - {LifecycleChange.REJECTED, LifecycleChange.REGIE}


class Verdict(StrEnum):
    """What the repair does with one rejection that has no facts."""

    REPUBLISH = "republish"  # not handed on, and its assignment was found: it goes out again with the facts
    HANDED_ON = "handed_on"  # a later assignment exists (routing had the facts, or an earlier repair): nothing to do
    ERASED = "erased"  # the signal was erased since: nothing of it goes anywhere again
    PENDING = "pending"  # a copy with the facts is on signals.lifecycle already; routing has yet to hand it on
    MOVED_ON = "moved_on"  # withdrawn, closed or reopened after the rejection: left as it is
    NO_ASSIGNMENT = "no_assignment"  # signals.assigned no longer has it: the coordinator takes it up by hand
    BODY_MISMATCH = "body_mismatch"  # the attempt's assignment names another body: the coordinator looks


@dataclass(frozen=True)
class Stranded:
    """One rejection without facts: where it lies on signals.lifecycle and what it says."""

    partition: int
    offset: int
    envelope: CloudEvent
    rejection: SignalLifecycleChanged


@dataclass(frozen=True)
class Repair:
    """The verdict on one rejection without facts, with the record to publish when it is republished."""

    stranded: Stranded
    verdict: Verdict
    value: bytes | None = None  # the repaired rejection for signals.lifecycle (REPUBLISH only)

    @property
    def signal_id(self) -> str:
        """The rejected signal."""
        return self.stranded.rejection.signal_id


@dataclass
class Lifecycle:
    """What signals.lifecycle says: the rejections without facts, what came after them, the erased signals."""

    stranded: dict[tuple[str, int], Stranded] = field(default_factory=dict)  # by (signal, attempt): first one
    erased: set[str] = field(default_factory=set)
    pending: set[tuple[str, int]] = field(default_factory=set)  # a copy with facts of the stranded rejection
    moved_on: set[tuple[str, int]] = field(default_factory=set)  # kept rejections a person acted on since
    unreadable: int = 0
    _slots: dict[bytes, list[tuple[str, int]]] = field(default_factory=dict)  # record key → its kept rejections

    def add(self, record: Record) -> None:
        """Keep a rejection without facts, note an erasure or what followed a kept rejection; skip the rest.

        A signal's lifecycle records share its key and so its partition, read in offset order: whatever comes
        after a kept rejection under the same key came after it.
        """
        value = record.value or b""
        later = record.key in self._slots
        # A cheap test first: most lifecycle records are none of these (a rejection's JSON says "rejected").
        if not later and b'"rejected"' not in value and ERASED_TYPE not in value \
                and ERASURE_REQUESTED_TYPE not in value:
            return
        try:
            envelope, data = decode_event(record.value, content_type=content_type_of(record.headers))
        except UndecodableRecord:
            self.unreadable += 1  # dead-lettered by its consumers long ago; not a rejection the repair can use
            return
        if isinstance(data, SignalErased | SignalErasureRequested):
            self.erased.add(data.signal_id)
        elif isinstance(data, SignalLifecycleChanged):
            self._lifecycle(record, envelope, data)

    def _lifecycle(self, record: Record, envelope: CloudEvent, data: SignalLifecycleChanged) -> None:
        slot = (data.signal_id, data.attempt)
        kept = self.stranded.get(slot)
        if data.change is LifecycleChange.REJECTED:
            if kept is None and data.handoff is None:
                self.stranded[slot] = Stranded(record.partition, record.offset, envelope, data)
                self._slots.setdefault(data.signal_id.encode(), []).append(slot)
            elif kept is not None and data.handoff is not None and envelope.id == kept.envelope.id:
                self.pending.add(slot)
        elif data.change in MOVES_ON:
            self.moved_on.update(self._slots.get(data.signal_id.encode(), ()))  # every one kept so far came before

    def add_erasure(self, record: Record) -> None:
        """Note the signals whose keys an erasure on privacy.erasures destroyed."""
        try:
            _, erased = decode_as(record.value, SubjectErased)
        except UndecodableRecord:
            self.unreadable += 1
            return
        self.erased.update(erased.signal_ids)

    @property
    def signal_ids(self) -> frozenset[str]:
        """The signals of the rejections without facts."""
        return frozenset(s.rejection.signal_id for s in self.stranded.values())


@dataclass
class Assignments:
    """What signals.assigned says about some signals: each attempt's assignment."""

    wanted: frozenset[str]
    by_attempt: dict[tuple[str, int], SignalAssigned] = field(default_factory=dict)
    unreadable: int = 0

    def add(self, record: Record) -> None:
        """Keep an assignment of a wanted signal (the record key is its id: others are not even decoded)."""
        if record.key is None or record.key.decode(errors="replace") not in self.wanted:
            return
        try:
            _, assigned = decode_as(record.value, SignalAssigned)
        except UndecodableRecord:
            self.unreadable += 1
            return
        if assigned.signal_id in self.wanted:  # the first is the one feedback kept (a replay may write another)
            self.by_attempt.setdefault((assigned.signal_id, assigned.attempt), assigned)

    def later_than(self, signal_id: str, attempt: int) -> bool:
        """Whether the signal was assigned again after this attempt."""
        return any(sid == signal_id and n > attempt for sid, n in self.by_attempt)


def repaired_rejection(stranded: Stranded, assigned: SignalAssigned) -> bytes:
    """The rejection's record again, with the rejected assignment's facts and receipt time added."""
    rejection = stranded.rejection.model_copy(update={
        "handoff": HandOffFacts.of(assigned),
        "received_at": stranded.rejection.received_at or assigned.received_at,
    })
    payload = rejection.model_dump(mode="json")
    payload.pop("event_type")
    envelope = stranded.envelope.model_copy(update={"data": payload})
    value = encode_event(envelope)
    decode_as(value, SignalLifecycleChanged)  # what goes out is a valid rejection, or nothing goes out
    return value


def decide(lifecycle: Lifecycle, assignments: Assignments) -> list[Repair]:
    """The verdict on each rejection without facts, in the order they lie on signals.lifecycle."""
    repairs = []
    for item in sorted(lifecycle.stranded.values(), key=lambda s: (s.partition, s.offset)):
        rejection = item.rejection
        if rejection.signal_id in lifecycle.erased:
            repairs.append(Repair(item, Verdict.ERASED))
        elif assignments.later_than(rejection.signal_id, rejection.attempt):
            repairs.append(Repair(item, Verdict.HANDED_ON))
        elif (rejection.signal_id, rejection.attempt) in lifecycle.pending:
            repairs.append(Repair(item, Verdict.PENDING))
        elif (rejection.signal_id, rejection.attempt) in lifecycle.moved_on:
            repairs.append(Repair(item, Verdict.MOVED_ON))
        elif (assigned := assignments.by_attempt.get((rejection.signal_id, rejection.attempt))) is None:
            repairs.append(Repair(item, Verdict.NO_ASSIGNMENT))
        elif assigned.body_id != rejection.body_id:
            repairs.append(Repair(item, Verdict.BODY_MISMATCH))
        else:
            repairs.append(Repair(item, Verdict.REPUBLISH, repaired_rejection(item, assigned)))
    return repairs


__all__ = ["Assignments", "Lifecycle", "Repair", "Stranded", "Verdict", "decide", "repaired_rejection"]
