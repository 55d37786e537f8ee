"""Routing on a real broker, as its own process: the seed story's match and escalation, hand-offs,
a refused config reload, and a replay into a fresh consumer group that decides the same."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schakel.kafka_broker import Broker, free_port
from schakel.processes import ServiceProcess
from shared.events import (
    CloudEvent,
    Contact,
    HandOffFacts,
    LifecycleChange,
    SignalAssigned,
    SignalLifecycleChanged,
    SignalReceived,
    SignalsMatched,
    Urgency,
    decode_event,
    deterministic_id,
    encode_event,
    make_event,
    source_urn,
)
from shared.pseudonym import subject_key
from shared.settings import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
SECRET = "test-pseudonym-secret"
T0 = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)


def wait_until(condition: Callable[[], Any], *, timeout: float, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {message}")
        time.sleep(0.3)


def read_all(bootstrap: str, topic: str) -> list[tuple[str, CloudEvent, Any]]:
    """Every record of a topic from the beginning: (key, envelope, payload)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                             group_id=None, consumer_timeout_ms=2000)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out = []
        deadline = time.monotonic() + 10
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                for record in batch:
                    envelope, data = decode_event(record.value)
                    out.append(((record.key or b"").decode(), envelope, data))
        return out
    finally:
        consumer.close()


class Routing:
    """The routing service as a process on a test broker, with a producer for its inputs."""

    def __init__(self, broker: Broker, directory: Path, config: Path, **env: str) -> None:
        self.broker = broker
        self.process = ServiceProcess("routing", free_port(), {
            "SCHAKEL_KAFKA_BOOTSTRAP": broker.bootstrap, "SCHAKEL_STATE_DIR": str(directory / "state"),
            "SCHAKEL_CONFIG": str(config), "SCHAKEL_LOG_FORMAT": "json", **env,
        }, directory / f"routing-{env.get('SCHAKEL_ROUTING_APP_NAME', 'routing')}.log")
        self.producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(timeout=90)

    def send(self, topic: str, key: str, payload: Any, event_id: str) -> None:
        event = make_event(payload, source=source_urn("test"), subject=getattr(payload, "signal_id", key),
                           event_id=event_id)
        self.producer.send(topic, key=key.encode(), value=encode_event(event)).get(timeout=10)

    def assigned(self) -> list[SignalAssigned]:
        return [d for _, _, d in read_all(self.broker.bootstrap, "signals.assigned")]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.process.base_url}/metrics", timeout=5) as response:  # noqa: S310
            return response.read().decode()

    def stop(self) -> None:
        self.producer.close()
        self.process.stop()


@pytest.fixture
def routing(fresh_kafka: Broker, tmp_path: Path) -> Iterator[Routing]:
    config = tmp_path / "gemeente.yaml"
    config.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    service = Routing(fresh_kafka, tmp_path, config, SCHAKEL_ROUTING_RELOAD_INTERVAL_S="0.5")
    service.start()
    yield service
    service.stop()


def signal(n: int, *, bsn: str, partner: str, kind: str, category: str, school: str | None = None,
           postcode: str | None = None, flags: list[str] | None = None, at: datetime = T0) -> SignalReceived:
    sid = deterministic_id("it-signal", str(n))
    return SignalReceived(
        signal_id=sid, reference=f"SK-2026-{n:08d}", partner_id=partner, partner_kind=kind, category=category,
        urgency=Urgency.U2 if category != "CRIM" else Urgency.U1, subject_key=subject_key(secret=SECRET, bsn=bsn),
        school_brin=school, postcode_area=postcode, flags=flags or [], received_at=at,
        reporter=Contact(name="Melder", email="melder@partner.example"), legal_basis="meldrecht",
    )


def received_event_id(s: SignalReceived) -> str:
    return deterministic_id("received", s.signal_id)


def test_the_seed_story_matches_once_and_escalates_to_oov_with_the_coordinator_informed(routing: Routing) -> None:
    child = "111222333"
    school = signal(1, bsn=child, partner="obs-de-linde", kind="school", category="EMO", school="12AB",
                    postcode="3511")  # fights, a short fuse
    routing.send("signals.received", school.subject_key, school, received_event_id(school))
    wait_until(routing.assigned, timeout=30, message="school signal assigned")
    police = signal(2, bsn=child, partner="politie-basisteam", kind="police", category="OVERL", postcode="3511",
                    flags=["GROUP_LINK", "SIBLING_LINK"], at=T0 + timedelta(days=5))  # nights, older brother's group
    burglary = signal(3, bsn=child, partner="politie-basisteam", kind="police", category="CRIM", postcode="3511",
                      at=T0 + timedelta(days=9))
    other_child = signal(4, bsn="123456782", partner="politie-basisteam", kind="police", category="OVERL",
                         postcode="3511")
    for s in (police, burglary, other_child):
        routing.send("signals.received", s.subject_key, s, received_event_id(s))
    assigned = wait_until(lambda: a if len(a := routing.assigned()) == 4 else None, timeout=30, message="4 assigned")
    by_id = {a.signal_id: a for a in assigned}
    assert (by_id[school.signal_id].body_id, by_id[school.signal_id].rule_id) == ("zat-12ab", "zat")
    for s in (police, burglary):
        a = by_id[s.signal_id]
        assert (a.body_id, a.rule_id, a.matched, a.inform_body_ids) == ("oov", "match-politie", True, ["coordinator"])
        assert a.rule_description.startswith("Meerdere partners") and a.facts["match_partner_kind"] == "police,school"
    assert (by_id[other_child.signal_id].rule_id, by_id[other_child.signal_id].matched) == ("overlast-crim", False)
    time.sleep(1.0)  # nothing more may come: look again after a moment
    matches = read_all(routing.broker.bootstrap, "signals.matched")
    assert len(matches) == 1
    key, envelope, match = matches[0]
    assert isinstance(match, SignalsMatched) and key == school.subject_key and envelope.id == match.match_id
    assert set(match.matched_signal_ids) == {school.signal_id} and match.signal_id == police.signal_id
    assert match.body_ids == ["oov", "zat-12ab"] and match.partner_kinds == ["police", "school"]
    metrics = routing.metrics()
    assert "routing_signals_matched_total 1.0" in metrics
    assert 'routing_signals_assigned_total{route="oov",rule="match-politie"} 2.0' in metrics


def rejection(a: SignalAssigned) -> SignalLifecycleChanged:
    return SignalLifecycleChanged(
        signal_id=a.signal_id, reference=a.reference, change=LifecycleChange.REJECTED, status="rejected",
        actor_partner_id="obs-de-linde", route=a.route, body_id=a.body_id, body_name=a.body_name, urgency=a.urgency,
        reason="buiten school", reporter=a.reporter, reporter_partner_id=a.partner_id, at=T0, attempt=a.attempt,
        received_at=a.received_at, handoff=HandOffFacts.of(a),
    )


def test_a_rejected_signal_is_rerouted_once_then_goes_to_the_coordinator(routing: Routing, tmp_path: Path) -> None:
    s = signal(10, bsn="111222333", partner="obs-de-linde", kind="school", category="KLAS", school="12AB",
               postcode="3511")
    routing.send("signals.received", s.subject_key, s, received_event_id(s))
    first = wait_until(routing.assigned, timeout=30, message="first assignment")[0]
    assert (first.body_id, first.attempt) == ("zat-12ab", 1)
    rejected = rejection(first)
    for _ in range(2):  # a redelivered rejection must not hand off twice
        routing.send("signals.lifecycle", s.signal_id, rejected, deterministic_id("rej", s.signal_id, "1"))
    second = wait_until(lambda: [a for a in routing.assigned() if a.attempt == 2], timeout=30, message="attempt 2")[0]
    assert (second.body_id, second.previous_body_ids) == ("wijkteam-centrum", ["zat-12ab"])
    routing.send("signals.lifecycle", s.signal_id, rejection(second), deterministic_id("rej", s.signal_id, "2"))
    third = wait_until(lambda: [a for a in routing.assigned() if a.attempt == 3], timeout=30, message="attempt 3")[0]
    assert (third.body_id, third.previous_body_ids) == ("coordinator", ["zat-12ab", "wijkteam-centrum"])
    time.sleep(1.0)
    records = read_all(routing.broker.bootstrap, "signals.assigned")
    assert [d.attempt for _, _, d in records] == [1, 2, 3]
    assert [e.id for _, e, _ in records] == [deterministic_id("assigned", s.signal_id, str(n)) for n in (1, 2, 3)]
    assert 'routing_rejections_total{route="zat"} 1.0' in routing.metrics()
    # Reliability #12: a broken file is refused; the service keeps its rules and says so.
    config = tmp_path / "gemeente.yaml"
    config.write_text(config.read_text().replace("target: school_zat", "target: zat-99zz", 1))
    wait_until(lambda: 'routing_config_reloads_total{outcome="refused"} 1.0' in routing.metrics(), timeout=15,
               message="refused reload counted")
    assert "routing_config_refused" in routing.process.log_path.read_text()
    s2 = signal(11, bsn="123456782", partner="obs-de-linde", kind="school", category="THUIS", school="34CD")
    routing.send("signals.received", s2.subject_key, s2, received_event_id(s2))
    late = wait_until(lambda: [a for a in routing.assigned() if a.signal_id == s2.signal_id], timeout=30,
                      message="routed with the old rules")[0]
    assert (late.rule_id, late.body_id) == ("thuis-via-zat", "zat-34cd")


def test_replaying_signals_received_into_a_fresh_consumer_group_gives_the_same_assignments(
        fresh_kafka: Broker, tmp_path: Path) -> None:
    config = tmp_path / "gemeente.yaml"
    config.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    categories = ["KLAS", "THUIS", "OVERL", "CRIM", "HGKM", "ACUUT", "EMO", "GROEP", "BASIS", "PEST"]
    partners = [("obs-de-linde", "school", "12AB"), ("politie-basisteam", "police", None),
                ("wijkteam-centrum", "wijkteam", None), ("cbs-het-anker", "school", "34CD")]
    signals = []
    for n in range(60):
        partner, kind, school = partners[n % 4]
        signals.append(signal(100 + n, bsn=f"child-{n % 15}", partner=partner, kind=kind,
                              category=categories[n % len(categories)], school=school,
                              postcode=["3511", "3581", None][n % 3], at=T0 + timedelta(hours=n)))
    first = Routing(fresh_kafka, tmp_path, config)
    first.start()
    try:
        for s in signals:
            first.send("signals.received", s.subject_key, s, received_event_id(s))
        wait_until(lambda: len(first.assigned()) == 60, timeout=60, message="60 assigned")
    finally:
        first.stop()
    before = read_all(fresh_kafka.bootstrap, "signals.assigned")
    matches_before = read_all(fresh_kafka.bootstrap, "signals.matched")
    assert matches_before, "the mix should contain cross-partner matches"
    replay = Routing(fresh_kafka, tmp_path, config, SCHAKEL_ROUTING_APP_NAME="routing-replay")
    replay.start()
    try:
        wait_until(lambda: len(replay.assigned()) == 120, timeout=60, message="replayed 60 more")
    finally:
        replay.stop()
    after = read_all(fresh_kafka.bootstrap, "signals.assigned")

    def decisions(records: list[tuple[str, CloudEvent, Any]]) -> dict[str, set[tuple[Any, ...]]]:
        out: dict[str, set[tuple[Any, ...]]] = {}
        for _, envelope, a in records:
            out.setdefault(a.signal_id, set()).add(
                (envelope.id, a.body_id, a.rule_id, a.attempt, a.matched, tuple(a.inform_body_ids),
                 json.dumps(a.facts)))
        return out

    first_pass, both = decisions(before), decisions(after)
    assert first_pass == both  # each signal: the same one decision (same event id) in both runs
    assert sum(len(v) for v in both.values()) == 60
    matches_after = read_all(fresh_kafka.bootstrap, "signals.matched")
    assert len(matches_after) == 2 * len(matches_before)
    assert {e.id for _, e, _ in matches_after} == {e.id for _, e, _ in matches_before}


def test_a_rejection_stranded_without_facts_is_handed_on_by_the_repair_and_only_once(
        routing: Routing, capsys: pytest.CaptureFixture[str]) -> None:
    from schakel.cli import main

    s = signal(20, bsn="111222333", partner="obs-de-linde", kind="school", category="KLAS", school="12AB",
               postcode="3511")
    routing.send("signals.received", s.subject_key, s, received_event_id(s))
    first = wait_until(routing.assigned, timeout=30, message="first assignment")[0]
    # As an old feedback worker wrote it (ADR 0023's upgrade gap): no facts, and routing kept no assignment.
    legacy = rejection(first).model_copy(update={"handoff": None, "received_at": None})
    routing.send("signals.lifecycle", s.signal_id, legacy, deterministic_id("rej", s.signal_id, "1"))
    bootstrap = routing.broker.bootstrap
    dead = wait_until(lambda: read_all(bootstrap, "signals.received.dlq"), timeout=30, message="dead letter")
    assert [e.id for _, e, _ in dead] == [deterministic_id("rej", s.signal_id, "1")]

    assert main(["repair", "handoffs", "--bootstrap", bootstrap, "--dry-run"]) == 0
    assert "1 would republish" in capsys.readouterr().out
    time.sleep(2.0)
    assert [a.attempt for a in routing.assigned()] == [1]  # a dry run writes nothing

    assert main(["repair", "handoffs", "--bootstrap", bootstrap]) == 0
    assert "1 republished" in capsys.readouterr().out
    second = wait_until(lambda: [a for a in routing.assigned() if a.attempt == 2], timeout=30, message="attempt 2")[0]
    assert (second.body_id, second.previous_body_ids, second.received_at) == (
        "wijkteam-centrum", ["zat-12ab"], first.received_at)
    republished = [e for _, e, d in read_all(bootstrap, "signals.lifecycle") if d.signal_id == s.signal_id]
    assert [e.id for e in republished] == [deterministic_id("rej", s.signal_id, "1")] * 2  # a redelivery for others
    audit = [d for _, _, d in read_all(bootstrap, "audit.log") if d.action == "repair_handoff"]
    assert [(a.signal_id, a.actor_partner_id) for a in audit] == [(s.signal_id, "operator")]

    assert main(["repair", "handoffs", "--bootstrap", bootstrap]) == 0  # again: nothing more happens
    assert "0 republished, 1 handed on already" in capsys.readouterr().out
    time.sleep(2.0)
    assert [a.attempt for a in routing.assigned()] == [1, 2]
