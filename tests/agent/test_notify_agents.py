"""Notify's agents through faust's test context (memory store, no broker, a fake SMTP sender)."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.notify import agents as notify_agents
from services.notify.agents import NotifyCore
from services.notify.digest import DigestSchedule
from services.notify.metrics import NotifyMetrics
from services.notify.mime import OutgoingMail
from services.notify.smtp import PermanentSmtpError, TransientSmtpError
from shared import record_loop
from shared.events import (
    CloudEvent,
    Contact,
    Contract,
    DigestDue,
    DigestItemQueued,
    NotificationSent,
    Route,
    SignalAssigned,
    Urgency,
    decode_event,
    deterministic_id,
    encode_event,
    make_event,
    source_urn,
)
from shared.faust_compat import as_current_event
from shared.kafka import create_faust_app
from shared.municipality import load_municipality
from shared.record_loop import Publish
from shared.settings import REPO_ROOT, Settings

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class FakeSender:
    """Records messages; refuses some addresses for good; fails the first `transient` attempts."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.refuse: set[str] = set()
        self.transient = 0
        self.attempts = 0

    async def send_with_retry(self, outgoing: OutgoingMail, *, on_retry: Any = None, on_accepted: Any = None,
                              **_: Any) -> int:
        message = email.message_from_bytes(outgoing.data, policy=policy.default)
        assert isinstance(message, EmailMessage) and str(message["To"]) == outgoing.recipient
        attempt = 0
        while True:
            attempt += 1
            self.attempts += 1
            if str(message["To"]) in self.refuse:
                raise PermanentSmtpError(550, "Mailbox unavailable")
            if self.transient > 0:
                self.transient -= 1
                if on_retry is not None:
                    await on_retry(attempt, TransientSmtpError("451 later"), 0.0)
                continue
            self.sent.append(message)
            if on_accepted is not None:
                await on_accepted(attempt)  # the mark's future: never done here (no broker), so not awaited
            return attempt

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.sent if str(m["To"]) == address]


class BufferedSentLog:
    """The sent-log written as faust's own `table[key] = value` does: into the producer's buffer (no broker here)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    async def mark(self, event: Any, key: bytes, value: bytes) -> None:
        with as_current_event(event):
            self.table[key] = value


async def buffered_write(table: Any, key: Any, value: Any) -> None:
    """A table write through faust's own path (its changelog record stays in faust's buffer here)."""
    table[key] = value


class Harness:
    """Notify's faust app with a fake sender; records everything the agents publish."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        settings = Settings(state_dir=tmp_path, kafka_bootstrap="127.0.0.1:1")
        self.app = create_faust_app("notify-test", settings, store="memory://")
        self.metrics = NotifyMetrics(CollectorRegistry())
        self.sender = FakeSender()
        self.published: list[tuple[str, str, CloudEvent]] = []
        self.dead: list[tuple[str, bytes, dict[str, bytes]]] = []

        async def fake_produce_all(app: Any, records: list[Publish]) -> None:
            for record in records:
                if record.topic == "notifications.dlq":
                    self.dead.append((record.topic, record.value, dict(record.headers)))
                else:
                    self.published.append((record.topic, (record.key or b"").decode(), decode_event(record.value)[0]))

        monkeypatch.setattr(record_loop, "produce_all", fake_produce_all)
        monkeypatch.setattr(notify_agents, "produce_all", fake_produce_all)
        monkeypatch.setattr(record_loop, "write_table", buffered_write)  # no broker: faust's buffer keeps it
        self.core = NotifyCore(
            app=self.app, municipality=load_municipality(EXAMPLE), metrics=self.metrics,
            sender=self.sender,  # type: ignore[arg-type]
            sender_address="Schakel <noreply@schakel.example>", mail_domain="schakel.example", partitions=1,
            base_url="https://schakel.example", schedule=DigestSchedule.parse("07:00"),
            linger_s=0,  # faust's test context feeds one record and waits for it, never a batch
        )
        self.core.mailer.sent_log = BufferedSentLog(self.core.sent_log)
        self.app.finalize()
        self.app.flow_control.resume()

    async def feed(self, agent: str, events: list[tuple[str, CloudEvent]]) -> None:
        async with self.app.agents[agent].test_context() as ctx:
            for key, event in events:
                await ctx.put(encode_event(event), key=key.encode())

    def on(self, topic: str) -> list[CloudEvent]:
        return [e for t, _, e in self.published if t == topic]

    def data(self, topic: str) -> list[Contract]:
        return [decode_event(encode_event(e))[1] for e in self.on(topic)]

    def emails(self, kind: str, outcome: str) -> float:
        return self.metrics.emails.labels(template=kind, outcome=outcome)._value.get()


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(tmp_path, monkeypatch)


def assigned(n: int, *, school: str = "12AB", partner: str = "obs-de-linde", body: str = "zat-12ab",
             urgency: Urgency = Urgency.U2, category: str = "KLAS") -> tuple[str, CloudEvent]:
    sid = deterministic_id("notify-agent-test", str(n))
    data = SignalAssigned(
        signal_id=sid, reference=f"SK-2026-{n:06d}", category=category, urgency=urgency, route=Route.ZAT,
        body_id=body, body_name="ZAT", rule_id="zat", rule_description="zat", partner_id=partner,
        partner_kind="school", school_brin=school, reporter=Contact(name="Melder", email=f"melder{n}@school.example"),
        received_at=T0, assigned_at=T0,
    )
    return sid, make_event(data, source=source_urn("test"), subject=sid,
                           event_id=deterministic_id("assigned", sid, "1"))


async def test_an_assignment_mails_each_recipient_once_and_records_it(harness: Harness) -> None:
    key, event = assigned(1)
    await harness.feed("notify", [(key, event)])
    assert sorted(str(m["To"]) for m in harness.sender.sent) == [
        "ib@delinde.example", "melder1@school.example", "smw@delinde.example"]
    sent = harness.data("notifications.sent")
    assert all(isinstance(s, NotificationSent) for s in sent) and len(sent) == 3
    assert {s.message_id for s in sent} == {str(m["Message-ID"]) for m in harness.sender.sent}
    assert harness.emails("assigned", "sent") == 2 and harness.emails("receipt", "sent") == 1


async def test_a_redelivered_event_sends_nothing_again(harness: Harness) -> None:
    key, event = assigned(2)
    await harness.feed("notify", [(key, event), (key, event)])
    await harness.feed("notify", [(key, event)])
    assert len(harness.sender.sent) == 3
    assert len(harness.on("notifications.sent")) == 3


async def test_a_crash_between_acceptance_and_the_record_republishes_without_resending(harness: Harness) -> None:
    key, event = assigned(3)
    await harness.feed("notify", [(key, event)])
    # Simulate a crash after the server accepted and the sent-log said 'sent', before notifications.sent.
    first = harness.on("notifications.sent")[0]
    message_id = first.data["message_id"]
    async with harness.app.agents["notify"].test_context() as ctx:
        harness.core.sent_log.data[message_id.encode()] = (
            b'{"status": "sent", "attempts": 1, "at": "2026-03-02T09:00:00+00:00"}')
        await ctx.put(encode_event(event), key=key.encode())
    assert len(harness.sender.sent) == 3  # no second e-mail
    republished = [e for e in harness.on("notifications.sent") if e.data["message_id"] == message_id]
    assert len(republished) == 2 and republished[0].id == republished[1].id  # same event id: consumers dedupe


async def test_a_permanent_refusal_is_dead_lettered_once_and_never_retried(harness: Harness) -> None:
    harness.sender.refuse.add("smw@delinde.example")
    key, event = assigned(4)
    await harness.feed("notify", [(key, event), (key, event)])
    assert [t for t, _, _ in harness.dead] == ["notifications.dlq"]
    _, value, headers = harness.dead[0]
    assert headers["schakel-error-code"] == b"smtp_550" and b"smw@" not in value
    assert harness.sender.attempts == 3  # ib, smw (refused once), reporter; the redelivery tries nothing
    assert harness.emails("assigned", "permanent_failure") == 1


async def test_transient_failures_are_retried_and_counted(harness: Harness) -> None:
    harness.sender.transient = 3
    key, event = assigned(5)
    await harness.feed("notify", [(key, event)])
    assert len(harness.sender.sent) == 3
    assert harness.emails("assigned", "retried") == 3
    assert harness.metrics.oldest_unsent._value.get() == 0


async def test_a_digest_partner_gets_u2_u3_in_one_digest_and_u1_at_once(harness: Harness) -> None:
    # CBS Het Anker (34CD) asked for a daily digest.
    events = [assigned(n, school="34CD", partner="cbs-het-anker", body="zat-34cd", urgency=u)
              for n, u in ((10, Urgency.U2), (11, Urgency.U3), (12, Urgency.U1), (13, Urgency.U2))]
    await harness.feed("notify", events + events[:1])
    ib = "ib@hetanker.example"
    assert [str(m["Subject"]).split(" · ")[0:3] for m in harness.sender.to(ib)] == [
        ["[Schakel] SK-2026-000012", "ZAT", "U1"]]
    queued = harness.on("notifications.digest")
    assert len(queued) == 3 and {e.data["reference"] for e in queued} == {
        "SK-2026-000010", "SK-2026-000011", "SK-2026-000013"}
    # The reporters' receipts and the U1 directeur mail are not digested.
    assert len(harness.sender.to("directie@hetanker.example")) == 1
    assert len(harness.sender.to("melder10@school.example")) == 1
    # Items reach the digest agent (one twice, as a redelivery would).
    await harness.feed("notify-digest", [(harness.published[i][1], harness.published[i][2])
                                         for i, (t, _, _) in enumerate(harness.published)
                                         if t == "notifications.digest"] + [(queued[0].data["recipient_key"],
                                                                             queued[0])])
    # The items were queued at their events' time (now); the digest goes out after 07:00 tomorrow.
    next_morning = (datetime.now(UTC) + timedelta(days=1)).replace(hour=6, minute=30)
    before = len(harness.published)
    assert await harness.core.announce_due_digests(next_morning) == 1
    assert await harness.core.announce_due_digests(next_morning) == 0  # announced once per period
    due = [(k, e) for t, k, e in harness.published[before:] if t == "notifications.digest"]
    await harness.feed("notify-digest", due + due)  # a redelivered 'due' sends nothing more
    digests = [m for m in harness.sender.to(ib) if m["X-Schakel-Kind"] == "digest"]
    assert len(digests) == 1
    body = digests[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    for ref in ("SK-2026-000010", "SK-2026-000011", "SK-2026-000013"):
        assert ref in body
    assert "SK-2026-000012" not in body
    assert str(digests[0]["Subject"]) == "[Schakel] Overzicht · 3 openstaande signalen"
    assert harness.metrics.digest_size._sum.get() == 3
    sent_digest = [e for e in harness.on("notifications.sent") if e.data["template"] == "digest"]
    assert len(sent_digest) == 3
    assert await harness.core.announce_due_digests(next_morning + timedelta(days=1)) == 0  # nothing left


async def test_items_queued_after_the_digest_time_wait_for_the_next_digest(harness: Harness) -> None:
    key = "k" * 32
    early = DigestItemQueued(recipient_key=key, recipient="ib@hetanker.example", recipient_role="intern_begeleider",
                             signal_id="s1", reference="SK-2026-000001", route=Route.ZAT, urgency=Urgency.U2,
                             source_event_id="e1", item_id="i1", queued_at=datetime(2026, 3, 2, 15, tzinfo=UTC))
    late = early.model_copy(update={"signal_id": "s2", "reference": "SK-2026-000002", "item_id": "i2",
                                    "queued_at": datetime(2026, 3, 3, 6, 10, tzinfo=UTC)})  # 07:10 local
    await harness.feed("notify-digest", [(key, make_event(e, source=source_urn("test"), subject=None))
                                          for e in (early, late)])
    due = DigestDue(recipient_key=key, period="2026-03-03", due_at=datetime(2026, 3, 3, 6, 0, tzinfo=UTC))
    await harness.feed("notify-digest", [(key, make_event(due, source=source_urn("test"), subject=None))])
    [digest] = harness.sender.sent
    body = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "SK-2026-000001" in body and "SK-2026-000002" not in body
    assert await harness.core.announce_due_digests(datetime(2026, 3, 3, 8, tzinfo=UTC)) == 0
    assert await harness.core.announce_due_digests(datetime(2026, 3, 4, 6, 1, tzinfo=UTC)) == 1
