"""Events the tests build again and again: one signal as intake publishes it."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events import Contact, SignalReceived, Urgency, deterministic_id

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MELDER = Contact(name="Melder", email="melder@school.example")


def received_signal(n: int, *, namespace: str, partner: str, kind: str, category: str, subject: str = "sk_child",
                    family: str | None = None, school: str | None = None, postcode: str | None = None,
                    flags: list[str] | None = None, at: datetime = T0, reporter: Contact = MELDER) -> SignalReceived:
    """Signal n of a test (its id from `namespace` and n), urgency U2, under the duty to report."""
    return SignalReceived(
        signal_id=deterministic_id(namespace, str(n)), reference=f"SK-2026-{n:08d}", partner_id=partner,
        partner_kind=kind, category=category, urgency=Urgency.U2, subject_key=subject, family_key=family,
        school_brin=school, postcode_area=postcode, flags=flags or [], received_at=at, reporter=reporter,
        legal_basis="meldrecht",
    )
