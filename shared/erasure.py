"""Erasing a child, or some of its signals (ADR 0020): destroy the keys, tell every service, audit it.

One path for the CLI (`schakel privacy erase`), the privacy officer over feedback's API and the retention
sweep. In this order: the data keys get tombstones on privacy.keys (from then on nothing about them can be
decrypted, anywhere), a content-free `SubjectErased` goes out on privacy.erasures (every service drops the key
from its memory and the signals' rows from its tables), and an audit record per signal goes to audit.log.
A crash in between is repaired by running the erasure again: tombstones and events are idempotent in effect.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared.events import CLOUDEVENT_HEADERS, AuditRecorded, SubjectErased, encode_event, make_event, utcnow
from shared.keystore import KeyStore, Send
from shared.topics import AUDIT_LOG, PRIVACY_ERASURES

Reason = Literal["request", "retention"]
NOT_A_SIGNAL = "inbound:"  # key ids of rejected inbound records


@dataclass(frozen=True)
class Actor:
    """Who erases: the partner (or `operator`, `schakel`) and in what capacity, for the audit trail."""

    partner_id: str
    on_behalf_of: str
    service: str
    person: str | None = None  # the person's verified e-mail address, when a person (not a system) erases


def erasure_records(erased: SubjectErased, *, actor: Actor, source: str) -> list[tuple[str, bytes, bytes]]:
    """The SubjectErased record and the audit records of an erasure (topic, key, value; CloudEvents, structured)."""
    event = make_event(erased, source=source, subject=None, event_id=erased.erasure_id)
    records = [(PRIVACY_ERASURES.name, erased.subject_key.encode(), encode_event(event))]
    action = "erased" if erased.reason == "request" else "erased_by_retention"
    signal_ids = [s for s in erased.signal_ids if not s.startswith(NOT_A_SIGNAL)]
    for signal_id in signal_ids or [None]:  # type: ignore[list-item]
        audit = AuditRecorded(audit_id=str(uuid.uuid4()), signal_id=signal_id, actor_partner_id=actor.partner_id,
                              actor_person=actor.person, on_behalf_of=actor.on_behalf_of, action=action,
                              outcome="allowed", request_id=erased.erasure_id, service=actor.service, at=erased.at)
        audit_event = make_event(audit, source=source, subject=signal_id, event_id=audit.audit_id)
        records.append((AUDIT_LOG.name, (signal_id or "").encode(), encode_event(audit_event)))
    return records


async def erase(*, keys: KeyStore, send: Send, subject_key: str, signal_ids: list[str] | None, reason: Reason,
                actor: Actor, source: str, at: datetime | None = None) -> SubjectErased:
    """Erase a child (signal_ids None: every key it has) or some of its signals; returns the event sent."""
    destroyed = await keys.erase(subject_key, signal_ids)
    erased = SubjectErased(
        erasure_id=str(uuid.uuid4()), subject_key=subject_key,
        signal_ids=sorted(set(destroyed) | set(signal_ids or [])),
        scope="subject" if signal_ids is None else "signals", reason=reason, at=at or utcnow(),
    )
    for topic, key, value in erasure_records(erased, actor=actor, source=source):
        await send(topic, key, value, CLOUDEVENT_HEADERS)
    return erased
