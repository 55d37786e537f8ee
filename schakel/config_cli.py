"""`schakel config check|explain|diff`: validate a municipality file, show what it makes Schakel do, compare two."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.municipality import ConfigError, Municipality, load_municipality
from shared.settings import Settings


def _load(file: str | None) -> tuple[Path, Municipality | None]:
    path = Path(file) if file else Settings().config
    try:
        return path, load_municipality(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return path, None


def _warnings(path: Path, municipality: Municipality) -> list[str]:
    from schakel.config_warnings import warnings_for

    text = path.read_text(encoding="utf-8")
    return [f"{path}:{line or '?'}: warning: {message}" for line, message in warnings_for(municipality, text=text)]


def _explain_lines(path: Path, municipality: Municipality, warnings: list[str]) -> list[str]:
    from schakel.config_report import explain
    from schakel.effective_config import effective

    return explain(effective(municipality), source=str(path), warnings=warnings)


def _check(args: argparse.Namespace) -> int:
    path, municipality = _load(args.file)
    if municipality is None:
        return 1
    warnings = _warnings(path, municipality)
    if args.explain:
        print("\n".join(_explain_lines(path, municipality, warnings)))
        return 1 if args.strict and warnings else 0
    count = f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else ""
    print(f"{path}: valid ({len(municipality.partners)} partners, {len(municipality.bodies)} bodies){count}")
    for warning in warnings:
        print(warning, file=sys.stderr)
    return 1 if args.strict and warnings else 0


def _explain(args: argparse.Namespace) -> int:
    path, municipality = _load(args.file)
    if municipality is None:
        return 1
    print("\n".join(_explain_lines(path, municipality, _warnings(path, municipality))))
    return 0


def _diff(args: argparse.Namespace) -> int:
    from schakel.config_report import diff
    from schakel.effective_config import effective

    old_path, old = _load(args.old)
    new_path, new = _load(args.new)
    if old is None or new is None:
        return 2
    changes = diff(effective(old), effective(new))
    if not changes:
        print(f"{old_path} -> {new_path}: no changes in effect")
    else:
        print(f"{old_path} -> {new_path}: {len(changes)} change{'s' if len(changes) != 1 else ''} in effect")
        print("\n".join(f"  {line}" for line in changes))
    if args.replay:
        from schakel import replay_cli

        replayed = replay_cli.from_args(args, old=args.old, new=args.new)
        if replayed != 0:
            return replayed  # 2: could not replay; 1: signals would go elsewhere
    return 1 if changes else 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `schakel config check|explain|diff`."""
    config = sub.add_parser("config", help="the municipality file: check it, explain it, compare two")
    actions = config.add_subparsers(dest="config_action", required=True)
    check = actions.add_parser("check", help="validate a municipality file; warn about entries without effect")
    check.add_argument("file", nargs="?", help="municipality file (default: SCHAKEL_CONFIG)")
    check.add_argument("--explain", action="store_true", help="also print the effective configuration")
    check.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    check.set_defaults(func=_check)
    explain = actions.add_parser("explain", help="the effective SLA policies, recipients and routing rules")
    explain.add_argument("file", nargs="?", help="municipality file (default: SCHAKEL_CONFIG)")
    explain.set_defaults(func=_explain)
    diff = actions.add_parser("diff", help="what changes in effect between two files; exit 1 when something does")
    diff.add_argument("old")
    diff.add_argument("new")
    diff.add_argument("--replay", action="store_true",
                      help="also replay signals.received under both files: which signals would have gone elsewhere")
    from schakel import replay_cli

    replay_cli.add_arguments(diff, days=365)
    diff.set_defaults(func=_diff)
