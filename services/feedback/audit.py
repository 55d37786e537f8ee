"""The audit trail: every read and write of a signal becomes an `AuditRecorded` on `audit.log`.

Who (partner id, and the person when a person acted), in what capacity (reporter, the assigned body, or
none), what (read, acknowledged, feedback, ...), the outcome and HTTP status, when, which signal. Never
content: no message, no summary, no reporter name. Writing the record is awaited before the partner gets an answer, so a
read that cannot be audited is not served (503).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import faust

from services.feedback.lifecycle import PersonScope, SignalRecord, is_body, is_reporter
from shared.events import AuditRecorded, make_event, source_urn
from shared.kafka import send_event_and_wait
from shared.persons import PersonIdentity
from shared.topics import AUDIT_LOG

SOURCE = source_urn("feedback")


def capacity(record: SignalRecord | None, partner_id: str, person: PersonScope | None = None) -> str:
    """In what capacity a partner (or a person) acts on a signal: reporter, body:<id>, both, or none."""
    if record is None:
        return "none"
    roles = []
    if is_reporter(record, partner_id, person):
        roles.append("reporter")
    if is_body(record, partner_id, person):
        roles.append(f"body:{record.body_id}")
    return "+".join(roles) or "none"


def audit_record(
    *, signal_id: str, partner_id: str, on_behalf_of: str, action: str, http_status: int, at: datetime,
    request_id: str | None = None, person: PersonIdentity | None = None,
) -> AuditRecorded:
    """One audit record; the outcome follows from the HTTP status."""
    outcome: Literal["allowed", "refused", "failed"] = (
        "allowed" if http_status < 400 else "failed" if http_status >= 500 else "refused"
    )
    return AuditRecorded(
        audit_id=str(uuid.uuid4()), signal_id=signal_id, actor_partner_id=partner_id, on_behalf_of=on_behalf_of,
        actor_person=person.email if person else None, actor_person_id=person.subject if person else None,
        action=action, outcome=outcome, http_status=http_status, request_id=request_id, service="feedback", at=at,
    )


async def write_audit(app: faust.App, record: AuditRecorded) -> None:
    """Publish an audit record keyed by signal id and wait for the broker's acknowledgement."""
    event = make_event(record, source=SOURCE, subject=record.signal_id, event_id=record.audit_id)
    await send_event_and_wait(app, topic=AUDIT_LOG.name, key=(record.signal_id or "").encode(), event=event)
