"""The sla section of the municipality file: parsing, merging over the defaults, errors with their lines."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from services.feedback.sla import DEFAULT_POLICIES
from services.feedback.sla_config import DEFAULT_SLA, SlaConfigError, parse_sla, sla_config_for
from shared.municipality import ConfigError, build_municipality, load_municipality, parse_yaml_with_lines
from shared.settings import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"

SECTION = """\
sla:
  escalation_interval: PT10S
  routes:
    zat:
      U2: {acknowledge: PT20S, feedback: P1D, close: P3M}
    coordinator:
      U0: {acknowledge: PT1H, feedback: next working day, close: null, escalation_interval: PT30M}
  default: {acknowledge: 3 working days, feedback: 10 working days, close: P3M}
"""


def with_sla(tmp_path: Path, section: str) -> Path:
    """A copy of the example municipality with an sla section appended (any old one dropped)."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data.pop("sla", None)
    path = tmp_path / "gemeente.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True) + section, encoding="utf-8")
    return path


def test_a_file_without_an_sla_section_uses_the_built_in_policies(tmp_path: Path) -> None:
    municipality = load_municipality(with_sla(tmp_path, ""))
    assert sla_config_for(municipality) is DEFAULT_SLA
    policy_id, policy, interval = DEFAULT_SLA.lookup("zat", "U2")
    assert (policy_id, policy, interval) == ("default:zat/U2", DEFAULT_POLICIES.lookup("zat", "U2")[1],
                                             timedelta(days=1))


def test_a_policy_in_the_file_replaces_the_built_in_one_for_its_route_and_urgency_only(tmp_path: Path) -> None:
    config = sla_config_for(load_municipality(with_sla(tmp_path, SECTION)))
    policy_id, policy, interval = config.lookup("zat", "U2")
    assert policy_id == "gm-lindendam:zat/U2"
    assert str(policy.acknowledge) == "PT20S" and str(policy.feedback) == "P1D"
    assert interval == timedelta(seconds=10)
    assert config.lookup("zat", "U1")[0] == "default:zat/U1"
    assert config.lookup("zat", "U1")[1] == DEFAULT_POLICIES.lookup("zat", "U1")[1]


def test_a_clock_written_as_null_runs_without_a_deadline_and_an_entry_may_set_its_own_interval(
    tmp_path: Path,
) -> None:
    config = sla_config_for(load_municipality(with_sla(tmp_path, SECTION)))
    policy_id, policy, interval = config.lookup("coordinator", "U0")
    assert policy_id == "gm-lindendam:coordinator/U0"
    assert policy.close is None
    assert interval == timedelta(minutes=30)


def test_the_default_entry_catches_routes_the_table_does_not_know(tmp_path: Path) -> None:
    config = sla_config_for(load_municipality(with_sla(tmp_path, SECTION)))
    policy_id, policy, _ = config.lookup("nowhere", "U2")
    assert policy_id == "gm-lindendam:default"
    assert str(policy.acknowledge) == "3 working days"


def test_an_unreadable_term_is_refused_at_load_with_its_line(tmp_path: Path) -> None:
    bad = SECTION.replace("acknowledge: PT20S", "acknowledge: soon")
    path = with_sla(tmp_path, bad)
    with pytest.raises(ConfigError) as caught:
        load_municipality(path)
    lines = path.read_text().splitlines()
    (line, message), = caught.value.problems
    assert "soon" in lines[line - 1]
    assert "sla.routes.zat.U2.acknowledge" in message and "cannot read SLA term" in message


@pytest.mark.parametrize(("section", "needle", "says"), [
    ("sla:\n  routes:\n    zat:\n      U7: {acknowledge: PT1H, feedback: PT2H, close: PT3H}\n", "U7",
     "unknown urgency"),
    ("sla:\n  routes:\n    school:\n      U1: {acknowledge: PT1H, feedback: PT2H, close: PT3H}\n", "U1:",
     "unknown route 'school'"),
    ("sla:\n  routes:\n    zat:\n      U1: {acknowledge: PT1H, feedback: PT2H}\n", "U1:", "'close' missing"),
    ("sla:\n  routes:\n    zat:\n      U1: {acknowledge: PT1H, feedback: PT2H, close: PT3H, review: P1D}\n",
     "review", "unknown key 'review'"),
    ("sla:\n  escalation_interval: 2 working days\n", "escalation_interval", "must be a duration"),
    ("sla:\n  escalation_interval: P1M\n", "escalation_interval", "must be a duration"),
    ("sla:\n  clocks: {}\n", "clocks", "unknown key 'clocks'"),
])
def test_a_broken_sla_section_is_refused_with_the_line_that_is_wrong(
    tmp_path: Path, section: str, needle: str, says: str
) -> None:
    path = with_sla(tmp_path, section)
    with pytest.raises(ConfigError) as caught:
        load_municipality(path)
    lines = path.read_text().splitlines()
    (line, message), = caught.value.problems
    assert line is not None and needle in lines[line - 1], (line, message)
    assert says in message


def test_every_problem_of_the_section_is_reported_at_once() -> None:
    section = {"routes": {"zat": {"U1": {"acknowledge": "x", "feedback": "y", "close": "PT1H"}}}}
    with pytest.raises(SlaConfigError) as caught:
        parse_sla(section, source="gm-test")
    assert len(caught.value.problems) == 2


def test_the_parsed_section_validates_through_the_municipality_loader_in_memory() -> None:
    data, lines = parse_yaml_with_lines(EXAMPLE.read_text(encoding="utf-8") + "\n" + SECTION, "mem.yaml")
    municipality = build_municipality(data, lines=lines, source="mem.yaml")
    assert municipality.raw.sla["escalation_interval"] == "PT10S"
