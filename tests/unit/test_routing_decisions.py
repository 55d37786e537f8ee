"""Routing's handlers called directly: a decoded record and plain-dict tables in, the effects out (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.routing.config import RoutingConfig
from services.routing.decisions import ASSIGNMENTS, FAMILIES, SUBJECTS, TABLES, RoutingDecisions
from services.routing.metrics import FAMILY_TOPIC, RoutingMetrics
from shared.events import (
    CloudEvent,
    Contract,
    HandOffFacts,
    LifecycleChange,
    SignalAssigned,
    SignalLifecycleChanged,
    SignalReceived,
    SignalsMatched,
    UndecodableRecord,
    decode_event,
    deterministic_id,
    encode_event,
    make_event,
    source_urn,
)
from shared.municipality import load_municipality
from shared.record_loop import Effects, Incoming, Publish, TableView
from shared.settings import REPO_ROOT
from shared.topics import SIGNALS_ASSIGNED, SIGNALS_LIFECYCLE, SIGNALS_MATCHED, SIGNALS_RECEIVED
from tests.factories import received_signal

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def received(n: int, *, partner: str = "obs-de-linde", kind: str = "school", category: str = "KLAS",
             subject: str = "sk_child", family: str | None = None, school: str | None = "12AB",
             postcode: str | None = "3511", at: datetime = T0) -> SignalReceived:
    return received_signal(n, namespace="routing-decisions-test", partner=partner, kind=kind, category=category,
                           subject=subject, family=family, school=school, postcode=postcode, at=at)


def police(n: int, *, subject: str = "sk_child", family: str | None = None,
           at: datetime = T0 + timedelta(hours=1)) -> SignalReceived:
    return received(n, partner="politie-basisteam", kind="police", category="GROEP", subject=subject,
                    family=family, school=None, at=at)


def incoming(data: Contract, *, key: str, topic: str) -> Incoming:
    """The record as the loop hands it over: encoded, then decoded again."""
    subject = str(getattr(data, "signal_id", key))
    event_id = deterministic_id("in", subject, type(data).__name__, str(getattr(data, "attempt", 0)))
    envelope, decoded = decode_event(encode_event(make_event(data, source=source_urn("test"), subject=subject,
                                                             event_id=event_id)))
    return Incoming(envelope, decoded, key.encode(), topic)


def from_publish(record: Publish) -> tuple[CloudEvent, Contract]:
    return decode_event(record.value)


def on(effects: Effects, topic: str) -> list[Publish]:
    return [record for record in effects.publish if record.topic == topic]


def assignment_of(effects: Effects) -> SignalAssigned:
    [record] = on(effects, SIGNALS_ASSIGNED.name)
    _, data = from_publish(record)
    assert isinstance(data, SignalAssigned)
    return data


def rejected(assigned: SignalAssigned, *, with_facts: bool = True) -> SignalLifecycleChanged:
    """The rejection feedback publishes: with the rejected assignment's facts (ADR 0023), or as before it."""
    return SignalLifecycleChanged(
        signal_id=assigned.signal_id, reference=assigned.reference, change=LifecycleChange.REJECTED,
        status="rejected", actor_partner_id="obs-de-linde", route=assigned.route, body_id=assigned.body_id,
        body_name=assigned.body_name, urgency=assigned.urgency, reason="hoort niet bij ons",
        reporter=assigned.reporter, reporter_partner_id=assigned.partner_id, at=T0, attempt=assigned.attempt,
        received_at=assigned.received_at if with_facts else None,
        handoff=HandOffFacts.of(assigned) if with_facts else None,
    )


class Routing:
    """The decisions over the example municipality, plain dicts as tables, a fresh metrics registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = RoutingMetrics(self.registry)
        config = RoutingConfig(None, self.metrics, municipality=load_municipality(EXAMPLE))
        self.decisions = RoutingDecisions(config, self.metrics)
        self.tables: dict[str, dict[Any, Any]] = {name: {} for name in TABLES}

    def view(self) -> TableView:
        return TableView(self.tables)

    def assigned_count(self, route: str, rule: str) -> float:
        return self.metrics.assigned.labels(route=route, rule=rule)._value.get()

    def received(self, signal: SignalReceived, view: TableView) -> Effects:
        effects = self.decisions.on_received(incoming(signal, key=signal.subject_key, topic=SIGNALS_RECEIVED.name),
                                             view)
        view.stage(effects.writes)
        return effects

    def handoff(self, data: Contract, view: TableView) -> Effects:
        effects = self.decisions.on_handoff(
            incoming(data, key=str(getattr(data, "signal_id", "")), topic=SIGNALS_LIFECYCLE.name), view)
        view.stage(effects.writes)
        return effects


@pytest.fixture
def routing() -> Routing:
    return Routing()


def test_a_first_signal_is_routed_with_an_assignment_and_a_subject_table_write(routing: Routing) -> None:
    signal = received(1)
    effects = routing.received(signal, routing.view())
    [record] = effects.publish
    assert record.topic == SIGNALS_ASSIGNED.name and record.key == signal.signal_id.encode()
    envelope, data = from_publish(record)
    assert envelope.id == deterministic_id("assigned", signal.signal_id, "1")
    assert isinstance(data, SignalAssigned)
    assert (data.body_id, data.rule_id, data.attempt, data.matched) == ("zat-12ab", "zat", 1, False)
    [write] = effects.writes
    assert (write.table, write.key) == (SUBJECTS, "sk_child")
    assert [(s["id"], s["partner"], s["body"]) for s in write.value["signals"]] == [
        (signal.signal_id, "obs-de-linde", "zat-12ab")]
    assert effects.answers == [] and effects.work == []


def test_the_routing_metrics_count_only_when_the_after_callbacks_run(routing: Routing) -> None:
    effects = routing.received(received(1), routing.view())
    latency = "routing_assignment_latency_seconds_count"
    assert routing.assigned_count("zat", "zat") == 0
    assert routing.registry.get_sample_value(latency, {"route": "zat"}) == 0
    for callback in effects.after:
        callback()
    assert routing.assigned_count("zat", "zat") == 1
    assert routing.registry.get_sample_value(latency, {"route": "zat"}) == 1


def test_a_redelivered_signal_is_decided_to_nothing(routing: Routing) -> None:
    signal = received(1)
    view = routing.view()
    routing.received(signal, view)
    again = routing.received(signal, view)
    assert again.publish == [] and again.writes == [] and again.answers == []
    for callback in again.after:
        callback()  # a log line only
    assert routing.assigned_count("zat", "zat") == 0


def test_a_redelivered_signal_is_skipped_once_its_write_is_in_the_table(routing: Routing) -> None:
    signal = received(1)
    first = routing.received(signal, routing.view())
    for write in first.writes:
        routing.tables[write.table][write.key] = write.value
    again = routing.received(signal, routing.view())  # a new batch: the write is in the table, not staged
    assert again.publish == [] and again.writes == []


def test_in_one_batch_a_second_partner_about_the_same_child_sees_the_first_and_matches(routing: Routing) -> None:
    school, officer = received(1), police(2)
    view = routing.view()
    routing.received(school, view)
    effects = routing.received(officer, view)
    assigned = assignment_of(effects)
    assert (assigned.body_id, assigned.rule_id, assigned.matched) == ("oov", "match-politie", True)
    [record] = on(effects, SIGNALS_MATCHED.name)
    assert record.key == b"sk_child"
    envelope, match = from_publish(record)
    assert isinstance(match, SignalsMatched)
    assert envelope.id == match.match_id == deterministic_id("match", "subject", "sk_child", officer.signal_id)
    assert match.key_kind == "subject" and match.matched_signal_ids == [school.signal_id]
    assert match.partner_kinds == ["police", "school"] and match.body_ids == ["oov", "zat-12ab"]
    [write] = effects.writes
    assert [s["id"] for s in write.value["signals"]] == [school.signal_id, officer.signal_id]
    assert routing.metrics.matched._value.get() == 0
    for callback in effects.after:
        callback()
    assert routing.metrics.matched._value.get() == 1


def test_without_staging_the_second_signal_does_not_see_the_first(routing: Routing) -> None:
    school, officer = received(1), police(2)
    view = routing.view()
    routing.decisions.on_received(incoming(school, key="sk_child", topic=SIGNALS_RECEIVED.name), view)
    effects = routing.decisions.on_received(incoming(officer, key="sk_child", topic=SIGNALS_RECEIVED.name), view)
    assert on(effects, SIGNALS_MATCHED.name) == [] and assignment_of(effects).matched is False


def test_the_same_partner_twice_about_one_child_is_no_match(routing: Routing) -> None:
    view = routing.view()
    routing.received(received(1), view)
    effects = routing.received(received(2, category="EMO"), view)
    assert on(effects, SIGNALS_MATCHED.name) == []


def test_a_signal_with_a_family_key_is_forwarded_to_the_family_repartition(routing: Routing) -> None:
    sister = received(1, category="THUIS", subject="sk_sister", family="fk_fam")
    effects = routing.received(sister, routing.view())
    [forward] = on(effects, FAMILY_TOPIC)
    assert forward.key == b"fk_fam"
    envelope, data = from_publish(forward)
    assert envelope.id == deterministic_id("assigned", sister.signal_id, "1")
    assert data == assignment_of(effects)
    assert isinstance(data, SignalAssigned) and data.family_key == "fk_fam" and data.subject_key == "sk_sister"


def test_siblings_signalled_by_two_partners_match_on_their_family_key(routing: Routing) -> None:
    view = routing.view()
    sister = routing.received(received(1, category="THUIS", subject="sk_sister", family="fk_fam"), view)
    brother = routing.received(police(2, subject="sk_brother", family="fk_fam"), view)
    assert on(brother, SIGNALS_MATCHED.name) == []  # different children: no subject match
    forwarded = [from_publish(record) for effects in (sister, brother) for record in on(effects, FAMILY_TOPIC)]
    family_view = routing.view()
    outcomes = []
    for envelope, data in forwarded + forwarded[1:]:  # the brother's record redelivered
        effects = routing.decisions.on_family(Incoming(envelope, data, b"fk_fam", FAMILY_TOPIC), family_view)
        family_view.stage(effects.writes)
        outcomes.append(effects)
    first, second, redelivered = outcomes
    assert first.publish == [] and [w.table for w in first.writes] == [FAMILIES]
    [record] = second.publish
    assert record.topic == SIGNALS_MATCHED.name and record.key == b"fk_fam"
    _, match = from_publish(record)
    assert isinstance(match, SignalsMatched)
    assert match.key_kind == "family" and match.body_ids == ["oov", "wijkteam-centrum"]
    assert (second.writes[0].table, second.writes[0].key) == (FAMILIES, "fk_fam")
    assert redelivered.publish == [] and redelivered.writes == []


def test_a_rejection_becomes_the_next_assignment_and_its_table_write(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    view = routing.view()
    effects = routing.handoff(rejected(first), view)
    [record] = effects.publish
    assert record.topic == SIGNALS_ASSIGNED.name and record.key == first.signal_id.encode()
    envelope, nxt = from_publish(record)
    assert envelope.id == deterministic_id("assigned", first.signal_id, "2")
    assert isinstance(nxt, SignalAssigned)
    assert (nxt.body_id, nxt.attempt, nxt.previous_body_ids) == ("wijkteam-centrum", 2, ["zat-12ab"])
    assert nxt.facts["rejected_by"] == "zat-12ab" and nxt.facts["rejection_reason"] == "hoort niet bij ons"
    kept = ("reference", "partner_id", "summary_sealed", "reporter", "received_at", "subject_key", "family_key",
            "category", "urgency", "partner_kind", "school_brin", "postcode_area", "flags", "matched",
            "match_partner_kinds")
    assert {name: getattr(nxt, name) for name in kept} == {name: getattr(first, name) for name in kept}
    [write] = effects.writes
    assert (write.table, write.key, write.value) == (ASSIGNMENTS, first.signal_id, {"attempt": 2})
    assert routing.metrics.rejections.labels(route="zat")._value.get() == 0
    for callback in effects.after:
        callback()
    assert routing.metrics.rejections.labels(route="zat")._value.get() == 1
    assert routing.assigned_count("wijkteam", nxt.rule_id) == 1


def test_a_second_rejection_goes_on_down_the_chain_and_never_back(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    view = routing.view()
    second = assignment_of(routing.handoff(rejected(first), view))
    third = assignment_of(routing.handoff(rejected(second), view))
    assert third.attempt == 3 and third.previous_body_ids == ["zat-12ab", "wijkteam-centrum"]
    assert third.body_id not in third.previous_body_ids


def test_a_redelivered_or_stale_rejection_is_decided_to_nothing(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    view = routing.view()
    second = assignment_of(routing.handoff(rejected(first), view))
    again = routing.handoff(rejected(first), view)
    assert again.publish == [] and again.writes == []
    assert routing.handoff(rejected(second), view).publish != []


def test_lifecycle_records_other_than_a_rejection_change_nothing(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    view = routing.view()
    for change in (LifecycleChange.ASSIGNED, LifecycleChange.ACKNOWLEDGED, LifecycleChange.CLOSED):
        other = rejected(first).model_copy(update={"change": change, "handoff": None})
        effects = routing.handoff(other, view)
        assert effects.publish == [] and effects.writes == []


def test_a_rejection_from_before_the_facts_travelled_uses_the_assignment_the_table_kept(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    routing.tables[ASSIGNMENTS][first.signal_id] = {"assigned": first.model_dump(mode="json"), "pending": None}
    effects = routing.handoff(rejected(first, with_facts=False), routing.view())
    nxt = assignment_of(effects)
    assert (nxt.body_id, nxt.attempt, nxt.received_at) == ("wijkteam-centrum", 2, first.received_at)
    assert effects.writes[0].value == {"attempt": 2}


def test_a_rejection_without_facts_and_nothing_kept_is_a_dead_letter_not_a_silent_drop(routing: Routing) -> None:
    first = assignment_of(routing.received(received(1), routing.view()))
    with pytest.raises(UndecodableRecord) as caught:
        routing.handoff(rejected(first, with_facts=False), routing.view())
    assert caught.value.code == "rejection_without_assignment"


def test_feedbacks_own_rejection_carries_what_routing_hands_off_with() -> None:
    from tests.unit.test_feedback_decisions import Feedback, requested
    from tests.unit.test_feedback_decisions import assigned as feedback_assignment

    feedback, routing = Feedback(), Routing()
    feedback.handle(feedback_assignment())
    asked = requested("req-reject", LifecycleChange.REJECTED).model_copy(update={"reason": "hoort niet bij ons"})
    [record] = [r for r in feedback.handle(asked).publish if r.topic == SIGNALS_LIFECYCLE.name]
    _, rejection = from_publish(record)
    assert isinstance(rejection, SignalLifecycleChanged) and rejection.handoff is not None
    nxt = assignment_of(routing.handoff(rejection, routing.view()))
    assert (nxt.attempt, nxt.previous_body_ids, nxt.school_brin) == (2, ["zat-12ab"], "12AB")
