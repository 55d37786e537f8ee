"""Notify's handlers called directly: a decoded record and plain-dict tables in, mail jobs and effects out.

No SMTP: a `MailJob` is built and its outcomes (`on_sent`, `on_refused`) are called by hand, as the mailer would.
"""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.notify.decisions import DIGEST_PENDING, SENT_LOG, MailJob, NotifyDecisions
from services.notify.digest import PendingEntry, recipient_key
from services.notify.metrics import NotifyMetrics
from services.notify.rendering import message_id_for
from services.notify.smtp import PermanentSmtpError
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
from shared.municipality import load_municipality
from shared.record_loop import Effects, Incoming, Publish, TableView
from shared.settings import REPO_ROOT
from shared.topics import NOTIFICATIONS_DIGEST, NOTIFICATIONS_DLQ, NOTIFICATIONS_SENT, SIGNALS_ASSIGNED

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
DOMAIN = "schakel.example"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SENT_AT = datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC)
DE_LINDE = ["ib@delinde.example", "melder1@school.example", "smw@delinde.example"]


def assigned_record(n: int, *, school: str = "12AB", partner: str = "obs-de-linde", body: str = "zat-12ab",
                    urgency: Urgency = Urgency.U2) -> Incoming:
    """A SignalAssigned as the loop hands it over: encoded, then decoded again."""
    sid = deterministic_id("notify-decisions-test", str(n))
    data = SignalAssigned(
        signal_id=sid, reference=f"SK-2026-{n:06d}", category="KLAS", urgency=urgency, route=Route.ZAT,
        body_id=body, body_name="ZAT", rule_id="zat", rule_description="zat", partner_id=partner,
        partner_kind="school", school_brin=school, reporter=Contact(name="Melder", email=f"melder{n}@school.example"),
        received_at=T0, assigned_at=T0,
    )
    event = make_event(data, source=source_urn("test"), subject=sid, event_id=deterministic_id("assigned", sid, "1"))
    return as_incoming(event, key=sid, topic=SIGNALS_ASSIGNED.name)


def as_incoming(event: CloudEvent, *, key: str, topic: str) -> Incoming:
    envelope, data = decode_event(encode_event(event))
    return Incoming(envelope, data, key.encode(), topic)


def from_publish(record: Publish) -> tuple[CloudEvent, Contract]:
    return decode_event(record.value)


def parsed(job: MailJob) -> EmailMessage:
    message = email.message_from_bytes(job.build().data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def run_after(effects: Effects) -> None:
    for callback in effects.after:
        callback()


class Notify:
    """The decisions over the example municipality, plain dicts as the sent-log and digest tables."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = NotifyMetrics(self.registry)
        self.decisions = NotifyDecisions(load_municipality(EXAMPLE), self.metrics, "Schakel <noreply@schakel.example>",
                                         DOMAIN, "https://schakel.example")
        self.tables: dict[str, dict[Any, Any]] = {SENT_LOG: {}, DIGEST_PENDING: {}}
        self.view = TableView(self.tables)

    def handle(self, record: Incoming) -> Effects:
        effects = self.decisions.handle(record, self.view)
        self.view.stage(effects.writes)
        return effects

    def handle_digest(self, record: Incoming) -> Effects:
        effects = self.decisions.handle_digest(record, self.view)
        self.view.stage(effects.writes)
        return effects

    def jobs(self, effects: Effects) -> dict[str, MailJob]:
        """The e-mails to send, by recipient address."""
        return {job.build().recipient: job for job in effects.work}

    def emails(self, kind: str, outcome: str) -> float:
        return self.metrics.emails.labels(template=kind, outcome=outcome)._value.get()


@pytest.fixture
def notify() -> Notify:
    return Notify()


def test_an_assignment_calls_for_one_mail_job_per_recipient_with_deterministic_message_ids(notify: Notify) -> None:
    record = assigned_record(1)
    effects = notify.handle(record)
    assert effects.publish == [] and effects.writes == [] and effects.answers == []
    jobs = notify.jobs(effects)
    assert sorted(jobs) == DE_LINDE
    for address, job in jobs.items():
        expected = message_id_for(event_id=record.envelope.id, recipient=address, domain=DOMAIN)
        outgoing = job.build()
        assert job.message_id == outgoing.message_id == expected and job.sent_log_key == expected.encode()
        message = parsed(job)
        assert str(message["Message-ID"]) == expected and str(message["To"]) == address
        assert outgoing.kind == job.kind == ("receipt" if address.startswith("melder") else "assigned")
        assert job.due_at == record.envelope.time


def test_building_a_mail_twice_gives_the_same_message_id(notify: Notify) -> None:
    first = notify.jobs(notify.decisions.handle(assigned_record(1), notify.view))
    second = notify.jobs(notify.decisions.handle(assigned_record(1), notify.view))
    assert {a: j.message_id for a, j in first.items()} == {a: j.message_id for a, j in second.items()}
    assert str(parsed(first["ib@delinde.example"])["Message-ID"]) == second["ib@delinde.example"].message_id


def test_a_sent_mail_is_recorded_on_notifications_sent_and_in_the_sent_log(notify: Notify) -> None:
    record = assigned_record(1)
    job = notify.jobs(notify.handle(record))["ib@delinde.example"]
    effects = job.on_sent(2, SENT_AT)
    [published] = effects.publish
    assert published.topic == NOTIFICATIONS_SENT.name and published.key == record.key
    envelope, sent = from_publish(published)
    assert envelope.id == deterministic_id("sent", job.message_id)
    assert isinstance(sent, NotificationSent)
    assert (sent.message_id, sent.recipient, sent.recipient_role, sent.template, sent.attempts, sent.sent_at) == (
        job.message_id, "ib@delinde.example", "intern_begeleider", "assigned", 2, SENT_AT)
    assert sent.source_event_id == record.envelope.id
    [write] = effects.writes
    assert (write.table, write.key) == (SENT_LOG, job.message_id.encode())
    assert json.loads(write.value) == {"status": "recorded", "attempts": 2, "at": SENT_AT.isoformat()}


def test_the_end_to_end_latency_is_observed_only_when_the_after_callbacks_run(notify: Notify) -> None:
    job = notify.jobs(notify.handle(assigned_record(1)))["ib@delinde.example"]
    effects = job.on_sent(1, SENT_AT)
    sample = "notify_email_end_to_end_latency_seconds_sum"
    assert notify.registry.get_sample_value(sample, {"template": "assigned"}) == 0
    run_after(effects)
    assert notify.registry.get_sample_value(sample, {"template": "assigned"}) == 5.0


def test_a_permanent_refusal_is_a_dead_letter_without_the_address_and_a_failed_entry(notify: Notify) -> None:
    record = assigned_record(1)
    job = notify.jobs(notify.handle(record))["smw@delinde.example"]
    effects = job.on_refused(PermanentSmtpError(550, "5.1.1 <smw@delinde.example>: Mailbox unavailable"))
    [dead] = effects.publish
    assert dead.topic == NOTIFICATIONS_DLQ.name and dead.key == record.key
    assert b"smw@" not in dead.value and b"delinde" not in dead.value
    body = json.loads(dead.value)
    assert body["smtp_code"] == 550 and body["message_id"] == job.message_id
    assert body["role"] == "schoolmaatschappelijk_werk" and "<address>" in body["reason"]
    headers = dict(dead.headers)
    assert headers["schakel-error-code"] == b"smtp_550"
    assert headers["schakel-source-event-id"] == record.envelope.id.encode()
    assert all(b"smw@" not in value for value in headers.values())
    [write] = effects.writes
    assert (write.table, write.key) == (SENT_LOG, job.message_id.encode())
    assert json.loads(write.value) == {"status": "failed", "code": 550}
    assert notify.emails("assigned", "permanent_failure") == 0
    run_after(effects)
    assert notify.emails("assigned", "permanent_failure") == 1


def test_a_mail_the_sent_log_has_recorded_is_not_planned_again(notify: Notify) -> None:
    record = assigned_record(1)
    jobs = notify.jobs(notify.handle(record))
    notify.view.stage(jobs["ib@delinde.example"].on_sent(1, SENT_AT).writes)
    again = notify.handle(record)
    assert again.publish == [] and again.writes == []
    assert sorted(notify.jobs(again)) == ["melder1@school.example", "smw@delinde.example"]


def test_a_mail_that_failed_for_good_is_never_planned_again(notify: Notify) -> None:
    record = assigned_record(1)
    job = notify.jobs(notify.handle(record))["smw@delinde.example"]
    notify.view.stage(job.on_refused(PermanentSmtpError(550, "Mailbox unavailable")).writes)
    assert "smw@delinde.example" not in notify.jobs(notify.handle(record))


def test_a_mail_accepted_before_a_crash_is_republished_without_sending_again(notify: Notify) -> None:
    record = assigned_record(1)
    job = notify.jobs(notify.handle(record))["ib@delinde.example"]
    notify.tables[SENT_LOG][job.message_id.encode()] = json.dumps(
        {"status": "sent", "attempts": 3, "at": SENT_AT.isoformat()}).encode()
    effects = notify.decisions.handle(record, TableView(notify.tables))
    assert "ib@delinde.example" not in notify.jobs(effects)
    [published] = effects.publish
    envelope, sent = from_publish(published)
    assert published.topic == NOTIFICATIONS_SENT.name
    assert envelope.id == deterministic_id("sent", job.message_id)  # the same id as the first time: deduped
    assert isinstance(sent, NotificationSent) and (sent.attempts, sent.sent_at) == (3, SENT_AT)
    [write] = effects.writes
    assert write.key == job.message_id.encode() and json.loads(write.value)["status"] == "recorded"


def test_a_digest_partner_gets_u2_queued_for_its_digest_and_the_reporter_mailed_at_once(notify: Notify) -> None:
    record = assigned_record(10, school="34CD", partner="cbs-het-anker", body="zat-34cd")
    effects = notify.handle(record)
    assert sorted(notify.jobs(effects)) == ["melder10@school.example"]
    [queued] = effects.publish
    key = recipient_key("ib@hetanker.example")
    assert queued.topic == NOTIFICATIONS_DIGEST.name and queued.key == key.encode()
    message_id = message_id_for(event_id=record.envelope.id, recipient="ib@hetanker.example", domain=DOMAIN)
    envelope, item = from_publish(queued)
    assert envelope.id == deterministic_id("digest-item", message_id)
    assert isinstance(item, DigestItemQueued) and item.item_id == message_id and item.recipient_key == key
    write, queued_for = effects.writes
    assert (write.table, write.key) == (SENT_LOG, message_id.encode())
    assert json.loads(write.value) == {"status": "digest_queued"}
    assert (queued_for.table, queued_for.key) == (SENT_LOG, f"digests-of:{item.signal_id}".encode())
    assert json.loads(queued_for.value) == [key]  # where an erasure must take it out again
    again = notify.handle(record)
    assert [r.topic for r in again.publish] == []  # queued once


def test_a_u1_signal_of_a_digest_partner_is_mailed_at_once(notify: Notify) -> None:
    effects = notify.handle(assigned_record(12, school="34CD", partner="cbs-het-anker", body="zat-34cd",
                                            urgency=Urgency.U1))
    assert effects.publish == []
    assert "ib@hetanker.example" in notify.jobs(effects)


def queue_items(notify: Notify, numbers: tuple[int, ...]) -> list[Incoming]:
    """Assignments of CBS Het Anker queued for the digest, as the digest agent reads them."""
    items = []
    for n in numbers:
        effects = notify.handle(assigned_record(n, school="34CD", partner="cbs-het-anker", body="zat-34cd"))
        [queued] = effects.publish
        envelope, _ = from_publish(queued)
        items.append(as_incoming(envelope, key=(queued.key or b"").decode(), topic=NOTIFICATIONS_DIGEST.name))
    return items


def test_queued_items_are_added_to_the_pending_digest_once(notify: Notify) -> None:
    first, second = queue_items(notify, (10, 11))
    key = recipient_key("ib@hetanker.example").encode()
    added = notify.handle_digest(first)
    assert added.publish == [] and added.work == []
    [write] = added.writes
    assert (write.table, write.key) == (DIGEST_PENDING, key)
    assert [i.reference for i in PendingEntry.decode(write.value).items] == ["SK-2026-000010"]
    notify.handle_digest(second)
    assert notify.handle_digest(first) == Effects()  # redelivered: already waiting
    entry = PendingEntry.decode(notify.view.get(DIGEST_PENDING, key))
    assert [i.reference for i in entry.items] == ["SK-2026-000010", "SK-2026-000011"]


def test_a_digest_that_fell_due_is_one_mail_job_and_its_sending_clears_the_items(notify: Notify) -> None:
    items = queue_items(notify, (10, 11))
    for item in items:
        notify.handle_digest(item)
    key = recipient_key("ib@hetanker.example")
    due = DigestDue(recipient_key=key, period="2026-03-03", due_at=datetime.now(UTC) + timedelta(minutes=1))
    due_record = as_incoming(make_event(due, source=source_urn("test"), subject=None), key=key,
                             topic=NOTIFICATIONS_DIGEST.name)
    effects = notify.handle_digest(due_record)
    assert effects.publish == [] and effects.writes == []
    [job] = effects.work
    message_id = message_id_for(event_id="digest|2026-03-03", recipient="ib@hetanker.example", domain=DOMAIN)
    assert (job.kind, job.message_id, job.sent_log_key) == ("digest", message_id, None)
    message = parsed(job)
    assert str(message["Message-ID"]) == message_id and str(message["To"]) == "ib@hetanker.example"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "SK-2026-000010" in text and "SK-2026-000011" in text
    sent = job.on_sent(1, SENT_AT)
    assert [r.topic for r in sent.publish] == [NOTIFICATIONS_SENT.name] * 2
    signal_ids = [d.signal_id for d in (from_publish(r)[1] for r in sent.publish) if isinstance(d, NotificationSent)]
    assert [r.key for r in sent.publish] == [s.encode() for s in signal_ids] and len(set(signal_ids)) == 2
    item_ids = [i.item_id for i in PendingEntry.decode(notify.view.get(DIGEST_PENDING, key.encode())).items]
    assert [from_publish(r)[0].id for r in sent.publish] == [
        deterministic_id("sent", message_id, item_id) for item_id in item_ids]
    [cleared] = sent.writes
    entry = PendingEntry.decode(cleared.value)
    assert (cleared.table, entry.items, entry.last_period) == (DIGEST_PENDING, (), "2026-03-03")
    assert notify.registry.get_sample_value("notify_digest_size_signals_sum") == 0
    run_after(sent)
    assert notify.registry.get_sample_value("notify_digest_size_signals_sum") == 2
    notify.view.stage(sent.writes)
    assert notify.handle_digest(due_record) == Effects()  # a redelivered 'due' sends nothing more


def test_a_digest_due_with_nothing_pending_calls_for_nothing(notify: Notify) -> None:
    key = recipient_key("ib@hetanker.example")
    due = DigestDue(recipient_key=key, period="2026-03-03", due_at=T0)
    record = as_incoming(make_event(due, source=source_urn("test"), subject=None), key=key,
                         topic=NOTIFICATIONS_DIGEST.name)
    assert notify.handle_digest(record) == Effects()
