"""The port between feedback's HTTP side and the signals: read one, ask for a change, wherever its owner runs."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import structlog

from services.feedback.agents import FeedbackCore
from services.feedback.decisions import Answer
from services.feedback.lifecycle import SignalRecord
from services.feedback.replies import owns
from shared.events import (
    Contract,
    LifecycleRequested,
    SignalReadRequested,
    deterministic_id,
    make_event,
    source_urn,
    utcnow,
)
from shared.kafka import send_event_and_wait
from shared.topics import LIFECYCLE_REQUESTS

log = structlog.get_logger(__name__)
REQUEST_TIMEOUT_S = 15.0


@dataclass
class SignalPort:
    """What the HTTP side may do with a signal; raises TimeoutError when no owner answers in time."""

    core: FeedbackCore

    def is_local(self, signal_id: str) -> bool:
        """Whether this worker owns the signal's partition (its table holds the signal, if it exists)."""
        return owns(self.core.app, signal_id)

    async def read(self, signal_id: str) -> SignalRecord | None:
        """A signal's record: from this worker's table if it owns the signal, else from its owner."""
        if self.is_local(signal_id):
            return self.core.get(signal_id)
        request_id = str(uuid.uuid4())
        asked = SignalReadRequested(request_id=request_id, signal_id=signal_id,
                                    reply_to=self.core.replies.worker_id, requested_at=utcnow())
        answer = await self._ask(request_id, signal_id, asked, event_id=deterministic_id("lifecycle-read", request_id))
        log.info("signal_read_from_owner", signal_id=signal_id, found=answer.current is not None)
        return answer.current

    async def request(self, asked: LifecycleRequested) -> Answer:
        """Ask the owner's agent for a change and wait for its answer."""
        return await self._ask(asked.request_id, asked.signal_id, asked,
                               event_id=deterministic_id("lifecycle-request", asked.request_id))

    async def _ask(self, request_id: str, signal_id: str, asked: Contract, *, event_id: str) -> Answer:
        replies = self.core.replies
        future = replies.expect(request_id)
        event = make_event(asked, source=source_urn("feedback"), subject=signal_id, event_id=event_id)
        try:
            await asyncio.wait_for(replies.listening.wait(), timeout=REQUEST_TIMEOUT_S)
            await asyncio.wait_for(send_event_and_wait(self.core.app, topic=LIFECYCLE_REQUESTS.name,
                                                       key=signal_id.encode(), event=event),
                                   timeout=REQUEST_TIMEOUT_S)
            self.core.metrics.hop.produced.labels(topic=LIFECYCLE_REQUESTS.name).inc()
            return await asyncio.wait_for(future, timeout=REQUEST_TIMEOUT_S)
        except TimeoutError:
            replies.forget(request_id)
            raise
