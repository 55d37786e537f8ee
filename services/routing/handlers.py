"""Pure routing: a received signal (or a rejection) becomes an assignment to a body, with the reason why."""

from __future__ import annotations

from datetime import datetime

from services.routing.matching import MatchState
from services.routing.rules import Decision, Facts, RuleBook
from shared.events import (
    CloudEvent,
    SignalAssigned,
    SignalLifecycleChanged,
    SignalReceived,
    Urgency,
    deterministic_id,
    make_event,
    source_urn,
)
from shared.municipality import Municipality

SOURCE = source_urn("routing")


def facts_of(signal: SignalReceived, match: MatchState) -> Facts:
    """The facts rules look at, with MATCH derived from the match state."""
    flags = frozenset(signal.flags) | ({"MATCH"} if match.matched else set())
    return Facts(
        category=signal.category, urgency=signal.urgency.value, partner_kind=signal.partner_kind,
        school_brin=signal.school_brin, postcode_area=signal.postcode_area, flags=frozenset(flags),
        match_partner_kinds=match.partner_kinds,
    )


def facts_of_assignment(assigned: SignalAssigned) -> Facts:
    """The same facts, recovered from the last assignment (for hand-offs)."""
    return Facts(
        category=assigned.category, urgency=assigned.urgency.value, partner_kind=assigned.partner_kind,
        school_brin=assigned.school_brin, postcode_area=assigned.postcode_area, flags=frozenset(assigned.flags),
        match_partner_kinds=frozenset(assigned.match_partner_kinds),
    )


def route_signal(
    signal: SignalReceived, *, book: RuleBook, municipality: Municipality, match: MatchState, now: datetime
) -> SignalAssigned:
    """The first assignment of a signal by the rules."""
    facts = facts_of(signal, match)
    decision = book.decide(facts, municipality)
    return _assigned(decision, facts, now=now, attempt=1, previous=[], base=dict(
        signal_id=signal.signal_id, reference=signal.reference, partner_id=signal.partner_id,
        summary_sealed=signal.summary_sealed, reporter=signal.reporter, received_at=signal.received_at,
        subject_key=signal.subject_key, family_key=signal.family_key,
    ))


def hand_off(
    assigned: SignalAssigned, rejection: SignalLifecycleChanged, *, book: RuleBook, municipality: Municipality,
    now: datetime,
) -> SignalAssigned:
    """The next body after a rejection: the rules' next untried body, else the coordinator; never back."""
    tried = [*assigned.previous_body_ids, assigned.body_id, rejection.body_id]
    tried = list(dict.fromkeys(tried))
    facts = facts_of_assignment(assigned)
    decision = book.decide(facts, municipality, tried=tried)
    explained = {**decision.facts, "rejected_by": rejection.body_id}
    if rejection.reason:
        explained["rejection_reason"] = rejection.reason[:200]
    decision = Decision(decision.rule_id, decision.description, decision.body, explained, decision.inform)
    return _assigned(decision, facts, now=now, attempt=assigned.attempt + 1, previous=tried, base=dict(
        signal_id=assigned.signal_id, reference=assigned.reference, partner_id=assigned.partner_id,
        summary_sealed=assigned.summary_sealed, reporter=assigned.reporter, received_at=assigned.received_at,
        subject_key=assigned.subject_key, family_key=assigned.family_key,
    ))


def _assigned(decision: Decision, facts: Facts, *, now: datetime, attempt: int, previous: list[str],
              base: dict[str, object]) -> SignalAssigned:
    body = decision.body
    return SignalAssigned(
        **base,  # type: ignore[arg-type]
        category=facts.category, urgency=Urgency(facts.urgency), route=body.route, body_id=body.id, body_name=body.name,
        rule_id=decision.rule_id, rule_description=decision.description, facts=decision.facts,
        partner_kind=facts.partner_kind, school_brin=facts.school_brin, postcode_area=facts.postcode_area,
        flags=sorted(facts.flags), matched=facts.matched, match_partner_kinds=sorted(facts.match_partner_kinds),
        assigned_at=now, attempt=attempt, previous_body_ids=previous,
        inform_body_ids=[b.id for b in decision.inform],
    )


def assigned_event(assigned: SignalAssigned) -> CloudEvent:
    """The envelope of an assignment; its id is fixed per (signal, attempt)."""
    return make_event(assigned, source=SOURCE, subject=assigned.signal_id,
                      event_id=deterministic_id("assigned", assigned.signal_id, str(assigned.attempt)))
