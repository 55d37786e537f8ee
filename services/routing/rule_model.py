"""The routing rules' model: the spec of the municipality file's `routing:` section, facts, rules, decisions.

Pure data and matching; parsing and validation live in services.routing.rules, the reachability analysis in
services.routing.reachability (both build on this module).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.events import Route
from shared.municipality import Body
from shared.taxonomy import DERIVED_FLAGS, FLAGS

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
        return _FACT_VALUES[dimension](self) or ""


_FACT_VALUES: dict[str, Callable[[Facts], str | None]] = {
    "category": lambda f: f.category, "urgency": lambda f: f.urgency, "partner_kind": lambda f: f.partner_kind,
    "school": lambda f: f.school_brin, "postcode_area": lambda f: f.postcode_area,
    "flags": lambda f: ",".join(sorted(f.flags)), "match": lambda f: "true" if f.matched else "false",
    "match_partner_kind": lambda f: ",".join(sorted(f.match_partner_kinds)),
}


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
        return list(self._conditions)

    @cached_property
    def _conditions(self) -> tuple[str, ...]:
        return tuple(name for name, value in self.when.model_dump().items() if value is not None)

    @cached_property
    def compiled(self) -> CompiledWhen:
        """The conditions ready to evaluate (compiled on first use)."""
        return CompiledWhen.of(self.when)

    def holds(self, facts: Facts) -> bool:
        """Whether every condition holds for these facts (the first that fails decides)."""
        return self.compiled.holds(facts)


@dataclass(frozen=True)
class Patterns:
    """A list of glob patterns, compiled once: the plain values as a set, the globs as one expression."""

    plain: frozenset[str]
    globs: re.Pattern[str] | None

    @classmethod
    def of(cls, patterns: Iterable[str]) -> Patterns:
        plain, globs = set(), []
        for pattern in patterns:
            if is_glob(pattern):
                globs.append(pattern)
            else:
                plain.add(pattern)
        compiled = re.compile("|".join(fnmatch.translate(g) for g in globs)) if globs else None
        return cls(frozenset(plain), compiled)

    def matches(self, value: str) -> bool:
        """Whether the value matches any of the patterns (as fnmatch.fnmatchcase matches one)."""
        return value in self.plain or (self.globs is not None and self.globs.match(value) is not None)

    def matches_one_of(self, values: Iterable[str]) -> bool:
        """Whether any of the values matches."""
        return any(self.matches(v) for v in values)


def _patterns(values: list[str] | None) -> Patterns | None:
    return None if values is None else Patterns.of(values)


@dataclass(frozen=True)
class CompiledWhen:
    """A rule's conditions, ready to evaluate; None is a dimension the rule does not look at."""

    category: Patterns | None
    urgency: Patterns | None
    partner_kind: Patterns | None
    school: Patterns | None
    postcode_area: Patterns | None
    flags: Patterns | None
    match: bool | None
    match_partner_kind: Patterns | None

    @classmethod
    def of(cls, when: WhenSpec) -> CompiledWhen:
        return cls(_patterns(when.category), _patterns(when.urgency), _patterns(when.partner_kind),
                   _patterns(when.school), _patterns(when.postcode_area), _patterns(when.flags), when.match,
                   _patterns(when.match_partner_kind))

    def holds(self, facts: Facts) -> bool:
        """Every condition holds (evaluated in order, the first that fails decides); a school or postcode
        condition never holds for a signal without one."""
        return ((self.category is None or self.category.matches(facts.category))
                and (self.urgency is None or self.urgency.matches(facts.urgency))
                and (self.partner_kind is None or self.partner_kind.matches(facts.partner_kind))
                and (self.school is None or (facts.school_brin is not None
                                             and self.school.matches(facts.school_brin)))
                and (self.postcode_area is None or (facts.postcode_area is not None
                                                    and self.postcode_area.matches(facts.postcode_area)))
                and (self.flags is None or self.flags.matches_one_of(facts.flags))
                and (self.match is None or self.match == facts.matched)
                and (self.match_partner_kind is None
                     or self.match_partner_kind.matches_one_of(facts.match_partner_kinds)))


@dataclass(frozen=True)
class Decision:
    """The body a signal goes to, the rule that said so, and the facts it looked at."""

    rule_id: str
    description: str
    body: Body
    facts: dict[str, str]
    inform: tuple[Body, ...] = ()


def is_glob(pattern: str) -> bool:
    """Whether a pattern has a wildcard or a character class (fnmatch's special characters)."""
    return any(c in pattern for c in "*?[")
