"""Replay a history of received signals under two rules files and find the signals that would go elsewhere.

Pure: records in, differences out. Each rules file is folded over the history as the routing agent folds
`signals.received` (services.routing.decisions.RoutingDecisions.on_received): per subject key, in offset
order, the match state is looked up (matching.look_up), the signal is decided (handlers.decide_signal: the
body and rule handlers.route_signal assigns, without building the event) and remembered with its body
(matching.remember); a redelivered signal the key already remembers is skipped.
Each file keeps its own match table, so a file with another match window matches as it would live.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.routing.handlers import decide_signal
from services.routing.matching import Seen, look_up, remember
from services.routing.rules import RuleBook, parse_rulebook
from shared.events import SignalReceived, UndecodableRecord, decode_event
from shared.municipality import Municipality

DEFAULT_LIMIT = 50  # moved signals and unreadable records listed


@dataclass(frozen=True)
class Routed:
    """Where one rules file sends one signal, and the rule that says so."""

    body_id: str
    rule_id: str
    description: str


@dataclass(frozen=True)
class Moved:
    """A signal that would go to another body: references and pseudonymous ids only, never personal data."""

    reference: str
    signal_id: str
    partition: int
    offset: int
    old: Routed
    new: Routed


@dataclass(frozen=True)
class Unreadable:
    """A record that is not a received signal, with where it is and why (a stable code, never its content)."""

    partition: int
    offset: int
    code: str


class Fold:
    """One rules file folded over a history the way the routing agent folds it: a match table per subject key."""

    def __init__(self, municipality: Municipality, *, book: RuleBook | None = None) -> None:
        self.municipality = municipality
        self.book = book or parse_rulebook(municipality)
        self.subjects: dict[str, dict[str, Any]] = {}

    def route(self, signal: SignalReceived) -> Routed | None:
        """The first assignment of a signal; None for a redelivery the agent would skip."""
        me = Seen(signal.signal_id, signal.reference, signal.partner_id, signal.partner_kind, signal.received_at,
                  subject_key=signal.subject_key)
        entry = self.subjects.get(signal.subject_key)
        state = look_up(entry, me, window=self.book.window)
        if state.duplicate:
            return None
        _, decision = decide_signal(signal, book=self.book, municipality=self.municipality, match=state)
        self.subjects[signal.subject_key] = remember(entry, replace(me, body_id=decision.body.id),
                                                     window=self.book.window)
        return Routed(decision.body.id, decision.rule_id, decision.description)


@dataclass
class Replay:
    """Both folds side by side, and what differs; feed it records in offset order per partition."""

    old: Fold
    new: Fold
    limit: int = DEFAULT_LIMIT
    since: datetime | None = None
    records: int = 0
    signals: int = 0
    before_period: int = 0
    redeliveries: int = 0
    redelivery_mismatches: int = 0
    same_body_other_rule: int = 0
    moved_total: int = 0
    moved: list[Moved] = field(default_factory=list)
    groups: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    unreadable_by_code: Counter[str] = field(default_factory=Counter)
    unreadable: list[Unreadable] = field(default_factory=list)

    @property
    def unreadable_total(self) -> int:
        """How many records could not be read as received signals."""
        return sum(self.unreadable_by_code.values())

    def feed(self, value: bytes | None, *, partition: int, offset: int) -> Moved | None:
        """Decode one record of `signals.received` and replay it; an undecodable record is counted, not skipped."""
        self.records += 1
        try:
            _, data = decode_event(value)
        except UndecodableRecord as exc:
            self._unreadable(exc.code, partition=partition, offset=offset)
            return None
        if not isinstance(data, SignalReceived):
            self._unreadable("unexpected_event_type", partition=partition, offset=offset)
            return None
        return self.add(data, partition=partition, offset=offset)

    def add(self, signal: SignalReceived, *, partition: int = 0, offset: int = 0) -> Moved | None:
        """Route one decoded signal under both files; the difference, when there is one."""
        old, new = self.old.route(signal), self.new.route(signal)
        if self.since is not None and signal.received_at < self.since:
            self.before_period += 1  # folded for the match state, not reported
            return None
        if old is None or new is None:
            self.redeliveries += 1
            self.redelivery_mismatches += (old is None) != (new is None)
            return None
        self.signals += 1
        if old.body_id == new.body_id:
            self.same_body_other_rule += old.rule_id != new.rule_id
            return None
        moved = Moved(signal.reference, signal.signal_id, partition, offset, old, new)
        self.moved_total += 1
        self.groups[(old.body_id, new.body_id, new.rule_id)] += 1
        if len(self.moved) < self.limit:
            self.moved.append(moved)
        return moved

    def _unreadable(self, code: str, *, partition: int, offset: int) -> None:
        self.unreadable_by_code[code] += 1
        if len(self.unreadable) < self.limit:
            self.unreadable.append(Unreadable(partition, offset, code))


def compare(signals: Iterable[SignalReceived], *, old: Municipality, new: Municipality,
            limit: int = DEFAULT_LIMIT) -> Replay:
    """Replay decoded signals (in offset order) under two rules files: what would go to another body."""
    replay = Replay(Fold(old), Fold(new), limit=limit)
    for offset, signal in enumerate(signals):
        replay.add(signal, offset=offset)
    return replay
