"""Offset continuity on Schakel's own input topics: a record that was never delivered is never skipped.

Schakel's input topics are neither compacted nor transactional, so within a partition every offset holds a
record and a consumer sees them in order: after a seek to offset N the next record delivered must be N, and
after N comes N + 1. A jump means records were skipped on the way (a fetch that raced a seek, a cleared
queue), not that they are missing on the broker. faust-streaming 0.15.3 takes any jump for a compaction gap
and lets its commit pass it (faust-streaming #606); this rule takes it for a defect: stop delivering that
partition, seek back to the first offset not delivered, and count it.

One jump is genuine: records that really are gone from the broker (retention deleted them before this group
read them). Then the broker answers the seek back with the same later offset again, with no other seek in
between; that is taken as proof, and the hole is accepted and reported as such.

Pure: `OffsetContinuity.check` decides, faust_compat carries the decision out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

Partition = tuple[str, int]


class GapOutcome(StrEnum):
    """What was done about a jump in offsets."""

    SOUGHT_BACK = "sought_back"      # records were skipped on the way: read again from the first one missed
    ACCEPTED_HOLE = "accepted_hole"  # the broker no longer has them (seek back answered with the same jump)


@dataclass(frozen=True)
class Gap:
    """Offsets [first_missing, next_delivered) of a partition that were not delivered."""

    topic: str
    partition: int
    first_missing: int
    next_delivered: int
    outcome: GapOutcome


@dataclass(frozen=True)
class Decision:
    """Deliver records [keep_from, keep_to) of a fetched run; then seek to `seek_to` if it is set."""

    keep_from: int
    keep_to: int
    seek_to: int | None = None
    gaps: tuple[Gap, ...] = ()


class OffsetContinuity:
    """The next offset expected per partition, set by seeks and advanced by every record delivered."""

    def __init__(self) -> None:
        self._expected: dict[Partition, int] = {}
        self._sought_back: dict[Partition, tuple[int, int]] = {}

    def expected(self, tp: Partition) -> int | None:
        """The offset the next record of a partition must have (None: not known, anything goes)."""
        return self._expected.get(tp)

    def sought(self, tp: Partition, offset: int | None) -> None:
        """A seek moved the partition's read position (None: to a position not known here)."""
        self._sought_back.pop(tp, None)
        if offset is None or offset < 0:
            self._expected.pop(tp, None)
        else:
            self._expected[tp] = offset

    def sought_back(self, tp: Partition, *, offset: int, answered_with: int) -> None:
        """Our own seek back after a jump: remember it, so the same answer again proves a hole."""
        self.sought(tp, offset)
        self._sought_back[tp] = (offset, answered_with)

    def forget(self, tps: list[Partition]) -> None:
        """Partitions revoked: nothing is expected of them any more."""
        for tp in tps:
            self._expected.pop(tp, None)
            self._sought_back.pop(tp, None)

    def check(self, tp: Partition, offsets: list[int]) -> Decision:
        """Which of a fetched run of offsets (ascending) to deliver, and where to seek after a jump."""
        expected = self._expected.get(tp)
        start = 0
        if expected is not None:
            while start < len(offsets) and offsets[start] < expected:
                start += 1  # delivered before (a fetch from before a seek back): faust drops these too
        if start == len(offsets):
            return Decision(start, start)
        gaps: list[Gap] = []
        first = offsets[start]
        if expected is not None and first > expected:
            if self._sought_back.get(tp) != (expected, first):
                return self._seek_back(tp, keep=(start, start), missing=expected, found=first, gaps=gaps)
            gaps.append(Gap(tp[0], tp[1], expected, first, GapOutcome.ACCEPTED_HOLE))
        end = start + 1
        while end < len(offsets) and offsets[end] == offsets[end - 1] + 1:
            end += 1
        self._expected[tp] = offsets[end - 1] + 1
        self._sought_back.pop(tp, None)
        if end < len(offsets):
            return self._seek_back(tp, keep=(start, end), missing=offsets[end - 1] + 1, found=offsets[end],
                                   gaps=gaps)
        return Decision(start, end, gaps=tuple(gaps))

    def _seek_back(self, tp: Partition, *, keep: tuple[int, int], missing: int, found: int,
                   gaps: list[Gap]) -> Decision:
        gap = Gap(tp[0], tp[1], missing, found, GapOutcome.SOUGHT_BACK)
        return Decision(keep[0], keep[1], seek_to=missing, gaps=(*gaps, gap))
