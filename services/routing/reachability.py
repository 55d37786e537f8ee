"""Which signals a routing rule can catch, and what follows: unreachable rules, bodies no rule reaches.

A rule is the product of the value sets it accepts per dimension (postcodes enumerated over all 10,000
areas, flag and match-kind sets over their subsets, schools as the file's BRINs plus "another BRIN";
a symbolic target narrows school or postcode to where it resolves). Every statement made here is sound:
a rule is reported only when it provably never decides, so a warning is never false (a cover by the
union of several earlier rules is not detected). Rule B never decides when one earlier rule A catches
every signal B would with A's own target (A wins the first routing) and B's target and hand-offs are
among A's target and hand-offs (after a rejection A offers every body B would, so B has none left).
When only the first holds, B decides only after a rejection; that is reported as such.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from services.routing.rule_model import (
    ALL_FLAGS,
    POSTCODE_WIJKTEAM,
    POSTCODES,
    SCHOOL_AF,
    SCHOOL_ZAT,
    URGENCIES,
    Patterns,
    Rule,
)
from shared.municipality import Municipality
from shared.taxonomy import CATEGORIES, PARTNER_KINDS

Problem = tuple[int | None, str]

Region = dict[str, frozenset[Any]]
NONE = "<none>"
OTHER = "<other>"  # any BRIN the file does not know (intake accepts every well-formed BRIN)


@dataclass(frozen=True)
class Shadow:
    """Rule `index` is caught by the earlier rule `by`; `dead` when it never decides, also after rejections."""

    index: int
    by: int
    dead: bool


@cache
def _subsets(values: tuple[str, ...]) -> tuple[frozenset[str], ...]:
    return tuple(frozenset(c) for n in range(len(values) + 1) for c in itertools.combinations(values, n))


def region(rule: Rule, municipality: Municipality, *, narrow: bool = True) -> Region:
    """The signals a rule catches, one value set per dimension; `narrow`: only where its target resolves."""
    w = rule.compiled

    def pick(patterns: Patterns | None, domain: Iterable[str]) -> frozenset[Any]:
        return frozenset(v for v in domain if patterns is None or (v not in (NONE, OTHER) and patterns.matches(v)))

    schools = pick(w.school, (*municipality.schools, OTHER, NONE))
    if w.school is not None and w.school.globs is not None:
        schools |= {(OTHER, rule.id)}  # a glob may match BRINs the file does not know: only "any BRIN" covers it
    result: Region = {
        "category": pick(w.category, CATEGORIES), "urgency": pick(w.urgency, URGENCIES),
        "partner_kind": pick(w.partner_kind, PARTNER_KINDS), "school": schools,
        "postcode_area": pick(w.postcode_area, (*POSTCODES, NONE)),
        "flags": frozenset(s for s in _subsets(ALL_FLAGS)
                           if (w.flags is None or w.flags.matches_one_of(s))
                           and (w.match is None or w.match == ("MATCH" in s))),
        "match_partner_kind": frozenset(
            s for s in _subsets(PARTNER_KINDS)
            if w.match_partner_kind is None or w.match_partner_kind.matches_one_of(s)
        ),
    }
    if narrow and rule.target in (SCHOOL_ZAT, SCHOOL_AF):
        result["school"] = result["school"] & frozenset(municipality.schools)
    elif narrow and rule.target == POSTCODE_WIJKTEAM:
        result["postcode_area"] = result["postcode_area"] & frozenset(municipality.body_by_postcode)
    return result


def covers(earlier: Region, later: Region) -> bool:
    """Whether every signal of `later` is in `earlier`."""
    for dimension, values in later.items():
        rest = values - earlier[dimension]
        if dimension == "school" and OTHER in earlier[dimension]:
            rest = frozenset(v for v in rest if not isinstance(v, tuple))
        if rest:
            return False
    return True


def is_empty(area: Region) -> bool:
    """Whether no signal can be in the region."""
    return any(not values for values in area.values())


def shadows(rules: Sequence[Rule], municipality: Municipality) -> list[Shadow]:
    """Rules an earlier rule catches completely: dead ones by their first dead cover, others by their first cover."""
    regions = [region(rule, municipality) for rule in rules]
    found: list[Shadow] = []
    for j, rule in enumerate(rules):
        if is_empty(regions[j]):
            continue
        chain = {rule.target, *rule.handoff}
        covering = [i for i in range(j) if covers(regions[i], regions[j])]
        dead = [i for i in covering if chain <= {rules[i].target, *rules[i].handoff}]
        if dead:
            found.append(Shadow(j, dead[0], dead=True))
        elif covering:
            found.append(Shadow(j, covering[0], dead=False))
    return found


def reachable_bodies(rules: Sequence[Rule], default: Rule, municipality: Municipality) -> set[str]:
    """Every body a rule, the default or the urgent paths may assign or inform (an over-estimate, never less)."""
    dead = {s.index for s in shadows(rules, municipality) if s.dead}
    bodies = {"coordinator"}  # the default of last resort, and every ACUUT, U0 and HGKM signal
    bodies |= {f"meldcode-{b.lower()}" for b in municipality.schools}  # HGKM informs the aandachtsfunctionaris
    for j, rule in enumerate((*rules, default)):
        if j in dead:
            continue
        area = region(rule, municipality, narrow=False)
        schools = [s for s in area["school"] if s in municipality.schools]
        for target in (rule.target, *rule.handoff, *rule.inform):
            if target == SCHOOL_ZAT:
                bodies |= {f"zat-{s.lower()}" for s in schools}
            elif target == SCHOOL_AF:
                bodies |= {f"meldcode-{s.lower()}" for s in schools}
            elif target == POSTCODE_WIJKTEAM:
                bodies |= {municipality.body_by_postcode[p] for p in area["postcode_area"]
                           if p in municipality.body_by_postcode}
            else:
                bodies.add(target)
    return bodies


def shadow_warnings(rules: Sequence[Rule], municipality: Municipality) -> list[Problem]:
    """Warnings, each with its line: rules an earlier rule catches completely (they are kept, never refused)."""
    if not municipality.raw.routing:
        return []

    def line(i: int) -> int | None:
        return municipality.line_of("routing", "rules", i)

    warnings: list[Problem] = []
    for s in shadows(rules, municipality):
        rule, by = rules[s.index], rules[s.by]
        if s.dead:
            text = (f"rule {rule.id!r} has no effect: rule {by.id!r} (line {line(s.by) or '?'}) catches every "
                    "signal it would, also after a rejection")
        else:
            text = (f"rule {rule.id!r} never decides a first routing: rule {by.id!r} (line {line(s.by) or '?'}) "
                    "catches every signal it would; it can only decide after a rejection")
        warnings.append((line(s.index), text))
    return warnings
