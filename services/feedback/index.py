"""What the sweep and the open-signals gauge need of the lifecycle table, kept up to date as records are written.

The SLA sweep used to parse every record of the table every sweep, and the gauge every ten seconds: with ten
thousand signals that is half a second of a blocked event loop each time (the p99 of every request then).
The index holds, per signal, when its next warning or breach falls due and whether it is open; the handler
tells it of every record it stores (services.feedback.decisions, `written`), and it is built again from the
table when the worker's partitions change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from services.feedback.breaches import next_due_at
from services.feedback.lifecycle import ErasedStub, SignalRecord, Status, decode_stored

CLOSED_STATES = frozenset({Status.CLOSED, Status.WITHDRAWN})


class DueIndex:
    """Per signal: the next moment something falls due, and (for open signals) its route and urgency."""

    def __init__(self) -> None:
        self.next_due: dict[str, datetime] = {}
        self.attempt: dict[str, int] = {}
        self.open: dict[str, tuple[str, str]] = {}
        self.built_for: frozenset[Any] | None = None

    def update(self, record: SignalRecord | ErasedStub) -> None:
        """A record (or an erased signal's stub: nothing due, not open) was written."""
        if isinstance(record, ErasedStub):
            for held in (self.next_due, self.attempt, self.open):
                held.pop(record.signal_id, None)
            return
        at = next_due_at(record)
        self.attempt[record.signal_id] = record.attempt
        if at is None:
            self.next_due.pop(record.signal_id, None)
        else:
            self.next_due[record.signal_id] = at
        if record.status in CLOSED_STATES:
            self.open.pop(record.signal_id, None)
        else:
            self.open[record.signal_id] = (record.route.value, record.urgency.value)

    def rebuild(self, raws: Iterable[bytes | None], *, assignment: frozenset[Any]) -> None:
        """Start again from the table's values (after the worker's partitions changed)."""
        self.next_due.clear()
        self.attempt.clear()
        self.open.clear()
        for raw in raws:
            if raw:
                self.update(decode_stored(raw))
        self.built_for = assignment

    def due(self, now: datetime) -> list[str]:
        """Signals with something due at `now`."""
        return [signal_id for signal_id, at in self.next_due.items() if at <= now]

    def open_counts(self) -> Counter[tuple[str, str]]:
        """Open signals by (route, urgency)."""
        return Counter(self.open.values())
