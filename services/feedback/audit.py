"""The audit trail: every read and write of a signal becomes an `AuditRecorded` on `audit.log`.

Who (partner id), in what capacity (reporter, the assigned body, or none), what (read, acknowledged,
feedback, ...), the outcome and HTTP status, when, which signal. Never content: no message, no
summary, no reporter name. Writing the record is awaited before the partner gets an answer, so a
read that cannot be audited is not served (503).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import faust

from services.feedback.lifecycle import SignalRecord
from shared.events import AuditRecorded, encode_event, make_event
from shared.kafka import send_and_wait
from shared.topics import AUDIT_LOG

SOURCE = "schakel/feedback"


def capacity(record: SignalRecord | None, partner_id: str) -> str:
    """In what capacity a partner acts on a signal: reporter, body:<id>, both, or none."""
    if record is None:
        return "none"
    roles = []
    if partner_id == record.reporter_partner_id:
        roles.append("reporter")
    if partner_id in record.body_partner_ids:
        roles.append(f"body:{record.body_id}")
    return "+".join(roles) or "none"


def audit_record(
    *, signal_id: str, partner_id: str, on_behalf_of: str, action: str, http_status: int, at: datetime,
    request_id: str | None = None,
) -> AuditRecorded:
    """One audit record; the outcome follows from the HTTP status."""
    outcome: Literal["allowed", "refused", "failed"] = (
        "allowed" if http_status < 400 else "failed" if http_status >= 500 else "refused"
    )
    return AuditRecorded(
        audit_id=str(uuid.uuid4()), signal_id=signal_id, actor_partner_id=partner_id, on_behalf_of=on_behalf_of,
        action=action, outcome=outcome, http_status=http_status, request_id=request_id, service="feedback", at=at,
    )


async def write_audit(app: faust.App, record: AuditRecorded) -> None:
    """Publish an audit record keyed by signal id and wait for the broker's acknowledgement."""
    event = make_event(record, source=SOURCE, subject=record.signal_id or "", event_id=record.audit_id)
    await send_and_wait(app, topic=AUDIT_LOG.name, key=(record.signal_id or "").encode(), value=encode_event(event))
