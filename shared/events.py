"""CloudEvents 1.0 envelope and the pydantic models of every event (the contract).

Events follow the NL GOV profile for CloudEvents and travel in the structured mode of the CloudEvents Kafka
protocol binding (ADR 0018): the record value is the whole envelope as JSON and the record carries
`content-type: application/cloudevents+json; charset=UTF-8`. `source` is a URN of the Schakel component
(`urn:nld:oin:<the municipality's OIN>:systeem:schakel-<component>`), `type` is reverse-DNS from `nl.` with
a version suffix, `time` is when the event was logged (written), and `subject` is a signal id or absent —
never personal data.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

SCHAKEL_NAMESPACE = uuid.UUID("6f1c3a52-7d8e-4b1f-9a3c-2e5d8f0b4c71")

# The structured mode of the CloudEvents Kafka binding: this header on every record whose value is an envelope.
CONTENT_TYPE_HEADER = "content-type"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
CLOUDEVENT_HEADERS: tuple[tuple[str, bytes], ...] = ((CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE.encode()),)
# Records that are not events (intake's idempotency log, notify's e-mail dead letters) say they are plain JSON.
JSON_HEADERS: tuple[tuple[str, bytes], ...] = ((CONTENT_TYPE_HEADER, b"application/json"),)
# The municipality's OIN (Organisatie-identificatienummer, 20 digits) names the source system (NL GOV profile);
# SCHAKEL_OIN, read once per process. The default is a development value, not a registered OIN.
DEVELOPMENT_OIN = "00000000000000000000"
OIN = os.environ.get("SCHAKEL_OIN", DEVELOPMENT_OIN)
if not re.fullmatch(r"[0-9]{20}", OIN):
    raise ValueError("SCHAKEL_OIN must be the 20 digits of an OIN")
EVENT_TYPE = re.compile(r"^nl\.schakel(\.[a-z][a-z0-9_]*)+\.v[0-9]+$")


def source_urn(component: str) -> str:
    """The CloudEvents `source` of a Schakel component (intake, routing, ..., cli): a URN per the NL GOV profile."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*", component):
        raise ValueError(f"not a component name: {component!r}")
    return f"urn:nld:oin:{OIN}:systeem:schakel-{component}"


_NAMESPACE_BYTES = SCHAKEL_NAMESPACE.bytes
_VARIANT_NIBBLE = "89ab89ab89ab89ab"  # RFC 4122 variant: the nibble's top bits 10, indexed by its old value


def deterministic_id(*parts: str) -> str:
    """A UUID derived from its parts, so a redelivered input yields the same event id.

    Exactly `str(uuid.uuid5(SCHAKEL_NAMESPACE, "|".join(parts)))` (tests/unit/test_events_ids.py), computed
    on the hex digest: building a `uuid.UUID` took half of the 17 µs this costs per event in the record loop.
    """
    digest = hashlib.sha1(_NAMESPACE_BYTES + "|".join(parts).encode(), usedforsecurity=False).hexdigest()
    variant = _VARIANT_NIBBLE[int(digest[16], 16)]
    return f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-{variant}{digest[17:20]}-{digest[20:32]}"


def utcnow() -> datetime:
    """The current instant, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Route(StrEnum):
    """The consultation bodies a signal can be routed to."""

    ZAT = "zat"
    WIJKTEAM = "wijkteam"
    OOV = "oov"
    MELDCODE = "meldcode"
    COORDINATOR = "coordinator"


class Urgency(StrEnum):
    """U0 acute … U3 low / monitor."""

    U0 = "U0"
    U1 = "U1"
    U2 = "U2"
    U3 = "U3"


class Contract(BaseModel):
    """Base of every event payload: strict about unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_ADDRESS = re.compile(r"^[^\s@<>()\[\],;:\\\"]+@[^\s@<>()\[\],;:\\\"]+\.[^\s@<>()\[\],;:\\\".]{2,}$")


def _an_address(value: str) -> str:
    if len(value) > 254 or not _ADDRESS.match(value):
        raise ValueError("not an e-mail address")
    return value


# Inside Schakel's records an address is checked for its shape only: intake (the trust boundary) validated it in
# full (email-validator, IDNA) before it entered a record, and the full check on every record every service
# decodes cost about 0.1 ms each (docs/benchmarks.md). Municipality-file addresses keep the full check.
EmailAddress = Annotated[str, AfterValidator(_an_address), WithJsonSchema({"type": "string", "format": "email"})]


class Contact(Contract):
    """A professional who is mailed (never the child or the parents)."""

    name: str = Field(max_length=200)
    email: EmailAddress


class SignalReceived(Contract):
    """Intake validated a signal and pseudonymised its subject."""

    event_type: Literal["nl.schakel.signal.received.v1"] = "nl.schakel.signal.received.v1"
    signal_id: str
    reference: str
    partner_id: str
    partner_kind: str
    category: str
    urgency: Urgency
    subject_key: str
    family_key: str | None = None
    school_brin: str | None = None
    flags: list[str] = []
    postcode_area: str | None = None
    summary_sealed: str | None = None
    observed_at: datetime | None = None
    received_at: datetime
    reporter: Contact
    legal_basis: str
    parents_informed: bool = False


class SignalAssigned(Contract):
    """Routing assigned a signal to a consultation body, and says why."""

    event_type: Literal["nl.schakel.signal.assigned.v1"] = "nl.schakel.signal.assigned.v1"
    signal_id: str
    reference: str
    category: str
    urgency: Urgency
    route: Route
    body_id: str
    body_name: str
    rule_id: str
    rule_description: str
    facts: dict[str, str] = {}
    partner_id: str
    partner_kind: str
    school_brin: str | None = None
    flags: list[str] = []
    matched: bool = False
    summary_sealed: str | None = None
    reporter: Contact
    received_at: datetime
    assigned_at: datetime
    attempt: int = 1
    previous_body_ids: list[str] = []
    inform_body_ids: list[str] = []
    subject_key: str | None = None
    family_key: str | None = None
    postcode_area: str | None = None
    # Partner kinds of every signal in the match (this one included); empty when not matched.
    match_partner_kinds: list[str] = []


class HandOffFacts(Contract):
    """What routing needs to hand a rejected signal on, as the rejected assignment said it (ADR 0023).

    Feedback keeps it with the signal and a rejection carries it, so routing reads rejections only, not every
    assignment again. The rest of what a hand-off needs is on the lifecycle event itself.
    """

    category: str
    partner_kind: str
    school_brin: str | None = None
    postcode_area: str | None = None
    flags: list[str] = []
    match_partner_kinds: list[str] = []
    previous_body_ids: list[str] = []
    summary_sealed: str | None = None
    subject_key: str | None = None
    family_key: str | None = None

    @classmethod
    def of(cls, assigned: SignalAssigned) -> HandOffFacts:
        """The facts of an assignment that the next hand-off decides on (every field is the assignment's own)."""
        return cls(**{name: getattr(assigned, name) for name in cls.model_fields})


class LifecycleChange(StrEnum):
    """What a body (or the reporter) did with a signal."""

    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"
    FEEDBACK = "feedback"
    CLOSED = "closed"
    REJECTED = "rejected"
    REOPENED = "reopened"
    WITHDRAWN = "withdrawn"
    REGIE = "regie"  # on a match, the coordinator sets which body leads (the status does not change)


class LifecycleRequested(Contract):
    """A partner asked over HTTP for a lifecycle change; the feedback agent decides."""

    event_type: Literal["nl.schakel.lifecycle.requested.v1"] = "nl.schakel.lifecycle.requested.v1"
    request_id: str
    signal_id: str
    change: LifecycleChange
    partner_id: str
    # The person who asked (their verified e-mail address), when a person asked rather than a partner system;
    # the agent looks up the bodies the municipality file lists them for (ADR 0017).
    person_email: EmailAddress | None = None
    regie_body_id: str | None = None  # for change "regie": the body that leads
    message_sealed: str | None = None
    outcome: str | None = None
    reason: str | None = None
    requested_at: datetime
    reply_to: str | None = None  # the feedback worker whose HTTP request waits for the answer (ADR 0015)


class SignalReadRequested(Contract):
    """A feedback worker asks the worker that owns a signal's partition for the signal's record."""

    event_type: Literal["nl.schakel.lifecycle.read_requested.v1"] = "nl.schakel.lifecycle.read_requested.v1"
    request_id: str
    signal_id: str
    reply_to: str
    requested_at: datetime


class LifecycleReplied(Contract):
    """The owning feedback worker's answer to a read or change that another worker received over HTTP."""

    event_type: Literal["nl.schakel.lifecycle.replied.v1"] = "nl.schakel.lifecycle.replied.v1"
    request_id: str
    reply_to: str
    signal_id: str
    record: dict[str, Any] | None = None  # the signal's record after the request; absent: no such signal here
    refusal_status: int | None = None
    refusal_code: str | None = None
    refusal_message: str | None = None


class SlaCheckRequested(Contract):
    """The feedback sweep found a clock due for a warning, breach or escalation; the agent decides."""

    event_type: Literal["nl.schakel.sla.check.requested.v1"] = "nl.schakel.sla.check.requested.v1"
    signal_id: str
    attempt: int = 1
    requested_at: datetime


class SignalLifecycleChanged(Contract):
    """A signal moved to a new lifecycle state."""

    event_type: Literal["nl.schakel.signal.lifecycle.v1"] = "nl.schakel.signal.lifecycle.v1"
    signal_id: str
    reference: str
    change: LifecycleChange
    status: str
    actor_partner_id: str
    route: Route
    body_id: str
    body_name: str
    urgency: Urgency
    outcome: str | None = None
    reason: str | None = None
    message_sealed: str | None = None
    reporter: Contact
    reporter_partner_id: str
    at: datetime
    received_at: datetime | None = None
    attempt: int = 1
    # On a rejection only: the rejected assignment's facts, for routing's hand-off (ADR 0023).
    handoff: HandOffFacts | None = None


class SignalsMatched(Contract):
    """Two or more different partners signalled the same child (or family) within the window."""

    event_type: Literal["nl.schakel.signals.matched.v1"] = "nl.schakel.signals.matched.v1"
    match_id: str
    key_kind: Literal["subject", "family"]
    signal_id: str
    reference: str
    matched_signal_ids: list[str]
    matched_references: list[str]
    partner_ids: list[str]
    partner_kinds: list[str]
    body_ids: list[str] = []
    matched_at: datetime


class Clock(StrEnum):
    """The three SLA clocks of a signal."""

    ACKNOWLEDGE = "acknowledge"
    FEEDBACK = "feedback"
    CLOSE = "close"


class SlaDeadlineEvent(Contract):
    """Fields shared by SLA warnings and breaches."""

    signal_id: str
    reference: str
    clock: Clock
    due_at: datetime
    route: Route
    body_id: str
    body_name: str
    urgency: Urgency
    reporter_partner_id: str
    attempt: int = 1
    at: datetime


class SlaWarned(SlaDeadlineEvent):
    """80 % of a term has passed and the clock is still running."""

    event_type: Literal["nl.schakel.sla.warning.v1"] = "nl.schakel.sla.warning.v1"


class SlaBreached(SlaDeadlineEvent):
    """A term passed; step names the escalation rung (handler, team_lead, coordinator)."""

    event_type: Literal["nl.schakel.sla.breached.v1"] = "nl.schakel.sla.breached.v1"
    step: str = "handler"
    step_index: int = 1


class AuditRecorded(Contract):
    """Who read or changed which signal, when and in what capacity (NEN 7513 style; no personal data)."""

    event_type: Literal["nl.schakel.audit.recorded.v1"] = "nl.schakel.audit.recorded.v1"
    audit_id: str
    signal_id: str | None = None
    actor_partner_id: str  # the organisation (partner id), or "operator"
    # The person who read or acted (NEN 7513): their verified e-mail address and their subject at the identity
    # provider; both None when a partner system acted with its token.
    actor_person: str | None = None
    actor_person_id: str | None = None
    # In what capacity the partner acted: "reporter", "body:<body id>", "none" (no access), "operator".
    on_behalf_of: str
    action: str
    outcome: Literal["allowed", "refused", "failed"]
    http_status: int | None = None
    request_id: str | None = None
    service: str
    at: datetime


class SubjectErased(Contract):
    """A child's data keys (all, or those of some signals) were destroyed: forget them (no content, ADR 0020)."""

    event_type: Literal["nl.schakel.privacy.subject_erased.v1"] = "nl.schakel.privacy.subject_erased.v1"
    erasure_id: str
    subject_key: str
    # The key ids destroyed: the signal ids of the child's signals (and ids of records of no signal yet).
    signal_ids: list[str]
    scope: Literal["subject", "signals"]
    reason: Literal["request", "retention"]
    at: datetime


class SignalErasureRequested(Contract):
    """Feedback's own step of an erasure: the worker that owns a signal's partition drops its row."""

    event_type: Literal["nl.schakel.lifecycle.erasure_requested.v1"] = "nl.schakel.lifecycle.erasure_requested.v1"
    erasure_id: str
    signal_id: str
    reason: Literal["request", "retention"]
    requested_at: datetime


class SignalErased(Contract):
    """A signal's content is gone; what is left is a content-free stub (on signals.lifecycle, keyed by signal id)."""

    event_type: Literal["nl.schakel.signal.erased.v1"] = "nl.schakel.signal.erased.v1"
    signal_id: str
    erasure_id: str
    reason: Literal["request", "retention"]
    at: datetime


class NotificationSent(Contract):
    """Notify handed an e-mail to the SMTP server (no content, only the facts)."""

    event_type: Literal["nl.schakel.notification.sent.v1"] = "nl.schakel.notification.sent.v1"
    signal_id: str
    source_event_id: str
    template: str
    recipient_role: str
    recipient: EmailAddress
    message_id: str
    sent_at: datetime
    attempts: int = 1


class DigestItemQueued(Contract):
    """Notify put one U2/U3 signal on a recipient's next daily digest (notify's own topic)."""

    event_type: Literal["nl.schakel.notification.digest_item.v1"] = "nl.schakel.notification.digest_item.v1"
    recipient_key: str
    recipient: EmailAddress
    recipient_role: str
    signal_id: str
    reference: str
    route: Route
    urgency: Urgency
    source_event_id: str
    item_id: str
    queued_at: datetime


class DigestItemWithdrawn(Contract):
    """An erased signal leaves a recipient's pending digest (notify's own topic; no content)."""

    event_type: Literal["nl.schakel.notification.digest_withdrawn.v1"] = "nl.schakel.notification.digest_withdrawn.v1"
    recipient_key: str
    signal_id: str
    erasure_id: str


class DigestDue(Contract):
    """A recipient's digest for one period is due (published by notify's timer, handled by its agent)."""

    event_type: Literal["nl.schakel.notification.digest_due.v1"] = "nl.schakel.notification.digest_due.v1"
    recipient_key: str
    period: str
    due_at: datetime


EVENT_MODELS: dict[str, type[Contract]] = {
    model.model_fields["event_type"].default: model
    for model in (
        SignalReceived,
        SignalAssigned,
        LifecycleRequested,
        SignalReadRequested,
        LifecycleReplied,
        SignalLifecycleChanged,
        NotificationSent,
        SignalsMatched,
        SlaWarned,
        SlaBreached,
        SlaCheckRequested,
        AuditRecorded,
        DigestItemQueued,
        DigestItemWithdrawn,
        DigestDue,
        SubjectErased,
        SignalErasureRequested,
        SignalErased,
    )
}

M = TypeVar("M", bound=Contract)


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event in structured JSON mode."""

    model_config = ConfigDict(extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]


class UndecodableRecord(ValueError):
    """A record that is not a valid event of the expected kind; carries a stable code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def make_event(data: Contract, *, source: str, subject: str | None, event_id: str | None = None) -> CloudEvent:
    """Wrap a payload in a CloudEvents envelope, logged now (`time`); `subject` a signal id or None."""
    payload = data.model_dump(mode="json")
    event_type = payload.pop("event_type")
    if not source.startswith("urn:nld:") or not EVENT_TYPE.match(event_type):
        raise ValueError(f"not per the NL GOV profile: source {source!r}, type {event_type!r}")
    # Every field is checked above or comes from a validated payload: constructing without a second validation
    # saves a third of the envelope's cost; encode_event's bytes are the same (tests/unit/test_events_ids.py).
    return CloudEvent.model_construct(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=event_type,
        time=utcnow(),
        subject=subject or None,
        data=payload,
    )


def encode_event(event: CloudEvent) -> bytes:
    """Serialise an envelope to UTF-8 JSON bytes."""
    return event.model_dump_json(exclude_none=True).encode()


def content_type_of(headers: Any) -> str | None:
    """The content-type header of a Kafka record (headers as a list of pairs or a mapping), if any."""
    pairs = headers.items() if isinstance(headers, dict) else (headers or ())
    for name, value in pairs:
        if name.lower() == CONTENT_TYPE_HEADER:
            return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return None


def decode_event(raw: bytes | None, *, content_type: str | None = None) -> tuple[CloudEvent, Contract]:
    """Parse and validate a record value; raise UndecodableRecord with a code.

    A record in the binding's structured mode says so in `content_type`; one without the header was written
    before Schakel set it (ADR 0018) and is read as structured too. Any other content type (the binding's
    binary mode among them) is refused.
    """
    if content_type is not None and content_type.split(";")[0].strip().lower() != "application/cloudevents+json":
        raise UndecodableRecord("unsupported_content_type", "not a structured-mode CloudEvent")
    if raw is None:
        raise UndecodableRecord("empty_record", "record has no value")
    try:
        envelope = CloudEvent.model_validate_json(raw)
    except ValidationError as exc:
        code = "bad_json" if _is_json_error(exc) else "bad_envelope"
        raise UndecodableRecord(code, _summarise(exc)) from None
    model = EVENT_MODELS.get(envelope.type)
    if model is None:
        raise UndecodableRecord("unknown_event_type", f"unknown type {envelope.type!r}")
    try:
        data = model.model_validate({**envelope.data, "event_type": envelope.type})
    except ValidationError as exc:
        raise UndecodableRecord("schema_violation", _summarise(exc)) from None
    return envelope, data


def decode_as(raw: bytes | None, model: type[M]) -> tuple[CloudEvent, M]:
    """Decode a record and insist it is of one model."""
    envelope, data = decode_event(raw)
    if not isinstance(data, model):
        raise UndecodableRecord("unexpected_event_type", f"expected {model.__name__}, got {envelope.type}")
    return envelope, data


def _is_json_error(exc: ValidationError) -> bool:
    return any(err.get("type") == "json_invalid" for err in exc.errors())


def _summarise(exc: ValidationError) -> str:
    """Field locations and error types only: never the offending input values."""
    parts = [f"{'.'.join(str(p) for p in err['loc']) or '<root>'}:{err['type']}" for err in exc.errors()[:5]]
    return "; ".join(parts)
