"""Erasure in each service's handler (ADR 0020): SubjectErased in, stubs, marks and fan-out records out."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from services.feedback.lifecycle import ErasedStub, SignalRecord, decode_stored
from services.feedback.retention import RetentionPolicy, due, due_at
from services.notify.decisions import DIGEST_PENDING, SENT_LOG, NotifyDecisions, digest_mark, erased_mark
from services.notify.digest import PendingEntry, PendingItem
from services.notify.metrics import NotifyMetrics
from services.routing.decisions import ASSIGNMENTS, SUBJECTS, RoutingDecisions
from services.routing.matching import Seen
from shared.erasure import Actor, erasure_records
from shared.events import (
    DigestItemWithdrawn,
    LifecycleChange,
    SignalErased,
    SignalErasureRequested,
    SlaCheckRequested,
    SubjectErased,
    decode_event,
    deterministic_id,
    source_urn,
    utcnow,
)
from shared.municipality import load_municipality
from shared.record_loop import TableView
from shared.topics import AUDIT_LOG, LIFECYCLE_REQUESTS, NOTIFICATIONS_DIGEST, PRIVACY_ERASURES, SIGNALS_LIFECYCLE
from tests.unit.test_feedback_decisions import SIGNAL_ID, Feedback, assigned, from_publish, incoming, requested
from tests.unit.test_feedback_decisions import run_after as run_callbacks
from tests.unit.test_routing_decisions import rejected

EXAMPLE_SUBJECT = "sk_" + "a" * 40
OTHER_SIGNAL = deterministic_id("erasure-test", "other")


def subject_erased(*signal_ids: str, scope: str = "subject", reason: str = "request") -> SubjectErased:
    return SubjectErased(erasure_id="erasure-1", subject_key=EXAMPLE_SUBJECT, signal_ids=list(signal_ids),
                         scope=scope, reason=reason, at=utcnow())  # type: ignore[arg-type]


def test_feedback_forgets_the_keys_and_asks_each_signals_owner_to_erase_it() -> None:
    feedback = Feedback()
    forgotten: list[tuple[str, list[str] | None]] = []
    feedback.decisions.forget_keys = lambda subject, kids: forgotten.append((subject, kids))
    effects = feedback.decisions.handle(
        incoming(subject_erased(SIGNAL_ID, OTHER_SIGNAL, "inbound:signals.inbound:0:7"),
                 topic=PRIVACY_ERASURES.name), feedback.view)
    assert [(p.topic, p.key) for p in effects.publish] == [(LIFECYCLE_REQUESTS.name, SIGNAL_ID.encode()),
                                                         (LIFECYCLE_REQUESTS.name, OTHER_SIGNAL.encode())]
    envelope, asked = from_publish(effects.publish[0])
    assert isinstance(asked, SignalErasureRequested) and asked.erasure_id == "erasure-1"
    assert envelope.id == deterministic_id("erasure-request", "erasure-1", SIGNAL_ID)
    assert effects.writes == [] and forgotten == []
    run_callbacks(effects)
    assert forgotten == [(EXAMPLE_SUBJECT, None)]  # scope subject: every key of the child


def test_the_owner_replaces_the_record_by_a_content_free_stub_and_ignores_what_comes_after() -> None:
    feedback = Feedback()
    feedback.handle(assigned().model_copy(update={"summary_sealed": "v2.header.body",
                                                  "subject_key": EXAMPLE_SUBJECT}))
    feedback.handle(requested("r-1", LifecycleChange.ACKNOWLEDGED))
    asked = SignalErasureRequested(erasure_id="erasure-1", signal_id=SIGNAL_ID, reason="request",
                                   requested_at=utcnow())
    effects = feedback.handle(asked)
    [gone] = effects.publish
    assert (gone.topic, gone.key) == (SIGNALS_LIFECYCLE.name, SIGNAL_ID.encode())
    assert isinstance(from_publish(gone)[1], SignalErased)
    [write] = effects.writes
    stub = decode_stored(write.value)
    assert isinstance(stub, ErasedStub) and stub.status_at_erasure == "acknowledged" and "acknowledge" in stub.met
    assert b"v2.header.body" not in write.value and b"melder@school.example" not in write.value
    assert stub.route == "zat" and stub.deadlines  # what the SLA figures need stays
    run_callbacks(effects)
    assert feedback.metrics.erased.labels(reason="request")._value.get() == 1
    assert feedback.handle(asked).publish == []  # redelivered
    assert feedback.handle(assigned(attempt=2)).writes == []  # a late (re)assignment does not bring it back
    assert feedback.handle(SlaCheckRequested(signal_id=SIGNAL_ID, requested_at=utcnow())).publish == []
    run_callbacks(feedback.handle(requested("r-2", LifecycleChange.FEEDBACK)))
    [(_, answer)] = [a for a in feedback.answers if a[0] == "r-2"]
    assert answer.current is None and getattr(answer.outcome, "status", None) == 404


def test_a_signal_erased_before_it_reached_feedback_gets_a_stub_all_the_same() -> None:
    feedback = Feedback()
    effects = feedback.handle(SignalErasureRequested(erasure_id="e", signal_id=SIGNAL_ID, reason="retention",
                                                     requested_at=utcnow()))
    assert isinstance(decode_stored(effects.writes[0].value), ErasedStub)
    assert feedback.handle(assigned()).writes == []


def routing_decisions() -> RoutingDecisions:
    return RoutingDecisions(config=None, metrics=None)  # type: ignore[arg-type] # erasure uses neither


def test_routing_keeps_only_the_ids_of_the_erased_signals_in_the_childs_match_entry() -> None:
    now = utcnow()
    seen = [Seen(s, f"SK-{n}", "obs-de-linde", "school", now, subject_key=EXAMPLE_SUBJECT).to_json()
            for n, s in enumerate((SIGNAL_ID, OTHER_SIGNAL))]
    tables: dict[str, dict[Any, Any]] = {SUBJECTS: {EXAMPLE_SUBJECT: {"signals": seen}}, ASSIGNMENTS: {}}
    decide = routing_decisions()
    some = decide.on_received(incoming(subject_erased(SIGNAL_ID, scope="signals"), topic=PRIVACY_ERASURES.name),
                              TableView(tables))
    [write] = some.writes
    assert [Seen.from_json(s).signal_id for s in write.value["signals"]] == [OTHER_SIGNAL]
    assert write.value["erased"] == [SIGNAL_ID]
    everything = decide.on_received(incoming(subject_erased(), topic=PRIVACY_ERASURES.name), TableView(tables))
    assert everything.writes[0].value == {"signals": [], "erased": sorted([SIGNAL_ID, OTHER_SIGNAL])}
    marked = decide.on_handoff(incoming(SignalErased(signal_id=SIGNAL_ID, erasure_id="e", reason="request",
                                                     at=now), topic=SIGNALS_LIFECYCLE.name), TableView(tables))
    assert [(w.table, w.key, w.value) for w in marked.writes] == [(ASSIGNMENTS, SIGNAL_ID, {"erased": True})]
    tables[ASSIGNMENTS][SIGNAL_ID] = {"erased": True}
    late_rejection = rejected(assigned(attempt=2))
    late = decide.on_handoff(incoming(late_rejection, topic=SIGNALS_LIFECYCLE.name), TableView(tables))
    assert late.writes == [] and late.publish == []


def notify_decisions() -> NotifyDecisions:
    return NotifyDecisions(load_municipality(Feedback.__init__.__globals__["EXAMPLE"]),
                           NotifyMetrics(CollectorRegistry()), "noreply@schakel.example", "schakel.example",
                           "http://127.0.0.1:8003")


def test_notify_marks_an_erased_signal_takes_it_out_of_digests_and_never_mails_about_it() -> None:
    notify = notify_decisions()
    tables: dict[str, dict[Any, Any]] = {SENT_LOG: {digest_mark(SIGNAL_ID): json.dumps(["rk-1"]).encode()},
                                         DIGEST_PENDING: {}}
    view = TableView(tables)
    erased = SignalErased(signal_id=SIGNAL_ID, erasure_id="e", reason="request", at=utcnow())
    effects = notify.handle(incoming(erased, topic=SIGNALS_LIFECYCLE.name), view)
    [withdrawal] = effects.publish
    assert (withdrawal.topic, withdrawal.key) == (NOTIFICATIONS_DIGEST.name, b"rk-1")
    withdrawn = decode_event(withdrawal.value)[1]
    assert isinstance(withdrawn, DigestItemWithdrawn) and withdrawn.signal_id == SIGNAL_ID
    assert {w.key for w in effects.writes} == {erased_mark(SIGNAL_ID), digest_mark(SIGNAL_ID)}
    view.stage(effects.writes)
    mails = notify.handle(incoming(assigned(), topic="signals.assigned"), view)
    assert mails.work == [] and mails.publish == []
    other = notify.handle(incoming(assigned().model_copy(update={"signal_id": OTHER_SIGNAL}),
                                   topic="signals.assigned"), view)
    assert other.work  # another signal is mailed as ever

    item = PendingItem(item_id="i-1", signal_id=SIGNAL_ID, reference="SK-1", route="zat", urgency="U2",
                       queued_at=utcnow())
    keep = PendingItem(item_id="i-2", signal_id=OTHER_SIGNAL, reference="SK-2", route="zat", urgency="U2",
                       queued_at=utcnow())
    tables[DIGEST_PENDING][b"rk-1"] = PendingEntry(recipient="ib@x.example", role="ib", items=(item, keep)).encode()
    cleared = notify.handle_digest(incoming(withdrawn, topic=NOTIFICATIONS_DIGEST.name), TableView(tables))
    assert [i.signal_id for i in PendingEntry.decode(cleared.writes[0].value).items] == [OTHER_SIGNAL]


def test_an_erasure_is_one_content_free_event_and_an_audit_record_per_signal() -> None:
    erased = subject_erased(SIGNAL_ID, OTHER_SIGNAL, "inbound:signals.inbound:0:7")
    records = erasure_records(erased, actor=Actor("privacy-officer", "privacy_officer", "feedback"),
                              source=source_urn("feedback"))
    assert [(topic, key) for topic, key, _ in records] == [
        (PRIVACY_ERASURES.name, EXAMPLE_SUBJECT.encode()), (AUDIT_LOG.name, SIGNAL_ID.encode()),
        (AUDIT_LOG.name, OTHER_SIGNAL.encode())]
    audits = [decode_event(value)[1] for _, _, value in records[1:]]
    assert {(a.action, a.actor_partner_id, a.request_id) for a in audits} == {  # type: ignore[attr-defined]
        ("erased", "privacy-officer", "erasure-1")}


def test_retention_is_two_years_or_sooner_once_closed_as_unfounded() -> None:
    feedback = Feedback()
    feedback.handle(assigned())
    record = feedback.stored()
    policy = RetentionPolicy(term=timedelta(days=730), unfounded_term=timedelta(days=30))
    assert due_at(record, policy) == record.received_at + timedelta(days=730)
    for request_id, change in (("a", LifecycleChange.ACKNOWLEDGED), ("f", LifecycleChange.FEEDBACK)):
        feedback.handle(requested(request_id, change).model_copy(update={"message_sealed": "v1.x"}))
    closing = requested("c", LifecycleChange.CLOSED).model_copy(update={"outcome": "ongegrond"})
    feedback.handle(closing)
    closed: SignalRecord = feedback.stored()
    assert due_at(closed, policy) == closing.requested_at + timedelta(days=30)
    founded = closed.model_copy(update={"history": [*closed.history[:-1], closed.history[-1].model_copy(
        update={"outcome": "hulp_ingezet"})]})
    assert due_at(founded, policy) == closed.received_at + timedelta(days=730)
    later = closing.requested_at + timedelta(days=31)
    assert due([founded, closed], now=later, policy=policy) == [closed]
    assert due([closed], now=closing.requested_at + timedelta(days=29), policy=policy) == []


def test_the_werkbak_directory_forgets_an_erased_signal_and_its_reporter() -> None:
    from services.werkbak.directory import Directory
    from shared.events import encode_event, make_event

    directory = Directory("127.0.0.1:1")
    record = Feedback()
    changed = record.handle(assigned()).publish[0].value  # the lifecycle event feedback publishes on assignment
    directory._decode(changed)
    assert directory.assigned_to({"zat-12ab"}) == [SIGNAL_ID]
    erased = SignalErased(signal_id=SIGNAL_ID, erasure_id="e", reason="request", at=utcnow())
    directory._decode(encode_event(make_event(erased, source=source_urn("feedback"), subject=SIGNAL_ID)))
    assert directory.entries == {}


def test_no_topic_keeps_records_longer_than_the_default_retention_and_the_key_topic_compacts_within_hours() -> None:
    from services.feedback.retention import DEFAULT_TERM
    from shared.topics import ALL_TOPICS, PRIVACY_KEYS

    term_ms = int(DEFAULT_TERM.total_seconds() * 1000)
    deleting = [t for t in ALL_TOPICS if t.cleanup_policy == "delete"]
    assert deleting and all(t.retention_ms <= term_ms for t in deleting)
    config = PRIVACY_KEYS.config()
    assert config["cleanup.policy"] == "compact"
    bound_ms = sum(int(config[k]) for k in ("segment.ms", "max.compaction.lag.ms", "delete.retention.ms"))
    assert bound_ms <= 8 * 60 * 60 * 1000  # an erased key leaves the broker's disks within about 8 h (ADR 0020)
