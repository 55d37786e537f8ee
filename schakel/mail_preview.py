"""Render a notification template with sample data, for `schakel mail preview <kind>`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from services.notify.rendering import KINDS, Clock, Deadline, DigestItem, MailContext, Outcome, render
from shared.events import Route, Urgency

_BASE_URL = "https://schakel.gemeente.example/signalen"
_ROLES = {
    "receipt": "reporter", "feedback": "reporter", "closed": "reporter", "assigned": "ib",
    "warning": "ib", "breach": "ib", "escalation": "team_lead", "match": "coordinator",
    "digest": "coordinator",
}


def sample_context(kind: str) -> MailContext:
    """A realistic, entirely fictitious context for one kind of mail."""
    if kind not in KINDS:
        raise ValueError(f"unknown mail kind {kind!r}; known: {', '.join(KINDS)}")
    deadlines = (
        Deadline(clock=Clock.ACKNOWLEDGE, due_at=datetime(2026, 3, 3, 16, 0, tzinfo=UTC)),
        Deadline(clock=Clock.FEEDBACK, due_at=datetime(2026, 3, 31, 15, 0, tzinfo=UTC)),
        Deadline(clock=Clock.CLOSE, due_at=datetime(2026, 6, 2, 15, 0, tzinfo=UTC)),
    )
    items = tuple(
        DigestItem(reference=f"SK-2026-{n:06d}", route=route, urgency=urgency,
                   signal_url=f"{_BASE_URL}/SK-2026-{n:06d}")
        for n, route, urgency in ((123, Route.ZAT, Urgency.U2), (131, Route.OOV, Urgency.U1),
                                  (140, Route.WIJKTEAM, Urgency.U3))
    )
    return MailContext(
        recipient_role=_ROLES[kind],
        reference="SK-2026-000123",
        route=Route.ZAT,
        body_name="ZAT basisschool De Regenboog",
        urgency=Urgency.U2,
        deadlines=deadlines,
        outcome_code=Outcome.HULP_INGEZET if kind == "closed" else None,
        signal_url=f"{_BASE_URL}/SK-2026-000123",
        escalation_step=2 if kind == "escalation" else None,
        clock=Clock.ACKNOWLEDGE if kind in ("warning", "breach", "escalation") else None,
        items=items if kind == "digest" else (),
    )


def preview(kind: str) -> str:
    """Subject, text part and HTML part of one kind of mail, rendered with sample data."""
    mail = render(kind, sample_context(kind))
    rule = "=" * 72
    return (f"Onderwerp: {mail.subject}\n{rule}\n--- text/plain ---\n{mail.text}\n"
            f"{rule}\n--- text/html ---\n{mail.html}")


def main(argv: list[str] | None = None) -> int:
    """Print the preview of the kind named on the command line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in KINDS:
        print(f"usage: python -m schakel.mail_preview <{'|'.join(KINDS)}>", file=sys.stderr)
        return 2
    print(preview(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
