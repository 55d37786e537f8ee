"""Notify's agent: plan the e-mails an event calls for, send each once, record what was sent."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import faust
import structlog

from shared.events import CloudEvent, Contract, NotificationSent, deterministic_id, make_event, utcnow
from shared.kafka import RecordLoop, publish, send_and_wait
from shared.municipality import Municipality
from shared.topics import NOTIFICATIONS_DLQ, NOTIFICATIONS_SENT
from services.notify.handlers import mail_context, signal_id_of
from services.notify.metrics import CONSUMED, NotifyMetrics
from services.notify.recipients import PlannedMail, plan
from services.notify.rendering import build_message, message_id_for, render, thread_id_for
from services.notify.smtp import PermanentSmtpError, SmtpSender

log = structlog.get_logger(__name__)
UNLIMITED_ATTEMPTS = 1_000_000


@dataclass
class NotifyCore:
    """The sent-log table and the agent that mails."""

    app: faust.App
    municipality: Municipality
    metrics: NotifyMetrics
    sender: SmtpSender
    sender_address: str
    mail_domain: str
    partitions: int
    base_url: str
    max_delay_s: float = 60.0
    sent_log: faust.Table = field(init=False)
    loop: RecordLoop = field(init=False)
    due_since: float | None = None
    current_kind: str = "assigned"

    def __post_init__(self) -> None:
        self.sent_log = self.app.Table("sent-log", default=None, partitions=self.partitions, key_type=bytes,
                                       value_type=bytes)
        self.loop = RecordLoop(self.app, service="notify", metrics=self.metrics.hop,
                               dlq_topic=NOTIFICATIONS_DLQ.name)
        topic = self.app.topic(*CONSUMED, key_type=bytes, value_type=bytes)
        self.app.agent(topic, name="notify", concurrency=1)(self._agent)

    async def _agent(self, stream: faust.StreamT) -> None:
        await self.loop.run(stream, self.handle)

    async def handle(self, envelope: CloudEvent, data: Contract, key: bytes | None) -> None:
        """Send every e-mail this event calls for that the sent-log does not list yet."""
        for mail in plan(data, self.municipality):
            await self._deliver(envelope, data, mail)

    async def _on_retry(self, attempt: int, error: BaseException, delay: float) -> None:
        self.metrics.emails.labels(template=self.current_kind, outcome="retried").inc()
        log.warning("email_retry", attempt=attempt, error=type(error).__name__, delay_s=round(delay, 2))

    async def _deliver(self, envelope: CloudEvent, data: Contract, mail: PlannedMail) -> None:
        message_id = message_id_for(event_id=envelope.id, recipient=mail.recipient.email, domain=self.mail_domain)
        log_key = message_id.encode()
        if self.sent_log.get(log_key) is not None:
            return
        signal_id = signal_id_of(data)
        rendered = render(mail.kind, mail_context(data, mail, municipality=self.municipality, base_url=self.base_url))
        thread = thread_id_for(signal_id=signal_id, domain=self.mail_domain)
        message = build_message(rendered=rendered, sender=self.sender_address, recipient=mail.recipient.email,
                                message_id=message_id, in_reply_to=thread, references=(thread,))
        self.current_kind = mail.kind
        self.due_since = self.due_since or time.time()
        started = time.perf_counter()
        try:
            attempts = await self.sender.send_with_retry(
                message, max_attempts=UNLIMITED_ATTEMPTS, max_delay=self.max_delay_s, on_retry=self._on_retry
            )
        except PermanentSmtpError as exc:
            await self._dead_letter(envelope, mail, message_id, exc)
            self.sent_log[log_key] = json.dumps({"status": "failed", "code": exc.code}).encode()
            self.due_since = None
            return
        self.due_since = None
        self.metrics.send_duration.observe(time.perf_counter() - started)
        self.metrics.emails.labels(template=mail.kind, outcome="sent").inc()
        received_at = getattr(data, "received_at", None)
        if received_at is not None:
            self.metrics.end_to_end.labels(template=mail.kind).observe((utcnow() - received_at).total_seconds())
        self.sent_log[log_key] = json.dumps({"status": "sent", "attempts": attempts}).encode()
        sent = NotificationSent(signal_id=signal_id, source_event_id=envelope.id, template=mail.kind,
                                recipient_role=mail.recipient.role, recipient=mail.recipient.email,
                                message_id=message_id, sent_at=utcnow(), attempts=attempts)
        await publish(self.app, self.metrics.hop, topic=NOTIFICATIONS_SENT.name, key=signal_id,
                      event=make_event(sent, source="schakel/notify", subject=signal_id,
                                       event_id=deterministic_id("sent", message_id)))
        log.info("email_sent", signal_id=signal_id, template=mail.kind, role=mail.recipient.role, attempts=attempts)

    async def _dead_letter(self, envelope: CloudEvent, mail: PlannedMail, message_id: str,
                           exc: PermanentSmtpError) -> None:
        signal_id = envelope.subject or ""
        headers = [
            ("schakel-error-code", f"smtp_{exc.code}".encode()),
            ("schakel-source-event-id", envelope.id.encode()),
            ("schakel-template", mail.kind.encode()),
            ("schakel-recipient-role", mail.recipient.role.encode()),
            ("schakel-message-id", message_id.encode()),
            ("schakel-dead-lettered-by", b"notify"),
        ]
        value = json.dumps({"source_event_id": envelope.id, "template": mail.kind, "role": mail.recipient.role,
                            "message_id": message_id, "smtp_code": exc.code}).encode()
        await send_and_wait(self.app, topic=NOTIFICATIONS_DLQ.name, key=signal_id.encode(), value=value,
                            headers=headers)
        self.metrics.emails.labels(template=mail.kind, outcome="permanent_failure").inc()
        self.metrics.hop.produced.labels(topic=NOTIFICATIONS_DLQ.name).inc()
        log.warning("email_permanent_failure", signal_id=signal_id, template=mail.kind, smtp_code=exc.code)

    def update_queue_age(self) -> None:
        """Age of the e-mail currently waiting for SMTP (0 when nothing waits)."""
        self.metrics.oldest_unsent.set(time.time() - self.due_since if self.due_since else 0.0)

