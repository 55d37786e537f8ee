"""Deadlines for a new assignment: the policy for route × urgency, on the Dutch calendar."""

from __future__ import annotations

from shared.events import SignalAssigned
from shared.municipality import Municipality
from services.feedback.calendar import DutchCalendar
from services.feedback.sla import DEFAULT_POLICIES, Deadline, SlaPolicies, compute_deadlines


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
    policies: SlaPolicies = DEFAULT_POLICIES,
) -> list[Deadline]:
    """Fix the three clocks when a signal is assigned (a re-routed signal gets new ones)."""
    policy_id, policy = policies.lookup(assigned.route.value, assigned.urgency.value)
    school = municipality.schools.get(assigned.school_brin) if assigned.school_brin else None
    region = school.region if school else municipality.raw.municipality.region
    return compute_deadlines(
        policy=policy, assigned_at=assigned.assigned_at, calendar=calendar, region=region,
        school=school.brin if school else None, policy_id=policy_id,
    )
