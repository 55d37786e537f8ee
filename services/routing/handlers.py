"""Pure routing: a received signal (or a rejection) becomes an assignment to a body, with the reason why."""

from __future__ import annotations

from datetime import datetime

from services.routing.matching import MatchState
from services.routing.rules import Decision, Facts, RuleBook
from shared.events import (
    CloudEvent,
    HandOffFacts,
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


def facts_of_handoff(facts: HandOffFacts, urgency: Urgency) -> Facts:
    """The same facts, as the rejected assignment carried them (for hand-offs)."""
    return Facts(
        category=facts.category, urgency=urgency.value, partner_kind=facts.partner_kind,
        school_brin=facts.school_brin, postcode_area=facts.postcode_area, flags=frozenset(facts.flags),
        match_partner_kinds=frozenset(facts.match_partner_kinds),
    )


def decide_signal(signal: SignalReceived, *, book: RuleBook, municipality: Municipality,
                  match: MatchState) -> tuple[Facts, Decision]:
    """The facts of a signal and the rules' decision about it: what route_signal assigns, without the event."""
    facts = facts_of(signal, match)
    return facts, book.decide(facts, municipality)


def route_signal(
    signal: SignalReceived, *, book: RuleBook, municipality: Municipality, match: MatchState, now: datetime
) -> SignalAssigned:
    """The first assignment of a signal by the rules."""
    facts, decision = decide_signal(signal, book=book, municipality=municipality, match=match)
    return _assigned(decision, facts, now=now, attempt=1, previous=[], base=dict(
        signal_id=signal.signal_id, reference=signal.reference, partner_id=signal.partner_id,
        summary_sealed=signal.summary_sealed, reporter=signal.reporter, received_at=signal.received_at,
        subject_key=signal.subject_key, family_key=signal.family_key,
    ))


def hand_off(
    rejection: SignalLifecycleChanged, facts: HandOffFacts, received_at: datetime, *, book: RuleBook,
    municipality: Municipality, now: datetime,
) -> SignalAssigned:
    """The next body after a rejection: the rules' next untried body, else the coordinator; never back.

    `facts` are the rejected assignment's (the rejection carries them, ADR 0023); the rejected body is the
    rejection's, and the next attempt is one more than the rejected one.
    """
    tried = list(dict.fromkeys([*facts.previous_body_ids, rejection.body_id]))
    known = facts_of_handoff(facts, rejection.urgency)
    decision = book.decide(known, municipality, tried=tried)
    explained = {**decision.facts, "rejected_by": rejection.body_id}
    if rejection.reason:
        explained["rejection_reason"] = rejection.reason[:200]
    decision = Decision(decision.rule_id, decision.description, decision.body, explained, decision.inform)
    return _assigned(decision, known, now=now, attempt=rejection.attempt + 1, previous=tried, base=dict(
        signal_id=rejection.signal_id, reference=rejection.reference, partner_id=rejection.reporter_partner_id,
        summary_sealed=facts.summary_sealed, reporter=rejection.reporter, received_at=received_at,
        subject_key=facts.subject_key, family_key=facts.family_key,
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
