"""Compiled rule conditions (rule_model.Patterns, CompiledWhen) say what fnmatch and the written rule say."""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Iterable

from services.routing.handlers import decide_signal, route_signal
from services.routing.matching import MatchState
from services.routing.rule_model import ALL_FLAGS, Facts, Patterns, Rule, WhenSpec
from services.routing.rules import parse_rulebook
from shared.municipality import load_municipality
from shared.settings import REPO_ROOT
from tests.factories import received_signal

PATTERNS = ["THUIS", "TH*", "*S", "?HUIS", "[TP]*", "[!T]*", "3511", "35[0-4]?", "35*", "", "*", "U[01]",
            "a.b", "a+b", "(x)", "[", "\\d"]
VALUES = ["THUIS", "PEST", "HUIS", "TH", "3511", "3541", "3581", "35", "", "U0", "U2", "a.b", "axb", "a+b",
          "aab", "(x)", "x", "[", "d", "\\d"]


def matches_any(patterns: Iterable[str], value: str) -> bool:
    """The plain reading of a pattern list: fnmatch, pattern by pattern."""
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


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
             WhenSpec(partner_kind=["school"]), WhenSpec(partner_kind=["pol*", "wijkteam"]),
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


def test_a_rules_conditions_are_a_new_list_each_time() -> None:
    rule = Rule("r", "regel", WhenSpec(category=["THUIS"], urgency=["U2"]), "oov")
    rule.conditions().append("school")  # the explanation appends to it
    assert rule.conditions() == ["category", "urgency"]


def test_deciding_a_signal_gives_the_body_and_rule_its_assignment_names() -> None:
    municipality = load_municipality(REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml")
    book = parse_rulebook(municipality)
    signals = [received_signal(1, namespace="decide", partner="obs-de-linde", kind="school", category="PEST",
                               school="12AB"),
               received_signal(2, namespace="decide", partner="politie-basisteam", kind="police", category="THUIS",
                               postcode="3511"),
               received_signal(3, namespace="decide", partner="gemeente", kind="municipality", category="ACUUT")]
    for signal in signals:
        for match in (MatchState(duplicate=False), MatchState(duplicate=False, new_partner_match=True,
                                                              partner_kinds=frozenset({"school", "police"}))):
            _, decision = decide_signal(signal, book=book, municipality=municipality, match=match)
            assigned = route_signal(signal, book=book, municipality=municipality, match=match,
                                    now=signal.received_at)
            assert (decision.body.id, decision.rule_id, decision.description) == (
                assigned.body_id, assigned.rule_id, assigned.rule_description)
