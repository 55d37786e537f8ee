"""Feedback's agent and timer: a record loop around services.feedback.decisions, and the SLA sweep."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import faust
import structlog
from faust.types import TableT

from services.feedback.calendar import DutchCalendar
from services.feedback.deadlines import calendar_for
from services.feedback.decisions import STATE, FeedbackDecisions
from services.feedback.index import DueIndex
from services.feedback.lifecycle import SignalRecord
from services.feedback.metrics import ROUTES, URGENCIES, FeedbackMetrics
from services.feedback.replies import Replies
from services.feedback.sla_config import SlaConfig, sla_config_for
from shared.events import SlaCheckRequested, make_event, source_urn, utcnow
from shared.faust_compat import faust_ready
from shared.municipality import Municipality
from shared.record_loop import LINGER_S, Publish, RecordLoop, produce_all
from shared.topics import LIFECYCLE_REQUESTS, SIGNALS_ASSIGNED, SIGNALS_LIFECYCLE_DLQ

log = structlog.get_logger(__name__)


@dataclass
class FeedbackCore:
    """The lifecycle table, the agent that writes it, and the answers HTTP requests wait for."""

    app: faust.App
    municipality: Municipality
    metrics: FeedbackMetrics
    partitions: int
    replies: Replies
    sweep_interval_s: float = 30.0
    linger_s: float = LINGER_S
    calendar: DutchCalendar = field(init=False)
    sla: SlaConfig = field(init=False)
    table: TableT = field(init=False)
    loop: RecordLoop = field(init=False)
    decisions: FeedbackDecisions = field(init=False)
    index: DueIndex = field(default_factory=DueIndex)

    def __post_init__(self) -> None:
        self.calendar = calendar_for(self.municipality)
        self.sla = sla_config_for(self.municipality)
        self.table = self.app.Table(STATE, default=None, partitions=self.partitions, key_type=bytes, value_type=bytes)
        self.decisions = FeedbackDecisions(self.municipality, self.calendar, self.sla, self.metrics,
                                           self.replies.resolve, worker_id=self.replies.worker_id,
                                           written=self.index.update)
        self.loop = RecordLoop(self.app, service="feedback", metrics=self.metrics.hop,
                               dlq_topic=SIGNALS_LIFECYCLE_DLQ.name,
                               tables={STATE: self.table},
                               linger_s=self.linger_s)
        topic = self.app.topic(
            SIGNALS_ASSIGNED.name, LIFECYCLE_REQUESTS.name, key_type=bytes, value_type=bytes,
            key_serializer="raw", value_serializer="raw",
        )
        self.app.agent(topic, name="lifecycle", concurrency=1)(self._agent)
        self.app.timer(self.sweep_interval_s)(self.sweep)
        self.app.task(self._listen_for_replies)

    async def _listen_for_replies(self) -> None:
        await self.replies.listen()

    @property
    def checks_in_flight(self) -> dict[str, float]:
        """Signals a sweep asked to check (monotonic time of the ask) that the agent has not checked yet."""
        return self.decisions.checks_in_flight

    async def _agent(self, stream: faust.StreamT) -> None:
        await self.loop.run(stream, self.decisions.handle)

    def get(self, signal_id: str) -> SignalRecord | None:
        """The current record of a signal (this worker's partitions)."""
        raw = self.table.get(signal_id.encode())
        return SignalRecord.model_validate_json(raw) if raw else None

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
