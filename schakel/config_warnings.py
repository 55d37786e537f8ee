"""Entries of a valid municipality file that have no effect, each with its line (`schakel config check`)."""

from __future__ import annotations

from services.feedback.sla_config import sla_config_for, unused_entries
from services.routing.reachability import reachable_bodies, shadow_warnings
from services.routing.rules import RuleBook, parse_rulebook
from shared.municipality import Municipality, duplicate_keys

Warning_ = tuple[int | None, str]


def body_lines(municipality: Municipality) -> dict[str, int | None]:
    """The line where each body is written: its school, its wijkteam, the oov or coordinator section."""
    lines: dict[str, int | None] = {}
    for i, school in enumerate(municipality.raw.schools):
        for prefix in ("zat", "meldcode"):
            lines[f"{prefix}-{school.brin.lower()}"] = municipality.line_of("schools", i)
    for i, team in enumerate(municipality.raw.wijkteams):
        body_id = f"wijkteam-{team.id}" if not team.id.startswith("wijkteam") else team.id
        lines[body_id] = municipality.line_of("wijkteams", i)
    for name in ("oov", "coordinator"):
        lines[name] = municipality.line_of(name)
    return lines


def unrouted_bodies(book: RuleBook, municipality: Municipality) -> list[Warning_]:
    """Bodies that no rule, default or urgent path can assign a signal to or inform."""
    reached = reachable_bodies(book.rules, book.default, municipality)
    lines = body_lines(municipality)
    return [(lines.get(body.id), f"body {body.id!r} ({body.name}) gets no signals: no rule routes to it, "
                                 "hands off to it or informs it")
            for body in municipality.bodies.values() if body.id not in reached]


def partners_without_tokens(municipality: Municipality) -> list[Warning_]:
    """Partners that cannot use the API because no token hash is stored for them."""
    return [(municipality.line_of("partners", i), f"partner {p.id!r} has no token: it cannot submit or update "
                                                  "signals over the API (only signed records over Kafka); "
                                                  f"create one with `schakel partners add-token {p.id}`")
            for i, p in enumerate(municipality.raw.partners) if not p.token_hashes]


def warnings_for(municipality: Municipality, *, text: str | None = None) -> list[Warning_]:
    """Every warning of a valid file, in line order; `text` (the file as written) adds keys written twice."""
    book = parse_rulebook(municipality)
    found: list[Warning_] = list(duplicate_keys(text)) if text is not None else []
    found += unused_entries(sla_config_for(municipality))
    found += shadow_warnings(book.rules, municipality)
    found += unrouted_bodies(book, municipality)
    found += partners_without_tokens(municipality)
    return sorted(found, key=lambda w: (w[0] is None, w[0] or 0, w[1]))
