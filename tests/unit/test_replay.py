"""The pure core of `schakel routes replay`: a history and two rules files in, the signals that would move out."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from rich.console import Console

from schakel.replay import Fold, Replay, compare
from schakel.replay_cli import Timed, report
from services.routing.config import RoutingConfig
from services.routing.decisions import RoutingDecisions
from services.routing.metrics import RoutingMetrics
from shared.events import (
    Contact,
    SignalAssigned,
    SignalReceived,
    Urgency,
    decode_event,
    encode_event,
    make_event,
    source_urn,
)
from shared.municipality import Municipality, load_municipality
from shared.record_loop import Incoming, TableView
from shared.settings import REPO_ROOT
from shared.topics import SIGNALS_ASSIGNED, SIGNALS_RECEIVED
from tests.factories import received_signal

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPORTER = Contact(name="Juf Jansen", email="juf.jansen@delinde.example")


def received(n: int, *, partner: str, kind: str, category: str, child: str = "sk_child", school: str | None = None,
             postcode: str | None = "3511", days: float = 0, flags: list[str] | None = None) -> SignalReceived:
    return received_signal(n, namespace="replay-test", partner=partner, kind=kind, category=category, subject=child,
                           school=school, postcode=postcode, flags=flags, at=T0 + timedelta(days=days),
                           reporter=REPORTER)


def variant(tmp_path: Path, change: Callable[[dict[str, Any]], None], name: str = "kandidaat") -> Municipality:
    """The example municipality with one change to its YAML."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return load_municipality(path)


def police_home_to_oov(data: dict[str, Any]) -> None:
    rules = data["routing"]["rules"]
    at = next(i for i, rule in enumerate(rules) if rule["id"] == "thuis-wijkteam")
    rules.insert(at, {"id": "thuis-politie", "description": "Thuiszorgen van de politie naar het OOV-overleg",
                      "when": {"category": "THUIS", "partner_kind": "police"}, "target": "oov"})


def one_day_window(data: dict[str, Any]) -> None:
    data["routing"]["match_window_days"] = 1


def test_a_new_rule_moves_exactly_the_signals_it_catches(tmp_path: Path) -> None:
    old, new = load_municipality(EXAMPLE), variant(tmp_path, police_home_to_oov)
    history = [
        received(1, partner="politie-basisteam", kind="police", category="THUIS", child="sk_a"),
        received(2, partner="obs-de-linde", kind="school", category="EMO", child="sk_b", school="12AB"),
        received(3, partner="wijkteam-centrum", kind="wijkteam", category="THUIS", child="sk_c"),
        received(4, partner="politie-basisteam", kind="police", category="THUIS", child="sk_d", postcode="3581"),
    ]
    result = compare(history, old=old, new=new)
    assert [(m.reference, m.old.body_id, m.new.body_id, m.new.rule_id) for m in result.moved] == [
        ("SK-2026-00000001", "wijkteam-centrum", "oov", "thuis-politie"),
        ("SK-2026-00000004", "wijkteam-oost", "oov", "thuis-politie"),
    ]
    assert result.moved[0].old.rule_id == "thuis-wijkteam"
    assert result.moved[0].new.description == "Thuiszorgen van de politie naar het OOV-overleg"
    assert result.signals == 4 and result.moved_total == 2
    assert result.groups == {("wijkteam-centrum", "oov", "thuis-politie"): 1,
                             ("wijkteam-oost", "oov", "thuis-politie"): 1}


def test_the_same_file_moves_nothing(tmp_path: Path) -> None:
    municipality = load_municipality(EXAMPLE)
    history = [received(n, partner="politie-basisteam", kind="police", category="THUIS", days=n) for n in range(5)]
    result = compare(history, old=municipality, new=municipality)
    assert (result.signals, result.moved_total, result.same_body_other_rule) == (5, 0, 0)


def test_earlier_signals_of_the_same_child_decide_through_the_match_window(tmp_path: Path) -> None:
    old, new = load_municipality(EXAMPLE), variant(tmp_path, one_day_window)
    history = [
        received(1, partner="obs-de-linde", kind="school", category="EMO", school="12AB"),  # zat under both
        received(2, partner="politie-basisteam", kind="police", category="THUIS", days=5),  # matched only in old
        received(3, partner="politie-basisteam", kind="police", category="THUIS", child="sk_other", days=5),
        received(4, partner="obs-de-linde", kind="school", category="EMO", school="12AB", days=5.5),  # police 12 h ago
    ]
    result = compare(history, old=old, new=new)
    moved = {m.reference: (m.old.body_id, m.old.rule_id, m.new.body_id, m.new.rule_id) for m in result.moved}
    assert moved == {"SK-2026-00000002": ("oov", "match-politie", "wijkteam-centrum", "thuis-wijkteam")}
    # Signal 4 matches the police signal of half a day before under both windows: oov either way.
    assert result.signals == 4 and result.same_body_other_rule == 0


def test_replay_decides_as_the_routing_agent_does(tmp_path: Path) -> None:
    """The fold gives, signal for signal, the body and rule the agent's handler publishes."""
    municipality = load_municipality(EXAMPLE)
    decide = RoutingDecisions(RoutingConfig(None, RoutingMetrics(CollectorRegistry()), municipality=municipality),
                              RoutingMetrics(CollectorRegistry()))
    history = [
        received(1, partner="obs-de-linde", kind="school", category="EMO", school="12AB"),
        received(2, partner="politie-basisteam", kind="police", category="OVERL", days=3, flags=["GROUP_LINK"]),
        received(3, partner="leerplicht", kind="leerplicht", category="VERZ", school="34CD", days=4),
        received(4, partner="wijkteam-oost", kind="wijkteam", category="BASIS", child="sk_2", postcode="3582"),
        received(5, partner="gemeente", kind="municipality", category="HGKM", child="sk_3", school="12AB"),
        received(6, partner="politie-basisteam", kind="police", category="THUIS", child="sk_2", days=800),
    ]
    tables: dict[str, dict[Any, Any]] = {"routing-subjects": {}, "routing-families": {}, "routing-assignments": {}}
    agent = []
    for signal in [*history, history[1]]:  # and a redelivery, which the agent skips
        envelope = make_event(signal, source=source_urn("test"), subject=signal.signal_id)
        effects = decide.on_received(Incoming(envelope, signal, signal.subject_key.encode(), SIGNALS_RECEIVED.name),
                                     TableView(tables))
        for write in effects.writes:
            tables[write.table][write.key] = write.value
        for record in effects.publish:
            if record.topic == SIGNALS_ASSIGNED.name:
                assigned = decode_event(record.value)[1]
                assert isinstance(assigned, SignalAssigned)
                agent.append((assigned.reference, assigned.body_id, assigned.rule_id))
    fold = Fold(municipality)
    replayed = [(s.reference, r.body_id, r.rule_id) for s in [*history, history[1]] if (r := fold.route(s))]
    assert replayed == agent
    assert len(agent) == 6 and ("SK-2026-00000002", "oov", "match-politie") in agent


def test_a_redelivered_signal_is_routed_once_and_counted(tmp_path: Path) -> None:
    old, new = load_municipality(EXAMPLE), variant(tmp_path, police_home_to_oov)
    signal = received(1, partner="politie-basisteam", kind="police", category="THUIS")
    result = compare([signal, signal], old=old, new=new)
    assert (result.signals, result.redeliveries, result.moved_total) == (1, 1, 1)


def test_undecodable_records_are_counted_by_code_with_their_place(tmp_path: Path) -> None:
    municipality = load_municipality(EXAMPLE)
    replay = Replay(Fold(municipality), Fold(municipality))
    signal = received(1, partner="obs-de-linde", kind="school", category="EMO", school="12AB")
    good = encode_event(make_event(signal, source=source_urn("test"), subject=signal.signal_id))
    not_a_signal = encode_event(make_event(SignalAssigned(
        signal_id="s", reference="SK-2026-1", category="EMO", urgency=Urgency.U2, route="zat", body_id="zat-12ab",
        body_name="ZAT", rule_id="zat", rule_description="d", partner_id="obs-de-linde", partner_kind="school",
        reporter=REPORTER, received_at=T0, assigned_at=T0), source=source_urn("test"), subject="s"))
    for offset, value in enumerate([good, b"{not json", None, not_a_signal, good.replace(b'"EMO"', b'42')]):
        replay.feed(value, partition=2, offset=offset)
    assert (replay.records, replay.signals, replay.unreadable_total) == (5, 1, 4)
    assert replay.unreadable_by_code == {"bad_json": 1, "empty_record": 1, "unexpected_event_type": 1,
                                         "schema_violation": 1}
    assert [(u.partition, u.offset) for u in replay.unreadable] == [(2, 1), (2, 2), (2, 3), (2, 4)]


def test_signals_before_the_period_count_for_matching_but_are_not_reported(tmp_path: Path) -> None:
    old, new = load_municipality(EXAMPLE), variant(tmp_path, police_home_to_oov)
    replay = Replay(Fold(old), Fold(new), since=T0 + timedelta(days=1))
    replay.add(received(1, partner="politie-basisteam", kind="police", category="THUIS"))  # moves, but too early
    moved = replay.add(received(2, partner="obs-de-linde", kind="school", category="THUIS", school="12AB", days=2))
    assert moved is None  # matched with the police signal: match-politie -> oov under both files
    assert (replay.before_period, replay.signals, replay.moved_total) == (1, 1, 0)


def test_the_list_is_capped_but_every_move_is_counted(tmp_path: Path) -> None:
    old, new = load_municipality(EXAMPLE), variant(tmp_path, police_home_to_oov)
    history = [received(n, partner="politie-basisteam", kind="police", category="THUIS", child=f"sk_{n}")
               for n in range(7)]
    result = compare(history, old=old, new=new, limit=3)
    assert (len(result.moved), result.moved_total, sum(result.groups.values())) == (3, 7, 7)


def test_the_report_names_references_and_rules_never_the_reporter(tmp_path: Path) -> None:
    old, new = load_municipality(EXAMPLE), variant(tmp_path, police_home_to_oov)
    history = [received(1, partner="politie-basisteam", kind="police", category="THUIS"),
               received(2, partner="obs-de-linde", kind="school", category="EMO", school="12AB", child="sk_b")]
    out = io.StringIO()
    report(Timed(compare(history, old=old, new=new), 0.5), old=EXAMPLE, new=tmp_path / "kandidaat.yaml",
           topic="signals.received", console=Console(file=out, width=250))
    text = out.getvalue()
    assert "SK-2026-00000001" in text and "SK-2026-00000002" not in text
    assert "wijkteam-centrum" in text and "thuis-politie" in text and "2 signals routed under both files" in text
    assert "Jansen" not in text and "delinde.example" not in text and "sk_child" not in text
