"""SLA precedence: the file beats the built-ins for its route, a specific urgency beats "*", then the default."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services.feedback.sla import SlaPolicies, SlaPolicy
from services.feedback.sla_config import parse_sla, sla_config_for, unused_entries
from shared.municipality import load_municipality, parse_yaml_with_lines
from shared.settings import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
PRECEDENCE = ("file U2", "file *", "built-in U2", "built-in *")


def term(name: str) -> dict[str, Any]:
    """An entry whose acknowledge term names where it was written (a distinct number of hours each)."""
    hours = {"file U2": 1, "file *": 2, "built-in U2": 3, "built-in *": 4, "file default": 5, "built-in default": 6}
    return {"acknowledge": f"PT{hours[name]}H", "feedback": None, "close": None}


def policy(name: str) -> SlaPolicy:
    return SlaPolicy.model_validate(term(name))


@pytest.mark.parametrize("present", [
    frozenset(c) for n in range(len(PRECEDENCE) + 1) for c in itertools.combinations(PRECEDENCE, n)
], ids=lambda p: "+".join(sorted(p)) or "nothing")
@pytest.mark.parametrize("file_default", [False, True], ids=["built-in default", "file default"])
def test_the_first_present_of_file_specific_file_star_built_in_specific_built_in_star_default_wins(
    present: frozenset[str], file_default: bool,
) -> None:
    builtin_zat = {key: policy(f"built-in {key}") for key in ("U2", "*") if f"built-in {key}" in present}
    builtin = SlaPolicies(routes={"zat": builtin_zat} if builtin_zat else {}, default=policy("built-in default"))
    file_zat = {key: term(f"file {key}") for key in ("U2", "*") if f"file {key}" in present}
    section: dict[str, Any] = {"routes": {"zat": file_zat}} if file_zat else {}
    if file_default:
        section["default"] = term("file default")
    config = parse_sla(section, source="gm-test", builtin=builtin)

    winner = next((name for name in PRECEDENCE if name in present),
                  "file default" if file_default else "built-in default")
    policy_id, got, _ = config.lookup("zat", "U2")
    assert got == policy(winner)
    origin, key = winner.split(" ")
    expected_id = {"file": "gm-test", "built-in": "default"}[origin] + ":" + ("default" if key == "default"
                                                                              else f"zat/{key}")
    assert policy_id == expected_id


def test_a_star_entry_in_the_file_beats_every_built_in_urgency_of_its_route_only() -> None:
    config = parse_sla({"routes": {"zat": {"*": {"acknowledge": "PT20S", "feedback": "PT40S", "close": "PT60S"}}}},
                       source="gm-lindendam")
    for urgency in ("U0", "U1", "U2", "U3"):
        policy_id, got, _ = config.lookup("zat", urgency)
        assert (policy_id, str(got.acknowledge), str(got.close)) == ("gm-lindendam:zat/*", "PT20S", "PT60S")
    assert config.lookup("wijkteam", "U2")[0] == "default:wijkteam/U2"


def test_the_escalation_interval_comes_from_the_winning_entry_else_the_section_else_one_day() -> None:
    section = {"escalation_interval": "PT10S", "routes": {"zat": {
        "U1": {"acknowledge": "PT1H", "feedback": None, "close": None, "escalation_interval": "PT5M"},
        "*": {"acknowledge": "PT2H", "feedback": None, "close": None}}}}
    config = parse_sla(section, source="gm-test")
    assert config.lookup("zat", "U1")[2] == timedelta(minutes=5)
    assert config.lookup("zat", "U2")[2] == timedelta(seconds=10)
    assert config.lookup("oov", "U2")[2] == timedelta(seconds=10)
    assert parse_sla({}, source="gm-test").lookup("oov", "U2")[2] == timedelta(days=1)


def test_the_resolution_names_the_lines_of_the_terms_and_the_interval() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    lines = text.splitlines()
    config = sla_config_for(load_municipality(EXAMPLE))
    found = config.resolve("wijkteam", "U3")
    assert found.policy_id == "gm-lindendam:wijkteam/*"
    assert found.line is not None and lines[found.line - 1].strip().startswith('"*":')
    assert found.interval_line is not None and "escalation_interval: P1D" in lines[found.interval_line - 1]
    builtin = config.resolve("zat", "U2")
    assert (builtin.policy_id, builtin.line, builtin.from_file) == ("default:zat/U2", None, False)


SHADOWED = """\
sla:
  escalation_interval: PT1H
  routes:
    zat:
      "*": {acknowledge: PT1H, feedback: null, close: null}
      U0: {acknowledge: PT2H, feedback: null, close: null, escalation_interval: PT1M}
      U1: {acknowledge: PT2H, feedback: null, close: null, escalation_interval: PT1M}
      U2: {acknowledge: PT2H, feedback: null, close: null, escalation_interval: PT1M}
      U3: {acknowledge: PT2H, feedback: null, close: null, escalation_interval: PT1M}
  default: {acknowledge: PT3H, feedback: null, close: null}
"""


def test_entries_without_effect_are_warnings_with_their_lines(tmp_path: Path) -> None:
    data, lines = parse_yaml_with_lines(SHADOWED, "t.yaml")

    def line_of(*path: str | int) -> int | None:
        return lines.get(path)

    config = parse_sla(data["sla"], source="gm-test", line_of=line_of)
    assert unused_entries(config) == [
        (5, "sla.routes.zat.* has no effect: zat U0, U1, U2, U3 each have their own entry in this file"),
        (10, 'sla.default has no effect: every route has a policy (in this file or built in); '
             'write it as sla.routes.<route>."*" instead'),
    ]


def test_the_example_file_has_no_entry_without_effect() -> None:
    assert unused_entries(sla_config_for(load_municipality(EXAMPLE))) == []
