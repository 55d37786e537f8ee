"""Notify as a process on a real broker, mailing a real SMTP sink: recipients, outages, 550, SIGKILL.

Events are published straight onto notify's input topics; only notify runs. Each test prints its figures.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer

from schakel.kafka_broker import Broker
from schakel.mail_sink import ReceivedMail
from shared.events import (
    Clock,
    Contact,
    Contract,
    LifecycleChange,
    Route,
    SignalAssigned,
    SignalLifecycleChanged,
    SignalsMatched,
    SlaBreached,
    SlaWarned,
    Urgency,
    decode_event,
    deterministic_id,
    encode_event,
    make_event,
    source_urn,
)
from shared.topics import (
    NOTIFICATIONS_DLQ,
    NOTIFICATIONS_SENT,
    SIGNALS_ASSIGNED,
    SIGNALS_LIFECYCLE,
    SIGNALS_MATCHED,
    SLA_BREACHED,
    SLA_WARNING,
)
from tests.harness import System, read_topic, wait_until

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FAST_RETRY = {"SCHAKEL_NOTIFY_RETRY_BASE_S": "0.2", "SCHAKEL_NOTIFY_RETRY_MAX_S": "2.0"}
TOPIC_OF = {SignalAssigned: SIGNALS_ASSIGNED.name, SignalLifecycleChanged: SIGNALS_LIFECYCLE.name,
            SignalsMatched: SIGNALS_MATCHED.name, SlaWarned: SLA_WARNING.name, SlaBreached: SLA_BREACHED.name}
JVC = "jvc@lindendam.example"
IB, SMW, DIR = "ib@delinde.example", "smw@delinde.example", "directie@delinde.example"


@pytest.fixture
def system(fresh_kafka: Broker, tmp_path: Path) -> Iterator[System]:
    running = System(fresh_kafka, tmp_path, extra_env=dict(FAST_RETRY))
    try:
        yield running.start(["notify"])
    finally:
        running.stop()


class Publisher:
    """Publishes events onto notify's input topics, keyed by signal id (as the other services do)."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")

    def __call__(self, data: Contract, *, event_id: str | None = None) -> str:
        sid = str(data.signal_id)
        event = make_event(data, source=source_urn("test"), subject=sid, event_id=event_id or deterministic_id(
            "notify-it", type(data).__name__, sid, str(getattr(data, "change", "")), str(getattr(data, "step", ""))))
        self.producer.send(TOPIC_OF[type(data)], key=sid.encode(), value=encode_event(event)).get(timeout=30)
        return event.id

    def close(self) -> None:
        self.producer.close()


@pytest.fixture
def publish(fresh_kafka: Broker) -> Iterator[Publisher]:
    publisher = Publisher(fresh_kafka.bootstrap)
    yield publisher
    publisher.close()


def assigned(n: int, **overrides: Any) -> SignalAssigned:
    fields: dict[str, Any] = {
        "signal_id": f"sig-{n}", "reference": f"SK-2026-{n:06d}", "category": "KLAS", "urgency": Urgency.U2,
        "route": Route.ZAT,
        "body_id": "zat-12ab", "body_name": "ZAT OBS De Linde", "rule_id": "zat", "rule_description": "zat",
        "partner_id": "obs-de-linde", "partner_kind": "school", "school_brin": "12AB",
        "reporter": Contact(name="Leerkracht", email=f"melder{n}@delinde.example"),
        "received_at": T0, "assigned_at": T0,
    }
    return SignalAssigned(**{**fields, **overrides})


def lifecycle(n: int, change: LifecycleChange, **overrides: Any) -> SignalLifecycleChanged:
    fields: dict[str, Any] = {
        "signal_id": f"sig-{n}", "reference": f"SK-2026-{n:06d}", "change": change, "status": str(change),
        "actor_partner_id": "obs-de-linde", "route": Route.ZAT, "body_id": "zat-12ab", "body_name": "ZAT OBS De Linde",
        "urgency": Urgency.U2, "outcome": "hulp_ingezet" if change is LifecycleChange.CLOSED else None,
        "reporter": Contact(name="Leerkracht", email=f"melder{n}@delinde.example"),
        "reporter_partner_id": "obs-de-linde",
        "at": T0}
    return SignalLifecycleChanged(**{**fields, **overrides})


def sla(model: type, n: int, **extra: Any) -> Any:
    return model(signal_id=f"sig-{n}", reference=f"SK-2026-{n:06d}", clock=Clock.ACKNOWLEDGE,
                 due_at=T0 + timedelta(days=2), route=Route.ZAT, body_id="zat-12ab", body_name="ZAT OBS De Linde",
                 urgency=Urgency.U2, reporter_partner_id="obs-de-linde", at=T0, **extra)


def delivered(system: System) -> list[tuple[str, str, str]]:
    """(recipient, kind, reference) of every message the sink accepted."""
    out = []
    for mail in system.sink.messages:
        subject = str(mail.message["Subject"])
        reference = re.search(r"SK-\d{4}-\d+", subject)
        out.append((mail.rcpt_tos[0], str(mail.message["X-Schakel-Kind"]), reference.group(0) if reference else ""))
    return out


def metric(system: System, name: str, **labels: str) -> float:
    """One sample from notify's /metrics."""
    text = httpx.get(system.url("notify", "/metrics"), timeout=10).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            found = series[series.find("{") + 1:series.rfind("}")] if "{" in series else ""
            if ",".join(sorted(found.split(","))) == wanted:
                return float(value)
    raise AssertionError(f"no sample {name}{{{wanted}}}")


def sent_records(system: System) -> list[dict[str, Any]]:
    return [decode_event(r.value)[0].data for r in read_topic(system.broker.bootstrap, NOTIFICATIONS_SENT.name)]


def test_every_event_kind_mails_the_right_people_and_nobody_else(system: System, publish: Publisher) -> None:
    plan: list[tuple[Contract, set[tuple[str, str]]]] = [
        (assigned(1), {(IB, "assigned"), (SMW, "assigned"), ("melder1@delinde.example", "receipt")}),
        (assigned(2, urgency=Urgency.U0, category="ACUUT", route=Route.COORDINATOR, body_id="coordinator",
                  body_name="Coördinator"),
         {(JVC, "assigned"), (DIR, "assigned"), ("melder2@delinde.example", "receipt")}),
        (assigned(3, urgency=Urgency.U1, category="HGKM", route=Route.MELDCODE, body_id="meldcode-12ab",
                  body_name="Aandachtsfunctionaris", inform_body_ids=["coordinator"]),
         {("aandacht@delinde.example", "assigned"), (JVC, "assigned"), (DIR, "assigned"),
          ("melder3@delinde.example", "receipt")}),
        (assigned(4, category="VERZ"), {(IB, "assigned"), (SMW, "assigned"), ("leerplicht@lindendam.example",
                                                                               "assigned"),
                                        ("melder4@delinde.example", "receipt")}),
        (assigned(5, category="OVERL", route=Route.OOV, body_id="oov", body_name="OOV-overleg"),
         {(JVC, "assigned"), ("melder5@delinde.example", "receipt")}),
        (lifecycle(5, LifecycleChange.ACKNOWLEDGED, route=Route.OOV, body_id="oov", actor_partner_id="gemeente"),
         {("wijkagent.centrum@politie.example", "assigned")}),
        (lifecycle(1, LifecycleChange.ACKNOWLEDGED), set()),
        (lifecycle(1, LifecycleChange.FEEDBACK), {("melder1@delinde.example", "feedback")}),
        (lifecycle(1, LifecycleChange.CLOSED), {("melder1@delinde.example", "closed")}),
        (sla(SlaWarned, 4), {(IB, "warning"), (SMW, "warning")}),
        (sla(SlaBreached, 4, step="handler"), {(IB, "breach"), (SMW, "breach")}),
        (sla(SlaBreached, 4, step="team_lead", step_index=2), {(DIR, "escalation")}),
        (sla(SlaBreached, 4, step="coordinator", step_index=3), {(JVC, "escalation")}),
        (SignalsMatched(match_id="m1", key_kind="subject", signal_id="sig-5", reference="SK-2026-000005",
                        matched_signal_ids=["sig-1"], matched_references=["SK-2026-000001"],
                        partner_ids=["obs-de-linde", "politie-basisteam"], partner_kinds=["school", "police"],
                        body_ids=["oov", "zat-12ab"], matched_at=T0),
         {(JVC, "match"), (IB, "match"), (SMW, "match")}),
    ]
    expected: Counter[tuple[str, str, str]] = Counter()
    for data, recipients in plan:
        publish(data)
        expected.update((address, kind, str(data.reference)) for address, kind in recipients)
    total = sum(expected.values())
    wait_until(lambda: len(system.sink.messages) >= total, timeout=60, what=f"{total} mails")
    wait_until(lambda: len(sent_records(system)) >= total, timeout=30, what="notifications.sent")
    time.sleep(2)  # anything extra would arrive now
    assert Counter(delivered(system)) == expected
    messages = [m.message for m in system.sink.messages]
    assert len({str(m["Message-ID"]) for m in messages}) == total
    threads = {m["In-Reply-To"] for m in messages if "SK-2026-000001" in str(m["Subject"])}
    assert len(threads) == 1  # every mail about one signal threads under one root
    for m in messages:
        assert str(m["Subject"]).startswith("[Schakel] SK-2026-") and str(m["References"]) == str(m["In-Reply-To"])
    records = sent_records(system)
    assert len(records) == total
    assert {r["message_id"] for r in records} == {str(m["Message-ID"]) for m in messages}
    for record in records:
        assert set(record) <= {"signal_id", "source_event_id", "template", "recipient_role", "recipient",
                               "message_id", "sent_at", "attempts"}
    print(f"\nevery-kind: {total} mails to {len({a for a, _, _ in expected})} addresses, 0 unexpected")


def test_an_smtp_outage_delays_mail_and_delivers_each_exactly_once(system: System, publish: Publisher) -> None:
    system.sink.stop()
    signals = 20
    for n in range(100, 100 + signals):
        publish(assigned(n))
    expected = signals * 3
    outage_s = 10.0
    time.sleep(outage_s)
    assert system.sink.messages == []
    queue_age = metric(system, "notify_oldest_unsent_email_age_seconds")
    recovered = time.monotonic()
    system.sink.start()
    wait_until(lambda: len(system.sink.messages) >= expected, timeout=60, what=f"{expected} mails")
    drain_s = time.monotonic() - recovered
    time.sleep(1)
    ids = Counter(str(m.message["Message-ID"]) for m in system.sink.messages)
    assert len(ids) == expected and max(ids.values()) == 1
    retried = sum(metric(system, "notify_emails_total", template=t, outcome="retried") for t in ("assigned", "receipt"))
    assert retried >= 1
    wait_until(lambda: len(sent_records(system)) >= expected, timeout=30, what="notifications.sent")
    attempts = [r["attempts"] for r in sent_records(system)]
    assert max(attempts) >= 2 and max(attempts) <= 12
    assert queue_age >= 5
    print(f"\noutage {outage_s:.0f}s: {expected} delivered, 0 duplicates, retries counted {retried:.0f}, "
          f"max attempts per mail {max(attempts)}, queue age seen {queue_age:.1f}s, drain after recovery "
          f"{drain_s:.1f}s")


def test_sigterm_while_mail_waits_for_the_server_loses_nothing(system: System, publish: Publisher) -> None:
    """A graceful stop in the middle of a send must not count the event as handled (found by bench term-notify)."""
    system.sink.stop()
    signals = 3
    for n in range(300, 300 + signals):
        publish(assigned(n))
    wait_until(lambda: metric(system, "notify_emails_total", template="assigned", outcome="retried") >= 1,
               timeout=30, what="notify retrying the first mail")
    notify = system.services["notify"]
    notify.stop()  # SIGTERM: faust stops the agent in the middle of the retry loop and commits
    system.sink.start()
    notify.start()
    notify.wait_ready()

    expected = signals * 3
    wait_until(lambda: len(system.sink.messages) >= expected, timeout=60, what=f"{expected} mails")
    time.sleep(1)
    ids = Counter(str(m.message["Message-ID"]) for m in system.sink.messages)
    print(f"\nSIGTERM during a retry: {len(ids)} of {expected} mails delivered, most copies of one {max(ids.values())}")
    assert len(ids) == expected and max(ids.values()) == 1


def test_a_550_reply_dead_letters_each_mail_once_and_never_retries(system: System, publish: Publisher) -> None:
    system.sink.mode = "reject_550"
    for n in range(200, 203):
        publish(assigned(n))
    wait_until(lambda: len(read_topic(system.broker.bootstrap, NOTIFICATIONS_DLQ.name)) >= 9, timeout=60,
               what="9 dead letters")
    system.restart("notify")  # redelivery after a crash must not try again either
    time.sleep(3)
    dead = read_topic(system.broker.bootstrap, NOTIFICATIONS_DLQ.name)
    assert len(dead) == 9 and system.sink.attempts == 9 and system.sink.messages == []
    for record in dead:
        headers = dict(record.headers)
        assert headers["schakel-error-code"] == b"smtp_550"
        value = json.loads(record.value)
        assert value["smtp_code"] == 550 and value["reason"] == "smtp 550: 5.1.1 Mailbox unavailable"
        assert "example" not in value["reason"] and value["template"] in ("assigned", "receipt")
    print("\n550: 9 mails, 9 SMTP attempts, 9 dead letters, 0 retries (also after a SIGKILL and restart)")


def test_permanent_failures_are_counted(system: System, publish: Publisher) -> None:
    system.sink.mode = "reject_550"
    publish(assigned(300))
    wait_until(lambda: len(read_topic(system.broker.bootstrap, NOTIFICATIONS_DLQ.name)) >= 3, timeout=60,
               what="3 dead letters")
    assert metric(system, "notify_emails_total", template="assigned", outcome="permanent_failure") == 2
    assert metric(system, "notify_emails_total", template="receipt", outcome="permanent_failure") == 1
    assert metric(system, "notify_emails_total", template="assigned", outcome="retried") == 0


def recorded_message_ids(system: System) -> set[str]:
    """Message-IDs on notifications.sent: notify wrote their sent-log entry, so it will not send them again."""
    return {decode_event(r.value)[0].data["message_id"]
            for r in read_topic(system.broker.bootstrap, NOTIFICATIONS_SENT.name, timeout_ms=1000)}


def test_sigkill_right_after_the_server_accepted_costs_at_most_one_duplicate(system: System,
                                                                            publish: Publisher) -> None:
    """Reliability #7: notify killed right after the sink stored a message, 10 times: 0 lost, at most one
    duplicate per kill, with the original's Message-ID.

    The next kill is armed only once the restarted notify has recorded every mail due so far. Armed as soon
    as /readyz answers, it can land on the restarted notify's first transaction, the resend of the previous
    kill's mail, and that Message-ID then arrives three times for two kills (one duplicate each).
    """
    notify = system.services["notify"]
    kills, batch = 10, 4
    killed: list[ReceivedMail] = []
    armed, dead = threading.Event(), threading.Event()

    def kill_after_accept(mail: ReceivedMail) -> None:
        if not armed.is_set():
            return
        armed.clear()
        killed.append(mail)
        if len(killed) % 2 == 0:
            # Just after the reply went out (the sender may hand over more before it dies) ...
            threading.Timer(0.01, lambda: (notify.signal(9), dead.set())).start()
        else:
            # ... or after the message is stored but before the sender hears "250".
            notify.signal(9)
            dead.set()

    system.sink.on_accept = kill_after_accept
    before: Counter[str] = Counter()
    duplicates_per_kill: list[int] = []
    restarts = []
    for k in range(kills):
        first = 400 + k * batch
        references = {f"SK-2026-{n:06d}" for n in range(first, first + batch)}
        armed.set()
        for n in range(first, first + batch):
            publish(assigned(n))
        wait_until(dead.is_set, timeout=60, what=f"kill {k + 1}")
        wait_until(lambda: not notify.alive(), timeout=10, what="notify dead")
        dead.clear()
        started = time.monotonic()
        notify.start()
        notify.wait_ready()
        restarts.append(time.monotonic() - started)
        due = (k + 1) * batch * 3

        def all_recorded(due: int = due) -> bool:
            return len(recorded_message_ids(system)) >= due

        # Every mail due so far is in notify's sent-log: nothing of this round is left to resend.
        wait_until(all_recorded, timeout=90, what=f"{due} mails recorded in notifications.sent")
        copies = Counter(str(m.message["Message-ID"]) for m in system.sink.messages)
        victim = killed[k]
        victim_id = str(victim.message["Message-ID"])
        assert len(killed) == k + 1
        # The kill landed on the first copy of a mail of its own batch.
        assert victim_id not in before
        reference = re.search(r"SK-\d{4}-\d+", str(victim.message["Subject"]))
        assert reference is not None and reference.group(0) in references
        assert len(copies) == due  # nothing lost, no resend under another Message-ID
        duplicates = (copies.total() - len(copies)) - (before.total() - len(before))
        resent = {mid: c for mid, c in copies.items() if c > max(before[mid], 1)}
        assert duplicates <= 1, f"kill {k + 1} (on {victim_id}) cost {duplicates} duplicates: {resent}"
        if len(killed) % 2 == 1:  # killed before it heard "250": the sent-log cannot list it, so it went again
            assert copies[victim_id] == 2 and duplicates == 1
        duplicates_per_kill.append(duplicates)
        before = copies
    system.sink.on_accept = None
    expected = kills * batch * 3
    ids = Counter(str(m.message["Message-ID"]) for m in system.sink.messages)
    assert len(ids) == expected and max(ids.values()) <= 2
    assert recorded_message_ids(system) == set(ids)
    print(f"\nSIGKILL x{kills} right after acceptance: {expected} delivered, 0 lost, {sum(duplicates_per_kill)} "
          f"duplicates (same Message-ID; per kill {duplicates_per_kill}), restart-to-ready {max(restarts):.1f}s max")
