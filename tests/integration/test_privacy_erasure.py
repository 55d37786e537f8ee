"""Forgetting a child on the real broker (issue 11, ADR 0020): erasure, retention, inzage, compaction of the key.

One broker and one system for the module; canary texts prove what can and cannot be read afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from schakel.privacy_cli import read_records
from shared.keystore import Headers, KeyStore, parse_record_key
from shared.pseudonym import subject_key
from shared.settings import REPO_ROOT
from shared.topics import DAY_MS, SIGNALS_INBOUND
from tests.conftest import start_broker
from tests.harness import System, auth, read_topic, wait_until
from tests.integration.intake_support import send_inbound, submitted_event
from tests.privacy_support import DEVELOPMENT_MASTER_KEY, header_of, open_field, system_ring, tokens_in

pytestmark = pytest.mark.kafka
PSEUDONYM_SECRET = "development-only-secret-change-me"  # the services' default
BSN_A, BSN_B, BSN_D = "123456708", "123456721", "123456733"
RUN = uuid.uuid4().hex[:8]
CANARY_A1, CANARY_A2, CANARY_A3 = (f"CANARY-A{n}-{RUN}" for n in (1, 2, 3))
CANARY_A_MESSAGE, CANARY_B = f"CANARY-AM-{RUN}", f"CANARY-B-{RUN}"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """Every service on a broker of the module's own; retention of seconds for signals closed as unfounded."""
    broker = start_broker(tmp_path_factory.mktemp("kafka-privacy"))
    stack = System(broker=broker, root=tmp_path_factory.mktemp("privacy"), extra_env={
        "SCHAKEL_RETENTION_UNFOUNDED_TERM": "PT3S", "SCHAKEL_RETENTION_SWEEP_INTERVAL_S": "1",
    }).start()
    yield stack
    stack.stop()
    broker.stop(kill=True)


def school_signal(bsn: str | None, summary: str, *, pupil: str = "4711", category: str = "KLAS") -> dict[str, Any]:
    subject: dict[str, str] = {"school_brin": "12AB", "pupil_ref": pupil}
    if bsn:
        subject["bsn"] = bsn
    return {"category": category, "subject": subject, "summary": summary, "legal_basis": "meldrecht",
            "reporter": {"name": "Juf Jansen", "email": "juf.jansen@delinde.example"}}


def submitted(system: System, partner: str, body: dict[str, Any]) -> dict[str, Any]:
    response = system.submit(partner, body, **{"Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def gone(system: System, partner: str, signal_id: str) -> bool:
    response = system.get_signal(partner, signal_id)
    return response.status_code == 404


def all_topics(bootstrap: str) -> list[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return sorted(t for t in admin.list_topics() if not t.startswith("__"))
    finally:
        admin.close()


def mails_about(system: System, references: list[str]) -> list[bytes]:
    return [m.data for m in system.sink.messages if any(ref.encode() in m.data for ref in references)]


def settle_mail(system: System, *, quiet_s: float = 3.0) -> None:
    """Wait until the sink received nothing new for a while (every mail of what happened so far is in)."""
    count, since = len(system.sink.messages), time.monotonic()
    deadline = since + 60
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, "mail kept arriving"
        time.sleep(0.3)
        if len(system.sink.messages) != count:
            count, since = len(system.sink.messages), time.monotonic()


def run_cli(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCHAKEL_KAFKA_BOOTSTRAP": system.broker.bootstrap, "SCHAKEL_LOG_FORMAT": "json"}
    return subprocess.run([sys.executable, "-m", "schakel", "privacy", *args], capture_output=True, text=True,
                          env=env, cwd=REPO_ROOT, timeout=120, check=False)


def audit_actions(system: System, signal_id: str) -> list[dict[str, Any]]:
    events = [json.loads(r.value) for r in read_topic(system.broker.bootstrap, "audit.log")]
    return [e["data"] for e in events if e["data"].get("signal_id") == signal_id]


def test_an_erased_child_cannot_be_read_anywhere_and_another_child_can(system: System) -> None:
    a1 = submitted(system, "obs-de-linde", school_signal(BSN_A, CANARY_A1))
    a2 = submitted(system, "politie-basisteam", {**school_signal(BSN_A, CANARY_A2, category="OVERL"),
                                                 "reporter": {"name": "Agent", "email": "agent@politie.example"}})
    b1 = submitted(system, "obs-de-linde", school_signal(BSN_B, CANARY_B, pupil="4712"))
    # A Kafka-connected partner's record about child A that intake refuses (signed with another secret).
    send_inbound(system.broker.bootstrap, submitted_event(school_signal(BSN_A, CANARY_A3)))
    a_refs = [a1["reference"], a2["reference"]]

    seen = system.wait_for_signal("obs-de-linde", a1["signal_id"])
    assert seen["summary"] == CANARY_A1
    assert system.post_event("obs-de-linde", a1["signal_id"], {"type": "acknowledged"}).status_code == 200
    answer = system.post_event("obs-de-linde", a1["signal_id"], {"type": "feedback", "message": CANARY_A_MESSAGE})
    assert answer.status_code == 200, answer.text
    assert answer.json()["feedback"] == [CANARY_A_MESSAGE]
    system.wait_for_signal("politie-basisteam", a2["signal_id"])
    assert system.wait_for_signal("obs-de-linde", b1["signal_id"])["summary"] == CANARY_B
    system.wait_for_mail("juf.jansen@delinde.example", subject_contains="Terugkoppeling")
    settle_mail(system)
    wait_until(lambda: any(h.get("schakel-value-sealed") == b"v2" for h in (
        dict(r.headers) for r in read_topic(system.broker.bootstrap, "signals.inbound.dlq"))), what="dead letter")

    refused = httpx.post(system.url("feedback", "/v1/privacy/erasures"), json={"bsn": BSN_A},
                         headers=auth("obs-de-linde"), timeout=30)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    erased = httpx.post(system.url("feedback", "/v1/privacy/erasures"), json={"bsn": BSN_A},
                        headers=auth("gemeente"), timeout=30)
    assert erased.status_code == 202, erased.text
    assert erased.json()["keys_destroyed"] == 3  # two signals and the dead letter

    for partner, signal in (("obs-de-linde", a1), ("politie-basisteam", a2)):
        wait_until(partial(gone, system, partner, signal["signal_id"]), what="erased signal answers 404")
        problem = system.get_signal(partner, signal["signal_id"])
        assert problem.headers["content-type"].startswith("application/problem+json")
        assert problem.json()["title"] == "Niet gevonden" and problem.json()["code"] == "signal_not_found"
    changed = system.post_event("obs-de-linde", a1["signal_id"], {"type": "feedback", "message": "nog iets"})
    assert changed.status_code == 404
    wait_until(lambda: {e["data"]["signal_id"] for e in (
        json.loads(r.value) for r in read_topic(system.broker.bootstrap, "signals.lifecycle"))
        if e["type"] == "nl.schakel.signal.erased.v1"} >= {a1["signal_id"], a2["signal_id"]}, what="SignalErased")
    mails_at_erasure = mails_about(system, a_refs)
    assert mails_at_erasure  # the test looks at the right mails

    subject_a = subject_key(secret=PSEUDONYM_SECRET, bsn=BSN_A)
    subject_b = subject_key(secret=PSEUDONYM_SECRET, bsn=BSN_B)
    assert_unreadable(system, subject_a=subject_a, subject_b=subject_b)

    survivor = system.get_signal("obs-de-linde", b1["signal_id"])
    assert survivor.status_code == 200 and survivor.json()["summary"] == CANARY_B
    for signal in (a1, a2):
        actions = [(a["action"], a["actor_partner_id"]) for a in audit_actions(system, signal["signal_id"])]
        assert ("erased", "gemeente") in actions

    for name in list(system.services):
        system.restart(name)
    assert gone(system, "obs-de-linde", a1["signal_id"]) and gone(system, "politie-basisteam", a2["signal_id"])
    after_restart = system.get_signal("obs-de-linde", b1["signal_id"])
    assert after_restart.status_code == 200 and after_restart.json()["summary"] == CANARY_B
    assert system_ring(system.broker.bootstrap).kids_of(subject_a) == []
    assert_unreadable(system, subject_a=subject_a, subject_b=subject_b)
    time.sleep(3)  # whatever notify would still do after the restart has had its chance
    assert mails_about(system, a_refs) == mails_at_erasure


def assert_unreadable(system: System, *, subject_a: str, subject_b: str) -> None:
    """Every token of child A on every topic (changelogs and dead letters too) fails to open; B's open."""
    bootstrap = system.broker.bootstrap
    ring = system_ring(bootstrap)
    canaries_a = (CANARY_A1, CANARY_A2, CANARY_A3, CANARY_A_MESSAGE, BSN_A)
    a_tokens: dict[str, int] = {}
    b_opened = 0
    for topic in all_topics(bootstrap):
        if topic == SIGNALS_INBOUND.name:
            # What a Kafka partner wrote, as it wrote it (raw identifiers): not Schakel's to encrypt; it is
            # kept 7 days only (operations.md, "What remains").
            assert SIGNALS_INBOUND.retention_ms <= 7 * DAY_MS
            continue
        for key, value in read_records(bootstrap, topic):  # up to the end offsets of now (heartbeats keep coming)
            raw = (key or b"") + b"|" + (value or b"")
            assert not any(c.encode() in raw for c in canaries_a), f"child A in clear text on {topic}"
            for token in tokens_in(value):
                header = header_of(token)
                if header["subject"] == subject_a:
                    assert open_field(token, bootstrap=bootstrap, field=header["field"], ring=ring) is None, topic
                    a_tokens[topic] = a_tokens.get(topic, 0) + 1
                elif header["subject"] == subject_b and header["field"] == "summary":
                    assert open_field(token, bootstrap=bootstrap, field="summary", ring=ring) == CANARY_B
                    b_opened += 1
    # The child's tokens were there to try: on the wire, in feedback's changelog, in the dead letters.
    assert {"signals.received", "signals.assigned", "signals.lifecycle", "signals.inbound.dlq",
            "schakel-feedback-signal-state-changelog"} <= set(a_tokens), a_tokens
    assert b_opened >= 2


def test_inzage_export_holds_the_child_and_its_readers_and_nothing_of_another(system: System) -> None:
    b = submitted(system, "obs-de-linde", school_signal(BSN_D, f"INZAGE-{RUN}", pupil="4713"))
    other = submitted(system, "obs-de-linde", school_signal(None, f"OTHER-{RUN}", pupil="4799"))
    system.wait_for_signal("obs-de-linde", b["signal_id"])
    system.wait_for_signal("obs-de-linde", other["signal_id"])
    result = run_cli(system, "export", "--bsn", BSN_D, "--by", "fg")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["subject_key"] == subject_key(secret=PSEUDONYM_SECRET, bsn=BSN_D)
    [signal] = [s for s in document["signals"] if s["signal_id"] == b["signal_id"]]
    assert signal["summary"] == f"INZAGE-{RUN}" and signal["routes"][0]["body_id"] == "zat-12ab"
    assert signal["deadlines"] and signal["history"][0]["change"] == "assigned"
    assert ("read", "obs-de-linde") in {(a["action"], a["actor_partner_id"]) for a in signal["accesses"]}
    assert other["signal_id"] not in result.stdout and f"OTHER-{RUN}" not in result.stdout
    assert CANARY_B not in result.stdout and BSN_D not in result.stdout
    assert "inzage_export" in {a["action"] for a in audit_actions(system, b["signal_id"])}



def test_the_cli_erases_a_child_known_by_school_and_pupil_number(system: System) -> None:
    c = submitted(system, "obs-de-linde", school_signal(None, f"CLI-{RUN}", pupil="4800"))
    assert system.wait_for_signal("obs-de-linde", c["signal_id"])["summary"] == f"CLI-{RUN}"
    result = run_cli(system, "erase", "--pupil", "12AB:4800", "--by", "fg")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["keys_destroyed"] == 1
    wait_until(lambda: gone(system, "obs-de-linde", c["signal_id"]), what="erased by the CLI")
    exported = run_cli(system, "export", "--pupil", "12AB:4800")
    assert exported.returncode == 0, exported.stderr
    [signal] = json.loads(exported.stdout)["signals"]  # what remains: a content-free trace, marked erased
    assert signal["signal_id"] == c["signal_id"] and signal["erased"] and signal["summary"] is None
    assert f"CLI-{RUN}" not in exported.stdout
    assert run_cli(system, "erase", "--bsn", "12").returncode == 2


def test_retention_erases_a_signal_closed_as_unfounded_and_keeps_the_childs_other_signal(system: System) -> None:
    due = submitted(system, "obs-de-linde", school_signal(None, f"UNFOUNDED-{RUN}", pupil="4900"))
    kept = submitted(system, "obs-de-linde", school_signal(None, f"FOUNDED-{RUN}", pupil="4900"))
    for signal, outcome in ((due, "ongegrond"), (kept, "hulp_ingezet")):
        system.wait_for_signal("obs-de-linde", signal["signal_id"])
        for event in ({"type": "acknowledged"}, {"type": "feedback", "message": "Gesproken met ouders."},
                      {"type": "closed", "outcome": outcome}):
            answer = system.post_event("obs-de-linde", signal["signal_id"], event)
            assert answer.status_code == 200, answer.text
    wait_until(lambda: gone(system, "obs-de-linde", due["signal_id"]), timeout=60, what="retention erased it")
    still = system.get_signal("obs-de-linde", kept["signal_id"])
    assert still.status_code == 200 and still.json()["summary"] == f"FOUNDED-{RUN}"
    subject = subject_key(secret=PSEUDONYM_SECRET, school_brin="12AB", pupil_ref="4900")
    assert system_ring(system.broker.bootstrap).kids_of(subject) == [kept["signal_id"]]
    actions = {(a["action"], a["on_behalf_of"]) for a in audit_actions(system, due["signal_id"])}
    assert ("erased_by_retention", "retention") in actions
    metrics = httpx.get(system.url("feedback", "/metrics"), timeout=10).text
    assert 'feedback_signals_erased_total{reason="retention"} 1.0' in metrics
    assert "feedback_retention_due_signals 0.0" in metrics


def test_an_erased_key_and_its_tombstone_are_compacted_away_within_the_bound(system: System) -> None:
    """A key topic with a bound of seconds: after the erasure neither the key nor its tombstone stays on disk."""
    bootstrap = system.broker.bootstrap
    topic = f"privacy.keys.compaction-{RUN}"
    bound = {"cleanup.policy": "compact", "segment.ms": "1000", "max.compaction.lag.ms": "1000",
             "delete.retention.ms": "1000", "min.cleanable.dirty.ratio": "0.01"}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs=bound)])
    finally:
        admin.close()
    asyncio.run(erase_and_wait_for_compaction(bootstrap, topic))


async def erase_and_wait_for_compaction(bootstrap: str, topic: str) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()

    async def send(name: str, key: bytes, value: bytes | None, headers: Headers = ()) -> None:
        await producer.send_and_wait(name, value=value, key=key, headers=list(headers))

    keys = KeyStore(bootstrap=bootstrap, master_secret=DEVELOPMENT_MASTER_KEY, legacy_sealing_key="unused",
                    send=send, client_id="compaction-test", topic=topic)
    await keys.start()
    try:
        await keys.data_key_for_new("sk_forgotten", "signal-1", may_exist=True)
        await keys.data_key_for_new("sk_kept", "signal-2", may_exist=True)
        await asyncio.sleep(1.2)
        assert await keys.erase("sk_forgotten") == ["signal-1"]
        deadline = time.monotonic() + 90
        while True:
            await keys.heartbeat()  # rolls the segment, as feedback's retention sweep does every run
            subjects = [parse_record_key(key or b"") for key, _ in await asyncio.to_thread(read_records, bootstrap,
                                                                                           topic)]
            if ("sk_forgotten", "signal-1") not in subjects:
                break
            assert time.monotonic() < deadline, "the erased key (or its tombstone) is still on the topic"
            await asyncio.sleep(1.0)
        assert ("sk_kept", "signal-2") in subjects
        assert await keys.data_key("sk_kept", "signal-2") is not None
    finally:
        await keys.stop()
        await producer.stop()
