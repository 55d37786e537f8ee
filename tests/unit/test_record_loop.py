"""The record loop (shared.record_loop) with fakes for faust's stream, tables and producer."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from shared import record_loop
from shared.events import SignalReceived, make_event, source_urn
from shared.metrics import HopMetrics
from shared.record_loop import Effects, Incoming, Publish, RecordLoop, TableView, TableWrite
from tests.agent.test_routing_agents import received

TOPIC = "signals.received"


class FakeStream:
    """Records acks in order."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def ack(self, event: Any) -> bool:
        self.log.append(f"ack {event.message.offset}")
        return True


class FakeEvent:
    """faust's event as the loop reads it (weak-referenceable, like faust's)."""

    def __init__(self, offset: int, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        self.message = SimpleNamespace(topic=TOPIC, partition=0, offset=offset, key=b"k", value=value,
                                       headers=headers or [])
        self.value = value
        self.key = b"k"


def event(offset: int, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> Any:
    return FakeEvent(offset, value, headers)


def good(offset: int) -> Any:
    data = received(offset, partner="obs-de-linde", kind="school", category="KLAS", school="12AB")
    return event(offset, make_event(data, source=source_urn("test"), subject=data.signal_id).model_dump_json().encode())


def make_loop(log: list[str], tables: dict[str, dict[Any, Any]], monkeypatch: pytest.MonkeyPatch,
              fail_produce: bool = False) -> RecordLoop:
    async def fake_produce_all(app: Any, records: list[Publish]) -> None:
        if fail_produce:
            raise ConnectionError("broker away")
        log.extend(f"produce {r.topic}" for r in records)

    def fake_fatal(exc: BaseException) -> None:
        log.append(f"fatal {type(exc).__name__}")
        raise SystemExit(70)

    async def fake_write_table(table: dict[Any, Any], key: Any, value: Any) -> None:
        table[key] = value

    monkeypatch.setattr(record_loop, "produce_all", fake_produce_all)
    monkeypatch.setattr(record_loop, "write_table", fake_write_table)
    monkeypatch.setattr(record_loop, "fatal", fake_fatal)
    metrics = HopMetrics("unit", registry=CollectorRegistry(), consumes=[TOPIC], produces=[TOPIC])
    return RecordLoop(SimpleNamespace(), service="unit", metrics=metrics, dlq_topic="unit.dlq",  # type: ignore[arg-type]
                      tables=tables)


def counting_handler(record: Incoming, view: TableView) -> Effects:
    assert isinstance(record.data, SignalReceived)
    seen = view.get("seen", "count") or 0
    return Effects(publish=[Publish(TOPIC + ".out", None, str(seen).encode())],
                   writes=[TableWrite("seen", "count", seen + 1)])


def test_a_batch_sees_its_own_writes_acks_after_producing_and_dead_letters_per_record(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    tables: dict[str, dict[Any, Any]] = {"seen": {}}
    loop = make_loop(log, tables, monkeypatch)
    asyncio.run(loop.run_batch(FakeStream(log), [good(1), event(2, b"not json"), good(3)], counting_handler))
    assert log == ["produce signals.received.out", "produce unit.dlq", "produce signals.received.out",
                   "ack 1", "ack 2", "ack 3"]
    assert tables["seen"] == {"count": 2}  # the second good record saw the first one's write
    assert loop.metrics.dead_letters.labels(topic=TOPIC, reason="bad_json")._value.get() == 1


def test_nothing_is_acked_or_written_when_the_broker_does_not_confirm(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    tables: dict[str, dict[Any, Any]] = {"seen": {}}
    loop = make_loop(log, tables, monkeypatch, fail_produce=True)
    with pytest.raises(SystemExit):
        asyncio.run(loop.run_batch(FakeStream(log), [good(1), good(2)], counting_handler))
    assert log == ["fatal ConnectionError"]
    assert tables["seen"] == {}


def test_a_bug_in_a_handler_stops_the_worker_without_acking(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    loop = make_loop(log, {}, monkeypatch)

    def broken(record: Incoming, view: TableView) -> Effects:
        raise KeyError("bug")

    with pytest.raises(SystemExit):
        asyncio.run(loop.run_batch(FakeStream(log), [good(1)], broken))
    assert log == ["fatal KeyError"]


def test_a_record_in_binary_mode_is_dead_lettered_with_its_content_type(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    loop = make_loop(log, {"seen": {}}, monkeypatch)
    value = good(1).value
    structured = event(1, value, [("content-type", b"application/cloudevents+json; charset=UTF-8")])
    binary = event(2, value, [("content-type", b"application/json"), ("ce_type", b"nl.schakel.signal.received.v1")])
    effects = [loop._decide(e, counting_handler, TableView({"seen": {}})) for e in (structured, binary)]
    assert effects[0].publish[0].topic == TOPIC + ".out"
    dead = effects[1].publish[0]
    assert dead.topic == "unit.dlq" and dead.value == value
    assert ("content-type", b"application/json") in dead.headers
    assert ("schakel-error-code", b"unsupported_content_type") in dead.headers
