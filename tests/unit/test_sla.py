"""Unit tests of SLA terms, policies, deadlines, their states and the escalation ladder."""

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.feedback.calendar import AMSTERDAM, DutchCalendar
from services.feedback.sla import (
    DEFAULT_POLICIES,
    MATCH_REGIE_TERM,
    ClockTerm,
    Deadline,
    SlaPolicies,
    SlaPolicy,
    compute_deadlines,
    deadline_state,
    escalation_steps,
)

CAL = DutchCalendar()


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An aware Amsterdam wall-clock time."""
    return datetime(year, month, day, hour, minute, tzinfo=AMSTERDAM)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An aware UTC instant."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def one(
    term: str,
    assigned_at: datetime,
    *,
    region: str | None = None,
    school: str | None = None,
    cal: DutchCalendar = CAL,
) -> Deadline:
    """The single deadline of a policy with only a feedback term."""
    policy = SlaPolicy.model_validate({"feedback": term})
    [deadline] = compute_deadlines(
        policy=policy, assigned_at=assigned_at, calendar=cal, region=region, school=school, policy_id="test"
    )
    return deadline


@pytest.mark.parametrize(
    ("text", "unit", "count"),
    [
        ("2 working days", "working_days", 2),
        ("1 working day", "working_days", 1),
        ("5 school days", "school_days", 5),
        ("same working day", "working_days", 0),
        ("Next  Working Day", "working_days", 1),
        ("end of school year", "end_of_school_year", 0),
    ],
)
def test_day_terms_are_parsed_from_their_text(text: str, unit: str, count: int) -> None:
    term = ClockTerm.parse(text)
    assert (term.unit, term.count) == (unit, count)


@pytest.mark.parametrize(
    ("text", "months", "days", "seconds"),
    [
        ("PT4H", 0, 0, 4 * 3600),
        ("PT30S", 0, 0, 30),
        ("P3M", 3, 0, 0),
        ("P6W", 0, 42, 0),
        ("P1Y2M3W4DT5H6M7S", 14, 25, 5 * 3600 + 6 * 60 + 7),
        ("pt1h", 0, 0, 3600),
        ("1 hour", 0, 0, 3600),
        ("10 weeks", 0, 70, 0),
        ("3 months", 3, 0, 0),
    ],
)
def test_iso_and_plain_durations_are_parsed(text: str, months: int, days: int, seconds: int) -> None:
    term = ClockTerm.parse(text)
    assert (term.unit, term.months, term.days, term.seconds) == ("duration", months, days, seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2 workdays",
        "two working days",
        "-1 working days",
        "P",
        "PT",
        "P1.5D",
        "PT0S",
        "4H",
        "P4H",
        "0 hours",
        "3 days",
        "end of year",
    ],
)
def test_bad_term_strings_are_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match=r"SLA term|must be positive"):
        ClockTerm.parse(text)


def test_a_policy_round_trips_through_its_text_form() -> None:
    policy = SlaPolicy.model_validate({"acknowledge": "PT1H", "feedback": "next working day"})
    dumped = policy.model_dump()
    assert dumped == {"acknowledge": "PT1H", "feedback": "next working day", "close": None}
    assert SlaPolicy.model_validate(dumped) == policy
    assert SlaPolicies.model_validate(DEFAULT_POLICIES.model_dump()) == DEFAULT_POLICIES


def test_default_policies_follow_the_domain_table() -> None:
    _, zat_u2 = DEFAULT_POLICIES.lookup("zat", "U2")
    assert [str(zat_u2.acknowledge), str(zat_u2.feedback), str(zat_u2.close)] == [
        "2 school days",
        "20 school days",
        "P3M",
    ]
    _, acute = DEFAULT_POLICIES.lookup("coordinator", "U0")
    assert str(acute.acknowledge) == "PT1H" and acute.close is None
    _, meldcode = DEFAULT_POLICIES.lookup("meldcode", "U1")
    assert str(meldcode.feedback) == "5 working days" and str(meldcode.close) == "P10W"
    assert str(MATCH_REGIE_TERM) == "5 working days"


def test_lookup_falls_back_from_route_and_urgency_to_route_to_the_default() -> None:
    assert DEFAULT_POLICIES.lookup("wijkteam", "U1")[0] == "wijkteam/U1"
    wijkteam_u2 = DEFAULT_POLICIES.routes["wijkteam"]["U2"]
    assert DEFAULT_POLICIES.lookup("wijkteam", "U3") == ("wijkteam/*", wijkteam_u2)
    assert DEFAULT_POLICIES.lookup("leerplicht", "U1") == ("default", DEFAULT_POLICIES.default)


def test_working_day_deadlines_skip_the_weekend_and_name_the_atw() -> None:
    deadline = one("2 working days", local(2026, 3, 13, 14))
    assert deadline.due_at == local(2026, 3, 18)
    assert deadline.rule == "2 working days (Algemene termijnenwet)"
    assert deadline.policy_id == "test"


def test_working_day_deadlines_skip_good_friday_and_easter_monday() -> None:
    assert one("1 working day", local(2026, 4, 2, 10)).due_at == utc(2026, 4, 7, 22)


def test_zat_deadlines_count_school_days_of_the_region() -> None:
    deadlines = compute_deadlines(
        policy=DEFAULT_POLICIES.lookup("zat", "U1")[1],
        assigned_at=local(2026, 7, 10, 10),
        calendar=CAL,
        region="midden",
        school=None,
        policy_id="zat/U1",
    )
    ack, feedback, close = deadlines
    assert [d.clock for d in deadlines] == ["acknowledge", "feedback", "close"]
    assert ack.due_at == local(2026, 7, 14)
    assert ack.rule == "1 school day, region midden"
    assert feedback.due_at == local(2026, 9, 5)  # 5 days before, 5 after the summer holidays
    assert close.due_at == local(2026, 8, 21, 10)  # six calendar weeks


def test_a_school_day_term_names_the_school_when_it_has_its_own_holidays() -> None:
    cal = DutchCalendar(school_overrides={"12AB": [(date(2026, 10, 12), date(2026, 10, 16))]})
    deadline = one("1 school day", local(2026, 10, 9, 10), region="Midden", school="12AB", cal=cal)
    assert deadline.due_at == local(2026, 10, 27)
    assert deadline.rule == "1 school day, region midden, school 12AB with own holidays"


def test_a_school_day_term_without_a_region_is_refused() -> None:
    with pytest.raises(ValueError, match="needs the school's region"):
        one("5 school days", local(2026, 3, 2, 9))


def test_end_of_school_year_is_the_start_of_the_regional_summer_holidays() -> None:
    deadline = one("end of school year", local(2026, 3, 1, 9), region="zuid")
    assert deadline.due_at == local(2026, 7, 11)
    assert "2026-07-11" in deadline.rule


def test_end_of_school_year_during_the_summer_holidays_is_next_years() -> None:
    assert one("end of school year", local(2026, 7, 20, 9), region="zuid").due_at == local(2027, 7, 24)


def test_end_of_school_year_falls_back_to_31_july_when_holidays_are_unknown() -> None:
    deadline = one("end of school year", local(2031, 3, 1, 9), region="noord")
    assert deadline.due_at == local(2031, 8, 1)
    assert "31 July assumed" in deadline.rule


def test_clock_hours_run_round_the_clock_through_weekends_and_holidays() -> None:
    deadline = one("PT4H", local(2026, 12, 24, 22))
    assert deadline.due_at == local(2026, 12, 25, 2)
    assert deadline.rule == "PT4H (clock time, round the clock)"


def test_clock_hours_across_the_spring_dst_change_are_elapsed_time() -> None:
    assigned = local(2026, 3, 29, 0, 30)  # CET; at 02:00 the clocks jump to 03:00
    assert one("PT4H", assigned).due_at == utc(2026, 3, 29, 3, 30)
    assert one("PT4H", assigned).due_at.astimezone(AMSTERDAM).hour == 5


def test_calendar_months_keep_the_local_time_and_clamp_to_the_month_end() -> None:
    assert one("P3M", local(2026, 1, 31, 10)).due_at == utc(2026, 4, 30, 8)  # 10:00 CEST
    assert one("P1M", local(2028, 1, 31, 10)).due_at == local(2028, 2, 29, 10)


def test_calendar_weeks_across_dst_keep_the_local_time() -> None:
    assert one("P6W", local(2026, 3, 2, 9)).due_at == local(2026, 4, 13, 9)


def test_the_warning_falls_at_80_percent_of_the_term() -> None:
    deadline = one("PT10H", utc(2026, 3, 2, 8))
    assert deadline.warn_at == utc(2026, 3, 2, 16)
    assigned = local(2026, 3, 13, 14)
    deadline = one("2 working days", assigned)
    assert deadline.warn_at - assigned == (deadline.due_at - assigned) * 0.8


def test_a_naive_assignment_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        one("PT1H", datetime(2026, 3, 2, 9))


def test_deadlines_are_frozen() -> None:
    deadline = one("PT1H", utc(2026, 3, 2, 8))
    with pytest.raises(ValidationError):
        setattr(deadline, "rule", "other")  # noqa: B010


def test_a_deadline_is_open_then_warning_then_breached() -> None:
    deadline = one("PT10H", utc(2026, 3, 2, 8))
    assert deadline_state(deadline, now=utc(2026, 3, 2, 15, 59), met_at=None) == "open"
    assert deadline_state(deadline, now=utc(2026, 3, 2, 16), met_at=None) == "warning"
    assert deadline_state(deadline, now=utc(2026, 3, 2, 18), met_at=None) == "breached"


def test_a_deadline_met_in_time_is_met_and_one_met_late_stays_breached() -> None:
    deadline = one("PT10H", utc(2026, 3, 2, 8))
    assert deadline_state(deadline, now=utc(2026, 3, 9), met_at=utc(2026, 3, 2, 17)) == "met"
    assert deadline_state(deadline, now=utc(2026, 3, 9), met_at=utc(2026, 3, 2, 18)) == "breached"


def test_escalation_climbs_one_step_per_interval_after_the_breach() -> None:
    breached = utc(2026, 3, 2, 18)
    hour = timedelta(hours=1)
    assert escalation_steps(breached_at=breached, now=breached - hour, interval=hour) == []
    assert escalation_steps(breached_at=breached, now=breached, interval=hour) == ["handler"]
    assert escalation_steps(breached_at=breached, now=breached + hour, interval=hour) == [
        "handler",
        "team_lead",
    ]
    assert escalation_steps(breached_at=breached, now=breached + 5 * hour, interval=hour) == [
        "handler",
        "team_lead",
        "coordinator",
    ]


def test_escalation_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        escalation_steps(breached_at=utc(2026, 3, 2), now=utc(2026, 3, 3), interval=timedelta(0))
