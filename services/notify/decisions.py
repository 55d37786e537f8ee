"""Notify's record handlers: which e-mails an event calls for, given the sent-log (no I/O).

Exactly one e-mail per (event, recipient): the sent-log (a table keyed by the deterministic Message-ID) is
read before a mail is planned and written once the server accepted it. Its states:
  sent           the server accepted it; notifications.sent may not be written yet
  recorded       the server accepted it and notifications.sent has it
  failed         the server refused it for good (5xx); dead-lettered, never retried
  digest_queued  it goes out in the recipient's next daily digest
A crash between the server's acceptance and the sent-log write resends the mail once, with the same
Message-ID. A handler returns `MailJob`s as the loop's work; services.notify.mailer sends them and turns
each outcome into the records and table writes that follow (`on_sent`, `on_refused`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from services.notify.digest import PendingEntry, PendingItem, recipient_key
from services.notify.handlers import MailEvent, digest_context, mail_context, signal_id_of
from services.notify.metrics import NotifyMetrics
from services.notify.mime import OutgoingMail, message_bytes
from services.notify.recipients import PlannedMail, plan
from services.notify.rendering import message_id_for, render, thread_id_for
from services.notify.smtp import PermanentSmtpError
from shared.events import (
    JSON_HEADERS,
    CloudEvent,
    Contract,
    DigestDue,
    DigestItemQueued,
    DigestItemWithdrawn,
    NotificationSent,
    SignalAssigned,
    SignalErased,
    deterministic_id,
    make_event,
    source_urn,
)
from shared.municipality import Municipality
from shared.record_loop import Effects, Incoming, Publish, TableView, TableWrite
from shared.topics import NOTIFICATIONS_DIGEST, NOTIFICATIONS_DLQ, NOTIFICATIONS_SENT

log = structlog.get_logger(__name__)
SENT_LOG = "sent-log"
DIGEST_PENDING = "digest-pending"
SOURCE = source_urn("notify")
_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")


@dataclass(frozen=True)
class MailJob:
    """One e-mail to hand to SMTP, and what follows from each outcome."""

    message_id: str
    kind: str
    due_at: datetime
    build: Callable[[], OutgoingMail]
    on_sent: Callable[[int, datetime], Effects]
    on_refused: Callable[[PermanentSmtpError], Effects]
    sent_log_key: bytes | None = None  # marked 'sent' as soon as the server accepted it


def erased_mark(signal_id: str) -> bytes:
    """The sent-log key that says a signal was erased: no mail about it, ever."""
    return f"erased:{signal_id}".encode()


def digest_mark(signal_id: str) -> bytes:
    """The sent-log key listing the recipients (keyed hashes) whose digest a signal was queued for."""
    return f"digests-of:{signal_id}".encode()


def sent_log_state(view: TableView, key: bytes) -> dict[str, Any] | None:
    """A sent-log entry as the batch sees it."""
    raw = view.get(SENT_LOG, key)
    return json.loads(raw) if raw is not None else None


def sent_log_write(key: bytes, state: dict[str, Any]) -> TableWrite:
    """The table write that stores a sent-log state."""
    return TableWrite(SENT_LOG, key, json.dumps(state).encode())


def dead_letter(*, signal_id: str, source_event_id: str, kind: str, role: str, message_id: str,
                exc: PermanentSmtpError, metrics: NotifyMetrics) -> Effects:
    """A refused e-mail for notifications.dlq (no address, no content), counted once written."""
    headers = (
        *JSON_HEADERS,
        ("schakel-error-code", f"smtp_{exc.code}".encode()),
        ("schakel-source-event-id", source_event_id.encode()),
        ("schakel-template", kind.encode()),
        ("schakel-recipient-role", role.encode()),
        ("schakel-message-id", message_id.encode()),
        ("schakel-dead-lettered-by", b"notify"),
    )
    value = json.dumps({"source_event_id": source_event_id, "template": kind, "role": role,
                        "message_id": message_id, "smtp_code": exc.code,
                        "reason": f"smtp {exc.code}: {_ADDRESS.sub('<address>', exc.reason)[:200]}"}).encode()

    def counted() -> None:
        metrics.emails.labels(template=kind, outcome="permanent_failure").inc()
        log.warning("email_permanent_failure", signal_id=signal_id, template=kind, smtp_code=exc.code)

    return Effects(publish=[Publish(NOTIFICATIONS_DLQ.name, signal_id.encode(), value, headers)], after=[counted])


@dataclass
class NotifyDecisions:
    """The two handlers, over the municipality's contacts and the mail settings."""

    municipality: Municipality
    metrics: NotifyMetrics
    sender_address: str
    mail_domain: str
    base_url: str

    # -- immediate mail ---------------------------------------------------------------------------------

    def handle(self, record: Incoming, view: TableView) -> Effects:
        """Every e-mail this event calls for that the sent-log does not list yet (or queue it for a digest).

        Never about an erased signal: a SignalErased leaves a mark in the sent-log (same partition as every
        record about that signal) and takes the signal out of the digests it was queued for.
        """
        data = record.data
        if isinstance(data, SignalErased):
            return self._on_erased(data, view)
        if isinstance(data, MailEvent) and view.get(SENT_LOG, erased_mark(data.signal_id)) is not None:
            return Effects(after=[lambda: log.info("no_mail_about_erased_signal", signal_id=data.signal_id)])
        effects = Effects()
        for mail in plan(record.data, self.municipality):
            if mail.digest:
                effects.add(self._queue_for_digest(record.envelope, record.data, mail, view))
            else:
                effects.add(self._deliver(record.envelope, record.data, mail, view))
        return effects

    def _on_erased(self, erased: SignalErased, view: TableView) -> Effects:
        mark = erased_mark(erased.signal_id)
        if view.get(SENT_LOG, mark) is not None:
            return Effects()
        queued_for = json.loads(view.get(SENT_LOG, digest_mark(erased.signal_id)) or b"[]")
        withdrawals = []
        for key in queued_for:
            withdrawn = DigestItemWithdrawn(recipient_key=key, signal_id=erased.signal_id,
                                            erasure_id=erased.erasure_id)
            event = make_event(withdrawn, source=SOURCE, subject=erased.signal_id,
                               event_id=deterministic_id("digest-withdrawn", erased.erasure_id, key))
            withdrawals.append(Publish.event(NOTIFICATIONS_DIGEST.name, key=key, event=event))
        return Effects(publish=withdrawals,
                       writes=[TableWrite(SENT_LOG, mark, json.dumps({"status": "erased"}).encode()),
                               TableWrite(SENT_LOG, digest_mark(erased.signal_id), b"[]")],
                       after=[lambda: log.info("signal_erased_no_more_mail", signal_id=erased.signal_id,
                                               digests=len(withdrawals))])

    def _deliver(self, envelope: CloudEvent, data: Contract, mail: PlannedMail, view: TableView) -> Effects:
        message_id = message_id_for(event_id=envelope.id, recipient=mail.recipient.email, domain=self.mail_domain)
        log_key = message_id.encode()
        state = sent_log_state(view, log_key)
        if state is not None and state["status"] != "sent":
            return Effects()
        signal_id = signal_id_of(data)
        if state is not None:  # accepted before a crash: record it without sending again
            return self._recorded(envelope, data, mail, message_id, attempts=state["attempts"],
                                  at=datetime.fromisoformat(state["at"]))

        def build() -> OutgoingMail:
            rendered = render(mail.kind, mail_context(data, mail, municipality=self.municipality,
                                                      base_url=self.base_url))
            thread = thread_id_for(signal_id=signal_id, domain=self.mail_domain)
            return message_bytes(rendered=rendered, sender=self.sender_address, recipient=mail.recipient.email,
                                 message_id=message_id, in_reply_to=thread, references=(thread,))

        def on_sent(attempts: int, at: datetime) -> Effects:
            received_at = getattr(data, "received_at", None)
            effects = self._recorded(envelope, data, mail, message_id, attempts=attempts, at=at)
            if received_at is not None:
                effects.after.append(lambda: self.metrics.end_to_end.labels(template=mail.kind).observe(
                    (at - received_at).total_seconds()))
            return effects

        def on_refused(exc: PermanentSmtpError) -> Effects:
            effects = dead_letter(signal_id=signal_id, source_event_id=envelope.id, kind=mail.kind,
                                  role=mail.recipient.role, message_id=message_id, exc=exc, metrics=self.metrics)
            effects.writes.append(sent_log_write(log_key, {"status": "failed", "code": exc.code}))
            return effects

        return Effects(work=[MailJob(message_id, mail.kind, envelope.time, build, on_sent, on_refused,
                                     sent_log_key=log_key)])

    def _recorded(self, envelope: CloudEvent, data: Contract, mail: PlannedMail, message_id: str, *,
                  attempts: int, at: datetime) -> Effects:
        signal_id = signal_id_of(data)
        sent = NotificationSent(signal_id=signal_id, source_event_id=envelope.id, template=mail.kind,
                                recipient_role=mail.recipient.role, recipient=mail.recipient.email,
                                message_id=message_id, sent_at=at, attempts=attempts)
        event = make_event(sent, source=SOURCE, subject=signal_id, event_id=deterministic_id("sent", message_id))
        return Effects(
            publish=[Publish.event(NOTIFICATIONS_SENT.name, key=signal_id, event=event)],
            writes=[sent_log_write(message_id.encode(),
                                   {"status": "recorded", "attempts": attempts, "at": at.isoformat()})],
            after=[lambda: log.info("email_sent", signal_id=signal_id, template=mail.kind, role=mail.recipient.role,
                                    attempts=attempts)])

    # -- digests ----------------------------------------------------------------------------------------

    def _queue_for_digest(self, envelope: CloudEvent, data: Contract, mail: PlannedMail, view: TableView) -> Effects:
        assert isinstance(data, SignalAssigned)
        message_id = message_id_for(event_id=envelope.id, recipient=mail.recipient.email, domain=self.mail_domain)
        log_key = message_id.encode()
        if view.get(SENT_LOG, log_key) is not None:
            return Effects()
        key = recipient_key(mail.recipient.email)
        item = DigestItemQueued(recipient_key=key, recipient=mail.recipient.email, recipient_role=mail.recipient.role,
                                signal_id=data.signal_id, reference=data.reference, route=data.route,
                                urgency=data.urgency, source_event_id=envelope.id, item_id=message_id,
                                queued_at=envelope.time)
        event = make_event(item, source=SOURCE, subject=data.signal_id,
                           event_id=deterministic_id("digest-item", message_id))
        queued_for = json.loads(view.get(SENT_LOG, digest_mark(data.signal_id)) or b"[]")
        return Effects(
            publish=[Publish.event(NOTIFICATIONS_DIGEST.name, key=key, event=event)],
            writes=[sent_log_write(log_key, {"status": "digest_queued"}),
                    TableWrite(SENT_LOG, digest_mark(data.signal_id),
                               json.dumps(sorted({*queued_for, key})).encode())],
            after=[lambda: log.info("email_queued_for_digest", signal_id=data.signal_id, role=mail.recipient.role)])

    def handle_digest(self, record: Incoming, view: TableView) -> Effects:
        """Add an item to a recipient's pending digest, or send and clear the digest that fell due."""
        data = record.data
        if isinstance(data, DigestItemQueued):
            return self._add_item(data, view)
        if isinstance(data, DigestDue):
            return self._send_digest(record.envelope, data, view)
        if isinstance(data, DigestItemWithdrawn):
            raw = view.get(DIGEST_PENDING, data.recipient_key.encode())
            if raw is None:
                return Effects()
            entry = PendingEntry.decode(raw).without_signal(data.signal_id)
            return Effects(writes=[TableWrite(DIGEST_PENDING, data.recipient_key.encode(), entry.encode())])
        return Effects()

    def _add_item(self, data: DigestItemQueued, view: TableView) -> Effects:
        key = data.recipient_key.encode()
        raw = view.get(DIGEST_PENDING, key)
        entry = PendingEntry.decode(raw) if raw is not None else PendingEntry(recipient=str(data.recipient),
                                                                             role=data.recipient_role)
        updated = entry.with_item(PendingItem(item_id=data.item_id, signal_id=data.signal_id, reference=data.reference,
                                              route=data.route.value, urgency=data.urgency.value,
                                              queued_at=data.queued_at))
        return Effects(writes=[TableWrite(DIGEST_PENDING, key, updated.encode())] if updated is not None else [])

    def _send_digest(self, envelope: CloudEvent, data: DigestDue, view: TableView) -> Effects:
        key = data.recipient_key.encode()
        raw = view.get(DIGEST_PENDING, key)
        entry = PendingEntry.decode(raw) if raw is not None else None
        if entry is None or entry.last_period == data.period:
            return Effects()
        items = entry.due(data.due_at)
        if not items:
            return Effects()
        message_id = message_id_for(event_id=f"digest|{data.period}", recipient=entry.recipient,
                                    domain=self.mail_domain)
        cleared = TableWrite(DIGEST_PENDING, key, entry.after_sending(data.period, items).encode())

        def build() -> OutgoingMail:
            rendered = render("digest", digest_context(items, role=entry.role, base_url=self.base_url))
            return message_bytes(rendered=rendered, sender=self.sender_address, recipient=entry.recipient,
                                 message_id=message_id)

        def on_sent(attempts: int, at: datetime) -> Effects:
            effects = Effects(writes=[cleared], after=[
                lambda: self.metrics.digest_size.observe(len(items)),
                lambda: log.info("digest_sent", role=entry.role, signals=len(items), attempts=attempts)])
            for item in items:
                sent = NotificationSent(signal_id=item.signal_id, source_event_id=envelope.id, template="digest",
                                        recipient_role=entry.role, recipient=entry.recipient, message_id=message_id,
                                        sent_at=at, attempts=attempts)
                effects.publish.append(Publish.event(
                    NOTIFICATIONS_SENT.name, key=item.signal_id,
                    event=make_event(sent, source=SOURCE, subject=item.signal_id,
                                     event_id=deterministic_id("sent", message_id, item.item_id))))
            return effects

        def on_refused(exc: PermanentSmtpError) -> Effects:
            effects = dead_letter(signal_id="", source_event_id=envelope.id, kind="digest", role=entry.role,
                                  message_id=message_id, exc=exc, metrics=self.metrics)
            effects.writes.append(cleared)
            return effects

        return Effects(work=[MailJob(message_id, "digest", data.due_at, build, on_sent, on_refused)])
