"""On the real broker: a file's `zat: {"*": …}` SLA entry sets the clocks of ZAT signals of every urgency.

A test copy of the example municipality writes `zat: {"*": {acknowledge: PT20S, feedback: PT40S, close: PT60S}}`
and drops the rule that sends every U0 signal to the coordinator, so a KLAS signal of each urgency U0–U3 goes to
the school's ZAT. Each must get the file's policy (`gm-lindendam:zat/*`, not a built-in `default:zat/U…`), and
breach on that clock: the acknowledge breach comes out with the 20-second deadline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from schakel.kafka_broker import Broker
from tests.harness import EXAMPLE_CONFIG, System, read_topic, wait_until

pytestmark = pytest.mark.kafka

URGENCIES = ("U0", "U1", "U2", "U3")
TERMS = {"acknowledge": "PT20S", "feedback": "PT40S", "close": "PT60S"}
POLICY = "gm-lindendam:zat/*"


def municipality_with_zat_star(directory: Path) -> Path:
    """The example with the zat "*" entry in seconds, and without the U0 → coordinator rule."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    data["sla"]["escalation_interval"] = "PT1H"
    data["sla"]["routes"]["zat"] = {"*": TERMS}
    data["routing"]["rules"] = [r for r in data["routing"]["rules"] if r["id"] != "spoed-u0"]
    path = directory / "gemeente-zat-star.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def system(fresh_kafka: Broker, tmp_path: Path) -> Iterator[System]:
    stack = System(broker=fresh_kafka, root=tmp_path, config=municipality_with_zat_star(tmp_path),
                   extra_env={"SCHAKEL_SLA_SWEEP_INTERVAL_S": "2"})
    stack.start(["intake", "routing", "feedback"])
    yield stack
    stack.stop()


def submit(system: System, urgency: str) -> str:
    response = system.submit("obs-de-linde", {
        "category": "KLAS", "urgency": urgency, "subject": {"school_brin": "12AB", "pupil_ref": f"STAR-{urgency}"},
        "reporter": {"name": "Juf", "email": "juf@delinde.example"}, "legal_basis": "meldrecht",
    }, **{"Idempotency-Key": f"star-{urgency}"})
    assert response.status_code == 202, response.text
    return str(response.json()["signal_id"])


def breaches(system: System) -> list[dict[str, Any]]:
    return [json.loads(r.value)["data"] for r in read_topic(system.broker.bootstrap, "sla.breached", timeout_ms=1500)]


def test_a_zat_star_entry_in_seconds_sets_the_policy_and_the_breach_of_every_urgency(system: System) -> None:
    signals = {urgency: submit(system, urgency) for urgency in URGENCIES}
    states = {u: system.wait_for_signal("obs-de-linde", sid) for u, sid in signals.items()}

    for urgency, state in states.items():
        assert state["route"] == "zat" and state["urgency"] == urgency
        deadlines = {d["clock"]: d for d in state["deadlines"]}
        assert {d["policy"] for d in deadlines.values()} == {POLICY}, urgency
        assert all(d["rule"] == f"{TERMS[c]} (clock time, round the clock)" for c, d in deadlines.items())
        due = {c: datetime.fromisoformat(d["due_at"]) for c, d in deadlines.items()}
        assert due["feedback"] - due["acknowledge"] == timedelta(seconds=20)
        assert due["close"] - due["acknowledge"] == timedelta(seconds=40)

    def every_acknowledge_breached() -> dict[str, dict[str, Any]]:
        found = {b["signal_id"]: b for b in breaches(system) if b["clock"] == "acknowledge"}
        return found if set(signals.values()) <= set(found) else {}

    found = wait_until(every_acknowledge_breached, timeout=120, interval=1.0,
                       what="an acknowledge breach of each urgency")
    for urgency, sid in signals.items():
        breach = found[sid]
        assert (breach["route"], breach["urgency"], breach["step"]) == ("zat", urgency, "handler")
        ack = next(d for d in states[urgency]["deadlines"] if d["clock"] == "acknowledge")
        assert datetime.fromisoformat(breach["due_at"]) == datetime.fromisoformat(ack["due_at"])
