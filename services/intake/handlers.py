"""Pure intake logic: a validated request from a partner becomes a SignalReceived event."""

from __future__ import annotations

from datetime import datetime

from services.intake.validation import SignalIn
from shared.events import Contact, SignalReceived, deterministic_id
from shared.municipality import Partner
from shared.pseudonym import family_key, subject_key
from shared.taxonomy import CATEGORIES


def signal_id_for(*, partner_id: str, idempotency_key: str | None, fallback: str) -> str:
    """Deterministic per (partner, Idempotency-Key) so a retried request names the same signal."""
    if idempotency_key:
        return deterministic_id("signal", partner_id, idempotency_key)
    return fallback


def received_event_id(signal_id: str) -> str:
    """The id of a signal's signals.received event (deterministic: a retry publishes the same event)."""
    return deterministic_id("received", signal_id)


def reference_for(signal_id: str, received_at: datetime) -> str:
    """The short human reference, e.g. SK-2026-04711234 (digits only, derived from the id)."""
    return f"SK-{received_at.year}-{int(signal_id.replace('-', ''), 16) % 10**8:08d}"


def to_signal_received(
    signal: SignalIn, *, partner: Partner, signal_id: str, received_at: datetime, pseudonym_secret: str,
    summary_sealed: str | None = None,
) -> SignalReceived:
    """Pseudonymise identifiers, apply the category's default urgency; the free text comes encrypted (ADR 0020)."""
    subject = signal.subject
    reporter = signal.reporter or partner.contact
    school_brin = subject.school_brin or (partner.school_brin if partner.kind == "school" else None)
    return SignalReceived(
        signal_id=signal_id,
        reference=reference_for(signal_id, received_at),
        partner_id=partner.id,
        partner_kind=partner.kind,
        category=signal.category,
        urgency=signal.urgency or CATEGORIES[signal.category].urgency,
        subject_key=subject_key(
            secret=pseudonym_secret, bsn=subject.bsn, school_brin=subject.school_brin, pupil_ref=subject.pupil_ref
        ),
        family_key=family_key(secret=pseudonym_secret, family_ref=subject.family_ref) if subject.family_ref else None,
        school_brin=school_brin,
        flags=signal.flags,
        postcode_area=signal.postcode_area,
        summary_sealed=summary_sealed,
        observed_at=signal.observed_at,
        received_at=received_at,
        reporter=Contact(name=reporter.name, email=reporter.email),
        legal_basis=signal.legal_basis,
        parents_informed=signal.parents_informed,
    )
