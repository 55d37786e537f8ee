"""Compiled rule conditions (rule_model.Patterns, CompiledWhen) say what fnmatch and the written rule say."""

from __future__ import annotations

import itertools

from services.routing.rule_model import ALL_FLAGS, Facts, Patterns, Rule, WhenSpec, matches_any

PATTERNS = ["THUIS", "TH*", "*S", "?HUIS", "[TP]*", "[!T]*", "3511", "35[0-4]?", "35*", "", "*", "U[01]",
            "a.b", "a+b", "(x)", "[", "\\d"]
VALUES = ["THUIS", "PEST", "HUIS", "TH", "3511", "3541", "3581", "35", "", "U0", "U2", "a.b", "axb", "a+b",
          "aab", "(x)", "x", "[", "d", "\\d"]


def test_a_list_of_patterns_matches_what_fnmatch_matches() -> None:
    for size in (0, 1, 2, 3):
        for chosen in itertools.combinations(PATTERNS, size):
            compiled = Patterns.of(chosen)
            for value in VALUES:
                assert compiled.matches(value) == matches_any(chosen, value), (chosen, value)


def _facts(**overrides: object) -> Facts:
    base: dict[str, object] = dict(category="THUIS", urgency="U2", partner_kind="police", school_brin=None,
                                   postcode_area="3511", flags=frozenset({"WAPEN"}),
                                   match_partner_kinds=frozenset())
    return Facts(**{**base, **overrides})  # type: ignore[arg-type]


def _written_rule_holds(when: WhenSpec, facts: Facts) -> bool:
    """The rule as written, evaluated the plain way: every condition, with fnmatch."""
    return all((
        when.category is None or matches_any(when.category, facts.category),
        when.urgency is None or matches_any(when.urgency, facts.urgency),
        when.partner_kind is None or matches_any(when.partner_kind, facts.partner_kind),
        when.school is None or (facts.school_brin is not None and matches_any(when.school, facts.school_brin)),
        when.postcode_area is None or (facts.postcode_area is not None
                                       and matches_any(when.postcode_area, facts.postcode_area)),
        when.flags is None or any(matches_any(when.flags, f) for f in facts.flags),
        when.match is None or when.match == facts.matched,
        when.match_partner_kind is None or any(matches_any(when.match_partner_kind, k)
                                               for k in facts.match_partner_kinds),
    ))


def test_a_rule_holds_exactly_when_every_written_condition_holds() -> None:
    whens = [WhenSpec(), WhenSpec(category=["THUIS"]), WhenSpec(category=["TH*"], partner_kind=["police"]),
             WhenSpec(category=["PEST"]), WhenSpec(school=["12AB"]), WhenSpec(school=["*"]),
             WhenSpec(postcode_area=["35[0-4]?"]), WhenSpec(postcode_area=["358*"]), WhenSpec(flags=["WAP*"]),
             WhenSpec(flags=["MATCH"]), WhenSpec(match=True), WhenSpec(match=False),
             WhenSpec(match_partner_kind=["school"]), WhenSpec(urgency=["U[01]"], category=["*"]),
             WhenSpec(flags=list(ALL_FLAGS)[:3], urgency=["U2"])]
    facts = [_facts(), _facts(school_brin="12AB"), _facts(postcode_area=None), _facts(postcode_area="3581"),
             _facts(flags=frozenset()), _facts(flags=frozenset({"MATCH", "WAPEN"}),
                                                match_partner_kinds=frozenset({"school", "police"})),
             _facts(category="PEST", urgency="U0", partner_kind="school", school_brin="34CD")]
    for when, fact in itertools.product(whens, facts):
        rule = Rule("r", "regel", when, "oov")
        assert rule.holds(fact) == _written_rule_holds(when, fact), (when, fact)
