"""The lifecycle state machine of a signal: pure functions from state and request to new state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from services.feedback.sla import Deadline
from shared.events import (
    Contact,
    HandOffFacts,
    LifecycleChange,
    Route,
    SignalAssigned,
    SignalLifecycleChanged,
    Urgency,
)
from shared.taxonomy import OUTCOMES


class Status(StrEnum):
    """Where a signal stands."""

    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"
    FEEDBACK_GIVEN = "feedback_given"
    CLOSED = "closed"
    REJECTED = "rejected"
    REOPENED = "reopened"
    WITHDRAWN = "withdrawn"


class HistoryEntry(BaseModel):
    """One accepted transition: who, what, when, why."""

    model_config = ConfigDict(frozen=True)

    change: LifecycleChange
    status: Status
    actor_partner_id: str
    at: datetime
    outcome: str | None = None
    reason: str | None = None  # for "regie": the body that leads
    body_id: str | None = None
    actor_person: str | None = None  # the person's verified e-mail address; None for a partner system


class SignalRecord(BaseModel):
    """The feedback service's state of one signal (the table value)."""

    signal_id: str
    reference: str
    category: str
    urgency: Urgency
    route: Route
    body_id: str
    body_name: str
    body_partner_ids: list[str]
    reporter_partner_id: str
    reporter: Contact
    status: Status
    matched: bool = False
    rule_id: str = ""
    rule_description: str = ""
    facts: dict[str, str] = {}
    summary_sealed: str | None = None
    feedback_count: int = 0
    feedback_sealed: list[str] = []
    received_at: datetime
    assigned_at: datetime
    attempt: int = 1
    deadlines: list[Deadline] = []
    met: dict[str, datetime] = {}
    history: list[HistoryEntry] = []
    # SLA emissions already published (warning, breach, escalation steps), keyed per attempt and clock.
    emitted: list[str] = []
    # The last lifecycle request ids applied, so a redelivered request is answered, not applied twice.
    request_ids: list[str] = []
    # Escalation interval snapshotted with the deadlines (a later config change does not move it).
    escalation_interval_s: float = 86400.0
    # On a match: the body the coordinator said leads (regie), if set.
    regie_body_id: str | None = None
    # The child's pseudonym: whose key ring holds this signal's data key (ADR 0020); None before per-child keys.
    subject_key: str | None = None
    # The current assignment's facts, which a rejection carries to routing's hand-off (ADR 0023).
    handoff: HandOffFacts | None = None


class ErasedStub(BaseModel):
    """What is left of an erased signal: no content, only what the SLA figures need (ADR 0020)."""

    erased: Literal[True] = True
    signal_id: str
    reference: str | None = None
    route: Route | None = None
    body_id: str | None = None
    urgency: Urgency | None = None
    status_at_erasure: Status | None = None
    received_at: datetime | None = None
    assigned_at: datetime | None = None
    deadlines: list[Deadline] = []
    met: dict[str, datetime] = {}
    erasure_id: str
    reason: str
    erased_at: datetime


STUB_PREFIX = b'{"erased":true'


def decode_stored(raw: bytes) -> SignalRecord | ErasedStub:
    """A lifecycle table value: a signal's record, or the stub of an erased one."""
    if raw.startswith(STUB_PREFIX):
        return ErasedStub.model_validate_json(raw)
    return SignalRecord.model_validate_json(raw)


def erased_stub(record: SignalRecord | None, *, signal_id: str, erasure_id: str, reason: str,
                at: datetime) -> ErasedStub:
    """The content-free stub that replaces a record (or marks a signal erased before it reached feedback)."""
    if record is None:
        return ErasedStub(signal_id=signal_id, erasure_id=erasure_id, reason=reason, erased_at=at)
    return ErasedStub(
        signal_id=record.signal_id, reference=record.reference, route=record.route, body_id=record.body_id,
        urgency=record.urgency, status_at_erasure=record.status, received_at=record.received_at,
        assigned_at=record.assigned_at, deadlines=record.deadlines, met=record.met, erasure_id=erasure_id,
        reason=reason, erased_at=at,
    )


# Which changes are allowed from which status (the reporter's withdrawal is checked apart).
ALLOWED: dict[LifecycleChange, frozenset[Status]] = {
    LifecycleChange.ACKNOWLEDGED: frozenset({Status.ASSIGNED}),
    LifecycleChange.FEEDBACK: frozenset({Status.ACKNOWLEDGED, Status.FEEDBACK_GIVEN, Status.REOPENED}),
    LifecycleChange.CLOSED: frozenset({Status.FEEDBACK_GIVEN, Status.REOPENED}),
    LifecycleChange.REJECTED: frozenset({Status.ASSIGNED, Status.ACKNOWLEDGED}),
    LifecycleChange.REOPENED: frozenset({Status.CLOSED}),
    LifecycleChange.WITHDRAWN: frozenset(
        {Status.ASSIGNED, Status.ACKNOWLEDGED, Status.FEEDBACK_GIVEN, Status.REOPENED, Status.REJECTED}
    ),
    LifecycleChange.REGIE: frozenset({Status.ASSIGNED, Status.ACKNOWLEDGED, Status.FEEDBACK_GIVEN, Status.REOPENED}),
}
RESULTING_STATUS: dict[LifecycleChange, Status] = {
    LifecycleChange.ACKNOWLEDGED: Status.ACKNOWLEDGED,
    LifecycleChange.FEEDBACK: Status.FEEDBACK_GIVEN,
    LifecycleChange.CLOSED: Status.CLOSED,
    LifecycleChange.REJECTED: Status.REJECTED,
    LifecycleChange.REOPENED: Status.REOPENED,
    LifecycleChange.WITHDRAWN: Status.WITHDRAWN,
}
# Which clock a change stops.
CLOCK_MET_BY: dict[LifecycleChange, str] = {
    LifecycleChange.ACKNOWLEDGED: "acknowledge",
    LifecycleChange.FEEDBACK: "feedback",
    LifecycleChange.CLOSED: "close",
}


@dataclass(frozen=True)
class Refusal:
    """Why a request was not applied: HTTP status, stable code, Dutch message."""

    status: int
    code: str
    message: str


@dataclass(frozen=True)
class PersonScope:
    """A person acting for their organisation: their verified e-mail address and the bodies the municipality
    file lists them for (body id -> role). None in its place: a partner system, which acts for the whole
    organisation (ADR 0017)."""

    email: str
    roles: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChangeRequest:
    """A validated request for a lifecycle change."""

    change: LifecycleChange
    actor_partner_id: str
    at: datetime
    outcome: str | None = None
    reason: str | None = None
    message_sealed: str | None = None
    person: PersonScope | None = None
    regie_body_id: str | None = None


def is_reporter(record: SignalRecord, partner_id: str, person: PersonScope | None = None) -> bool:
    """The reporting organisation's system, or the very person who reported."""
    if partner_id != record.reporter_partner_id:
        return False
    return person is None or person.email.lower() == record.reporter.email.lower()


def is_body(record: SignalRecord, partner_id: str, person: PersonScope | None = None) -> bool:
    """The assigned body: a partner system of it, or a person the file lists for that body.

    Role rule: a person who reported the signal acts on it only as its reporter, never as the body that
    handles it (a teacher is not the ZAT of her own signal, even when she sits in it).
    """
    if partner_id not in record.body_partner_ids:
        return False
    if person is None:
        return True
    return record.body_id in person.roles and not is_reporter(record, partner_id, person)


def can_see(record: SignalRecord, partner_id: str, person: PersonScope | None = None) -> bool:
    """Need-to-know: the reporter and the assigned body."""
    return is_reporter(record, partner_id, person) or is_body(record, partner_id, person)


# Domain privacy rule 3: health details for JGZ roles, police details for the police and the coordinator.
HEALTH_ROLES = frozenset({"jeugdarts", "jeugdverpleegkundige", "jgz"})
POLICE_DETAIL_ROLES = frozenset({"coordinator", "wijkagent"})


def may_read_free_text(record: SignalRecord, partner_id: str, person: PersonScope | None = None, *,
                       reporter_kind: str = "") -> bool:
    """The free text is for the assigned body only; a person also needs the role its kind of detail asks."""
    if not is_body(record, partner_id, person):
        return False
    if person is None:
        return True
    role = person.roles.get(record.body_id, "")
    if record.category == "GEZ":
        return role in HEALTH_ROLES
    if reporter_kind == "police":
        return role in POLICE_DETAIL_ROLES
    return True


def check(record: SignalRecord | None, request: ChangeRequest) -> Refusal | None:  # noqa: PLR0911 - one guard per refusal
    """Whether a change may be applied now; None when it may."""
    if record is None or not can_see(record, request.actor_partner_id, request.person):
        return Refusal(404, "signal_not_found", "Dit signaal bestaat niet of is niet voor u zichtbaar.")
    if request.change not in ALLOWED:
        return Refusal(422, "unknown_change", "Dit soort wijziging kan niet worden aangevraagd.")
    if request.change is LifecycleChange.WITHDRAWN:
        if not is_reporter(record, request.actor_partner_id, request.person):
            return Refusal(403, "only_reporter_may_withdraw", "Alleen de melder kan een signaal intrekken.")
    elif not is_body(record, request.actor_partner_id, request.person):
        return Refusal(403, "only_assigned_body",
                       "Alleen het toegewezen overleg kan dit doen; u kunt alleen intrekken.")
    if record.status not in ALLOWED[request.change]:
        if request.change is LifecycleChange.CLOSED and record.feedback_count == 0:
            return Refusal(409, "feedback_required_before_closing",
                           "Een signaal kan pas worden afgesloten na terugkoppeling aan de melder.")
        return Refusal(409, "illegal_transition",
                       f"Dit kan niet in de huidige status ({record.status.value}).")
    return _content_refusal(record, request)


def _content_refusal(record: SignalRecord, request: ChangeRequest) -> Refusal | None:
    """What a change that may happen now still needs: feedback before closing, an outcome, a reason, a message."""
    if request.change is LifecycleChange.CLOSED:
        if record.feedback_count == 0:
            return Refusal(409, "feedback_required_before_closing",
                           "Een signaal kan pas worden afgesloten na terugkoppeling aan de melder.")
        if request.outcome not in OUTCOMES:
            return Refusal(422, "invalid_outcome", f"Kies een uitkomst: {', '.join(OUTCOMES)}.")
    if request.change is LifecycleChange.REGIE:
        return _regie_refusal(record, request)
    if request.change in (LifecycleChange.REJECTED, LifecycleChange.REOPENED) and not request.reason:
        return Refusal(422, "reason_required", "Geef een reden op.")
    if request.change is LifecycleChange.FEEDBACK and not request.message_sealed:
        return Refusal(422, "message_required", "Geef een bericht voor de melder op.")
    return None


def _regie_refusal(record: SignalRecord, request: ChangeRequest) -> Refusal | None:
    """Regie is for a signal with a match, set by the coordinator (a person in that role, or the body's system)."""
    if not record.matched:
        return Refusal(409, "no_match", "De regie bepaalt u alleen bij een match.")
    if request.person is not None and request.person.roles.get(record.body_id) != "coordinator":
        return Refusal(403, "only_coordinator", "Alleen de jeugd- en veiligheidscoördinator bepaalt de regie.")
    if not request.regie_body_id:
        return Refusal(422, "regie_body_required", "Kies wie de regie neemt.")
    return None


def apply(record: SignalRecord, request: ChangeRequest) -> tuple[SignalRecord, SignalLifecycleChanged]:
    """Apply a change that `check` allowed; returns the new record and the event to publish."""
    status = RESULTING_STATUS.get(request.change, record.status)
    reason = request.regie_body_id if request.change is LifecycleChange.REGIE else request.reason
    entry = HistoryEntry(
        change=request.change, status=status, actor_partner_id=request.actor_partner_id, at=request.at,
        outcome=request.outcome, reason=reason, body_id=record.body_id,
        actor_person=request.person.email if request.person else None,
    )
    met = dict(record.met)
    clock = CLOCK_MET_BY.get(request.change)
    if clock and clock not in met:
        met[clock] = request.at
    updated = record.model_copy(
        update={
            "status": status,
            "history": [*record.history, entry],
            "met": met,
            "feedback_count": record.feedback_count + (request.change is LifecycleChange.FEEDBACK),
            "regie_body_id": request.regie_body_id if request.change is LifecycleChange.REGIE
            else record.regie_body_id,
            "feedback_sealed": [*record.feedback_sealed, request.message_sealed]
            if request.change is LifecycleChange.FEEDBACK and request.message_sealed else record.feedback_sealed,
        }
    )
    return updated, lifecycle_event(updated, change=request.change, actor=request.actor_partner_id, at=request.at,
                                    outcome=request.outcome, reason=reason,
                                    message_sealed=request.message_sealed)


def lifecycle_event(
    record: SignalRecord, *, change: LifecycleChange, actor: str, at: datetime, outcome: str | None = None,
    reason: str | None = None, message_sealed: str | None = None,
) -> SignalLifecycleChanged:
    """The event that tells the world what happened to a signal."""
    return SignalLifecycleChanged(
        signal_id=record.signal_id, reference=record.reference, change=change, status=record.status.value,
        actor_partner_id=actor, route=record.route, body_id=record.body_id, body_name=record.body_name,
        urgency=record.urgency, outcome=outcome, reason=reason, message_sealed=message_sealed,
        reporter=record.reporter, reporter_partner_id=record.reporter_partner_id, at=at,
        received_at=record.received_at, attempt=record.attempt,
        handoff=record.handoff if change is LifecycleChange.REJECTED else None,
    )


def on_assigned(
    record: SignalRecord | None, assigned: SignalAssigned, *, body_partner_ids: list[str],
    deadlines: list[Deadline], escalation_interval_s: float = 86400.0,
) -> tuple[SignalRecord, SignalLifecycleChanged] | None:
    """Start (or restart, after a hand-off) the lifecycle; None for a redelivered or moot assignment.

    A re-routed signal (higher attempt) gets new clocks; its history, feedback and what was emitted
    for earlier attempts stay. A signal the reporter withdrew stays withdrawn.
    """
    if record is not None and (record.attempt >= assigned.attempt or record.status is Status.WITHDRAWN):
        return None
    entry = HistoryEntry(change=LifecycleChange.ASSIGNED, status=Status.ASSIGNED, actor_partner_id="schakel",
                         at=assigned.assigned_at, reason=assigned.rule_id, body_id=assigned.body_id)
    new = SignalRecord(
        signal_id=assigned.signal_id, reference=assigned.reference, category=assigned.category,
        urgency=assigned.urgency, route=assigned.route, body_id=assigned.body_id, body_name=assigned.body_name,
        body_partner_ids=sorted(body_partner_ids), reporter_partner_id=assigned.partner_id,
        reporter=assigned.reporter, status=Status.ASSIGNED, matched=assigned.matched, rule_id=assigned.rule_id,
        rule_description=assigned.rule_description, facts=assigned.facts, summary_sealed=assigned.summary_sealed,
        feedback_count=record.feedback_count if record else 0,
        feedback_sealed=record.feedback_sealed if record else [],
        received_at=assigned.received_at, assigned_at=assigned.assigned_at, attempt=assigned.attempt,
        deadlines=deadlines, met={}, history=[*(record.history if record else []), entry],
        emitted=record.emitted if record else [], request_ids=record.request_ids if record else [],
        escalation_interval_s=escalation_interval_s, subject_key=assigned.subject_key,
        handoff=HandOffFacts.of(assigned),
    )
    return new, lifecycle_event(new, change=LifecycleChange.ASSIGNED, actor="schakel", at=assigned.assigned_at)
