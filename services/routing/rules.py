"""Routing rules from the municipality file: parse, validate with line numbers, evaluate.

A rule is `when` (matchers, all must hold; a list means "any of"; values are glob patterns
with `*`, `?` and `[...]`) plus a `target` body, an optional `handoff` chain used when a body
rejects the signal, and optional `inform` bodies. The first rule whose conditions hold and
whose target exists for the signal wins; `default` is required and catches the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from services.routing.rule_model import (  # noqa: F401 - the model is also reachable from here
    ALL_FLAGS,
    DEFAULT_WINDOW_DAYS,
    HANDOFF_EXHAUSTED,
    POSTCODE_WIJKTEAM,
    POSTCODES,
    SCHOOL_AF,
    SCHOOL_ZAT,
    SYMBOLIC_TARGETS,
    URGENCIES,
    Decision,
    DefaultSpec,
    Facts,
    Patterns,
    RoutingSpec,
    Rule,
    RuleSpec,
    WhenSpec,
    is_glob,
)
from shared.events import Route
from shared.municipality import Body, ConfigError, Municipality
from shared.taxonomy import CATEGORIES, PARTNER_KINDS


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
            elif dimension == "school" and not is_glob(pattern) and pattern not in domain:
                problems.append((where, f"unknown school {pattern!r}"))
            elif not Patterns.of([pattern]).matches_one_of(domain):
                problems.append((where, f"bad pattern {pattern!r}: matches no known {dimension} value"))
    return problems


def _never_hold(rules: Sequence[Rule], municipality: Municipality, line: Any) -> list[Problem]:
    """Rules whose conditions (with their target) can never all hold: refused."""
    from services.routing.reachability import is_empty, region

    return [(line(j), f"rule {rule.id!r} is unreachable: its conditions can never all hold")
            for j, rule in enumerate(rules) if is_empty(region(rule, municipality))]
