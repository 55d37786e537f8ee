"""Feedback's agent and timer: a record loop around services.feedback.decisions, and the SLA sweep."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import faust
import structlog
from faust.types import TableT

from services.feedback.calendar import DutchCalendar
from services.feedback.deadlines import calendar_for
from services.feedback.decisions import STATE, FeedbackDecisions
from services.feedback.index import DueIndex
from services.feedback.lifecycle import SignalRecord, decode_stored
from services.feedback.metrics import ROUTES, URGENCIES, FeedbackMetrics
from services.feedback.replies import Replies
from services.feedback.retention import RetentionPolicy
from services.feedback.retention import due as retention_due
from services.feedback.sla_config import SlaConfig, sla_config_for
from shared.erasure import Actor, erase
from shared.events import SignalErasureRequested, SlaCheckRequested, deterministic_id, make_event, source_urn, utcnow
from shared.faust_compat import faust_ready
from shared.kafka import send_and_wait
from shared.keystore import Headers, KeyStore
from shared.municipality import Municipality
from shared.record_loop import LINGER_S, Publish, RecordLoop, produce_all
from shared.topics import LIFECYCLE_REQUESTS, PRIVACY_ERASURES, SIGNALS_ASSIGNED, SIGNALS_LIFECYCLE_DLQ

log = structlog.get_logger(__name__)


@dataclass
class FeedbackCore:
    """The lifecycle table, the agent that writes it, and the answers HTTP requests wait for."""

    app: faust.App
    municipality: Municipality
    metrics: FeedbackMetrics
    partitions: int
    replies: Replies
    keys: KeyStore
    sweep_interval_s: float = 30.0
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    retention_interval_s: float = 600.0
    linger_s: float = LINGER_S
    calendar: DutchCalendar = field(init=False)
    sla: SlaConfig = field(init=False)
    table: TableT = field(init=False)
    loop: RecordLoop = field(init=False)
    decisions: FeedbackDecisions = field(init=False)
    index: DueIndex = field(default_factory=DueIndex)
    erasing: dict[str, float] = field(default_factory=dict)  # signal id -> monotonic time the sweep erased it

    def __post_init__(self) -> None:
        self.calendar = calendar_for(self.municipality)
        self.sla = sla_config_for(self.municipality)
        self.table = self.app.Table(STATE, default=None, partitions=self.partitions, key_type=bytes, value_type=bytes)
        self.decisions = FeedbackDecisions(self.municipality, self.calendar, self.sla, self.metrics,
                                           self.replies.resolve, worker_id=self.replies.worker_id,
                                           written=self.index.update, forget_keys=self.keys.forget)
        self.loop = RecordLoop(self.app, service="feedback", metrics=self.metrics.hop,
                               dlq_topic=SIGNALS_LIFECYCLE_DLQ.name,
                               tables={STATE: self.table},
                               linger_s=self.linger_s)
        topic = self.app.topic(
            SIGNALS_ASSIGNED.name, LIFECYCLE_REQUESTS.name, PRIVACY_ERASURES.name, key_type=bytes, value_type=bytes,
            key_serializer="raw", value_serializer="raw",
        )
        self.app.agent(topic, name="lifecycle", concurrency=1)(self._agent)
        self.app.timer(self.sweep_interval_s)(self.sweep)
        self.app.timer(self.retention_interval_s)(self.retention_sweep)
        self.app.task(self._listen_for_replies)
        self.app.task(self._follow_keys)

    async def _listen_for_replies(self) -> None:
        await self.replies.listen()

    async def _follow_keys(self) -> None:
        await self.keys.start()

    @property
    def checks_in_flight(self) -> dict[str, float]:
        """Signals a sweep asked to check (monotonic time of the ask) that the agent has not checked yet."""
        return self.decisions.checks_in_flight

    async def _agent(self, stream: faust.StreamT) -> None:
        await self.loop.run(stream, self.decisions.handle)

    def get(self, signal_id: str) -> SignalRecord | None:
        """The current record of a signal (this worker's partitions)."""
        raw = self.table.get(signal_id.encode())
        stored = decode_stored(raw) if raw else None
        return stored if isinstance(stored, SignalRecord) else None

    async def sweep(self) -> None:
        """Timer: ask the agent to check every signal of this worker with an emission due (survives restarts).

        A signal asked about is not asked again for three sweep intervals, so a lost answer cannot hold it
        back for long.
        """
        if not faust_ready(self.app):
            return
        self._index_current()
        now = utcnow()
        patience = 3 * self.sweep_interval_s
        asks: list[Publish] = []
        for signal_id in self.index.due(now):
            since = self.checks_in_flight.get(signal_id)
            if since is not None and time.monotonic() - since < patience:
                continue
            request = SlaCheckRequested(signal_id=signal_id, attempt=self.index.attempt.get(signal_id, 1),
                                        requested_at=now)
            event = make_event(request, source=source_urn("feedback"), subject=signal_id)
            # Marked before the send: the agent may handle the check while this coroutine awaits the acks.
            self.checks_in_flight[signal_id] = time.monotonic()
            asks.append(Publish.event(LIFECYCLE_REQUESTS.name, key=signal_id, event=event))
        await produce_all(self.app, asks)
        if asks:
            self.metrics.hop.produced.labels(topic=LIFECYCLE_REQUESTS.name).inc(len(asks))
            log.info("sla_sweep_requested_checks", signals=len(asks))

    async def retention_sweep(self) -> int:
        """Timer: erase this worker's signals past their retention term, the way an erasure on request does.

        The keys of the due signals get tombstones, a SubjectErased per child goes out (reason `retention`) and
        the agent replaces each record by a content-free stub. The gauge says how many are due and not erased
        yet. Each run also writes the key topic's heartbeat, so its last segment rolls and compaction reaches
        the newest tombstones within the topic's bound.
        """
        if not faust_ready(self.app):
            return 0
        now = utcnow()
        records = [stored for raw in list(self.table.values()) if raw
                   if isinstance(stored := decode_stored(raw), SignalRecord)]
        due = retention_due(records, now=now, policy=self.retention)
        self.metrics.retention_due.set(len(due))
        patience = 3 * self.retention_interval_s
        started = time.monotonic()
        self.erasing = {k: v for k, v in self.erasing.items() if started - v < patience}
        by_subject: dict[str | None, list[str]] = {}
        for record in due:
            if record.signal_id not in self.erasing:
                by_subject.setdefault(record.subject_key, []).append(record.signal_id)
        actor = Actor(partner_id="schakel", on_behalf_of="retention", service="feedback")
        for subject, signal_ids in by_subject.items():
            for signal_id in signal_ids:
                self.erasing[signal_id] = started
            if subject is None:  # from before per-child keys: no key to destroy, the record still goes
                await self._erase_rows(signal_ids, now)
                continue
            await erase(keys=self.keys, send=self.send, subject_key=subject, signal_ids=signal_ids,
                        reason="retention", actor=actor, source=source_urn("feedback"), at=now)
        await self.keys.heartbeat()
        erased = sum(len(ids) for ids in by_subject.values())
        if erased:
            log.info("retention_sweep_erased", signals=erased, subjects=len(by_subject))
        return erased

    async def _erase_rows(self, signal_ids: list[str], now: datetime) -> None:
        records = []
        for signal_id in signal_ids:
            asked = SignalErasureRequested(erasure_id=deterministic_id("retention", signal_id), signal_id=signal_id,
                                           reason="retention", requested_at=now)
            event = make_event(asked, source=source_urn("feedback"), subject=signal_id,
                               event_id=deterministic_id("erasure-request", asked.erasure_id, signal_id))
            records.append(Publish.event(LIFECYCLE_REQUESTS.name, key=signal_id, event=event))
        await produce_all(self.app, records)

    async def send(self, topic: str, key: bytes, value: bytes | None, headers: Headers = ()) -> None:
        """Produce one record (None: a tombstone) and wait for the ack."""
        await send_and_wait(self.app, topic=topic, key=key, value=value,  # type: ignore[arg-type] # None: tombstone
                            headers=list(headers))
        self.metrics.hop.produced.labels(topic=topic).inc()

    def _index_current(self) -> None:
        """Build the index again from the table when this worker's partitions changed (and at the start)."""
        assignment = frozenset(self.app.consumer.assignment())
        if self.index.built_for != assignment:
            self.index.rebuild(list(self.table.values()), assignment=assignment)
            log.info("sla_index_built", signals=len(self.index.open), due=len(self.index.next_due))

    def update_open_gauge(self) -> None:
        """Count open signals by route and urgency (from the index)."""
        if not faust_ready(self.app):
            return
        self._index_current()
        counts = self.index.open_counts()
        for route in ROUTES:
            for urgency in URGENCIES:
                self.metrics.open.labels(route=route, urgency=urgency).set(counts.get((route, urgency), 0))
