"""`schakel routes check` and `schakel routes test`: validate routing rules and keep golden tables in CI."""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shared.municipality import ConfigError, Municipality, load_municipality
from shared.settings import Settings
from shared.taxonomy import CATEGORIES


@dataclass
class Case:
    """One signal description with what it should give."""

    name: str
    category: str
    urgency: str | None = None
    partner_kind: str = "school"
    school: str | None = None
    postcode: str | None = None
    flags: list[str] = field(default_factory=list)
    match: list[str] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)
    expect_body: str | None = None
    expect_rule: str | None = None
    expect_inform: list[str] | None = None


def _words(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [w for w in value.replace("|", " ").replace(",", " ").split() if w]
    return [str(v) for v in value]


ROW_KEYS = {"name", "category", "urgency", "partner_kind", "school", "postcode", "flags", "match", "tried",
            "expect", "body", "rule", "inform"}


def _case(row: dict[str, Any], index: int) -> Case:
    unknown = set(row) - ROW_KEYS
    if unknown or "category" not in row:
        raise ValueError(f"row {index + 1}: unknown keys {sorted(map(str, unknown))} or no category")
    expect = row.get("expect") or {}
    if not isinstance(expect, dict):
        expect = {"body": expect}
    inform = expect.get("inform", row.get("inform"))
    return Case(
        name=str(row.get("name") or f"row {index + 1}"), category=str(row["category"]).upper(),
        urgency=row.get("urgency") or None, partner_kind=row.get("partner_kind") or "school",
        school=row.get("school") or None, postcode=str(row["postcode"]) if row.get("postcode") else None,
        flags=_words(row.get("flags")), match=_words(row.get("match")), tried=_words(row.get("tried")),
        expect_body=expect.get("body", row.get("body")) or None,
        expect_rule=expect.get("rule", row.get("rule")) or None,
        expect_inform=None if inform is None else _words(inform),
    )


def read_table(path: Path) -> tuple[list[Case], str | None]:
    """Cases from a YAML (`rows:` or a list) or CSV table, and the config file it names, if any."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return [_case(row, i) for i, row in enumerate(csv.DictReader(handle))], None
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rows = data.get("rows", []) if isinstance(data, dict) else data
    config = data.get("config") if isinstance(data, dict) else None
    return [_case(row, i) for i, row in enumerate(rows)], config


def run_case(case: Case, municipality: Municipality, book: Any = None) -> tuple[bool, str]:
    """Route one case; whether it met its expectations and a line saying what happened."""
    from services.routing.rules import Facts, parse_rulebook

    book = book or parse_rulebook(municipality)
    if case.category not in CATEGORIES:
        return False, f"FAIL {case.name}: unknown category {case.category!r}"
    flags = set(case.flags) | ({"MATCH"} if case.match else set())
    facts = Facts(
        category=case.category, urgency=case.urgency or CATEGORIES[case.category].urgency.value,
        partner_kind=case.partner_kind, school_brin=case.school, postcode_area=case.postcode,
        flags=frozenset(flags),
        match_partner_kinds=frozenset(case.match) | ({case.partner_kind} if case.match else set()),
    )
    decision = book.decide(facts, municipality, tried=case.tried)
    inform = sorted(b.id for b in decision.inform)
    got = f"rule {decision.rule_id} -> {decision.body.id}" + (f" (informs {', '.join(inform)})" if inform else "")
    wrong = []
    if case.expect_body and case.expect_body != decision.body.id:
        wrong.append(f"body {case.expect_body}")
    if case.expect_rule and case.expect_rule != decision.rule_id:
        wrong.append(f"rule {case.expect_rule}")
    if case.expect_inform is not None and sorted(case.expect_inform) != inform:
        wrong.append(f"informs [{', '.join(sorted(case.expect_inform))}]")
    if wrong:
        return False, f"FAIL {case.name}: expected {'; '.join(wrong)}, got {got}"
    return True, f"ok   {case.name}: {got}"


def _load(file: str | None) -> Municipality | None:
    path = Path(file) if file else Settings().config
    try:
        return load_municipality(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    from services.routing.rules import parse_rulebook

    municipality = _load(args.file)
    if municipality is None:
        return 1
    book = parse_rulebook(municipality)
    source = municipality.source or args.file
    custom = "" if municipality.raw.routing else " (no routing section: the taxonomy's default routes)"
    print(f"{source}: routing valid, {len(book.rules)} rules + default {book.default.id!r}, "
          f"match window {book.window.days} days{custom}")
    return 0


def _test(args: argparse.Namespace) -> int:
    if args.table:
        table = Path(args.table)
        try:
            cases, named = read_table(table)
        except (OSError, ValueError, KeyError, yaml.YAMLError) as exc:
            print(f"{table}: {exc}", file=sys.stderr)
            return 2
        config = args.config or (str((table.parent / named).resolve()) if named else None)
    else:
        if not args.category:
            print("give a table file or at least --category", file=sys.stderr)
            return 2
        cases = [_case({"name": "signal", "category": args.category, "urgency": args.urgency,
                        "partner_kind": args.partner_kind, "school": args.school, "postcode": args.postcode,
                        "flags": args.flag, "match": args.match, "tried": args.tried,
                        "expect": {"body": args.expect, "rule": args.expect_rule,
                                   **({"inform": args.expect_inform} if args.expect_inform is not None else {})}}, 0)]
        config = args.config
    municipality = _load(config)
    if municipality is None:
        return 2
    from services.routing.rules import parse_rulebook

    book = parse_rulebook(municipality)
    failures = 0
    for case in cases:
        ok, line = run_case(case, municipality, book)
        failures += not ok
        print(line)
    print(f"{len(cases) - failures} of {len(cases)} as expected")
    return 1 if failures else 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `schakel routes check|test|replay`."""
    routes = sub.add_parser("routes", help="routing rules: validate them, test them against signals")
    actions = routes.add_subparsers(dest="routes_action", required=True)
    check = actions.add_parser("check", help="validate the routing section of a municipality file")
    check.add_argument("file", nargs="?", help="municipality file (default: SCHAKEL_CONFIG)")
    check.set_defaults(func=_check)
    test = actions.add_parser("test", help="route a signal description or a table of them; non-zero on a mismatch")
    test.add_argument("table", nargs="?", help="YAML or CSV table of signals with expected bodies")
    test.add_argument("--config", help="municipality file (default: the table's `config`, else SCHAKEL_CONFIG)")
    test.add_argument("--category")
    test.add_argument("--urgency")
    test.add_argument("--partner-kind", default="school")
    test.add_argument("--school", help="BRIN")
    test.add_argument("--postcode", help="postcode area (four digits)")
    test.add_argument("--flag", action="append", default=[])
    test.add_argument("--match", action="append", default=[], help="partner kind of another partner in a match")
    test.add_argument("--tried", action="append", default=[], help="body that already rejected the signal")
    test.add_argument("--expect", help="expected body id")
    test.add_argument("--expect-rule")
    test.add_argument("--expect-inform", action="append", help="expected informed body (repeat)")
    test.set_defaults(func=_test)
    from schakel import replay_cli

    replay_cli.add_parser(actions)
