"""Any feedback worker answers for any signal (ADR 0015).

A worker reads a signal from its own table when it owns the signal's partition; otherwise it asks the owner
through `signals.lifecycle.requests` (keyed by signal id, so the request lands on the owner and is handled
in order with the signal's other records) and waits for the owner's `LifecycleReplied` on
`signals.lifecycle.replies`. Every worker reads the whole replies topic from its end (no consumer group)
and takes the answers addressed to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from dataclasses import dataclass, field

import faust
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from faust.types import TP

from services.feedback.decisions import Answer
from services.feedback.lifecycle import Refusal, SignalRecord
from shared.events import LifecycleReplied, UndecodableRecord, decode_as
from shared.faust_compat import faust_ready
from shared.retry import retry_with_backoff
from shared.topics import LIFECYCLE_REPLIES, LIFECYCLE_REQUESTS

log = structlog.get_logger(__name__)


def new_worker_id() -> str:
    """An id for this process, unique among the workers (host, pid and a random part)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def partition_of(signal_id: str, partitions: int = LIFECYCLE_REQUESTS.partitions) -> int:
    """The partition Kafka's default partitioner gives a record keyed by this signal id."""
    return (murmur2(signal_id.encode()) & 0x7FFFFFFF) % partitions


def owns(app: faust.App, signal_id: str) -> bool:
    """Whether this worker owns the signal's partition and its table is recovered (it can answer locally)."""
    if not faust_ready(app):
        return False
    return TP(LIFECYCLE_REQUESTS.name, partition_of(signal_id)) in app.consumer.assignment()


def answer_of(reply: LifecycleReplied) -> Answer:
    """The answer a reply carries."""
    current = SignalRecord.model_validate(reply.record) if reply.record is not None else None
    if reply.refusal_status is not None:
        return Answer(Refusal(reply.refusal_status, reply.refusal_code or "", reply.refusal_message or ""), current)
    if current is None:
        return Answer(Refusal(404, "signal_not_found", ""), None)
    return Answer(current, current)


@dataclass
class Replies:
    """The requests this worker waits for, and the listener for the answers other workers send it."""

    bootstrap: str
    worker_id: str = field(default_factory=new_worker_id)
    pending: dict[str, asyncio.Future[Answer]] = field(default_factory=dict)
    _listening: asyncio.Event | None = None

    def expect(self, request_id: str) -> asyncio.Future[Answer]:
        """A future for the answer to a request about to be sent."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        """The request gave up waiting."""
        self.pending.pop(request_id, None)

    def resolve(self, request_id: str, answer: Answer) -> None:
        """Hand an answer to the request waiting for it, if any (a late or foreign answer is dropped)."""
        future = self.pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(answer)

    @property
    def listening(self) -> asyncio.Event:
        """Set once the listener reads the replies topic from its end."""
        if self._listening is None:
            self._listening = asyncio.Event()
        return self._listening

    async def listen(self) -> None:
        """Read the replies topic until cancelled; resolve the answers addressed to this worker.

        A broken connection is logged and the consumer started again from the end; requests waiting
        meanwhile time out (503) rather than the worker stopping over its answers channel.
        """
        tps = [TopicPartition(LIFECYCLE_REPLIES.name, p) for p in range(LIFECYCLE_REPLIES.partitions)]
        while True:
            consumer = await retry_with_backoff(lambda: self._start(tps), event="kafka_not_reachable")
            self.listening.set()
            log.info("lifecycle_replies_listening", worker=self.worker_id)
            try:
                while True:
                    batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                    for records in batches.values():
                        for record in records:
                            self._take(record.value)
            except KafkaError as exc:
                log.error("lifecycle_replies_failed", error=type(exc).__name__)
                self.listening.clear()
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _start(self, tps: list[TopicPartition]) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    client_id=f"schakel-feedback-replies-{self.worker_id}")
        await consumer.start()
        try:
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)  # fixes the position now: answers from here on are seen
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    def _take(self, value: bytes | None) -> None:
        try:
            _, reply = decode_as(value, LifecycleReplied)
        except UndecodableRecord as exc:
            log.warning("lifecycle_reply_undecodable", code=exc.code)
            return
        if reply.reply_to == self.worker_id:
            self.resolve(reply.request_id, answer_of(reply))
