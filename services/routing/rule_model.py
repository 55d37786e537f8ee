"""The routing rules' model: the spec of the municipality file's `routing:` section, facts, rules, decisions.

Pure data and matching; parsing and validation live in services.routing.rules, the reachability analysis in
services.routing.reachability (both build on this module).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
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
