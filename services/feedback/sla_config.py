"""The `sla:` section of the municipality file: policies per route × urgency and the escalation interval.

```yaml
sla:
  escalation_interval: P1D          # while a clock stays breached: handler, +1 interval team lead, +2 coordinator
  routes:
    zat:
      U1: {acknowledge: 1 school day, feedback: 10 school days, close: P6W}
      "*": {acknowledge: 2 school days, feedback: 20 school days, close: P3M}
    coordinator:
      U0: {acknowledge: PT1H, feedback: next working day, close: null, escalation_interval: PT1H}
  default: {acknowledge: 2 working days, feedback: 10 working days, close: P3M}
```

Terms are `ClockTerm` texts (working days, school days, ISO 8601 durations, ...). Every entry names all
three clocks; `null` means that clock runs without a deadline.
Precedence (ADR 0013): whatever the file writes for a route beats every built-in policy for that route, and
within the file and within the built-ins a specific urgency beats `"*"`; `default` (the file's, else the
built-in one) applies only to a route neither has.
Policy ids say where a policy came from: `<municipality id>:zat/*` from the file, `default:zat/U1` built in.
The escalation interval is a duration (no months): the file entry's own, else the section's, else one day.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from services.feedback.sla import ANY_URGENCY, CLOCKS, DEFAULT_POLICIES, ClockTerm, SlaPolicies, SlaPolicy
from shared.events import Route, Urgency

DEFAULT_ESCALATION_INTERVAL = timedelta(days=1)
ROUTES = tuple(r.value for r in Route)
URGENCIES = tuple(u.value for u in Urgency)
URGENCY_KEYS = (*URGENCIES, ANY_URGENCY)
ENTRY_KEYS = (*CLOCKS, "escalation_interval")
SECTION_KEYS = ("escalation_interval", "routes", "default")
DEFAULT_KEY = "default"

Problems = list[tuple[int | None, str]]
LineOf = Callable[..., int | None]


class SlaConfigError(ValueError):
    """The sla section is invalid; each problem names its line."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        super().__init__("; ".join(f"line {line or '?'}: {message}" for line, message in problems))


@dataclass(frozen=True)
class Resolved:
    """The effective policy of one route × urgency and where its parts came from (a file line or built in)."""

    policy_id: str
    policy: SlaPolicy
    interval: timedelta
    entry: str
    from_file: bool
    line: int | None = None
    interval_from: str = "built in"
    interval_line: int | None = None


@dataclass(frozen=True)
class SlaConfig:
    """The file's entries over the built-in policies, looked up by route and urgency."""

    builtin: SlaPolicies = DEFAULT_POLICIES
    source: str = "default"
    routes: dict[str, dict[str, SlaPolicy]] = field(default_factory=dict)
    default: SlaPolicy | None = None
    escalation: dict[str, timedelta] = field(default_factory=dict)
    default_escalation: timedelta | None = None
    lines: dict[str, int | None] = field(default_factory=dict)

    def _winner(self, route: str, urgency: str) -> tuple[bool, str, SlaPolicy]:
        """(from the file, entry key, policy): file before built-in, a specific urgency before "*", then default."""
        for from_file, table in ((True, self.routes), (False, self.builtin.routes)):
            by_urgency = table.get(route, {})
            for key in (urgency, ANY_URGENCY):
                if key in by_urgency:
                    return from_file, f"{route}/{key}", by_urgency[key]
        if self.default is not None:
            return True, DEFAULT_KEY, self.default
        return False, DEFAULT_KEY, self.builtin.default

    def resolve(self, route: str, urgency: str) -> Resolved:
        """The effective policy of a route and urgency, with the origin of its terms and its interval."""
        from_file, entry, policy = self._winner(route, urgency)
        origin = self.source if from_file else "default"
        if from_file and entry in self.escalation:
            interval, interval_from = self.escalation[entry], f"sla.{_dotted(entry)}"
            interval_line = self.lines.get(f"{entry}/escalation_interval")
        elif self.default_escalation is not None:
            interval, interval_from = self.default_escalation, "sla.escalation_interval"
            interval_line = self.lines.get("escalation_interval")
        else:
            interval, interval_from, interval_line = DEFAULT_ESCALATION_INTERVAL, "built in", None
        return Resolved(
            policy_id=f"{origin}:{entry}", policy=policy, interval=interval, entry=entry, from_file=from_file,
            line=self.lines.get(entry) if from_file else None, interval_from=interval_from,
            interval_line=interval_line,
        )

    def lookup(self, route: str, urgency: str) -> tuple[str, SlaPolicy, timedelta]:
        """(policy id, policy, escalation interval) for a route and urgency."""
        found = self.resolve(route, urgency)
        return found.policy_id, found.policy, found.interval

    def table(self) -> dict[tuple[str, str], Resolved]:
        """The effective policy of every route × urgency a signal can have."""
        return {(route, urgency): self.resolve(route, urgency) for route in ROUTES for urgency in URGENCIES}


DEFAULT_SLA = SlaConfig()


def _dotted(entry: str) -> str:
    """`zat/*` as the file's path `routes.zat.*`; `default` as `default`."""
    return entry if entry == DEFAULT_KEY else "routes." + entry.replace("/", ".")


def _interval(raw: Any, loc: tuple[str | int, ...], line_of: LineOf, problems: Problems) -> timedelta | None:
    try:
        term = ClockTerm.parse(str(raw))
    except ValidationError as exc:
        problems.append((line_of("sla", *loc), f"sla.{'.'.join(map(str, loc))}: {_first(exc)}"))
        return None
    if term.unit != "duration" or term.months:
        problems.append((line_of("sla", *loc),
                         f"sla.{'.'.join(map(str, loc))}: escalation interval {raw!r} must be a duration "
                         "in hours, days or weeks (such as 'PT4H', 'P1D', '8 hours'), not days of a calendar"))
        return None
    return timedelta(days=term.days, seconds=term.seconds)


def _first(exc: ValidationError) -> str:
    message = str(exc.errors()[0]["msg"])
    return message.removeprefix("Value error, ")


def _entry(raw: Any, loc: tuple[str | int, ...], line_of: LineOf, problems: Problems) -> tuple[
        SlaPolicy | None, timedelta | None]:
    where = "sla." + ".".join(map(str, loc))
    if not isinstance(raw, dict):
        problems.append((line_of("sla", *loc), f"{where}: expected acknowledge, feedback, close"))
        return None, None
    ok = True
    for key in raw:
        if key not in ENTRY_KEYS:
            problems.append((line_of("sla", *loc, key), f"{where}: unknown key {key!r}; "
                             f"expected {', '.join(ENTRY_KEYS)}"))
            ok = False
    terms: dict[str, ClockTerm | None] = {}
    for clock in CLOCKS:
        if clock not in raw:
            problems.append((line_of("sla", *loc), f"{where}: clock {clock!r} missing (write null for no deadline)"))
            ok = False
            continue
        value = raw[clock]
        if value is None:
            terms[clock] = None
            continue
        try:
            terms[clock] = ClockTerm.parse(str(value))
        except ValidationError as exc:
            problems.append((line_of("sla", *loc, clock), f"{where}.{clock}: {_first(exc)}"))
            ok = False
    interval = None
    if "escalation_interval" in raw:
        interval = _interval(raw["escalation_interval"], (*loc, "escalation_interval"), line_of, problems)
    return (SlaPolicy(**terms) if ok else None), interval


@dataclass
class _Parsed:
    """What the section's entries add up to while they are read."""

    routes: dict[str, dict[str, SlaPolicy]] = field(default_factory=dict)
    escalation: dict[str, timedelta] = field(default_factory=dict)
    lines: dict[str, int | None] = field(default_factory=dict)


def _parse_route(route: Any, urgencies: Any, line_of: LineOf, problems: Problems, *, parsed: _Parsed) -> None:
    """One entry of sla.routes: its urgencies' policies, intervals and lines into parsed; faults into problems."""
    if route not in ROUTES:
        problems.append((line_of("sla", "routes", route), f"sla.routes: unknown route {route!r}; "
                         f"expected one of {', '.join(ROUTES)}"))
        return
    if not isinstance(urgencies, dict) or not urgencies:
        problems.append((line_of("sla", "routes", route), f"sla.routes.{route}: expected urgencies "
                         f"({', '.join(URGENCY_KEYS)}) with their clocks"))
        return
    for raw_urgency, raw in urgencies.items():
        urgency = str(raw_urgency)
        if urgency not in URGENCY_KEYS:
            problems.append((line_of("sla", "routes", route, urgency), f"sla.routes.{route}: unknown urgency "
                             f"{urgency!r}; expected one of {', '.join(URGENCY_KEYS)}"))
            continue
        policy, interval = _entry(raw, ("routes", route, urgency), line_of, problems)
        entry = f"{route}/{urgency}"
        parsed.lines[entry] = line_of("sla", "routes", route, raw_urgency)
        if policy is not None:
            parsed.routes.setdefault(route, {})[urgency] = policy
        if interval is not None:
            parsed.escalation[entry] = interval
            parsed.lines[f"{entry}/escalation_interval"] = line_of("sla", "routes", route, raw_urgency,
                                                                   "escalation_interval")


def parse_sla(section: dict[str, Any], *, source: str, line_of: LineOf = lambda *_: None,
              builtin: SlaPolicies = DEFAULT_POLICIES) -> SlaConfig:
    """Validate the sla section and put it over the built-in policies; raise SlaConfigError with lines."""
    problems: Problems = []
    if not isinstance(section, dict):
        raise SlaConfigError([(line_of("sla"), "sla: expected a mapping")])
    for key in section:
        if key not in SECTION_KEYS:
            problems.append((line_of("sla", key), f"sla: unknown key {key!r}; expected {', '.join(SECTION_KEYS)}"))
    parsed = _Parsed()
    default_escalation = None
    if "escalation_interval" in section:
        default_escalation = _interval(section["escalation_interval"], ("escalation_interval",), line_of, problems)
        parsed.lines["escalation_interval"] = line_of("sla", "escalation_interval")
    raw_routes = section.get("routes") or {}
    if not isinstance(raw_routes, dict):
        problems.append((line_of("sla", "routes"), "sla.routes: expected a mapping of route to urgencies"))
        raw_routes = {}
    for route, urgencies in raw_routes.items():
        _parse_route(route, urgencies, line_of, problems, parsed=parsed)
    default = None
    if DEFAULT_KEY in section:
        default, interval = _entry(section[DEFAULT_KEY], (DEFAULT_KEY,), line_of, problems)
        parsed.lines[DEFAULT_KEY] = line_of("sla", DEFAULT_KEY)
        if interval is not None:
            parsed.escalation[DEFAULT_KEY] = interval
            parsed.lines[f"{DEFAULT_KEY}/escalation_interval"] = line_of("sla", DEFAULT_KEY, "escalation_interval")
    if problems:
        raise SlaConfigError(problems)
    return SlaConfig(
        builtin=builtin, source=source, routes=parsed.routes, default=default, escalation=parsed.escalation,
        default_escalation=default_escalation, lines=parsed.lines,
    )


def unused_entries(config: SlaConfig) -> Problems:
    """Warnings: entries of the file that no route × urgency uses, each with its line."""
    table = config.table().values()
    used = {found.entry for found in table if found.from_file}
    warnings: Problems = []
    for route, by_urgency in config.routes.items():
        for urgency in by_urgency:
            entry = f"{route}/{urgency}"
            if entry not in used:
                own = ", ".join(u for u in URGENCIES if u in by_urgency)
                warnings.append((config.lines.get(entry), f"sla.routes.{route}.{urgency} has no effect: "
                                 f"{route} {own} each have their own entry in this file"))
    if config.default is not None and DEFAULT_KEY not in used:
        warnings.append((config.lines.get(DEFAULT_KEY), "sla.default has no effect: every route has a policy "
                         "(in this file or built in); write it as sla.routes.<route>.\"*\" instead"))
    if config.default_escalation is not None and not any(f.interval_from == "sla.escalation_interval"
                                                         for f in table):
        warnings.append((config.lines.get("escalation_interval"), "sla.escalation_interval has no effect: "
                         "every policy sets its own"))
    return warnings


def sla_config_for(municipality: Any) -> SlaConfig:
    """The municipality's SLA configuration (built-in policies when the file has no sla section)."""
    if not municipality.raw.sla:
        return DEFAULT_SLA
    return parse_sla(municipality.raw.sla, source=municipality.raw.municipality.id, line_of=municipality.line_of)


def validate_section(municipality: Any) -> Problems:
    """The municipality loader's hook: problems in the sla section, each with its line."""
    try:
        sla_config_for(municipality)
    except SlaConfigError as exc:
        return exc.problems
    return []
