"""`schakel config check|explain|diff` on the example file and on changed copies of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schakel.cli import main
from shared.settings import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
OPERATIONS = REPO_ROOT / "docs" / "operations.md"
TEXT = EXAMPLE.read_text(encoding="utf-8")


def copy_with(tmp_path: Path, *replacements: tuple[str, str], name: str = "gemeente.yaml") -> Path:
    """A copy of the example with each text replaced exactly once."""
    text = TEXT
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(path: Path, marker: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if marker in line)


def test_the_example_file_is_valid_without_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(EXAMPLE), "--strict"]) == 0
    out, err = capsys.readouterr()
    assert out == f"{EXAMPLE}: valid (7 partners, 8 bodies)\n" and err == ""


SHADOWING_RULE = """    - id: alle-schoolzorg
      description: Alle schoolzorgen naar het ZAT
      when: {category: [ONT, KLAS, CONC, VERZ, EMO, PEST, HULP, SOC, GEZ]}
      target: school_zat
      handoff: [oov, postcode_wijkteam]
      inform: [oov, coordinator]
    - id: zat-groepslink
"""
OVERRIDDEN = """    wijkteam:
      U0: {acknowledge: 1 working day, feedback: 5 working days, close: P6W}
      U2: {acknowledge: 2 working days, feedback: 10 working days, close: P3M}
      U3: {acknowledge: 2 working days, feedback: 10 working days, close: P3M}
      U1:"""


def test_check_warns_on_a_shadowed_rule_and_an_overridden_policy_naming_their_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = copy_with(tmp_path, ("    - id: zat-groepslink\n", SHADOWING_RULE), ("    wijkteam:\n      U1:", OVERRIDDEN))
    assert main(["config", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: valid (7 partners, 8 bodies), 5 warnings\n"
    first = line_of(path, "- id: alle-schoolzorg")
    star = line_of(path, '"*": {acknowledge: 2 working days')
    zat = path.read_text().splitlines().index("    - id: zat") + 1
    assert err.splitlines() == [
        f"{path}:{line_of(path, '- id: zat-groepslink')}: warning: rule 'zat-groepslink' has no effect: rule "
        f"'alle-schoolzorg' (line {first}) catches every signal it would, also after a rejection",
        f"{path}:{line_of(path, '- id: zat-broer-zus')}: warning: rule 'zat-broer-zus' has no effect: rule "
        f"'alle-schoolzorg' (line {first}) catches every signal it would, also after a rejection",
        f"{path}:{line_of(path, '- id: verzuim-leerplicht')}: warning: rule 'verzuim-leerplicht' has no effect: "
        f"rule 'alle-schoolzorg' (line {first}) catches every signal it would, also after a rejection",
        f"{path}:{zat}: warning: rule 'zat' has no effect: "
        f"rule 'alle-schoolzorg' (line {first}) catches every signal it would, also after a rejection",
        f"{path}:{star}: warning: sla.routes.wijkteam.* has no effect"
        ": wijkteam U0, U1, U2, U3 each have their own entry in this file",
    ]
    assert main(["config", "check", str(path), "--strict"]) == 1


def test_check_warns_on_a_partner_without_tokens_and_a_key_written_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    leerplicht_hash = "sha256:b0e37f4c80f593552a0a1c871856498a0e1a3c34da2e7f9b21218474f948bbb1"
    path = copy_with(
        tmp_path,
        (f"    scopes: [signals:submit]\n    token_hashes: [{leerplicht_hash}]\n", "    scopes: [signals:submit]\n"),
        ("  match_window_days: 730", "  match_window_days: 365\n  match_window_days: 730"),
    )
    assert main(["config", "check", str(path)]) == 0
    window = line_of(path, "match_window_days: 365")
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:{line_of(path, '- id: leerplicht')}: warning: partner 'leerplicht' has no token: it cannot submit "
        "or update signals over the API (only signed records over Kafka); create one with "
        "`schakel partners add-token leerplicht`",
        f"{path}:{window}: warning: routing.match_window_days (line {window}) has no effect: it is written again "
        f"on line {window + 1}, which replaces it",
    ]


def test_explain_shows_every_route_and_urgency_with_where_its_terms_came_from(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "explain", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    rows = {tuple(line.split()[:2]): line for line in out.splitlines() if re.match(r"^  [a-z]+ +U[0-3] ", line)}
    assert len(rows) == 20
    wijkteam_u1, wijkteam_u3 = rows[("wijkteam", "U1")], rows[("wijkteam", "U3")]
    assert "1 working day" in wijkteam_u1 and "gm-lindendam:wijkteam/U1" in wijkteam_u1
    assert f"line {line_of(EXAMPLE, '      U1: {acknowledge: 1 working day')}" in wijkteam_u1
    assert "gm-lindendam:wijkteam/*" in wijkteam_u3
    assert re.search(r"default:zat/U2 +built in +line \d+$", rows[("zat", "U2")])
    assert "    after the coordinator's triage: wijkagent wijkagent.centrum@politie.example" in out
    assert re.search(r"^   6\. groep-oost \(line \d+\): category GROEP, postcode_area 358\? -> oov; informs "
                     r"wijkteam-oost$", out, re.M)
    assert out.rstrip().endswith("Warnings: none")
    assert main(["config", "check", "--explain", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == out


def test_the_explain_output_in_operations_md_is_the_example_files(capsys: pytest.CaptureFixture[str]) -> None:
    main(["config", "explain", str(EXAMPLE.relative_to(REPO_ROOT))])
    out = capsys.readouterr().out.splitlines()
    marker = "$ schakel config explain examples/gemeente-voorbeeld.yaml\n"
    block = OPERATIONS.read_text(encoding="utf-8").split(marker)[1]
    shown = [line for line in block.split("```")[0].splitlines() if line.strip() not in ("", "...")]
    assert shown and all(line in out for line in shown), [line for line in shown if line not in out]


def test_diff_lists_exactly_the_changes_in_effect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    changed = copy_with(
        tmp_path,
        ("    wijkteam:\n", '    zat: {"*": {acknowledge: PT20S, feedback: PT40S, close: PT60S}}\n    wijkteam:\n'),
        ("email: smw@delinde.example", "email: maatschappelijk.werk@delinde.example"),
        ("    - id: verzuim-leerplicht\n", "    - id: groep-oost-alleen\n      description: moved\n"
                                         "      when: {category: GROEP, postcode_area: '3581'}\n      target: oov\n"
                                         "    - id: verzuim-leerplicht\n"),
        ("# Example municipality file", "# A changed copy\n# Example municipality file"),
    )
    assert main(["config", "diff", str(EXAMPLE), str(changed)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{EXAMPLE} -> {changed}: 7 changes in effect",
        "  ~ sla zat U0: acknowledge 2 school days -> PT20S; feedback 20 school days -> PT40S; close P3M -> PT60S; "
        "policy default:zat/* -> gm-lindendam:zat/*",
        "  ~ sla zat U1: acknowledge 1 school day -> PT20S; feedback 10 school days -> PT40S; close P6W -> PT60S; "
        "policy default:zat/U1 -> gm-lindendam:zat/*",
        "  ~ sla zat U2: acknowledge 2 school days -> PT20S; feedback 20 school days -> PT40S; close P3M -> PT60S; "
        "policy default:zat/U2 -> gm-lindendam:zat/*",
        "  ~ sla zat U3: acknowledge 5 school days -> PT20S; feedback 20 school days -> PT40S; close end of school "
        "year -> PT60S; policy default:zat/U3 -> gm-lindendam:zat/*",
        "  - recipient zat-12ab signals, warnings, breaches: schoolmaatschappelijk_werk smw@delinde.example",
        "  + recipient zat-12ab signals, warnings, breaches: schoolmaatschappelijk_werk "
        "maatschappelijk.werk@delinde.example",
        f"  + rule groep-oost-alleen at position 12: groep-oost-alleen (line {line_of(changed, 'groep-oost-alleen')}):"
        " category GROEP, postcode_area 3581 -> oov",
    ]


def test_diff_of_a_file_with_itself_and_a_reordering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "diff", str(EXAMPLE), str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == f"{EXAMPLE} -> {EXAMPLE}: no changes in effect\n"
    acuut = ("    - id: acuut\n      description: Acute onveiligheid gaat direct naar de jeugd- en "
             "veiligheidscoördinator\n      when: {category: ACUUT}\n      target: coordinator\n")
    moved = copy_with(tmp_path, (acuut, ""), ("    - id: meldcode\n", acuut + "    - id: meldcode\n"))
    assert main(["config", "diff", str(EXAMPLE), str(moved)]) == 1
    assert capsys.readouterr().out.splitlines()[1:] == ["  ~ rule spoed-u0 moved to position 1 (first)"]
