"""SLA policies, their terms and the deadlines they produce.

A term (`ClockTerm`) is written as text in the municipality file and parsed here:
`"2 working days"`, `"1 school day"`, `"same working day"`, `"next working day"`,
`"end of school year"`, `"6 weeks"`, `"3 months"`, `"1 hour"`, or an ISO 8601 duration
(`"PT4H"`, `"PT30S"`, `"P3M"`, `"P6W"`). Day terms follow `DutchCalendar`: the deadline is
the end (00:00 next day, Amsterdam) of the Nth working or school day after the start day.
ISO durations: the date part (years, months, weeks, days) moves the Amsterdam wall clock
(31 January + P1M = 28 February, same local time; DST does not shift it), the time part
(hours, minutes, seconds) is elapsed time, round the clock. "End of school year" is the
start (00:00) of the region's summer holidays; when `holidays` knows no summer holidays for
that year (after 2030) it falls back to the end of 31 July.

Deadlines are snapshots: each carries the UTC instant and the rule that produced it, so a
later change to the calendar or policy does not move it.
"""

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_serializer, model_validator

from services.feedback.calendar import AMSTERDAM, DutchCalendar, end_of_day, local_date, normalize_region

Clock = Literal["acknowledge", "feedback", "close"]
DeadlineState = Literal["open", "met", "warning", "breached"]
CLOCKS: tuple[Clock, ...] = ("acknowledge", "feedback", "close")
WARN_FRACTION = 0.8
ANY_URGENCY = "*"

_DAYS = re.compile(r"^(\d+) (working|school) days?$")
_HUMAN = re.compile(r"^(\d+) (minute|hour|week|month)s?$")
_ISO = re.compile(
    r"^P(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)
_FIXED: dict[str, dict[str, Any]] = {
    "same working day": {"unit": "working_days", "count": 0},
    "next working day": {"unit": "working_days", "count": 1},
    "same school day": {"unit": "school_days", "count": 0},
    "next school day": {"unit": "school_days", "count": 1},
    "end of school year": {"unit": "end_of_school_year"},
}
_HUMAN_UNITS = {
    "minute": ("seconds", 60),
    "hour": ("seconds", 3600),
    "week": ("days", 7),
    "month": ("months", 1),
}


def _parse_term(raw: str) -> dict[str, Any]:
    """Turn term text into ClockTerm fields, or raise ValueError saying what is accepted."""
    text = " ".join(raw.split()).lower()
    if text in _FIXED:
        return {"text": text, **_FIXED[text]}
    if m := _DAYS.match(text):
        return {"text": text, "unit": f"{m[2]}_days", "count": int(m[1])}
    if m := _HUMAN.match(text):
        field, factor = _HUMAN_UNITS[m[2]]
        if int(m[1]) == 0:
            raise ValueError(f"term {raw!r} is zero; a duration must be positive")
        return {"text": text, "unit": "duration", field: int(m[1]) * factor}
    if (m := _ISO.match(text.upper())) and text.upper() not in ("P", "PT"):
        n = {k: int(v or 0) for k, v in m.groupdict().items()}
        fields = {"months": 12 * n["y"] + n["mo"], "days": 7 * n["w"] + n["d"]}
        fields["seconds"] = 3600 * n["h"] + 60 * n["mi"] + n["s"]
        if not any(fields.values()):
            raise ValueError(f"term {raw!r} is zero; a duration must be positive")
        return {"text": text.upper(), "unit": "duration", **fields}
    raise ValueError(
        f"cannot read SLA term {raw!r}: expected 'N working days', 'N school days', "
        "'same working day', 'next working day', 'end of school year', 'N hours|weeks|months' "
        "or an ISO 8601 duration with whole numbers such as 'PT4H', 'P6W', 'P3M'"
    )


class ClockTerm(BaseModel):
    """A term of one SLA clock, read from and written back as its text."""

    model_config = ConfigDict(frozen=True)

    text: str
    unit: Literal["working_days", "school_days", "duration", "end_of_school_year"]
    count: int = Field(default=0, ge=0)
    months: int = Field(default=0, ge=0)
    days: int = Field(default=0, ge=0)
    seconds: int = Field(default=0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        """Accept a plain string and parse it."""
        return _parse_term(data) if isinstance(data, str) else data

    @model_serializer
    def _to_text(self) -> str:
        """Serialize as the term's text, so policies round-trip through YAML and JSON."""
        return self.text

    @classmethod
    def parse(cls, text: str) -> "ClockTerm":
        """Parse term text; raise ValueError (a pydantic ValidationError) when it is not valid."""
        return cls.model_validate(text)

    def __str__(self) -> str:
        return self.text


class SlaPolicy(BaseModel):
    """The terms of the three clocks; a clock without a term runs without a deadline."""

    model_config = ConfigDict(frozen=True)

    acknowledge: ClockTerm | None = None
    feedback: ClockTerm | None = None
    close: ClockTerm | None = None


class SlaPolicies(BaseModel):
    """Policies keyed by route, then urgency (`"*"` matches any urgency), with a default."""

    model_config = ConfigDict(frozen=True)

    routes: dict[str, dict[str, SlaPolicy]]
    default: SlaPolicy

    def lookup(self, route: str, urgency: str) -> tuple[str, SlaPolicy]:
        """Return (policy_id, policy): route+urgency, else route with `*`, else the default."""
        by_urgency = self.routes.get(route, {})
        if urgency in by_urgency:
            return f"{route}/{urgency}", by_urgency[urgency]
        if ANY_URGENCY in by_urgency:
            return f"{route}/{ANY_URGENCY}", by_urgency[ANY_URGENCY]
        return "default", self.default


def _policy(acknowledge: str | None, feedback: str | None, close: str | None) -> SlaPolicy:
    """Build a policy from term texts."""
    return SlaPolicy.model_validate({"acknowledge": acknowledge, "feedback": feedback, "close": close})


_ZAT_U2 = _policy("2 school days", "20 school days", "P3M")
_WIJKTEAM_U2 = _policy("2 working days", "10 working days", "P3M")
_OOV_U2 = _policy("2 working days", "10 working days", "P3M")
_MELDCODE_U1 = _policy("same working day", "5 working days", "P10W")
_COORDINATOR_U0 = _policy("PT1H", "next working day", None)

DEFAULT_POLICIES = SlaPolicies(
    routes={
        # U0: close has no clock; it closes when Veilig Thuis or the police confirm take-over.
        "coordinator": {"U0": _COORDINATOR_U0, ANY_URGENCY: _COORDINATOR_U0},
        "meldcode": {"U1": _MELDCODE_U1, ANY_URGENCY: _MELDCODE_U1},
        "zat": {
            "U1": _policy("1 school day", "10 school days", "P6W"),
            "U2": _ZAT_U2,
            "U3": _policy("5 school days", "20 school days", "end of school year"),
            ANY_URGENCY: _ZAT_U2,
        },
        "wijkteam": {
            "U1": _policy("1 working day", "5 working days", "P6W"),
            "U2": _WIJKTEAM_U2,
            ANY_URGENCY: _WIJKTEAM_U2,
        },
        "oov": {
            "U1": _policy("same working day", "5 working days", "P3M"),
            "U2": _OOV_U2,
            ANY_URGENCY: _OOV_U2,
        },
    },
    # A route the table does not know gets the ordinary working-day terms.
    default=_WIJKTEAM_U2,
)

# A match across 2+ partners: the coordinator sets regie within this term.
MATCH_REGIE_TERM = ClockTerm.parse("5 working days")


class Deadline(BaseModel):
    """One clock's deadline, snapshotted with the rule that produced it."""

    model_config = ConfigDict(frozen=True)

    clock: Clock
    due_at: AwareDatetime
    warn_at: AwareDatetime
    rule: str
    policy_id: str


def _add_months(local: datetime, months: int) -> datetime:
    """Add calendar months to a naive wall-clock time, clamping to the month's last day."""
    index = local.month - 1 + months
    year, month = local.year + index // 12, index % 12 + 1
    next_month = date(year + month // 12, month % 12 + 1, 1)
    return local.replace(year=year, month=month, day=min(local.day, (next_month - timedelta(days=1)).day))


def _add_duration(term: ClockTerm, start: datetime) -> datetime:
    """Apply an ISO duration: date part on the Amsterdam wall clock, time part as elapsed time."""
    moved = start.astimezone(UTC)
    if term.months or term.days:
        wall = _add_months(start.astimezone(AMSTERDAM).replace(tzinfo=None), term.months)
        moved = (wall + timedelta(days=term.days)).replace(tzinfo=AMSTERDAM).astimezone(UTC)
    return moved + timedelta(seconds=term.seconds)


def _end_of_school_year(calendar: DutchCalendar, start: datetime, region: str) -> tuple[datetime, str]:
    """Return the start of the next summer holidays of the region, with a fallback of 31 July."""
    today = local_date(start)
    for year in (today.year, today.year + 1):
        first = calendar.summer_holiday_start(year, region)
        if first is not None and today < first:
            return end_of_day(first - timedelta(days=1)), f"summer holidays start {first.isoformat()}"
        if first is None and today <= date(year, 7, 31):
            return end_of_day(date(year, 7, 31)), "summer holidays unknown, 31 July assumed"
    raise AssertionError("unreachable: one of two consecutive years has a school-year end ahead")


def _due(
    term: ClockTerm, *, start: datetime, calendar: DutchCalendar, region: str | None, school: str | None
) -> tuple[datetime, str]:
    """Compute one clock's due instant (UTC) and the rule text explaining it."""
    if term.unit == "duration":
        return _add_duration(term, start), f"{term.text} (clock time, round the clock)"
    if term.unit == "working_days":
        return calendar.add_working_days(start, term.count), f"{term.text} (Algemene termijnenwet)"
    if region is None:
        raise ValueError(f"term {term.text!r} counts school days and needs the school's region")
    region = normalize_region(region)
    school_part = f", school {school} with own holidays" if calendar.has_school_override(school) else ""
    if term.unit == "school_days":
        due = calendar.add_school_days(start, term.count, region=region, school=school)
        return due, f"{term.text}, region {region}{school_part}"
    due, why = _end_of_school_year(calendar, start, region)
    return due, f"{term.text}, region {region} ({why})"


def compute_deadlines(
    *,
    policy: SlaPolicy,
    assigned_at: datetime,
    calendar: DutchCalendar,
    region: str | None,
    school: str | None,
    policy_id: str,
) -> list[Deadline]:
    """Compute the deadlines of every clock of a policy that has a term, in clock order."""
    if assigned_at.tzinfo is None or assigned_at.utcoffset() is None:
        raise ValueError("assigned_at must be timezone-aware")
    deadlines = []
    for clock in CLOCKS:
        term: ClockTerm | None = getattr(policy, clock)
        if term is None:
            continue
        due_at, rule = _due(term, start=assigned_at, calendar=calendar, region=region, school=school)
        warn_at = assigned_at.astimezone(UTC) + (due_at - assigned_at) * WARN_FRACTION
        deadlines.append(
            Deadline(clock=clock, due_at=due_at, warn_at=warn_at, rule=rule, policy_id=policy_id)
        )
    return deadlines


def deadline_state(deadline: Deadline, *, now: datetime, met_at: datetime | None) -> DeadlineState:
    """Return the state of a deadline; met late stays "breached" (the breach happened)."""
    if met_at is not None:
        return "met" if met_at < deadline.due_at else "breached"
    if now >= deadline.due_at:
        return "breached"
    if now >= deadline.warn_at:
        return "warning"
    return "open"


def escalation_steps(
    *,
    breached_at: datetime,
    now: datetime,
    interval: timedelta,
    steps: Sequence[str] = ("handler", "team_lead", "coordinator"),
) -> list[str]:
    """Return the ladder steps due so far: the first at breach, one more after each interval."""
    if interval <= timedelta(0):
        raise ValueError("escalation interval must be positive")
    if now < breached_at:
        return []
    reached = (now - breached_at) // interval + 1
    return list(steps[:reached])
