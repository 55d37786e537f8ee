"""Pure routing: a received signal becomes an assignment to a body, with the reason why."""

from __future__ import annotations

from datetime import datetime

from shared.events import Route, SignalAssigned, SignalReceived
from shared.municipality import Body, Municipality
from shared.taxonomy import CATEGORIES


def resolve_body(route: Route, signal: SignalReceived, municipality: Municipality) -> Body | None:
    """The body that serves a route for this signal (school's ZAT, the postcode's wijkteam, ...)."""
    if route is Route.ZAT:
        return municipality.zat_body(signal.school_brin) if signal.school_brin else None
    if route is Route.MELDCODE:
        return municipality.meldcode_body(signal.school_brin) if signal.school_brin else None
    if route is Route.WIJKTEAM:
        return municipality.wijkteam_body(signal.postcode_area) if signal.postcode_area else None
    if route is Route.OOV:
        return municipality.bodies["oov"]
    return municipality.bodies["coordinator"]


def assign_by_default(
    signal: SignalReceived, municipality: Municipality, *, now: datetime, attempt: int = 1
) -> SignalAssigned:
    """Assign by the category's default route; the coordinator triages what cannot be resolved."""
    category = CATEGORIES[signal.category]
    body = resolve_body(category.route, signal, municipality)
    rule_id = f"default-{signal.category.lower()}"
    description = f"Standaardroute voor {category.code}: {category.route.value}"
    facts = {"category": signal.category, "urgency": signal.urgency.value}
    if signal.school_brin:
        facts["school_brin"] = signal.school_brin
    if signal.postcode_area:
        facts["postcode_area"] = signal.postcode_area
    if body is None:
        body = municipality.bodies["coordinator"]
        rule_id = "fallback-coordinator"
        description = f"Geen {category.route.value} te vinden voor dit signaal; de coördinator triageert"
    return SignalAssigned(
        signal_id=signal.signal_id,
        reference=signal.reference,
        category=signal.category,
        urgency=signal.urgency,
        route=body.route,
        body_id=body.id,
        body_name=body.name,
        rule_id=rule_id,
        rule_description=description,
        facts=facts,
        partner_id=signal.partner_id,
        partner_kind=signal.partner_kind,
        school_brin=signal.school_brin,
        flags=signal.flags,
        matched=False,
        summary_sealed=signal.summary_sealed,
        reporter=signal.reporter,
        received_at=signal.received_at,
        assigned_at=now,
        attempt=attempt,
    )
