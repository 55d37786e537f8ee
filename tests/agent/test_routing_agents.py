"""Routing's agents through faust's test context (memory store, no broker): match, route, hand off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.routing import agents as routing_agents
from services.routing.config import RoutingConfig
from services.routing.metrics import RoutingMetrics
from shared import record_loop
from shared.events import (
    HandOffFacts,
    LifecycleChange,
    SignalAssigned,
    SignalLifecycleChanged,
    SignalReceived,
    SignalsMatched,
    decode_event,
    deterministic_id,
    encode_event,
    make_event,
    source_urn,
)
from shared.kafka import create_faust_app
from shared.municipality import load_municipality
from shared.record_loop import Publish
from shared.settings import REPO_ROOT, Settings
from tests.factories import received_signal

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def received(n: int, *, partner: str, kind: str, category: str, subject: str = "sk_child", family: str | None = None,
             school: str | None = None, postcode: str | None = None, flags: list[str] | None = None,
             at: datetime = T0) -> SignalReceived:
    return received_signal(n, namespace="test-signal", partner=partner, kind=kind, category=category,
                           subject=subject, family=family, school=school, postcode=postcode, flags=flags, at=at)


async def buffered_write(table: Any, key: Any, value: Any) -> None:
    """A table write through faust's own path (its changelog record stays in faust's buffer here)."""
    table[key] = value


class Harness:
    """The faust app with routing's agents, and a record of everything they sent."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        settings = Settings(state_dir=tmp_path, kafka_bootstrap="127.0.0.1:1")
        self.app = create_faust_app("routing-test", settings, store="memory://")
        self.metrics = RoutingMetrics(CollectorRegistry())
        self.config = RoutingConfig(None, self.metrics, municipality=load_municipality(EXAMPLE))
        self.sent: list[tuple[str, str, Any]] = []

        async def fake_produce_all(app: Any, records: list[Publish]) -> None:
            for record in records:
                self.sent.append((record.topic, (record.key or b"").decode(), decode_event(record.value)[0]))

        monkeypatch.setattr(record_loop, "produce_all", fake_produce_all)
        monkeypatch.setattr(record_loop, "write_table", buffered_write)  # no broker: faust's buffer keeps it
        # No linger: faust's test context feeds one record and waits for it, never a batch.
        routing_agents.register_agents(self.app, config=self.config, metrics=self.metrics, linger_s=0)
        self.app.finalize()
        self.app.flow_control.resume()
        self.agents = self.app.agents

    def of(self, topic: str) -> list[Any]:
        out = []
        for t, _, event in self.sent:
            if t == topic:
                out.append(event)
        return out

    def data(self, topic: str, model: type) -> list[Any]:
        return [model.model_validate({**e.data, "event_type": e.type}) for e in self.of(topic)]


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(tmp_path, monkeypatch)


async def feed(harness: Harness, agent_name: str, records: list[tuple[str, Any]]) -> None:
    agent = harness.agents[agent_name]
    async with agent.test_context() as ctx:
        for key, payload in records:
            subject = getattr(payload, "signal_id", "x")
            event_id = deterministic_id("in", subject, type(payload).__name__, str(getattr(payload, "attempt", 0)),
                                        str(getattr(payload, "change", "")))
            event = make_event(payload, source=source_urn("test"), subject=subject, event_id=event_id)
            await ctx.put(encode_event(event), key=key.encode())


@pytest.mark.asyncio
async def test_a_school_and_a_police_signal_about_one_child_match_once_and_escalate(harness: Harness) -> None:
    school = received(1, partner="obs-de-linde", kind="school", category="EMO", school="12AB", postcode="3511")
    police = received(2, partner="politie-basisteam", kind="police", category="OVERL", postcode="3511",
                      flags=["GROUP_LINK", "SIBLING_LINK"], at=T0 + timedelta(days=3))
    police_again = received(3, partner="politie-basisteam", kind="police", category="CRIM", at=T0 + timedelta(days=4))
    await feed(harness, "route-received", [("sk_child", school), ("sk_child", police), ("sk_child", police_again)])
    assigned = harness.data("signals.assigned", SignalAssigned)
    assert [(a.body_id, a.rule_id, a.matched) for a in assigned] == [
        ("zat-12ab", "zat", False), ("oov", "match-politie", True), ("oov", "match-politie", True)]
    assert assigned[1].inform_body_ids == ["coordinator"]
    assert "MATCH" in assigned[1].flags and assigned[1].match_partner_kinds == ["police", "school"]
    assert assigned[1].facts == {"match": "true", "match_partner_kind": "police,school"}
    matches = harness.data("signals.matched", SignalsMatched)
    assert len(matches) == 1  # the third signal brings no new partner
    match = matches[0]
    assert match.signal_id == police.signal_id and match.matched_signal_ids == [school.signal_id]
    assert match.partner_kinds == ["police", "school"] and match.body_ids == ["oov", "zat-12ab"]
    assert harness.of("signals.matched")[0].id == match.match_id
    assert harness.metrics.matched._value.get() == 1


@pytest.mark.asyncio
async def test_redelivered_signals_are_not_routed_or_matched_twice(harness: Harness) -> None:
    school = received(1, partner="obs-de-linde", kind="school", category="KLAS", school="12AB")
    police = received(2, partner="politie-basisteam", kind="police", category="GROEP", at=T0 + timedelta(hours=1))
    await feed(harness, "route-received", [("sk_child", school), ("sk_child", police), ("sk_child", police),
                                           ("sk_child", school)])
    assert len(harness.of("signals.assigned")) == 2
    assert len(harness.of("signals.matched")) == 1
    ids = [e.id for e in harness.of("signals.assigned")]
    assert ids == [
        deterministic_id("assigned", school.signal_id, "1"), deterministic_id("assigned", police.signal_id, "1"),
    ]


@pytest.mark.asyncio
async def test_signals_outside_the_window_do_not_match(harness: Harness) -> None:
    old = received(1, partner="obs-de-linde", kind="school", category="KLAS", school="12AB")
    late = received(2, partner="politie-basisteam", kind="police", category="GROEP", at=T0 + timedelta(days=731))
    await feed(harness, "route-received", [("sk_child", old), ("sk_child", late)])
    assert harness.of("signals.matched") == []
    assert [a.body_id for a in harness.data("signals.assigned", SignalAssigned)] == ["zat-12ab", "oov"]


@pytest.mark.asyncio
async def test_the_same_partner_twice_is_no_match(harness: Harness) -> None:
    one = received(1, partner="obs-de-linde", kind="school", category="KLAS", school="12AB")
    two = received(2, partner="obs-de-linde", kind="school", category="EMO", school="12AB")
    await feed(harness, "route-received", [("sk_child", one), ("sk_child", two)])
    assert harness.of("signals.matched") == []


@pytest.mark.asyncio
async def test_signals_with_a_family_key_go_through_the_family_repartition(harness: Harness) -> None:
    sister = received(1, partner="obs-de-linde", kind="school", category="THUIS", subject="sk_sister",
                      family="fk_fam", school="12AB", postcode="3511")
    brother = received(2, partner="politie-basisteam", kind="police", category="GROEP", subject="sk_brother",
                       family="fk_fam", postcode="3511")
    await feed(harness, "route-received", [("sk_sister", sister), ("sk_brother", brother)])
    forwarded = [(k, e) for t, k, e in harness.sent if t == routing_agents.FAMILY_TOPIC]
    assert [k for k, _ in forwarded] == ["fk_fam", "fk_fam"]
    assert harness.of("signals.matched") == []  # different children: no subject match
    harness.sent.clear()
    family_records = [(k, SignalAssigned.model_validate({**e.data, "event_type": e.type})) for k, e in forwarded]
    await feed(harness, "match-family", family_records + family_records[1:])
    matches = harness.data("signals.matched", SignalsMatched)
    assert len(matches) == 1
    assert matches[0].key_kind == "family" and matches[0].body_ids == ["oov", "wijkteam-centrum"]


def rejected(assigned: SignalAssigned, *, reason: str = "hoort niet bij ons") -> SignalLifecycleChanged:
    return SignalLifecycleChanged(
        signal_id=assigned.signal_id, reference=assigned.reference, change=LifecycleChange.REJECTED,
        status="rejected", actor_partner_id="obs-de-linde", route=assigned.route, body_id=assigned.body_id,
        body_name=assigned.body_name, urgency=assigned.urgency, reason=reason, reporter=assigned.reporter,
        reporter_partner_id=assigned.partner_id, at=T0, attempt=assigned.attempt,
        received_at=assigned.received_at, handoff=HandOffFacts.of(assigned),
    )


@pytest.mark.asyncio
async def test_a_rejected_signal_goes_to_the_next_body_then_the_coordinator_never_back(harness: Harness) -> None:
    school = received(1, partner="obs-de-linde", kind="school", category="KLAS", school="12AB", postcode="3511")
    await feed(harness, "route-received", [("sk_child", school)])
    first = harness.data("signals.assigned", SignalAssigned)[0]
    harness.sent.clear()
    sid = first.signal_id
    await feed(harness, "hand-off", [(sid, rejected(first)), (sid, rejected(first))])
    second = harness.data("signals.assigned", SignalAssigned)
    assert [(a.body_id, a.attempt, a.previous_body_ids) for a in second] == [("wijkteam-centrum", 2, ["zat-12ab"])]
    assert second[0].facts["rejected_by"] == "zat-12ab"
    harness.sent.clear()
    await feed(harness, "hand-off", [(sid, rejected(second[0]))])
    third = harness.data("signals.assigned", SignalAssigned)
    assert [(a.body_id, a.attempt, a.rule_id) for a in third] == [("coordinator", 3, "coordinator-triage")]
    assert third[0].previous_body_ids == ["zat-12ab", "wijkteam-centrum"]
    assert harness.of("signals.assigned")[0].id == deterministic_id("assigned", sid, "3")
    assert harness.metrics.rejections.labels(route="zat")._value.get() == 1
