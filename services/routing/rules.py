"""Routing rules from the municipality file: parse, validate with line numbers, evaluate.

A rule is `when` (matchers, all must hold; a list means "any of"; values are glob patterns
with `*`, `?` and `[...]`) plus a `target` body, an optional `handoff` chain used when a body
rejects the signal, and optional `inform` bodies. The first rule whose conditions hold and
whose target exists for the signal wins; `default` is required and catches the rest.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.events import Route
from shared.municipality import Body, ConfigError, Municipality
from shared.taxonomy import CATEGORIES, DERIVED_FLAGS, FLAGS, PARTNER_KINDS

SCHOOL_ZAT = "school_zat"
SCHOOL_AF = "school_aandachtsfunctionaris"
POSTCODE_WIJKTEAM = "postcode_wijkteam"
SYMBOLIC_TARGETS = {SCHOOL_ZAT: Route.ZAT, SCHOOL_AF: Route.MELDCODE, POSTCODE_WIJKTEAM: Route.WIJKTEAM}
HANDOFF_EXHAUSTED = "handoff-coordinator"
DEFAULT_WINDOW_DAYS = 730

ALL_FLAGS = tuple(sorted(FLAGS | DERIVED_FLAGS))
URGENCIES = ("U0", "U1", "U2", "U3")
POSTCODES = tuple(f"{n:04d}" for n in range(10000))


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WhenSpec(_Spec):
    """The conditions of a rule as written."""

    category: list[str] | None = None
    urgency: list[str] | None = None
    flags: list[str] | None = None
    partner_kind: list[str] | None = None
    school: list[str] | None = None
    postcode_area: list[str] | None = None
    match: bool | None = None
    match_partner_kind: list[str] | None = None

    _lists = field_validator(
        "category", "urgency", "flags", "partner_kind", "school", "postcode_area", "match_partner_kind",
        mode="before",
    )(_as_list)


class RuleSpec(_Spec):
    """One rule as written."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = Field(min_length=1, max_length=300)
    when: WhenSpec
    target: str
    handoff: list[str] = []
    inform: list[str] = []


class DefaultSpec(_Spec):
    """The rule that catches what no other rule does."""

    id: str = Field(default="default", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = Field(min_length=1, max_length=300)
    target: str
    inform: list[str] = []


class RoutingSpec(_Spec):
    """The `routing:` section as written."""

    match_window_days: int = Field(default=DEFAULT_WINDOW_DAYS, ge=1, le=3650)
    rules: list[RuleSpec] = []
    default: DefaultSpec | None = None


@dataclass(frozen=True)
class Facts:
    """What a rule can look at: codes only, never personal data."""

    category: str
    urgency: str
    partner_kind: str
    school_brin: str | None = None
    postcode_area: str | None = None
    flags: frozenset[str] = frozenset()
    match_partner_kinds: frozenset[str] = frozenset()

    @property
    def matched(self) -> bool:
        return "MATCH" in self.flags

    def value(self, dimension: str) -> str:
        """A fact as a string for the explanation."""
        raw: dict[str, str | None] = {
            "category": self.category, "urgency": self.urgency, "partner_kind": self.partner_kind,
            "school": self.school_brin, "postcode_area": self.postcode_area,
            "flags": ",".join(sorted(self.flags)), "match": "true" if self.matched else "false",
            "match_partner_kind": ",".join(sorted(self.match_partner_kinds)),
        }
        return raw[dimension] or ""


@dataclass(frozen=True)
class Rule:
    """A validated rule (the default has no conditions)."""

    id: str
    description: str
    when: WhenSpec
    target: str
    handoff: tuple[str, ...] = ()
    inform: tuple[str, ...] = ()
    is_default: bool = False

    def conditions(self) -> list[str]:
        """The dimensions this rule looks at."""
        return [name for name, value in self.when.model_dump().items() if value is not None]

    def holds(self, facts: Facts) -> bool:
        """Whether every condition holds for these facts."""
        w = self.when
        return all((
            w.category is None or matches_any(w.category, facts.category),
            w.urgency is None or matches_any(w.urgency, facts.urgency),
            w.partner_kind is None or matches_any(w.partner_kind, facts.partner_kind),
            w.school is None or (facts.school_brin is not None and matches_any(w.school, facts.school_brin)),
            w.postcode_area is None or (facts.postcode_area is not None
                                        and matches_any(w.postcode_area, facts.postcode_area)),
            w.flags is None or any(matches_any(w.flags, flag) for flag in facts.flags),
            w.match is None or w.match == facts.matched,
            w.match_partner_kind is None
            or any(matches_any(w.match_partner_kind, k) for k in facts.match_partner_kinds),
        ))


@dataclass(frozen=True)
class Decision:
    """The body a signal goes to, the rule that said so, and the facts it looked at."""

    rule_id: str
    description: str
    body: Body
    facts: dict[str, str]
    inform: tuple[Body, ...] = ()


def matches_any(patterns: Iterable[str], value: str) -> bool:
    """Whether a value matches any of the glob patterns."""
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def resolve_target(target: str, facts: Facts, municipality: Municipality) -> Body | None:
    """The body a target names for these facts; None when it does not exist for them."""
    if target == SCHOOL_ZAT:
        return municipality.zat_body(facts.school_brin) if facts.school_brin else None
    if target == SCHOOL_AF:
        return municipality.meldcode_body(facts.school_brin) if facts.school_brin else None
    if target == POSTCODE_WIJKTEAM:
        return municipality.wijkteam_body(facts.postcode_area) if facts.postcode_area else None
    return municipality.bodies.get(target)


@dataclass(frozen=True)
class RuleBook:
    """The ordered rules, the default and the match window."""

    rules: tuple[Rule, ...]
    default: Rule
    window: timedelta = timedelta(days=DEFAULT_WINDOW_DAYS)

    def rule_ids(self) -> list[str]:
        return [r.id for r in self.rules] + [self.default.id, HANDOFF_EXHAUSTED]

    def decide(self, facts: Facts, municipality: Municipality, *, tried: Sequence[str] = ()) -> Decision:
        """First rule that holds and whose target exists; on a hand-off, the first untried body."""
        excluded = set(tried)
        for rule in self.rules:
            if not rule.holds(facts):
                continue
            chain = (rule.target, *rule.handoff) if excluded else (rule.target,)
            for target in chain:
                body = resolve_target(target, facts, municipality)
                if body is not None and body.id not in excluded:
                    return self._decision(rule, body, target, facts, municipality)
        body = resolve_target(self.default.target, facts, municipality)
        if body is not None and body.id not in excluded:
            return self._decision(self.default, body, self.default.target, facts, municipality)
        coordinator = municipality.bodies["coordinator"]
        exhausted = Rule(HANDOFF_EXHAUSTED, "Geen ander orgaan meer over; de coördinator neemt het over",
                         WhenSpec(), "coordinator", is_default=True)
        return self._decision(exhausted, coordinator, "coordinator", facts, municipality)

    def _decision(self, rule: Rule, body: Body, target: str, facts: Facts, municipality: Municipality) -> Decision:
        seen = rule.conditions() or ["category", "urgency"]
        if target in (SCHOOL_ZAT, SCHOOL_AF):
            seen.append("school")
        if target == POSTCODE_WIJKTEAM:
            seen.append("postcode_area")
        explained = {("school_brin" if d == "school" else d): facts.value(d) for d in dict.fromkeys(seen)}
        inform = [resolve_target(t, facts, municipality) for t in rule.inform]
        inform += urgent_informs(facts, municipality)
        unique: dict[str, Body] = {b.id: b for b in inform if b is not None and b.id != body.id}
        return Decision(rule.id, rule.description, body, explained, tuple(unique.values()))


def urgent_informs(facts: Facts, municipality: Municipality) -> list[Body | None]:
    """ACUUT, U0 and HGKM reach the coordinator (HGKM also the aandachtsfunctionaris) whatever the rules say."""
    bodies: list[Body | None] = []
    if facts.category in ("ACUUT", "HGKM") or facts.urgency == "U0":
        bodies.append(municipality.bodies["coordinator"])
    if facts.category == "HGKM":
        bodies.append(resolve_target(SCHOOL_AF, facts, municipality))
    return bodies


# ---------------------------------------------------------------- parsing and validation

Problem = tuple[int | None, str]
Path_ = tuple[str | int, ...]


def builtin_section() -> dict[str, Any]:
    """The taxonomy's default routes as a routing section (used when a file has none)."""
    by_route: dict[Route, list[str]] = {}
    for cat in CATEGORIES.values():
        by_route.setdefault(cat.route, []).append(cat.code)
    targets = {Route.ZAT: SCHOOL_ZAT, Route.WIJKTEAM: POSTCODE_WIJKTEAM, Route.OOV: "oov",
               Route.MELDCODE: SCHOOL_AF, Route.COORDINATOR: "coordinator"}
    rules = [{"id": f"default-{route.value}", "description": f"Standaardroute naar {route.value}",
              "when": {"category": codes}, "target": targets[route]} for route, codes in by_route.items()]
    return {"rules": rules, "default": {"id": "fallback-coordinator", "target": "coordinator",
                                        "description": "Niets anders past; de coördinator triageert"}}


def parse_rulebook(municipality: Municipality) -> RuleBook:
    """The rule book of a validated municipality (built-in defaults when it has no routing section)."""
    section = municipality.raw.routing or builtin_section()
    book, problems = _parse(section, municipality, lines=municipality.lines if municipality.raw.routing else {})
    if problems or book is None:
        raise ConfigError(str(municipality.source or "<memory>"), problems)
    return book


def validate_section(municipality: Municipality) -> list[Problem]:
    """Every problem of the routing section, each with its line (empty when valid or absent)."""
    if not municipality.raw.routing:
        return []
    return _parse(municipality.raw.routing, municipality, lines=municipality.lines)[1]


def _parse(section: dict[str, Any], municipality: Municipality, *, lines: dict[Path_, int]) -> tuple[
        RuleBook | None, list[Problem]]:
    def line(*path: str | int) -> int | None:
        loc: Path_ = ("routing", *path)
        for end in range(len(loc), 0, -1):
            if loc[:end] in lines:
                return lines[loc[:end]]
        return None

    try:
        spec = RoutingSpec.model_validate(section)
    except ValidationError as exc:
        return None, [(line(*err["loc"]), f"routing.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}")
                      for err in exc.errors()]
    problems: list[Problem] = []
    if spec.default is None:
        problems.append((line(), "routing has no default rule: add `default:` with a target (e.g. coordinator)"))
    problems += _check_rules(spec, municipality, line)
    problems += _check_default(spec, municipality, line)
    if problems:
        return None, problems
    assert spec.default is not None
    rules = tuple(Rule(r.id, r.description, r.when, r.target, tuple(r.handoff), tuple(r.inform)) for r in spec.rules)
    problems += _never_hold(rules, municipality, lambda i: line("rules", i))
    if problems:
        return None, problems
    default = Rule(spec.default.id, spec.default.description, WhenSpec(), spec.default.target,
                   inform=tuple(spec.default.inform), is_default=True)
    return RuleBook(rules, default, timedelta(days=spec.match_window_days)), []


def _check_rules(spec: RoutingSpec, municipality: Municipality, line: Callable[..., int | None]) -> list[Problem]:
    """Problems of the rules: duplicate ids, empty conditions, unknown patterns and bodies."""
    problems: list[Problem] = []
    seen_ids: dict[str, int] = {}
    for i, rule in enumerate(spec.rules):
        if rule.id in seen_ids:
            problems.append((line("rules", i, "id"), f"rule id {rule.id!r} appears twice"))
        seen_ids[rule.id] = i
        if not rule.when.model_dump(exclude_none=True):
            problems.append((line("rules", i, "when"), f"rule {rule.id!r} has no conditions; write it as `default:`"))
        problems += _check_patterns(rule.when, municipality, lambda *p, i=i: line("rules", i, "when", *p))
        for key, targets in (("target", [rule.target]), ("handoff", rule.handoff), ("inform", rule.inform)):
            for j, target in enumerate(targets):
                if not _target_known(target, municipality):
                    where = line("rules", i, key) if key == "target" else line("rules", i, key, j)
                    problems.append((where, f"rule {rule.id!r}: unknown body {target!r}"))
    return problems


def _check_default(spec: RoutingSpec, municipality: Municipality, line: Callable[..., int | None]) -> list[Problem]:
    """Problems of the default rule: it needs fixed, known bodies."""
    problems: list[Problem] = []
    if spec.default is None:
        return problems
    for key, targets in (("target", [spec.default.target]), ("inform", spec.default.inform)):
        for j, target in enumerate(targets):
            if target in SYMBOLIC_TARGETS:
                problems.append((line("default", key), f"the default needs a fixed body, not {target!r}"))
            elif target not in municipality.bodies:
                where = line("default", key) if key == "target" else line("default", key, j)
                problems.append((where, f"default: unknown body {target!r}"))
    return problems


def _target_known(target: str, municipality: Municipality) -> bool:
    return target in SYMBOLIC_TARGETS or target in municipality.bodies


_GLOB_OK = re.compile(r"^(?:[^\[\]]|\[!?[^\[\]]+\])+$")


def _check_patterns(when: WhenSpec, municipality: Municipality, line: Any) -> list[Problem]:
    domains: dict[str, tuple[str, ...]] = {
        "category": tuple(CATEGORIES), "urgency": URGENCIES, "flags": ALL_FLAGS,
        "partner_kind": PARTNER_KINDS, "match_partner_kind": PARTNER_KINDS,
        "school": tuple(municipality.schools), "postcode_area": POSTCODES,
    }
    problems: list[Problem] = []
    for dimension, domain in domains.items():
        for j, pattern in enumerate(getattr(when, dimension) or []):
            where = line(dimension, j)
            if not pattern or not _GLOB_OK.match(pattern):
                problems.append((where, f"bad pattern {pattern!r} for {dimension}"))
            elif dimension == "school" and not any(c in pattern for c in "*?[") and pattern not in domain:
                problems.append((where, f"unknown school {pattern!r}"))
            elif not any(fnmatch.fnmatchcase(v, pattern) for v in domain):
                problems.append((where, f"bad pattern {pattern!r}: matches no known {dimension} value"))
    return problems


def _never_hold(rules: Sequence[Rule], municipality: Municipality, line: Any) -> list[Problem]:
    """Rules whose conditions (with their target) can never all hold: refused."""
    from services.routing.reachability import is_empty, region

    return [(line(j), f"rule {rule.id!r} is unreachable: its conditions can never all hold")
            for j, rule in enumerate(rules) if is_empty(region(rule, municipality))]


def shadow_warnings(book: RuleBook, municipality: Municipality) -> list[Problem]:
    """Warnings, each with its line: rules an earlier rule catches completely (they are kept, never refused)."""
    from services.routing.reachability import shadows

    if not municipality.raw.routing:
        return []

    def line(i: int) -> int | None:
        return municipality.line_of("routing", "rules", i)

    warnings: list[Problem] = []
    for s in shadows(book.rules, municipality):
        rule, by = book.rules[s.index], book.rules[s.by]
        if s.dead:
            text = (f"rule {rule.id!r} has no effect: rule {by.id!r} (line {line(s.by) or '?'}) catches every "
                    "signal it would, also after a rejection")
        else:
            text = (f"rule {rule.id!r} never decides a first routing: rule {by.id!r} (line {line(s.by) or '?'}) "
                    "catches every signal it would; it can only decide after a rejection")
        warnings.append((line(s.index), text))
    return warnings
