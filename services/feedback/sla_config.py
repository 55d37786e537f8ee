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
three clocks; `null` means that clock runs without a deadline. An entry replaces the built-in policy
for its route × urgency; routes and urgencies the file does not mention keep `DEFAULT_POLICIES`.
Policy ids say where a policy came from: `<municipality id>:zat/U1` from the file, `default:zat/U1`
built in. The escalation interval is a duration (no months), per entry or for the whole section.
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
URGENCY_KEYS = (*(u.value for u in Urgency), ANY_URGENCY)
ENTRY_KEYS = (*CLOCKS, "escalation_interval")
SECTION_KEYS = ("escalation_interval", "routes", "default")

Problems = list[tuple[int | None, str]]
LineOf = Callable[..., int | None]


class SlaConfigError(ValueError):
    """The sla section is invalid; each problem names its line."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        super().__init__("; ".join(f"line {line or '?'}: {message}" for line, message in problems))


@dataclass(frozen=True)
class SlaConfig:
    """Policies and escalation intervals, looked up by route and urgency."""

    policies: SlaPolicies
    source: str = "default"
    from_file: frozenset[tuple[str, str]] = frozenset()
    default_from_file: bool = False
    escalation: dict[tuple[str, str], timedelta] = field(default_factory=dict)
    default_escalation: timedelta = DEFAULT_ESCALATION_INTERVAL

    def lookup(self, route: str, urgency: str) -> tuple[str, SlaPolicy, timedelta]:
        """(policy id, policy, escalation interval) for a route and urgency."""
        key, policy = self.policies.lookup(route, urgency)
        if key == "default":
            origin = self.source if self.default_from_file else "default"
            return f"{origin}:default", policy, self.escalation.get(("", ""), self.default_escalation)
        slot = tuple(key.split("/", 1))
        origin = self.source if slot in self.from_file else "default"
        return f"{origin}:{key}", policy, self.escalation.get(slot, self.default_escalation)  # type: ignore[arg-type]


DEFAULT_SLA = SlaConfig(policies=DEFAULT_POLICIES)


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


def _parse_route(route: Any, urgencies: Any, line_of: LineOf, problems: Problems, *,
                 routes: dict[str, dict[str, SlaPolicy]], from_file: set[tuple[str, str]],
                 escalation: dict[tuple[str, str], timedelta]) -> None:
    """One entry of sla.routes: its urgencies' policies into routes, from_file and escalation; faults into problems."""
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
        if policy is not None:
            routes.setdefault(route, {})[urgency] = policy
            from_file.add((route, urgency))
        if interval is not None:
            escalation[(route, urgency)] = interval


def parse_sla(section: dict[str, Any], *, source: str, line_of: LineOf = lambda *_: None) -> SlaConfig:
    """Validate the sla section and merge it over the built-in policies; raise SlaConfigError with lines."""
    problems: Problems = []
    if not isinstance(section, dict):
        raise SlaConfigError([(line_of("sla"), "sla: expected a mapping")])
    for key in section:
        if key not in SECTION_KEYS:
            problems.append((line_of("sla", key), f"sla: unknown key {key!r}; expected {', '.join(SECTION_KEYS)}"))
    default_escalation = DEFAULT_ESCALATION_INTERVAL
    if "escalation_interval" in section:
        default_escalation = _interval(section["escalation_interval"], ("escalation_interval",), line_of,
                                       problems) or DEFAULT_ESCALATION_INTERVAL
    routes: dict[str, dict[str, SlaPolicy]] = {r: dict(u) for r, u in DEFAULT_POLICIES.routes.items()}
    from_file: set[tuple[str, str]] = set()
    escalation: dict[tuple[str, str], timedelta] = {}
    raw_routes = section.get("routes") or {}
    if not isinstance(raw_routes, dict):
        problems.append((line_of("sla", "routes"), "sla.routes: expected a mapping of route to urgencies"))
        raw_routes = {}
    for route, urgencies in raw_routes.items():
        _parse_route(route, urgencies, line_of, problems, routes=routes, from_file=from_file, escalation=escalation)
    default = DEFAULT_POLICIES.default
    if "default" in section:
        policy, interval = _entry(section["default"], ("default",), line_of, problems)
        default = policy or default
        if interval is not None:
            escalation[("", "")] = interval
    if problems:
        raise SlaConfigError(problems)
    return SlaConfig(
        policies=SlaPolicies(routes=routes, default=default), source=source, from_file=frozenset(from_file),
        default_from_file="default" in section, escalation=escalation, default_escalation=default_escalation,
    )


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
