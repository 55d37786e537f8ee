"""Notify's agents: record loops around services.notify.decisions, with the mailer as their stage (ADR 0008)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import faust
from faust.types import TableT

from services.notify.decisions import DIGEST_PENDING, SENT_LOG, SOURCE, NotifyDecisions
from services.notify.digest import DigestSchedule, PendingEntry
from services.notify.mailer import Mailer, Sender, TableSentLog
from services.notify.metrics import CONSUMED, NotifyMetrics
from shared.events import DigestDue, deterministic_id, make_event, utcnow
from shared.faust_compat import before_revocation, is_current
from shared.municipality import Municipality
from shared.record_loop import LINGER_S, Publish, RecordLoop, produce_all
from shared.topics import NOTIFICATIONS_DIGEST, NOTIFICATIONS_DLQ

# How long a rebalance waits for the SMTP transactions under way (one takes milliseconds; longer only while
# the server is slow or down, and then the new owner may send that mail again: reliability #7's one copy).
REVOCATION_DRAIN_S = 10.0


@dataclass
class NotifyCore:
    """The sent-log and digest tables and the agents that mail."""

    app: faust.App
    municipality: Municipality
    metrics: NotifyMetrics
    sender: Sender | Any
    sender_address: str
    mail_domain: str
    partitions: int
    base_url: str
    retry_base_s: float = 2.0
    retry_max_s: float = 50.0
    schedule: DigestSchedule = field(default_factory=DigestSchedule)
    linger_s: float = LINGER_S
    sent_log: TableT = field(init=False)
    digest_pending: TableT = field(init=False)
    mailer: Mailer = field(init=False)
    loop: RecordLoop = field(init=False)
    digest_loop: RecordLoop = field(init=False)
    announced: set[tuple[bytes, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.sent_log = self.app.Table(SENT_LOG, default=None, partitions=self.partitions, key_type=bytes,
                                       value_type=bytes)
        self.digest_pending = self.app.Table(DIGEST_PENDING, default=None, partitions=self.partitions,
                                             key_type=bytes, value_type=bytes)
        tables = {SENT_LOG: self.sent_log, DIGEST_PENDING: self.digest_pending}
        self.mailer = Mailer(self.sender, self.metrics, TableSentLog(self.sent_log), retry_base_s=self.retry_base_s,
                             retry_max_s=self.retry_max_s, still_ours=partial(is_current, self.app))
        before_revocation(self.app, self.mailer.drain, timeout_s=REVOCATION_DRAIN_S)
        self.decisions = NotifyDecisions(self.municipality, self.metrics, self.sender_address, self.mail_domain,
                                         self.base_url)
        self.loop = RecordLoop(self.app, service="notify", metrics=self.metrics.hop, dlq_topic=NOTIFICATIONS_DLQ.name,
                               tables=tables, stage=self.mailer, linger_s=self.linger_s)
        self.digest_loop = RecordLoop(self.app, service="notify", metrics=self.metrics.hop,
                                      dlq_topic=NOTIFICATIONS_DLQ.name, tables=tables, stage=self.mailer,
                                      linger_s=self.linger_s)
        topic = self.app.topic(*CONSUMED, key_type=bytes, value_type=bytes)
        self.app.agent(topic, name="notify", concurrency=1)(self._agent)
        digest_topic = self.app.topic(NOTIFICATIONS_DIGEST.name, key_type=bytes, value_type=bytes)
        self.app.agent(digest_topic, name="notify-digest", concurrency=1)(self._digest_agent)

    async def _agent(self, stream: faust.StreamT) -> None:
        await self.loop.run(stream, self.decisions.handle)

    async def _digest_agent(self, stream: faust.StreamT) -> None:
        await self.digest_loop.run(stream, self.decisions.handle_digest)

    def update_queue_age(self) -> None:
        """Age of the oldest e-mail waiting for SMTP, counted from its event (0 when nothing waits)."""
        self.mailer.update_queue_age()

    async def announce_due_digests(self, now: datetime | None = None) -> int:
        """Publish a 'digest due' record for every local recipient with items from before this period."""
        now = now or utcnow()
        start, period = self.schedule.period_start(now), self.schedule.period_id(now)
        self.announced = {m for m in self.announced if m[1] == period}
        due_keys: list[bytes] = []
        for key, raw in list(self.digest_pending.items()):
            entry = PendingEntry.decode(raw)
            if entry.last_period == period or not entry.due(start) or (key, period) in self.announced:
                continue
            due_keys.append(key)
        records = []
        for key in due_keys:
            due = DigestDue(recipient_key=key.decode(), period=period, due_at=start)
            event_id = deterministic_id("digest-due", key.decode(), period)
            records.append(Publish.event(NOTIFICATIONS_DIGEST.name, key=key.decode(),
                                         event=make_event(due, source=SOURCE, subject=None, event_id=event_id)))
        await produce_all(self.app, records)
        for key in due_keys:
            self.announced.add((key, period))
        if records:
            self.metrics.hop.produced.labels(topic=NOTIFICATIONS_DIGEST.name).inc(len(records))
        return len(records)
