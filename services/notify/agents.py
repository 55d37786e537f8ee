"""Notify's agents: plan the e-mails an event calls for, send each once, record what was sent; digests (ADR 0008).

Exactly one e-mail per (event, recipient): the sent-log (a faust table keyed by the deterministic Message-ID)
is consulted before sending and written right after the server accepted the message. Its states:
  sent           the server accepted it; notifications.sent may not be written yet
  recorded       the server accepted it and notifications.sent has it
  failed         the server refused it for good (5xx); dead-lettered, never retried
  digest_queued  it goes out in the recipient's next daily digest
A crash between the server's acceptance and the sent-log write resends the mail once, with the same Message-ID.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import faust
import structlog
from faust.types import TableT

from services.notify.digest import DigestSchedule, PendingEntry, PendingItem, recipient_key
from services.notify.handlers import digest_context, mail_context, signal_id_of
from services.notify.metrics import CONSUMED, NotifyMetrics
from services.notify.recipients import PlannedMail, plan
from services.notify.rendering import build_message, message_id_for, render, thread_id_for
from services.notify.smtp import PermanentSmtpError, SmtpSender, TransientSmtpError
from shared.events import (
    CloudEvent,
    Contract,
    DigestDue,
    DigestItemQueued,
    NotificationSent,
    SignalAssigned,
    deterministic_id,
    make_event,
    utcnow,
)
from shared.kafka import RecordLoop, publish, send_and_wait
from shared.municipality import Municipality
from shared.topics import NOTIFICATIONS_DIGEST, NOTIFICATIONS_DLQ, NOTIFICATIONS_SENT

log = structlog.get_logger(__name__)
# Transient failures are retried for as long as they last (never given up silently); the queue-age gauge
# and its alert show an outage. Anything that is neither transient nor permanent crashes the worker.
UNLIMITED_ATTEMPTS = 1_000_000_000
_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")


@dataclass
class NotifyCore:
    """The sent-log and digest tables and the agents that mail."""

    app: faust.App
    municipality: Municipality
    metrics: NotifyMetrics
    sender: SmtpSender
    sender_address: str
    mail_domain: str
    partitions: int
    base_url: str
    retry_base_s: float = 2.0
    retry_max_s: float = 50.0
    schedule: DigestSchedule = field(default_factory=DigestSchedule)
    sent_log: TableT = field(init=False)
    digest_pending: TableT = field(init=False)
    loop: RecordLoop = field(init=False)
    digest_loop: RecordLoop = field(init=False)
    in_flight_since: float | None = None
    current_kind: str = "assigned"
    announced: set[tuple[bytes, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.sent_log = self.app.Table("sent-log", default=None, partitions=self.partitions, key_type=bytes,
                                       value_type=bytes)
        self.digest_pending = self.app.Table("digest-pending", default=None, partitions=self.partitions,
                                             key_type=bytes, value_type=bytes)
        self.loop = RecordLoop(self.app, service="notify", metrics=self.metrics.hop,
                               dlq_topic=NOTIFICATIONS_DLQ.name)
        self.digest_loop = RecordLoop(self.app, service="notify", metrics=self.metrics.hop,
                                      dlq_topic=NOTIFICATIONS_DLQ.name)
        topic = self.app.topic(*CONSUMED, key_type=bytes, value_type=bytes)
        self.app.agent(topic, name="notify", concurrency=1)(self._agent)
        digest_topic = self.app.topic(NOTIFICATIONS_DIGEST.name, key_type=bytes, value_type=bytes)
        self.app.agent(digest_topic, name="notify-digest", concurrency=1)(self._digest_agent)

    async def _agent(self, stream: faust.StreamT) -> None:
        await self.loop.run(stream, self.handle)

    async def _digest_agent(self, stream: faust.StreamT) -> None:
        await self.digest_loop.run(stream, self.handle_digest)

    # -- immediate mail -------------------------------------------------------------------------------------

    async def handle(self, envelope: CloudEvent, data: Contract, key: bytes | None) -> None:
        """Send (or queue for a digest) every e-mail this event calls for that the sent-log does not list yet."""
        for mail in plan(data, self.municipality):
            if mail.digest:
                await self._queue_for_digest(envelope, data, mail)
            else:
                await self._deliver(envelope, data, mail)

    def _state(self, log_key: bytes) -> dict[str, Any] | None:
        raw = self.sent_log.get(log_key)
        return json.loads(raw) if raw is not None else None

    async def _deliver(self, envelope: CloudEvent, data: Contract, mail: PlannedMail) -> None:
        message_id = message_id_for(event_id=envelope.id, recipient=mail.recipient.email, domain=self.mail_domain)
        log_key = message_id.encode()
        state = self._state(log_key)
        if state is not None and state["status"] != "sent":
            return
        signal_id = signal_id_of(data)
        if state is None:
            rendered = render(mail.kind, mail_context(data, mail, municipality=self.municipality,
                                                      base_url=self.base_url))
            thread = thread_id_for(signal_id=signal_id, domain=self.mail_domain)
            message = build_message(rendered=rendered, sender=self.sender_address, recipient=mail.recipient.email,
                                    message_id=message_id, in_reply_to=thread, references=(thread,))
            try:
                attempts = await self._send(message, kind=mail.kind, due_at=envelope.time)
            except PermanentSmtpError as exc:
                await self._dead_letter(signal_id=signal_id, source_event_id=envelope.id, kind=mail.kind,
                                        role=mail.recipient.role, message_id=message_id, exc=exc)
                self.sent_log[log_key] = json.dumps({"status": "failed", "code": exc.code}).encode()
                return
            state = {"status": "sent", "attempts": attempts, "at": utcnow().isoformat()}
            self.sent_log[log_key] = json.dumps(state).encode()
            received_at = getattr(data, "received_at", None)
            if received_at is not None:
                self.metrics.end_to_end.labels(template=mail.kind).observe((utcnow() - received_at).total_seconds())
        sent = NotificationSent(signal_id=signal_id, source_event_id=envelope.id, template=mail.kind,
                                recipient_role=mail.recipient.role, recipient=mail.recipient.email,
                                message_id=message_id, sent_at=datetime.fromisoformat(state["at"]),
                                attempts=state["attempts"])
        await publish(self.app, self.metrics.hop, topic=NOTIFICATIONS_SENT.name, key=signal_id,
                      event=make_event(sent, source="schakel/notify", subject=signal_id,
                                       event_id=deterministic_id("sent", message_id)))
        self.sent_log[log_key] = json.dumps({**state, "status": "recorded"}).encode()
        log.info("email_sent", signal_id=signal_id, template=mail.kind, role=mail.recipient.role,
                 attempts=state["attempts"])

    async def _on_retry(self, attempt: int, error: TransientSmtpError, delay: float) -> None:
        self.metrics.emails.labels(template=self.current_kind, outcome="retried").inc()
        log.warning("email_retry", template=self.current_kind, attempt=attempt, error=type(error).__name__,
                    delay_s=round(delay, 2))

    async def _send(self, message: EmailMessage, *, kind: str, due_at: datetime) -> int:
        """Hand a message to SMTP, retrying transient failures without end; raises PermanentSmtpError."""
        self.current_kind = kind
        self.in_flight_since = due_at.timestamp()
        started = time.perf_counter()
        try:
            attempts = await self.sender.send_with_retry(
                message, max_attempts=UNLIMITED_ATTEMPTS, base_delay=self.retry_base_s, max_delay=self.retry_max_s,
                on_retry=self._on_retry,
            )
        finally:
            self.in_flight_since = None
        self.metrics.send_duration.observe(time.perf_counter() - started)
        self.metrics.emails.labels(template=kind, outcome="sent").inc()
        return attempts

    async def _dead_letter(self, *, signal_id: str, source_event_id: str, kind: str, role: str, message_id: str,
                           exc: PermanentSmtpError) -> None:
        headers = [
            ("schakel-error-code", f"smtp_{exc.code}".encode()),
            ("schakel-source-event-id", source_event_id.encode()),
            ("schakel-template", kind.encode()),
            ("schakel-recipient-role", role.encode()),
            ("schakel-message-id", message_id.encode()),
            ("schakel-dead-lettered-by", b"notify"),
        ]
        value = json.dumps({"source_event_id": source_event_id, "template": kind, "role": role,
                            "message_id": message_id, "smtp_code": exc.code,
                            "reason": f"smtp {exc.code}: {_ADDRESS.sub('<address>', exc.reason)[:200]}"}).encode()
        await send_and_wait(self.app, topic=NOTIFICATIONS_DLQ.name, key=signal_id.encode(), value=value,
                            headers=headers)
        self.metrics.emails.labels(template=kind, outcome="permanent_failure").inc()
        self.metrics.hop.produced.labels(topic=NOTIFICATIONS_DLQ.name).inc()
        log.warning("email_permanent_failure", signal_id=signal_id, template=kind, smtp_code=exc.code)

    def update_queue_age(self) -> None:
        """Age of the e-mail currently waiting for SMTP, counted from its event (0 when nothing waits)."""
        since = self.in_flight_since
        self.metrics.oldest_unsent.set(max(time.time() - since, 0.0) if since is not None else 0.0)

    # -- digests --------------------------------------------------------------------------------------------

    async def _queue_for_digest(self, envelope: CloudEvent, data: Contract, mail: PlannedMail) -> None:
        assert isinstance(data, SignalAssigned)
        message_id = message_id_for(event_id=envelope.id, recipient=mail.recipient.email, domain=self.mail_domain)
        log_key = message_id.encode()
        if self.sent_log.get(log_key) is not None:
            return
        key = recipient_key(mail.recipient.email)
        item = DigestItemQueued(recipient_key=key, recipient=mail.recipient.email, recipient_role=mail.recipient.role,
                                signal_id=data.signal_id, reference=data.reference, route=data.route,
                                urgency=data.urgency, source_event_id=envelope.id, item_id=message_id,
                                queued_at=envelope.time)
        await publish(self.app, self.metrics.hop, topic=NOTIFICATIONS_DIGEST.name, key=key,
                      event=make_event(item, source="schakel/notify", subject=data.signal_id,
                                       event_id=deterministic_id("digest-item", message_id)))
        self.sent_log[log_key] = json.dumps({"status": "digest_queued"}).encode()
        log.info("email_queued_for_digest", signal_id=data.signal_id, role=mail.recipient.role)

    async def handle_digest(self, envelope: CloudEvent, data: Contract, key: bytes | None) -> None:
        """Add an item to a recipient's pending digest, or send and clear the digest that fell due."""
        if isinstance(data, DigestItemQueued):
            self._add_item(data)
        elif isinstance(data, DigestDue):
            await self._send_digest(envelope, data)

    def _entry(self, key: bytes) -> PendingEntry | None:
        raw = self.digest_pending.get(key)
        return PendingEntry.decode(raw) if raw is not None else None

    def _add_item(self, data: DigestItemQueued) -> None:
        key = data.recipient_key.encode()
        entry = self._entry(key) or PendingEntry(recipient=str(data.recipient), role=data.recipient_role)
        updated = entry.with_item(PendingItem(item_id=data.item_id, signal_id=data.signal_id, reference=data.reference,
                                              route=data.route.value, urgency=data.urgency.value,
                                              queued_at=data.queued_at))
        if updated is not None:
            self.digest_pending[key] = updated.encode()

    async def _send_digest(self, envelope: CloudEvent, data: DigestDue) -> None:
        key = data.recipient_key.encode()
        entry = self._entry(key)
        if entry is None or entry.last_period == data.period:
            return
        items = entry.due(data.due_at)
        if not items:
            return
        message_id = message_id_for(event_id=f"digest|{data.period}", recipient=entry.recipient,
                                    domain=self.mail_domain)
        rendered = render("digest", digest_context(items, role=entry.role, base_url=self.base_url))
        message = build_message(rendered=rendered, sender=self.sender_address, recipient=entry.recipient,
                                message_id=message_id)
        try:
            attempts = await self._send(message, kind="digest", due_at=data.due_at)
        except PermanentSmtpError as exc:
            await self._dead_letter(signal_id="", source_event_id=envelope.id, kind="digest", role=entry.role,
                                    message_id=message_id, exc=exc)
        else:
            self.metrics.digest_size.observe(len(items))
            sent_at = utcnow()
            for item in items:
                sent = NotificationSent(signal_id=item.signal_id, source_event_id=envelope.id, template="digest",
                                        recipient_role=entry.role, recipient=entry.recipient, message_id=message_id,
                                        sent_at=sent_at, attempts=attempts)
                await publish(self.app, self.metrics.hop, topic=NOTIFICATIONS_SENT.name, key=item.signal_id,
                              event=make_event(sent, source="schakel/notify", subject=item.signal_id,
                                               event_id=deterministic_id("sent", message_id, item.item_id)))
            log.info("digest_sent", role=entry.role, signals=len(items), attempts=attempts)
        self.digest_pending[key] = entry.after_sending(data.period, items).encode()

    async def announce_due_digests(self, now: datetime | None = None) -> int:
        """Publish a 'digest due' record for every local recipient with items from before this period."""
        now = now or utcnow()
        start, period = self.schedule.period_start(now), self.schedule.period_id(now)
        self.announced = {m for m in self.announced if m[1] == period}
        count = 0
        for key, raw in list(self.digest_pending.items()):
            entry = PendingEntry.decode(raw)
            if entry.last_period == period or not entry.due(start) or (key, period) in self.announced:
                continue
            due = DigestDue(recipient_key=key.decode(), period=period, due_at=start)
            await publish(self.app, self.metrics.hop, topic=NOTIFICATIONS_DIGEST.name, key=key.decode(),
                          event=make_event(due, source="schakel/notify", subject=key.decode(),
                                           event_id=deterministic_id("digest-due", key.decode(), period)))
            self.announced.add((key, period))
            count += 1
        return count
