"""Deadlines for a new assignment: the policy for route × urgency, on the Dutch calendar."""

from __future__ import annotations

from datetime import timedelta

from services.feedback.calendar import DutchCalendar
from services.feedback.sla import Deadline, compute_deadlines
from services.feedback.sla_config import DEFAULT_SLA, SlaConfig
from shared.events import SignalAssigned
from shared.municipality import Municipality


def calendar_for(municipality: Municipality) -> DutchCalendar:
    """The municipality's calendar: national days, its extra days, per-school holiday weeks."""
    overrides = {
        brin: [(week.start, week.end) for week in school.holiday_weeks]
        for brin, school in municipality.schools.items()
        if school.holiday_weeks
    }
    return DutchCalendar(extra_closed_days=municipality.raw.extra_closed_days, school_overrides=overrides)


def deadlines_for(
    assigned: SignalAssigned, *, municipality: Municipality, calendar: DutchCalendar,
    sla: SlaConfig = DEFAULT_SLA,
) -> tuple[list[Deadline], timedelta]:
    """Fix the three clocks and the escalation interval when a signal is assigned (re-routed: new ones)."""
    policy_id, policy, interval = sla.lookup(assigned.route.value, assigned.urgency.value)
    school = municipality.schools.get(assigned.school_brin) if assigned.school_brin else None
    region = school.region if school else municipality.raw.municipality.region
    deadlines = compute_deadlines(
        policy=policy, assigned_at=assigned.assigned_at, calendar=calendar, region=region,
        school=school.brin if school else None, policy_id=policy_id,
    )
    return deadlines, interval
