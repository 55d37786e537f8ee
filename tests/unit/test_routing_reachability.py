"""Rules an earlier rule catches completely, and bodies no rule reaches: reported only when provably so.

Every case is also routed by brute force over a grid of signals and rejections: a rule reported as without
effect never decides, one reported as "only after a rejection" never decides a first routing.
"""

from __future__ import annotations

import itertools

import pytest

from schakel.config_warnings import unrouted_bodies
from services.routing.reachability import shadows
from services.routing.rules import Facts, RuleBook, parse_rulebook
from shared.municipality import Municipality, build_municipality, load_municipality, parse_yaml_with_lines
from shared.settings import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
BASE = EXAMPLE.read_text(encoding="utf-8").split("\nrouting:")[0]
DEFAULT = "  default: {target: coordinator, description: triage}\n"
GRID = {
    "category": ("KLAS", "EMO", "THUIS", "GROEP"), "urgency": ("U1", "U2"), "partner_kind": ("school", "police"),
    "school_brin": ("12AB", "34CD", "19ZZ", None), "postcode_area": ("3511", "3581", "9999", None),
    "flags": (frozenset(), frozenset({"GROUP_LINK"}), frozenset({"MATCH"})),
}
TRIED = ((), ("oov",), ("coordinator",), ("oov", "coordinator"), ("zat-12ab",), ("zat-12ab", "oov"),
         ("wijkteam-centrum",), ("wijkteam-centrum", "zat-12ab", "oov"))


def book_of(rules: str) -> tuple[RuleBook, Municipality]:
    """The example's parties with these rules, each given a description."""
    rules = rules.replace("{id: ", "{description: x, id: ")
    data, lines = parse_yaml_with_lines(BASE + "\nrouting:\n  rules:\n" + rules + DEFAULT, "t.yaml")
    municipality = build_municipality(data, lines=lines, source="t.yaml")
    return parse_rulebook(municipality), municipality


def deciding(book: RuleBook, municipality: Municipality) -> tuple[set[str], set[str]]:
    """(rules that decide some first routing, rules that decide some routing after rejections), by brute force."""
    first: set[str] = set()
    later: set[str] = set()
    for values in itertools.product(*GRID.values()):
        facts = Facts(**dict(zip(GRID, values, strict=True)),
                      match_partner_kinds=frozenset({"police"}) if "MATCH" in values[-1] else frozenset())
        first.add(book.decide(facts, municipality).rule_id)
        later |= {book.decide(facts, municipality, tried=tried).rule_id for tried in TRIED[1:]}
    return first, later


CASES = {
    "subset, same body": (
        """    - {id: a, when: {category: [KLAS, EMO]}, target: oov}
    - {id: b, when: {category: KLAS, flags: GROUP_LINK}, target: oov}
""", {"b": True}),
    "subset, a body the earlier rule does not offer": (
        """    - {id: a, when: {category: [KLAS, EMO]}, target: oov}
    - {id: b, when: {category: KLAS}, target: coordinator}
""", {"b": False}),
    "hand-offs of the later rule among the earlier's": (
        """    - {id: a, when: {category: KLAS}, target: school_zat, handoff: [oov]}
    - {id: b, when: {category: KLAS, school: 12AB}, target: oov}
""", {"b": True}),
    "earlier rule narrower": (
        """    - {id: a, when: {category: KLAS, flags: GROUP_LINK}, target: oov}
    - {id: b, when: {category: KLAS}, target: oov}
""", {}),
    "symbolic target leaves signals without a school": (
        """    - {id: a, when: {category: KLAS}, target: school_zat}
    - {id: b, when: {category: KLAS}, target: school_zat}
    - {id: c, when: {category: KLAS}, target: oov}
""", {"b": True}),
    "a school glob may match a BRIN the file does not know": (
        """    - {id: a, when: {category: KLAS, school: 12AB}, target: oov}
    - {id: b, when: {category: KLAS, school: "1*"}, target: oov}
""", {}),
    "any school covers a glob": (
        """    - {id: a, when: {category: KLAS}, target: oov}
    - {id: b, when: {category: KLAS, school: "1*"}, target: oov}
""", {"b": True}),
    "unserved postcodes pass a wijkteam rule on": (
        """    - {id: a, when: {category: THUIS}, target: postcode_wijkteam}
    - {id: b, when: {category: THUIS, postcode_area: "35*"}, target: oov}
    - {id: c, when: {category: THUIS, postcode_area: "3511"}, target: oov}
""", {"c": True}),
    "match and flags": (
        """    - {id: a, when: {match: true}, target: oov}
    - {id: b, when: {flags: MATCH, category: GROEP}, target: oov}
    - {id: c, when: {match: false, category: GROEP}, target: oov}
""", {"b": True}),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_rule_is_reported_exactly_when_an_earlier_one_catches_it_and_never_falsely(case: str) -> None:
    rules, expected = CASES[case]
    book, municipality = book_of(rules)
    found = {book.rules[s.index].id: s.dead for s in shadows(book.rules, municipality)}
    assert found == expected
    first, later = deciding(book, municipality)
    for rule_id, dead in found.items():
        assert rule_id not in first, f"{rule_id} decided a first routing"
        if dead:
            assert rule_id not in later, f"{rule_id} decided after a rejection"


def test_the_example_rules_all_decide_something() -> None:
    municipality = load_municipality(EXAMPLE)
    book = parse_rulebook(municipality)
    assert shadows(book.rules, municipality) == []
    assert unrouted_bodies(book, municipality) == []


def test_a_body_no_rule_reaches_is_a_warning_on_its_line_and_informed_bodies_are_reached() -> None:
    book, municipality = book_of(
        """    - {id: a, when: {category: KLAS, school: 12AB}, target: school_zat}
    - {id: b, when: {category: THUIS}, target: oov, inform: [wijkteam-oost]}
""")
    text = BASE.splitlines()
    warnings = unrouted_bodies(book, municipality)
    assert [message.split(" (")[0] for _, message in warnings] == ["body 'zat-34cd'", "body 'wijkteam-centrum'"]
    assert "brin: 34CD" in text[warnings[0][0] - 1]  # type: ignore[operator]
    assert "id: centrum" in text[warnings[1][0] - 1]  # type: ignore[operator]


def test_bodies_only_a_rule_without_effect_reaches_are_reported() -> None:
    book, municipality = book_of(
        """    - {id: a, when: {category: "*"}, target: school_zat, handoff: [postcode_wijkteam]}
    - {id: b, when: {category: KLAS, school: 12AB}, target: postcode_wijkteam}
""")
    assert [m.split(" (")[0] for _, m in unrouted_bodies(book, municipality)] == ["body 'oov'"]
