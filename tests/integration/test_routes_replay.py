"""`schakel routes replay` on a real broker: a small history, a changed rules file, exactly the changed signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schakel.cli import main
from schakel.kafka_broker import Broker
from schakel.replay_cli import replay_topic
from shared.events import Contact, SignalReceived, Urgency, deterministic_id, encode_event, make_event, source_urn
from shared.municipality import load_municipality
from shared.settings import REPO_ROOT
from shared.topics import ALL_TOPICS, SIGNALS_RECEIVED

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=200)
PARTNERS = [("obs-de-linde", "school", "12AB"), ("politie-basisteam", "police", None),
            ("wijkteam-centrum", "wijkteam", None), ("leerplicht", "leerplicht", "34CD")]
CATEGORIES = {"school": "EMO", "police": "THUIS", "wijkteam": "BASIS", "leerplicht": "VERZ"}


def history() -> list[SignalReceived]:
    """40 signals of 10 children, each signalled by up to four partners, a day apart."""
    out = []
    for n in range(40):
        partner, kind, school = PARTNERS[n % 4]
        out.append(SignalReceived(
            signal_id=deterministic_id("it-replay", str(n)), reference=f"SK-2026-{n:08d}", partner_id=partner,
            partner_kind=kind, category=CATEGORIES[kind], urgency=Urgency.U2, subject_key=f"sk_child{n // 4 + (n % 3)}",
            school_brin=school, postcode_area="3511" if n % 2 else "3581", received_at=T0 + timedelta(days=n),
            reporter=Contact(name="Melder", email="melder@partner.example"), legal_basis="meldrecht"))
    return out


def candidate(tmp_path: Path) -> Path:
    """The example where a match with the police no longer goes to OOV, but only for a match of a day."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["routing"]["match_window_days"] = 1
    path = tmp_path / "kandidaat.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def end_offsets(bootstrap: str) -> dict[str, int]:
    """The sum of end offsets of every registered topic."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        out = {}
        for topic in ALL_TOPICS:
            tps = [TopicPartition(topic.name, p) for p in consumer.partitions_for_topic(topic.name) or set()]
            out[topic.name] = sum(consumer.end_offsets(tps).values())
        return out
    finally:
        consumer.close()


@pytest.mark.kafka
def test_replay_finds_exactly_the_signals_a_changed_file_moves_and_writes_nothing(
        fresh_kafka: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    signals = history()
    producer = KafkaProducer(bootstrap_servers=fresh_kafka.bootstrap, acks="all")
    for s in [*signals[:20], signals[5], *signals[20:]]:  # one redelivery
        event = make_event(s, source=source_urn("test"), subject=s.signal_id,
                           event_id=deterministic_id("received", s.signal_id))
        producer.send(SIGNALS_RECEIVED.name, key=s.subject_key.encode(), value=encode_event(event)).get(timeout=10)
    producer.send(SIGNALS_RECEIVED.name, key=b"sk_broken", value=b"{broken").get(timeout=10)
    producer.close()
    new_path = candidate(tmp_path)
    old, new = load_municipality(EXAMPLE), load_municipality(new_path)

    # What must move, computed signal by signal: a signal's match is with another partner of the same child.
    def expected(window: timedelta) -> dict[str, str]:
        bodies = {}
        for s in signals:
            earlier = [e for e in signals if e.subject_key == s.subject_key and e.received_at < s.received_at
                       and s.received_at - e.received_at <= window and e.partner_id != s.partner_id]
            bodies[s.reference] = "police" if any(e.partner_kind == "police" for e in earlier) or (
                earlier and s.partner_kind == "police") else ""
        return bodies

    wide, narrow = expected(timedelta(days=730)), expected(timedelta(days=1))
    should_move = {ref for ref in wide if wide[ref] != narrow[ref]}
    assert should_move, "the history must contain police matches that a one-day window loses"

    before = end_offsets(fresh_kafka.bootstrap)
    timed = replay_topic(bootstrap=fresh_kafka.bootstrap, old=old, new=new, limit=100)
    r = timed.replay
    assert (r.records, r.signals, r.redeliveries, dict(r.unreadable_by_code)) == (42, 40, 1, {"bad_json": 1})
    assert {m.reference for m in r.moved} == should_move and r.moved_total == len(should_move)
    assert all(m.old.rule_id == "match-politie" and m.old.body_id == "oov" for m in r.moved)
    assert end_offsets(fresh_kafka.bootstrap) == before  # nothing written

    code = main(["routes", "replay", str(new_path), "--against", str(EXAMPLE), "--bootstrap", fresh_kafka.bootstrap,
                 "--limit", "100"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"40 signals routed under both files, {len(should_move)} would go to another body" in out
    assert "1 record could not be read as received signals (bad_json 1)" in out
    for reference in should_move:
        assert reference in out
    unchanged = main(["config", "diff", str(EXAMPLE), str(EXAMPLE), "--replay", "--bootstrap", fresh_kafka.bootstrap])
    assert unchanged == 0 and "0 would go to another body" in capsys.readouterr().out
