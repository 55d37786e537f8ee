"""Who gets which e-mail (domain.md, "Roles and who gets which e-mail"): pure look-ups.

One event mails each address at most once (the first role listed wins), because the Message-ID is derived
from (event, recipient). U2/U3 'assigned' mails to an organisation that asked for a daily digest are
marked `digest`; everything else (U0/U1, deadlines, the reporter's mails) goes out at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import (
    Contract,
    LifecycleChange,
    Route,
    SignalAssigned,
    SignalLifecycleChanged,
    SignalsMatched,
    SlaBreached,
    SlaWarned,
    Urgency,
)
from shared.municipality import Body, Municipality

URGENT = frozenset({Urgency.U0, Urgency.U1})
DIGESTIBLE_URGENCIES = frozenset({Urgency.U2, Urgency.U3})
DIGESTIBLE_KINDS = frozenset({"assigned"})
# Police contacts of the OOV overleg hear of an OOV signal after the coordinator's triage (its acknowledgement).
POLICE_ROLES = frozenset({"wijkagent", "schoolagent"})
MELDCODE_CATEGORY = "HGKM"
LEERPLICHT_CATEGORY = "VERZ"


@dataclass(frozen=True)
class Recipient:
    """One address and the role in which it is mailed."""

    role: str
    email: str


@dataclass(frozen=True)
class PlannedMail:
    """An e-mail to send: the template kind, the recipient, the body it concerns, and whether it waits for a digest."""

    kind: str
    recipient: Recipient
    body_id: str | None = None
    digest: bool = False


def _contacts(body: Body | None, *, police: bool = True) -> list[Recipient]:
    if body is None:
        return []
    return [Recipient(c.role, str(c.email)) for c in body.contacts
            if police or not (body.route is Route.OOV and c.role in POLICE_ROLES)]


def _handlers(body: Body | None) -> list[Recipient]:
    """Who handles a body's signals: its contacts, without the OOV's police before triage."""
    return _contacts(body, police=False)


def _coordinator(municipality: Municipality) -> list[Recipient]:
    return _contacts(municipality.bodies.get("coordinator"))


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


def prefers_digest(recipient: Recipient, body_id: str | None, municipality: Municipality) -> bool:
    """Whether every partner the recipient mails for (the body's partners, or the partner whose contact they are)
    asked for a daily digest."""
    of_body = municipality.known_partner_ids_by_body.get(body_id, frozenset()) if body_id else frozenset()
    owners = of_body | municipality.partner_ids_by_contact_email.get(recipient.email.lower(), frozenset())
    return bool(owners) and owners <= municipality.digest_partner_ids


def _mark_digests(mails: list[PlannedMail], urgency: Urgency, municipality: Municipality) -> list[PlannedMail]:
    if urgency not in DIGESTIBLE_URGENCIES:
        return mails
    return [PlannedMail(m.kind, m.recipient, m.body_id, digest=True)
            if m.kind in DIGESTIBLE_KINDS and prefers_digest(m.recipient, m.body_id, municipality) else m
            for m in mails]


def for_assignment(event: SignalAssigned, municipality: Municipality) -> list[PlannedMail]:
    """The body's handlers and informed bodies; on the first assignment also the directeur (U0/U1 from their
    school), the aandachtsfunctionaris (HGKM), the coordinator (U0, HGKM, OOV), leerplicht (VERZ), and the
    reporter's receipt, which names the body that took the signal."""
    mails = [PlannedMail("assigned", r, event.body_id) for r in _handlers(municipality.bodies.get(event.body_id))]
    for body_id in event.inform_body_ids:
        mails += [PlannedMail("assigned", r, body_id) for r in _handlers(municipality.bodies.get(body_id))]
    if event.route is Route.OOV:
        mails += [PlannedMail("assigned", r, "coordinator") for r in _coordinator(municipality)]
    if event.attempt == 1:
        school = municipality.schools.get(event.school_brin) if event.school_brin else None
        if school is not None and event.urgency in URGENT and school.partner == event.partner_id:
            mails.append(PlannedMail("assigned", Recipient("directeur", str(school.directeur.email)), event.body_id))
        if school is not None and event.category == MELDCODE_CATEGORY:
            mails.append(PlannedMail("assigned", Recipient("aandachtsfunctionaris",
                                                           str(school.aandachtsfunctionaris.email)), event.body_id))
        if event.urgency is Urgency.U0 or event.category == MELDCODE_CATEGORY:
            mails += [PlannedMail("assigned", r, "coordinator") for r in _coordinator(municipality)]
        if event.category == LEERPLICHT_CATEGORY:
            mails += [PlannedMail("assigned", Recipient("leerplicht", str(p.contact.email)), event.body_id)
                      for p in municipality.partners.values() if p.kind == "leerplicht"]
        mails.append(PlannedMail("receipt", Recipient("reporter", str(event.reporter.email)), event.body_id))
    return _mark_digests(_dedupe(mails), event.urgency, municipality)


def for_lifecycle(event: SignalLifecycleChanged, municipality: Municipality) -> list[PlannedMail]:
    """The reporter hears of feedback and closure; the OOV's police hear of an OOV signal once it is triaged."""
    if event.change is LifecycleChange.FEEDBACK:
        return [PlannedMail("feedback", Recipient("reporter", str(event.reporter.email)), event.body_id)]
    if event.change is LifecycleChange.CLOSED:
        return [PlannedMail("closed", Recipient("reporter", str(event.reporter.email)), event.body_id)]
    if event.change is LifecycleChange.ACKNOWLEDGED and event.route is Route.OOV:
        actor = municipality.partners.get(event.actor_partner_id)
        if actor is not None and actor.kind == "police":
            return []
        body = municipality.bodies.get(event.body_id)
        police = [r for r in _contacts(body) if r.role in POLICE_ROLES]
        return _dedupe([PlannedMail("assigned", r, event.body_id) for r in police])
    return []


def for_warning(event: SlaWarned, municipality: Municipality) -> list[PlannedMail]:
    """The handling body is warned before a term passes."""
    handlers = _handlers(municipality.bodies.get(event.body_id))
    return _dedupe([PlannedMail("warning", r, event.body_id) for r in handlers])


def _team_leads(body: Body | None, municipality: Municipality) -> list[Recipient]:
    """The second escalation step: the school's directeur, or the body's handlers as team lead."""
    school = municipality.schools.get(body.school_brin) if body and body.school_brin else None
    if school is not None:
        return [Recipient("directeur", str(school.directeur.email))]
    return [Recipient("team_lead", r.email) for r in _handlers(body)]


def roles_of(body: Body, municipality: Municipality) -> dict[str, list[Recipient]]:
    """Who is mailed about a body's signals, by occasion: its handlers, the OOV's police, the escalation steps."""
    occasions = {"signals, warnings, breaches": _handlers(body)}
    police = [r for r in _contacts(body) if body.route is Route.OOV and r.role in POLICE_ROLES]
    if police:
        occasions["after the coordinator's triage"] = police
    occasions["escalation step 2"] = _team_leads(body, municipality)
    occasions["escalation step 3"] = _coordinator(municipality)
    return occasions


def for_breach(event: SlaBreached, municipality: Municipality) -> list[PlannedMail]:
    """Up the ladder: handler → team lead (the school's directeur, or the body again) → coordinator."""
    body = municipality.bodies.get(event.body_id)
    if event.step == "handler":
        return _dedupe([PlannedMail("breach", r, event.body_id) for r in _handlers(body)])
    if event.step == "team_lead":
        return _dedupe([PlannedMail("escalation", r, event.body_id) for r in _team_leads(body, municipality)])
    return _dedupe([PlannedMail("escalation", r, event.body_id) for r in _coordinator(municipality)])


def for_match(event: SignalsMatched, municipality: Municipality) -> list[PlannedMail]:
    """The coordinator and every body involved learn of a match."""
    mails = [PlannedMail("match", r, "coordinator") for r in _coordinator(municipality)]
    for body_id in event.body_ids:
        mails += [PlannedMail("match", r, body_id) for r in _handlers(municipality.bodies.get(body_id))]
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


__all__ = ["PlannedMail", "Recipient", "plan", "prefers_digest", "roles_of"]
