"""Pure notify logic: an event and a planned e-mail become a whitelisted template context."""

from __future__ import annotations

from typing import Any

from services.notify.digest import PendingItem
from services.notify.recipients import PlannedMail
from services.notify.rendering import Clock, Deadline, DigestItem, MailContext, Outcome
from shared.events import (
    Contract,
    Route,
    SignalAssigned,
    SignalLifecycleChanged,
    SignalsMatched,
    SlaBreached,
    SlaWarned,
    Urgency,
)
from shared.municipality import Municipality

STEP_NUMBERS = {"handler": 1, "team_lead": 2, "coordinator": 3}


# The events notify sends e-mail about (see recipients.plan); each names the signal it is about.
MailEvent = SignalAssigned | SignalLifecycleChanged | SignalsMatched | SlaWarned | SlaBreached


def signal_id_of(event: Contract) -> str:
    """The signal an event is about."""
    if not isinstance(event, MailEvent):
        raise TypeError(f"notify sends no e-mail about {type(event).__name__}")
    return event.signal_id


def signal_url(base_url: str, signal_id: str) -> str:
    """The werkbak's page of the signal, behind login (SCHAKEL_PUBLIC_BASE_URL is the werkbak's address)."""
    return f"{base_url.rstrip('/')}/signalen/{signal_id}"


def mail_context(event: Contract, mail: PlannedMail, *, municipality: Municipality, base_url: str) -> MailContext:
    """Only reference, route, body name, urgency, deadlines, outcome and link: never data about the child."""
    url = signal_url(base_url, signal_id_of(event))
    body = municipality.bodies.get(mail.body_id) if mail.body_id else None
    common: dict[str, Any] = {"recipient_role": mail.recipient.role, "signal_url": url}
    if isinstance(event, SignalAssigned):
        return MailContext(**common, reference=event.reference, route=event.route, body_name=event.body_name,
                           urgency=event.urgency)
    if isinstance(event, SignalLifecycleChanged):
        return MailContext(**common, reference=event.reference, route=event.route, body_name=event.body_name,
                           urgency=event.urgency,
                           outcome_code=None if event.outcome is None else Outcome(event.outcome))
    if isinstance(event, SlaWarned | SlaBreached):
        step = STEP_NUMBERS.get(event.step, 1) if isinstance(event, SlaBreached) else None
        return MailContext(**common, reference=event.reference, route=event.route, body_name=event.body_name,
                           urgency=event.urgency, clock=Clock(event.clock.value),
                           deadlines=(Deadline(clock=Clock(event.clock.value), due_at=event.due_at),),
                           escalation_step=step if mail.kind == "escalation" else None)
    if isinstance(event, SignalsMatched):
        return MailContext(**common, reference=event.reference, route=Route.COORDINATOR,
                           body_name=body.name if body else None, urgency=Urgency.U1)
    raise ValueError(f"no e-mail context for {type(event).__name__}")


def digest_context(items: tuple[PendingItem, ...], *, role: str, base_url: str) -> MailContext:
    """A digest lists reference, route, urgency and link of each signal, oldest first; nothing else."""
    ordered = sorted(items, key=lambda i: (i.queued_at, i.reference))
    return MailContext(recipient_role=role, items=tuple(
        DigestItem(reference=i.reference, route=Route(i.route), urgency=Urgency(i.urgency),
                   signal_url=signal_url(base_url, i.signal_id)) for i in ordered))
