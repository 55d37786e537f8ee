"""The offset rule (shared.offset_continuity, shared.faust_compat): a record never delivered is never committed past."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.types import TP
from intervaltree import IntervalTree

from shared import faust_compat
from shared.offset_continuity import GapOutcome, OffsetContinuity

P0 = ("signals.received", 0)


def test_a_run_that_starts_at_the_expected_offset_is_delivered_whole() -> None:
    continuity = OffsetContinuity()
    continuity.sought(P0, 58)
    decision = continuity.check(P0, [58, 59, 60])
    assert (decision.keep_from, decision.keep_to, decision.seek_to, decision.gaps) == (0, 3, None, ())
    assert continuity.expected(P0) == 61


def test_a_jump_after_a_seek_is_sought_back_not_taken_for_a_compaction_gap() -> None:
    continuity = OffsetContinuity()
    continuity.sought(P0, 58)  # the committed offset: 58 and 59 were in flight at the rebalance
    decision = continuity.check(P0, [60, 61, 62])
    assert (decision.keep_from, decision.keep_to, decision.seek_to) == (0, 0, 58)
    assert [(g.first_missing, g.next_delivered, g.outcome) for g in decision.gaps] == [(58, 60, GapOutcome.SOUGHT_BACK)]
    continuity.sought_back(P0, offset=58, answered_with=60)
    assert continuity.check(P0, [58, 59, 60]).keep_to == 3  # read again, from the first one missed


def test_a_jump_inside_a_run_delivers_up_to_it_and_seeks_to_the_first_missing() -> None:
    continuity = OffsetContinuity()
    continuity.sought(P0, 10)
    decision = continuity.check(P0, [10, 11, 13, 14])
    assert (decision.keep_from, decision.keep_to, decision.seek_to) == (0, 2, 12)
    assert continuity.expected(P0) == 12


def test_records_before_the_expected_offset_are_not_delivered_twice() -> None:
    continuity = OffsetContinuity()
    continuity.sought(P0, 5)
    assert continuity.check(P0, [5, 6]).keep_to == 2
    decision = continuity.check(P0, [5, 6, 7])  # a fetch from before a seek back
    assert (decision.keep_from, decision.keep_to, decision.seek_to) == (2, 3, None)


def test_the_same_answer_after_a_seek_back_proves_a_hole_retention_made() -> None:
    continuity = OffsetContinuity()
    continuity.sought(P0, 0)
    assert continuity.check(P0, [100, 101]).seek_to == 0
    continuity.sought_back(P0, offset=0, answered_with=100)
    decision = continuity.check(P0, [100, 101])
    assert (decision.keep_from, decision.keep_to, decision.seek_to) == (0, 2, None)
    assert [(g.first_missing, g.next_delivered, g.outcome) for g in decision.gaps] == [
        (0, 100, GapOutcome.ACCEPTED_HOLE)]


def test_another_seek_in_between_means_no_proof() -> None:
    continuity = OffsetContinuity()
    continuity.sought(P0, 0)
    continuity.sought_back(P0, offset=0, answered_with=100)
    continuity.sought(P0, 0)  # a rebalance seeks again: the earlier answer proves nothing now
    assert continuity.check(P0, [100]).seek_to == 0


def test_an_unknown_position_accepts_the_first_record_then_expects_the_next() -> None:
    continuity = OffsetContinuity()
    assert continuity.check(P0, [7, 8]).keep_to == 2
    assert continuity.check(P0, [10]).seek_to == 9
    continuity.forget([P0])
    assert continuity.expected(P0) is None


class FakeConsumer:
    """The attributes of faust's Consumer that its commit bookkeeping reads."""

    def __init__(self, committed: int | None, acked: list[int]) -> None:
        self.tp = TP("signals.received", 3)
        self._acked: dict[Any, list[int]] = defaultdict(list, {self.tp: list(acked)})
        self._acked_index: dict[Any, set[int]] = defaultdict(set, {self.tp: set(acked)})
        self._gap: dict[Any, IntervalTree] = defaultdict(IntervalTree)
        self._committed_offset: dict[Any, int | None] = defaultdict(lambda: None, {self.tp: committed})


def test_a_run_that_starts_one_past_the_committed_offset_is_not_committed() -> None:
    consumer = FakeConsumer(58, [59, 60, 61])  # faust-streaming #606: faust 0.15.3 commits 62 here
    assert faust_compat.new_offset(consumer, consumer.tp) is None


def test_a_run_from_the_committed_offset_is_committed_up_to_its_first_gap() -> None:
    consumer = FakeConsumer(58, [58, 59, 61])
    assert faust_compat.new_offset(consumer, consumer.tp) == 60
    assert consumer._acked[consumer.tp] == [61]


def test_an_accepted_hole_lets_the_commit_pass_it() -> None:
    consumer = FakeConsumer(0, [100, 101])
    consumer._gap[consumer.tp].addi(0, 100)
    assert faust_compat.new_offset(consumer, consumer.tp) == 102


def test_a_group_that_never_committed_commits_its_first_run() -> None:
    consumer = FakeConsumer(None, [0, 1, 2])
    assert faust_compat.new_offset(consumer, consumer.tp) == 3


class SeekingConsumer:
    """faust's consumer as keep_continuous uses it: acking topics, seeks, the gap tree, the app id."""

    def __init__(self) -> None:
        acking = SimpleNamespace(acks_enabled_for=lambda topic: not topic.endswith("changelog"))
        self.app = SimpleNamespace(topics=acking, conf=SimpleNamespace(id="schakel-test-continuity"))
        self._gap: dict[Any, IntervalTree] = defaultdict(IntervalTree)
        self.seeks: list[tuple[Any, int]] = []

    async def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))
        faust_compat.continuity_of(self).sought((tp.topic, tp.partition), offset)


def records(topic: str, offsets: list[int]) -> list[Any]:
    return [SimpleNamespace(topic=topic, offset=o) for o in offsets]


def test_keep_continuous_drops_a_jump_seeks_back_and_counts_it_while_changelogs_pass() -> None:
    consumer = SeekingConsumer()
    gaps: list[Any] = []
    faust_compat._gap_listeners[consumer.app.conf.id] = [gaps.append]
    faust_compat.continuity_of(consumer).sought(P0, 58)
    ours, changelog = TP(*P0), TP("schakel-routing-subjects-changelog", 0)
    kept = asyncio.run(faust_compat.keep_continuous(consumer, {
        ours: records(ours.topic, [60, 61]), changelog: records(changelog.topic, [5, 9])}))
    assert list(kept) == [changelog]
    assert consumer.seeks == [(ours, 58)]
    assert [(g.first_missing, g.next_delivered, g.outcome) for g in gaps] == [(58, 60, GapOutcome.SOUGHT_BACK)]
    again = asyncio.run(faust_compat.keep_continuous(consumer, {ours: records(ours.topic, [60, 61])}))
    assert [r.offset for r in again[ours]] == [60, 61]  # the broker answered the same: a real hole
    assert consumer._gap[ours].overlaps(58, 60)


def test_records_of_a_revoked_generation_are_not_ours_and_those_of_the_new_one_are() -> None:
    app = SimpleNamespace(consumer_generation_id=7, rebalancing=True)
    old, new = SimpleNamespace(message=SimpleNamespace(generation_id=7)), SimpleNamespace(
        message=SimpleNamespace(generation_id=8))
    assert faust_compat.is_current(app, old)  # no revocation yet
    app._schakel_revoked_generation = 7  # the group is rebalancing: generation 7 was revoked
    assert not faust_compat.is_current(app, old)
    app.consumer_generation_id = 8  # assigned again; faust still says "rebalancing" until recovery ends
    assert faust_compat.is_current(app, new) and not faust_compat.is_current(app, old)
