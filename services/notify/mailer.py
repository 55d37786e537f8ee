"""The record loop's stage for notify: a batch's e-mails sent in parallel over the SMTP pool.

Each accepted mail is marked 'sent' in the sent-log at once, while its connection is still its own (so a
crash before its notifications.sent record costs no second e-mail), and the connection holds the content of
its next mail until that mark is on the broker (ADR 0022): a kill can then resend at most the one mail per
connection that the server accepted and notify had not yet recorded. The job's follow-up effects join the
batch: notifications.sent and the 'recorded' state, or the dead letter and 'failed'. Transient failures are
retried for as long as they last (never given up silently); the queue-age gauge and its alert show an outage.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from services.notify.decisions import MailJob, log
from services.notify.metrics import NotifyMetrics
from services.notify.mime import OutgoingMail
from services.notify.smtp import AcceptedCallback, NotWanted, PermanentSmtpError, RetryCallback, TransientSmtpError
from shared.events import utcnow
from shared.faust_compat import as_current_event, write_with_receipt
from shared.record_loop import Effects, Planned
from shared.tracing import span as tracing_span
from shared.tracing import traced

UNLIMITED_ATTEMPTS = 1_000_000_000


class Sender(Protocol):
    """What the mailer needs of SMTP (services.notify.smtp.SmtpPool, or a fake in tests).

    `on_accepted(attempts)` is awaited once the server accepted the mail, before the connection takes another;
    the connection holds its next mail's content until the future it returns is done.
    """

    async def send_with_retry(self, message: OutgoingMail, *, max_attempts: int, base_delay: float,
                              max_delay: float, on_retry: RetryCallback | None,
                              still_wanted: Callable[[], bool] | None = None,
                              on_accepted: AcceptedCallback | None = None) -> int: ...


class SentLog(Protocol):
    """Where a mail is marked 'sent' (TableSentLog, or a fake in tests)."""

    async def mark(self, event: Any, key: bytes, value: bytes) -> asyncio.Future[Any] | None:
        """Record the mark; the future is done once it is durable (None: it already is)."""


@dataclass(frozen=True)
class TableSentLog:
    """The sent-log table: a mark is durable once its changelog record is on the broker."""

    table: Any

    async def mark(self, event: Any, key: bytes, value: bytes) -> asyncio.Future[Any]:
        with as_current_event(event):
            return await write_with_receipt(self.table, key, value)


@dataclass
class Mailer:
    """Sends the e-mails of a batch; one per Message-ID, however often the batch names it."""

    sender: Sender
    metrics: NotifyMetrics
    sent_log: SentLog
    retry_base_s: float = 2.0
    retry_max_s: float = 50.0
    waiting_since: dict[int, float] = field(default_factory=dict)
    still_ours: Callable[[Any], bool] = lambda event: True
    _sending: set[asyncio.Future[None]] = field(default_factory=set)
    _unrecorded: set[asyncio.Future[Any]] = field(default_factory=set)  # marks not yet on the broker

    async def __call__(self, planned: Planned) -> None:
        jobs: list[tuple[Any, Effects, MailJob]] = []
        seen: set[str] = set()
        for event, effects in planned:
            for job in effects.work:
                if job.message_id not in seen:
                    seen.add(job.message_id)
                    jobs.append((event, effects, job))
        sending = [asyncio.ensure_future(self._send(event, effects, job)) for event, effects, job in jobs]
        self._sending.update(sending)
        try:
            await asyncio.gather(*sending)
        finally:
            self._sending.difference_update(sending)

    async def drain(self) -> None:
        """Wait until the mails under way are through and their marks on the broker (partitions are being revoked).

        Mails still waiting for a connection find they are no longer wanted and stop at once; the one in an
        SMTP transaction finishes, so the worker that takes the partition over reads it as sent.
        """
        if self._sending:
            await asyncio.wait(list(self._sending))
        if self._unrecorded:
            await asyncio.wait(list(self._unrecorded))

    async def _send(self, event: Any, effects: Effects, job: MailJob) -> None:
        handled = effects.span
        parent = trace.set_span_in_context(handled) if handled and handled.get_span_context().is_valid else None
        with tracing_span("notify smtp send", context=parent, kind=SpanKind.CLIENT,
                          attributes={"schakel.template": job.kind}) as span:
            message = job.build()
            accepted_at: list[datetime] = []

            async def on_accepted(attempts: int) -> asyncio.Future[Any] | None:
                accepted_at.append(utcnow())
                return await self._mark_sent(event, job, attempts, accepted_at[0])

            try:
                attempts = await self._deliver(message, job, still_wanted=lambda: self.still_ours(event),
                                               on_accepted=on_accepted)
            except PermanentSmtpError as exc:
                span.set_attribute("schakel.smtp.outcome", "refused")
                effects.add(job.on_refused(exc))
                return
            except NotWanted:
                return  # a rebalance came: the partition's owner reads the record again and mails it
            span.set_attributes({"schakel.smtp.outcome": "sent", "schakel.smtp.attempts": attempts})
            sent = job.on_sent(attempts, accepted_at[0])
            sent.publish = traced(sent.publish, span)
            effects.add(sent)

    async def _mark_sent(self, event: Any, job: MailJob, attempts: int, at: datetime) -> asyncio.Future[Any] | None:
        """Mark the mail 'sent' in the sent-log; the future is done once the mark is on the broker."""
        if job.sent_log_key is None:
            return None
        receipt = await self.sent_log.mark(event, job.sent_log_key, json.dumps(
            {"status": "sent", "attempts": attempts, "at": at.isoformat()}).encode())
        if receipt is not None and not receipt.done():
            self._unrecorded.add(receipt)
            receipt.add_done_callback(partial(self._mark_recorded, time.perf_counter()))
        return receipt

    def _mark_recorded(self, started: float, receipt: asyncio.Future[Any]) -> None:
        """The mark is through: no longer under way; timed (what the connection's next e-mail waited for at most)."""
        self._unrecorded.discard(receipt)
        if not receipt.cancelled() and receipt.exception() is None:
            self.metrics.mark_duration.observe(time.perf_counter() - started)

    async def _deliver(self, message: OutgoingMail, job: MailJob, *, still_wanted: Callable[[], bool],
                       on_accepted: AcceptedCallback) -> int:
        async def on_retry(attempt: int, error: TransientSmtpError, delay: float) -> None:
            self.metrics.emails.labels(template=job.kind, outcome="retried").inc()
            log.warning("email_retry", template=job.kind, attempt=attempt, error=type(error).__name__,
                        delay_s=round(delay, 2))

        token = id(job)
        self.waiting_since[token] = job.due_at.timestamp()
        started = time.perf_counter()
        try:
            attempts = await self.sender.send_with_retry(
                message, max_attempts=UNLIMITED_ATTEMPTS, base_delay=self.retry_base_s, max_delay=self.retry_max_s,
                on_retry=on_retry, still_wanted=still_wanted, on_accepted=on_accepted,
            )
        finally:
            self.waiting_since.pop(token, None)
        self.metrics.send_duration.observe(time.perf_counter() - started)
        self.metrics.emails.labels(template=job.kind, outcome="sent").inc()
        return attempts

    def update_queue_age(self) -> None:
        """Age of the oldest e-mail waiting for SMTP, counted from its event (0 when nothing waits)."""
        oldest = min(self.waiting_since.values(), default=None)
        self.metrics.oldest_unsent.set(max(time.time() - oldest, 0.0) if oldest is not None else 0.0)
