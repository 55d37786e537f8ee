"""What a municipality file makes Schakel do: SLA policies, recipients and routing rules, as plain rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from services.feedback.sla import CLOCKS, ClockTerm
from services.feedback.sla_config import sla_config_for
from services.notify.recipients import roles_of
from services.routing.rules import POSTCODE_WIJKTEAM, SCHOOL_AF, SCHOOL_ZAT, Rule, parse_rulebook
from shared.municipality import Municipality

NO_DEADLINE = "no deadline"


@dataclass(frozen=True)
class PolicyRow:
    """The effective terms of one route × urgency and where they came from."""

    route: str
    urgency: str
    terms: tuple[str, str, str]
    escalation: str
    policy_id: str
    terms_from: str
    escalation_from: str


@dataclass(frozen=True)
class BodyRow:
    """A body and who is mailed about its signals, by occasion."""

    id: str
    name: str
    route: str
    recipients: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class RuleRow:
    """One routing rule in order: what it matches and where it sends the signal."""

    id: str
    line: int | None
    matches: str
    target: str
    handoff: tuple[str, ...]
    inform: tuple[str, ...]


@dataclass(frozen=True)
class Effective:
    """The whole effective configuration of one file."""

    municipality: str
    policies: tuple[PolicyRow, ...]
    bodies: tuple[BodyRow, ...]
    rules: tuple[RuleRow, ...]
    default: RuleRow
    match_window_days: int


def duration_text(interval: timedelta) -> str:
    """A positive interval in words: '1 day', '30 minutes', '20 seconds'."""
    seconds = int(interval.total_seconds())
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    raise AssertionError("unreachable: every whole number of seconds is a whole number of seconds")


def _origin(line: int | None) -> str:
    return f"line {line}" if line is not None else "built in"


def policy_rows(municipality: Municipality) -> tuple[PolicyRow, ...]:
    """Every route × urgency a signal can have, with its terms, escalation interval and their origin."""
    rows = []
    for (route, urgency), found in sla_config_for(municipality).table().items():
        terms: list[ClockTerm | None] = [getattr(found.policy, clock) for clock in CLOCKS]
        rows.append(PolicyRow(
            route=route, urgency=urgency,
            terms=(str(terms[0] or NO_DEADLINE), str(terms[1] or NO_DEADLINE), str(terms[2] or NO_DEADLINE)),
            escalation=duration_text(found.interval), policy_id=found.policy_id,
            terms_from=_origin(found.line), escalation_from=_origin(found.interval_line),
        ))
    return tuple(rows)


def _matches(rule: Rule) -> str:
    parts = []
    for dimension, value in rule.when.model_dump(exclude_none=True).items():
        shown = "|".join(value) if isinstance(value, list) else str(value).lower()
        parts.append(f"{dimension} {shown}")
    if rule.target in (SCHOOL_ZAT, SCHOOL_AF):
        parts.append("a school of this file")
    elif rule.target == POSTCODE_WIJKTEAM:
        parts.append("a postcode area a wijkteam serves")
    return ", ".join(parts) or "every signal"


def _rule_row(rule: Rule, line: int | None) -> RuleRow:
    return RuleRow(id=rule.id, line=line, matches=_matches(rule), target=rule.target, handoff=rule.handoff,
                   inform=rule.inform)


def effective(municipality: Municipality) -> Effective:
    """The effective configuration of a validated municipality."""
    book = parse_rulebook(municipality)
    own = bool(municipality.raw.routing)

    def line(*path: str | int) -> int | None:
        return municipality.line_of("routing", *path) if own else None

    bodies = tuple(
        BodyRow(id=body.id, name=body.name, route=body.route.value, recipients=tuple(
            (occasion, tuple(f"{r.role} {r.email}" for r in people))
            for occasion, people in roles_of(body, municipality).items()))
        for body in sorted(municipality.bodies.values(), key=lambda b: b.id)
    )
    return Effective(
        municipality=municipality.raw.municipality.id, policies=policy_rows(municipality), bodies=bodies,
        rules=tuple(_rule_row(rule, line("rules", i)) for i, rule in enumerate(book.rules)),
        default=_rule_row(book.default, line("default")), match_window_days=book.window.days,
    )
