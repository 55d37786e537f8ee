"""Routing's record handlers: one decoded record and the tables in, the effects out (no I/O).

- `on_received`: `signals.received` (keyed by subject key) with the subject match table; routes, publishes
  `signals.assigned` and `signals.matched`, and forwards first assignments that carry a family key to the
  repartition topic keyed by family key.
- `on_family`: that repartition topic with the family match table; publishes family matches.
- `on_handoff`: `signals.lifecycle` (keyed by signal id) with the last attempt per handed-off signal; a
  rejection, which carries the rejected assignment's facts (ADR 0023), becomes the next assignment.
The record loop writes a table only after the records its entry describes were acknowledged, so a redelivered
record found in a table was fully handled and is skipped; resends carry deterministic ids anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from services.routing.config import RoutingConfig
from services.routing.handlers import SOURCE, assigned_event, hand_off, route_signal
from services.routing.matching import MatchState, Seen, look_up, matched_event, remember
from services.routing.metrics import FAMILY_TOPIC, RoutingMetrics
from shared.events import (
    HandOffFacts,
    LifecycleChange,
    SignalAssigned,
    SignalErased,
    SignalLifecycleChanged,
    SignalReceived,
    SubjectErased,
    UndecodableRecord,
    make_event,
    utcnow,
)
from shared.record_loop import Effects, Incoming, Publish, TableView, TableWrite
from shared.topics import SIGNALS_ASSIGNED, SIGNALS_MATCHED

log = structlog.get_logger(__name__)
SUBJECTS = "routing-subjects"
FAMILIES = "routing-families"
ASSIGNMENTS = "routing-assignments"
TABLES = (SUBJECTS, FAMILIES, ASSIGNMENTS)


@dataclass
class RoutingDecisions:
    """The three handlers, over the current rules and the service's metrics."""

    config: RoutingConfig
    metrics: RoutingMetrics

    def on_received(self, record: Incoming, view: TableView) -> Effects:
        """Route a received signal once, and publish a match when another partner signalled the same child.

        `privacy.erasures` (keyed by subject key too, so co-partitioned) comes through here: an erased child's
        entry keeps only the ids of its erased signals, so a redelivered or replayed record of one is not routed.
        """
        data = record.data
        if isinstance(data, SubjectErased):
            return self._on_subject_erased(data, view.get(SUBJECTS, data.subject_key))
        if not isinstance(data, SignalReceived):
            raise UndecodableRecord("unexpected_event_type",
                                    f"expected a received signal, got {record.envelope.type}")
        loaded = self.config.current
        me = Seen(data.signal_id, data.reference, data.partner_id, data.partner_kind, data.received_at,
                  subject_key=data.subject_key)
        entry = view.get(SUBJECTS, data.subject_key)
        if entry and data.signal_id in entry.get("erased", ()):
            return Effects(after=[lambda: log.info("erased_signal_not_routed", signal_id=data.signal_id)])
        state = look_up(entry, me, window=loaded.book.window)
        if state.duplicate:
            return Effects(after=[lambda: log.info("signal_already_routed", signal_id=data.signal_id)])
        now = utcnow()
        assigned = route_signal(data, book=loaded.book, municipality=loaded.municipality, match=state, now=now)
        assigned_record = Publish.event(SIGNALS_ASSIGNED.name, key=assigned.signal_id, event=assigned_event(assigned))
        effects = Effects(publish=[assigned_record])
        me = Seen(**{**me.__dict__, "body_id": assigned.body_id})
        if state.new_partner_match:
            effects.add(self._match("subject", data.subject_key, me, state, now))
        if data.family_key:
            # The same event, encoded once (its id is fixed per signal and attempt).
            effects.publish.append(replace(assigned_record, topic=FAMILY_TOPIC, key=data.family_key.encode()))
        remembered = remember(entry, me, window=loaded.book.window)
        if entry and entry.get("erased"):
            remembered = {**remembered, "erased": entry["erased"]}
        effects.writes.append(TableWrite(SUBJECTS, data.subject_key, remembered))

        def counted() -> None:
            self.metrics.assigned_of(assigned.route.value, assigned.rule_id).inc()
            self.metrics.latency_of(assigned.route.value).observe((now - data.received_at).total_seconds())
            log.info("signal_routed", signal_id=assigned.signal_id, route=assigned.route.value,
                     body=assigned.body_id, rule=assigned.rule_id, matched=assigned.matched,
                     inform=assigned.inform_body_ids)

        effects.after.append(counted)
        return effects

    def _on_subject_erased(self, erased: SubjectErased, entry: dict[str, Any] | None) -> Effects:
        """Drop the erased signals from the child's match entry; keep their ids (content-free) as erased."""
        gone = set(erased.signal_ids)
        signals = [raw for raw in (entry or {}).get("signals", [])
                   if erased.scope != "subject" and Seen.from_json(raw).signal_id not in gone]
        if erased.scope == "subject":
            gone.update(Seen.from_json(raw).signal_id for raw in (entry or {}).get("signals", []))
        kept = {"signals": signals, "erased": sorted(gone | set((entry or {}).get("erased", [])))}
        return Effects(writes=[TableWrite(SUBJECTS, erased.subject_key, kept)],
                       after=[lambda: log.info("subject_erased_seen", erasure_id=erased.erasure_id,
                                               signals=len(gone))])

    def on_family(self, record: Incoming, view: TableView) -> Effects:
        """Remember a first assignment under its family key; publish a match across siblings."""
        data = record.data
        if not isinstance(data, SignalAssigned) or not data.family_key:
            raise UndecodableRecord("unexpected_event_type",
                                    f"expected a family assignment, got {record.envelope.type}")
        window = self.config.current.book.window
        me = Seen(data.signal_id, data.reference, data.partner_id, data.partner_kind, data.received_at,
                  body_id=data.body_id, subject_key=data.subject_key or "")
        entry = view.get(FAMILIES, data.family_key)
        state = look_up(entry, me, window=window, other_subjects_only=True)
        if state.duplicate:
            return Effects()
        effects = self._match("family", data.family_key, me, state, utcnow()) if state.new_partner_match else Effects()
        effects.writes.append(TableWrite(FAMILIES, data.family_key, remember(entry, me, window=window)))
        return effects

    def _match(self, kind: str, key: str, me: Seen, state: MatchState, now: datetime) -> Effects:
        matched = matched_event(key_kind=kind, key=key, signal=me, state=state, now=now)
        event = make_event(matched, source=SOURCE, subject=me.signal_id, event_id=matched.match_id)

        def counted() -> None:
            self.metrics.matched.inc()
            log.info("signals_matched", key_kind=kind, signal_id=me.signal_id, partners=matched.partner_ids,
                     bodies=matched.body_ids)

        return Effects(publish=[Publish.event(SIGNALS_MATCHED.name, key=key, event=event)], after=[counted])

    def on_handoff(self, record: Incoming, view: TableView) -> Effects:
        """Turn a rejection of the current assignment into the next one; other lifecycle records change nothing.

        The rejection carries the rejected assignment's facts (ADR 0023). The table keeps, per signal that was
        handed off or erased, only the last attempt routing assigned, or the erased mark.
        """
        data = record.data
        if isinstance(data, SignalErased):  # a content-free mark: nothing of this signal is handed off any more
            return Effects(writes=[TableWrite(ASSIGNMENTS, data.signal_id, {"erased": True})])
        if not isinstance(data, SignalLifecycleChanged) or data.change is not LifecycleChange.REJECTED:
            return Effects()
        entry = view.get(ASSIGNMENTS, data.signal_id) or {}
        if entry.get("erased") or _last_attempt(entry) > data.attempt:
            return Effects()  # erased, or handled before (redelivery) or stale
        facts, received_at = data.handoff, data.received_at
        if facts is None or received_at is None:
            facts, received_at = _from_legacy_entry(entry, data.attempt)
        return self._hand_off(data, facts, received_at)

    def _hand_off(self, rejection: SignalLifecycleChanged, facts: HandOffFacts, received_at: datetime) -> Effects:
        loaded = self.config.current
        nxt = hand_off(rejection, facts, received_at, book=loaded.book, municipality=loaded.municipality,
                       now=utcnow())

        def counted() -> None:
            self.metrics.rejections.labels(route=rejection.route.value).inc()
            self.metrics.assigned_of(nxt.route.value, nxt.rule_id).inc()
            log.info("signal_handed_off", signal_id=nxt.signal_id, rejected_by=rejection.body_id, body=nxt.body_id,
                     rule=nxt.rule_id, attempt=nxt.attempt)

        return Effects(
            publish=[Publish.event(SIGNALS_ASSIGNED.name, key=nxt.signal_id, event=assigned_event(nxt))],
            writes=[TableWrite(ASSIGNMENTS, rejection.signal_id, {"attempt": nxt.attempt})],
            after=[counted])


def _last_attempt(entry: dict[str, Any]) -> int:
    """The last attempt routing assigned for a signal it handed off (0: none known)."""
    legacy = entry.get("assigned")  # before ADR 0023 the entry held the whole last assignment
    return max(int(entry.get("attempt", 0)), int(legacy["attempt"]) if legacy else 0)


def _from_legacy_entry(entry: dict[str, Any], attempt: int) -> tuple[HandOffFacts, datetime]:
    """A rejection written before ADR 0023 carries no facts: take them from the assignment this table kept then."""
    legacy = entry.get("assigned")
    if legacy is None or int(legacy["attempt"]) != attempt:
        raise UndecodableRecord("rejection_without_assignment",
                                "a rejection without the rejected assignment's facts, and none kept for it")
    assigned = SignalAssigned.model_validate(legacy)
    return HandOffFacts.of(assigned), assigned.received_at
