"""Which SLA warnings, breaches and escalation steps a signal is due, and the events that say so (pure).

Each emission has a key (`a<attempt>:<clock>:warning`, `a<attempt>:<clock>:breach:<step>`) that the
record remembers once published, and a deterministic event id derived from signal and key, so a
crash between publishing and remembering yields at most a duplicate with the same event id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from services.feedback.lifecycle import SignalRecord, Status
from services.feedback.sla import Deadline, escalation_steps
from shared.events import Clock, SlaBreached, SlaWarned, deterministic_id

ESCALATION_LADDER = ("handler", "team_lead", "coordinator")
# Clocks stop while a signal is closed, withdrawn, or rejected and waiting to be re-routed.
STOPPED = frozenset({Status.CLOSED, Status.WITHDRAWN, Status.REJECTED})


@dataclass(frozen=True)
class Emission:
    """One warning or one rung of the breach ladder for one clock of one attempt."""

    key: str
    kind: Literal["warning", "breach"]
    deadline: Deadline
    step: str | None = None
    step_index: int = 0


def due_emissions(record: SignalRecord, *, now: datetime) -> list[Emission]:
    """Every emission due at `now` that the record has not published yet, in the order to publish."""
    if record.status in STOPPED:
        return []
    done = set(record.emitted)
    interval = timedelta(seconds=record.escalation_interval_s)
    due: list[Emission] = []
    for deadline in record.deadlines:
        if deadline.clock in record.met or now < deadline.warn_at:
            continue
        prefix = f"a{record.attempt}:{deadline.clock}"
        due.append(Emission(f"{prefix}:warning", "warning", deadline))
        steps = escalation_steps(breached_at=deadline.due_at, now=now, interval=interval, steps=ESCALATION_LADDER)
        due += [Emission(f"{prefix}:breach:{step}", "breach", deadline, step, index)
                for index, step in enumerate(steps, start=1)]
    return [emission for emission in due if emission.key not in done]


def next_due_at(record: SignalRecord) -> datetime | None:
    """When the record's next unpublished emission falls due (None: nothing will, the clocks are stopped or met)."""
    if record.status in STOPPED:
        return None
    done = set(record.emitted)
    interval = timedelta(seconds=record.escalation_interval_s)
    moments: list[datetime] = []
    for deadline in record.deadlines:
        if deadline.clock in record.met:
            continue
        prefix = f"a{record.attempt}:{deadline.clock}"
        if f"{prefix}:warning" not in done:
            moments.append(deadline.warn_at)
        moments += [deadline.due_at + (index - 1) * interval
                    for index, step in enumerate(ESCALATION_LADDER, start=1) if f"{prefix}:breach:{step}" not in done]
    return min(moments, default=None)


def emission_event_id(record: SignalRecord, emission: Emission) -> str:
    """The same event id for the same signal, attempt, clock and step, whenever it is published."""
    return deterministic_id("sla", record.signal_id, emission.key)


def sla_event(record: SignalRecord, emission: Emission, *, at: datetime) -> SlaWarned | SlaBreached:
    """The warning or breach event for one emission."""
    common: dict[str, Any] = {
        "signal_id": record.signal_id, "reference": record.reference, "clock": Clock(emission.deadline.clock),
        "due_at": emission.deadline.due_at, "route": record.route, "body_id": record.body_id,
        "body_name": record.body_name, "urgency": record.urgency, "reporter_partner_id": record.reporter_partner_id,
        "attempt": record.attempt, "at": at,
    }
    if emission.kind == "warning":
        return SlaWarned(**common)
    return SlaBreached(**common, step=emission.step or "handler", step_index=emission.step_index)
