"""Routing rules: the golden table, validation with lines, evaluation details, safe reloads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from schakel.cli import main
from services.routing.config import RoutingConfig
from services.routing.metrics import RoutingMetrics
from services.routing.reachability import shadow_warnings
from services.routing.rules import Facts, parse_rulebook
from shared.municipality import ConfigError, build_municipality, load_municipality, parse_yaml_with_lines
from shared.settings import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
GOLDEN = REPO_ROOT / "examples" / "routing-golden.yaml"
BASE = EXAMPLE.read_text(encoding="utf-8").split("\nrouting:")[0]


def with_routing(section: str) -> str:
    return BASE + "\nrouting:\n" + section


def refused(text: str) -> list[tuple[int | None, str]]:
    data, lines = parse_yaml_with_lines(text, "test.yaml")
    with pytest.raises(ConfigError) as info:
        build_municipality(data, lines=lines, source="test.yaml")
    return info.value.problems


def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if marker in line)


GOOD_DEFAULT = """  default:
    target: coordinator
    description: De coördinator triageert
"""


def test_the_golden_table_passes_through_schakel_routes_test(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", "test", str(GOLDEN)]) == 0
    out = capsys.readouterr().out
    assert "50 of 50 as expected" in out


def test_the_golden_table_covers_every_category_urgency_flag_and_escalation() -> None:
    import yaml

    rows = yaml.safe_load(GOLDEN.read_text())["rows"]
    assert len(rows) >= 40
    from shared.taxonomy import CATEGORIES, FLAGS

    assert {r["category"] for r in rows} == set(CATEGORIES)
    urgencies = {r.get("urgency") or CATEGORIES[r["category"]].urgency.value for r in rows}
    assert urgencies == {"U0", "U1", "U2", "U3"}
    assert set(FLAGS) <= {f for r in rows for f in r.get("flags", [])}
    assert any(r.get("match") for r in rows) and any(r.get("tried") for r in rows)
    assert {r["expect"]["rule"] for r in rows} >= {
        "match-politie", "meldcode", "acuut", "spoed-u0", "coordinator-triage",
    }


def test_a_mismatch_in_a_table_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "t.csv"
    table.write_text("name,category,partner_kind,school,body\nwrong,KLAS,school,12AB,oov\n")
    assert main(["routes", "test", str(table), "--config", str(EXAMPLE)]) == 1
    assert "FAIL wrong: expected body oov, got rule zat -> zat-12ab" in capsys.readouterr().out


def test_a_single_signal_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["routes", "test", "--config", str(EXAMPLE), "--category", "HGKM", "--school", "12AB",
            "--expect", "meldcode-12ab", "--expect-inform", "coordinator"]
    assert main(argv) == 0
    assert "rule meldcode -> meldcode-12ab (informs coordinator)" in capsys.readouterr().out


def test_routes_check_accepts_the_example_and_refuses_a_broken_file(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", "check", str(EXAMPLE)]) == 0
    broken = tmp_path / "broken.yaml"
    text = with_routing("  rules: []\n")
    broken.write_text(text)
    assert main(["routes", "check", str(broken)]) == 1
    assert f"broken.yaml:{line_of(text, '  rules: []')}: routing has no default rule" in capsys.readouterr().err


def test_an_unknown_body_is_refused_with_its_line() -> None:
    text = with_routing("""  rules:
    - id: naar-nergens
      description: x
      when: {category: KLAS}
      target: zat-99zz
""" + GOOD_DEFAULT)
    assert refused(text) == [(line_of(text, "target: zat-99zz"), "rule 'naar-nergens': unknown body 'zat-99zz'")]


def test_an_unknown_body_to_inform_is_refused_with_its_line() -> None:
    text = with_routing("""  rules:
    - id: klas
      description: x
      when: {category: KLAS}
      target: school_zat
      inform:
        - oov
        - wijkteam-west
""" + GOOD_DEFAULT)
    assert refused(text) == [(line_of(text, "- wijkteam-west"), "rule 'klas': unknown body 'wijkteam-west'")]


def test_an_unknown_school_is_refused_with_its_line() -> None:
    text = with_routing("""  rules:
    - id: klas
      description: x
      when:
        category: KLAS
        school: [12AB, 99ZZ]
      target: school_zat
""" + GOOD_DEFAULT)
    assert refused(text) == [(line_of(text, "school: [12AB, 99ZZ]"), "unknown school '99ZZ'")]


@pytest.mark.parametrize(("condition", "message"), [
    ("postcode_area: '35[1'", "bad pattern '35[1' for postcode_area"),
    ("category: KLASS", "bad pattern 'KLASS': matches no known category value"),
    ("flags: [GROUP]", "bad pattern 'GROUP': matches no known flags value"),
    ("postcode_area: '3511x'", "bad pattern '3511x': matches no known postcode_area value"),
])
def test_a_bad_pattern_is_refused_with_its_line(condition: str, message: str) -> None:
    text = with_routing(f"""  rules:
    - id: klas
      description: x
      when:
        {condition}
      target: oov
""" + GOOD_DEFAULT)
    assert refused(text) == [(line_of(text, condition), message)]


def test_a_shadowed_rule_is_kept_and_reported_as_a_warning_with_both_lines() -> None:
    text = with_routing("""  rules:
    - id: school
      description: x
      when: {category: [KLAS, EMO, PEST]}
      target: oov
    - id: klas-groep
      description: never reached
      when: {category: KLAS, flags: GROUP_LINK}
      target: oov
""" + GOOD_DEFAULT)
    data, lines = parse_yaml_with_lines(text, "test.yaml")
    municipality = build_municipality(data, lines=lines, source="test.yaml")
    book = parse_rulebook(municipality)
    first = line_of(text, "- id: school")
    assert [r.id for r in book.rules] == ["school", "klas-groep"]
    assert shadow_warnings(book.rules, municipality) == [(line_of(text, "- id: klas-groep"),
                                                    f"rule 'klas-groep' has no effect: rule 'school' (line {first}) "
                                                    "catches every signal it would, also after a rejection")]


def test_a_symbolic_target_leaves_signals_without_it_to_later_rules() -> None:
    text = with_routing("""  rules:
    - id: zat
      description: x
      when: {category: KLAS}
      target: school_zat
    - id: klas-zonder-school
      description: reachable for signals without a known school
      when: {category: KLAS}
      target: coordinator
""" + GOOD_DEFAULT)
    data, lines = parse_yaml_with_lines(text, "t")
    book = parse_rulebook(build_municipality(data, lines=lines))
    assert [r.id for r in book.rules] == ["zat", "klas-zonder-school"]


def test_a_missing_default_is_refused_at_the_routing_line() -> None:
    text = with_routing("""  rules:
    - id: klas
      description: x
      when: {category: KLAS}
      target: school_zat
""")
    assert refused(text)[0] == (
        line_of(text, "  rules:"), "routing has no default rule: add `default:` with a target (e.g. coordinator)"
    )


def test_contradictory_conditions_and_empty_conditions_are_refused() -> None:
    text = with_routing("""  rules:
    - id: nooit
      description: x
      when: {match: false, flags: MATCH}
      target: oov
    - id: altijd
      description: x
      when: {}
      target: oov
""" + GOOD_DEFAULT)
    problems = refused(text)
    assert (line_of(text, "- id: altijd") + 2, "rule 'altijd' has no conditions; write it as `default:`") in problems
    text2 = with_routing("""  rules:
    - id: nooit
      description: x
      when: {match: false, flags: MATCH}
      target: oov
""" + GOOD_DEFAULT)
    assert refused(text2) == [(line_of(text2, "- id: nooit"),
                               "rule 'nooit' is unreachable: its conditions can never all hold")]


def test_broken_yaml_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    text = with_routing("  rules: [\n" + GOOD_DEFAULT)
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_municipality(path)
    assert info.value.problems[0][0] is not None and "not valid YAML" in info.value.problems[0][1]


def test_a_running_service_keeps_its_rules_when_given_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(EXAMPLE.read_text())
    metrics = RoutingMetrics(CollectorRegistry())
    config = RoutingConfig(path, metrics)
    before = config.current
    broken = with_routing("  rules: []\n")
    path.write_text(broken)
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))
    with capture_logs() as logs:
        assert config.maybe_reload() is False
    assert config.current is before
    assert metrics.config_reloads.labels(outcome="refused")._value.get() == 1
    refusal = next(e for e in logs if e["event"] == "routing_config_refused")
    assert refusal["kept"] == "previous" and f"line {line_of(broken, '  rules: []')}" in refusal["problems"][0]
    assert config.maybe_reload() is None  # unchanged since
    path.write_text(EXAMPLE.read_text().replace("match_window_days: 730", "match_window_days: 30"))
    os.utime(path, ns=(1, 3_000_000_000_000_000_000))
    assert config.maybe_reload() is True
    assert config.current.book.window.days == 30
    assert metrics.config_reloads.labels(outcome="ok")._value.get() == 2


def test_a_file_without_a_routing_section_uses_the_taxonomy_defaults() -> None:
    data, lines = parse_yaml_with_lines(BASE, "t")
    municipality = build_municipality(data, lines=lines)
    book = parse_rulebook(municipality)
    decision = book.decide(Facts(category="GROEP", urgency="U2", partner_kind="police"), municipality)
    assert (decision.rule_id, decision.body.id) == ("default-oov", "oov")


def test_the_explanation_names_the_facts_the_rule_looked_at() -> None:
    municipality = load_municipality(EXAMPLE)
    book = parse_rulebook(municipality)
    facts = Facts(category="GROEP", urgency="U2", partner_kind="police", postcode_area="3581",
                  flags=frozenset({"GROUP_LINK"}))
    decision = book.decide(facts, municipality)
    assert decision.rule_id == "groep-oost"
    assert decision.facts == {"category": "GROEP", "postcode_area": "3581"}
    assert [b.id for b in decision.inform] == ["wijkteam-oost"]


def test_acuut_and_hgkm_reach_the_coordinator_whatever_the_rules_say() -> None:
    text = with_routing("""  rules:
    - id: alles-naar-oov
      description: a careless rule
      when: {category: "*"}
      target: oov
""" + GOOD_DEFAULT)
    data, lines = parse_yaml_with_lines(text, "t")
    municipality = build_municipality(data, lines=lines)
    book = parse_rulebook(municipality)
    hgkm = book.decide(Facts(category="HGKM", urgency="U1", partner_kind="school", school_brin="12AB"), municipality)
    assert hgkm.body.id == "oov" and {b.id for b in hgkm.inform} == {"coordinator", "meldcode-12ab"}
    acuut = book.decide(Facts(category="ACUUT", urgency="U0", partner_kind="police"), municipality)
    assert {b.id for b in acuut.inform} == {"coordinator"}
    u0 = book.decide(Facts(category="THUIS", urgency="U0", partner_kind="school"), municipality)
    assert {b.id for b in u0.inform} == {"coordinator"}
