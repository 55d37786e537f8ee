"""Who gets which e-mail (domain.md, "Roles and who gets which e-mail"): pure look-ups."""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import (
    Contract, LifecycleChange, Route, SignalAssigned, SignalLifecycleChanged, SignalsMatched, SlaBreached, SlaWarned,
    Urgency,
)
from shared.municipality import Body, Municipality

URGENT = frozenset({Urgency.U0, Urgency.U1})


@dataclass(frozen=True)
class Recipient:
    """One address and the role in which it is mailed."""

    role: str
    email: str


@dataclass(frozen=True)
class PlannedMail:
    """An e-mail to send: the template kind, the recipient, and the body it concerns."""

    kind: str
    recipient: Recipient
    body_id: str | None = None


def _body_contacts(body: Body | None) -> list[Recipient]:
    return [Recipient(c.role, str(c.email)) for c in body.contacts] if body else []


def _coordinator(municipality: Municipality) -> list[Recipient]:
    return _body_contacts(municipality.bodies.get("coordinator"))


def _dedupe(mails: list[PlannedMail]) -> list[PlannedMail]:
    """One e-mail per address and event: the first role listed wins."""
    seen: set[str] = set()
    result = []
    for mail in mails:
        key = mail.recipient.email.lower()
        if key not in seen:
            seen.add(key)
            result.append(mail)
    return result


def for_assignment(event: SignalAssigned, municipality: Municipality) -> list[PlannedMail]:
    """The body's contacts; the school's directeur for U0/U1; the coordinator for U0; informed bodies; receipt."""
    mails = [PlannedMail("assigned", r, event.body_id) for r in _body_contacts(municipality.bodies.get(event.body_id))]
    for body_id in event.inform_body_ids:
        mails += [PlannedMail("assigned", r, body_id) for r in _body_contacts(municipality.bodies.get(body_id))]
    school = municipality.schools.get(event.school_brin) if event.school_brin else None
    if school is not None and event.urgency in URGENT and event.partner_kind == "school":
        mails.append(PlannedMail("assigned", Recipient("directeur", str(school.directeur.email)), event.body_id))
    if event.urgency is Urgency.U0:
        mails += [PlannedMail("assigned", r, "coordinator") for r in _coordinator(municipality)]
    if event.attempt == 1:
        mails.append(PlannedMail("receipt", Recipient("reporter", str(event.reporter.email)), event.body_id))
    return _dedupe(mails)


def for_lifecycle(event: SignalLifecycleChanged, municipality: Municipality) -> list[PlannedMail]:
    """The reporter hears of feedback and closure."""
    kinds = {LifecycleChange.FEEDBACK: "feedback", LifecycleChange.CLOSED: "closed"}
    kind = kinds.get(event.change)
    if kind is None:
        return []
    return [PlannedMail(kind, Recipient("reporter", str(event.reporter.email)), event.body_id)]


def for_warning(event: SlaWarned, municipality: Municipality) -> list[PlannedMail]:
    """The handling body is warned before a term passes."""
    return _dedupe([PlannedMail("warning", r, event.body_id)
                    for r in _body_contacts(municipality.bodies.get(event.body_id))])


def for_breach(event: SlaBreached, municipality: Municipality) -> list[PlannedMail]:
    """Up the ladder: handler → team lead (the school's directeur, or the body again) → coordinator."""
    body = municipality.bodies.get(event.body_id)
    if event.step == "handler":
        return _dedupe([PlannedMail("breach", r, event.body_id) for r in _body_contacts(body)])
    if event.step == "team_lead":
        school = municipality.schools.get(body.school_brin) if body and body.school_brin else None
        leads = [Recipient("directeur", str(school.directeur.email))] if school else [
            Recipient("team_lead", r.email) for r in _body_contacts(body)
        ]
        return _dedupe([PlannedMail("escalation", r, event.body_id) for r in leads])
    return _dedupe([PlannedMail("escalation", r, event.body_id) for r in _coordinator(municipality)])


def for_match(event: SignalsMatched, municipality: Municipality) -> list[PlannedMail]:
    """The coordinator and every body involved learn of a match."""
    mails = [PlannedMail("match", r, "coordinator") for r in _coordinator(municipality)]
    for body_id in event.body_ids:
        mails += [PlannedMail("match", r, body_id) for r in _body_contacts(municipality.bodies.get(body_id))]
    return _dedupe(mails)


def plan(event: Contract, municipality: Municipality) -> list[PlannedMail]:
    """Every e-mail an event calls for (none for events notify does not mail about)."""
    if isinstance(event, SignalAssigned):
        return for_assignment(event, municipality)
    if isinstance(event, SignalLifecycleChanged):
        return for_lifecycle(event, municipality)
    if isinstance(event, SlaBreached):
        return for_breach(event, municipality)
    if isinstance(event, SlaWarned):
        return for_warning(event, municipality)
    if isinstance(event, SignalsMatched):
        return for_match(event, municipality)
    return []


__all__ = ["PlannedMail", "Recipient", "Route", "plan"]
