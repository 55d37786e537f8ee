"""Retention (privacy rule 6, ADR 0020): which signals are past their term. Pure; the sweep does the erasing.

A signal is kept at most `term` after it was received (default two years). A signal closed as unfounded
(outcome `ongegrond`) goes sooner: `unfounded_term` after it was closed, never later than the general term.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.feedback.lifecycle import SignalRecord, Status
from shared.events import LifecycleChange
from shared.taxonomy import Outcome

DEFAULT_TERM = timedelta(days=730)
DEFAULT_UNFOUNDED_TERM = timedelta(days=182)


@dataclass(frozen=True)
class RetentionPolicy:
    """How long a signal is kept: in general, and once closed as unfounded."""

    term: timedelta = DEFAULT_TERM
    unfounded_term: timedelta = DEFAULT_UNFOUNDED_TERM


def closed_unfounded_at(record: SignalRecord) -> datetime | None:
    """When the signal was closed as unfounded (None when it is not closed that way now)."""
    if record.status is not Status.CLOSED:
        return None
    closing = next((h for h in reversed(record.history) if h.change is LifecycleChange.CLOSED), None)
    if closing is None or closing.outcome != Outcome.ONGEGROND.value:
        return None
    return closing.at


def due_at(record: SignalRecord, policy: RetentionPolicy) -> datetime:
    """The moment a signal must be erased."""
    general = record.received_at + policy.term
    unfounded = closed_unfounded_at(record)
    return general if unfounded is None else min(general, unfounded + policy.unfounded_term)


def due(records: Iterable[SignalRecord], *, now: datetime, policy: RetentionPolicy) -> list[SignalRecord]:
    """The signals past their term at `now`, oldest term first."""
    found = [(due_at(record, policy), record) for record in records]
    return [record for at, record in sorted(found, key=lambda pair: pair[0]) if at <= now]
