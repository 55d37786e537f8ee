"""Durable idempotency across restarts and processes (ADR 0005): claim on a compacted topic, first claim wins."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.intake.answers import PendingAnswers, claim_wins
from services.intake.ledger import Claim, Done, Ledger, claim_record, done_record, release_record
from services.intake.publisher import BrokerUnavailable, Publisher
from services.intake.settings import IntakeSettings
from shared.events import JSON_HEADERS
from shared.metrics import HopMetrics
from shared.retry import retry_with_backoff, stopped_on_error
from shared.topics import INTAKE_IDEMPOTENCY

log = structlog.get_logger(__name__)
# How long an answer waits for the next claim, so that both go to the broker in one produce request (the
# producer's linger puts records sent within a few milliseconds into one batch of the ledger's partition).
ANSWER_RIDES_WITH_NEXT_CLAIM_S = 0.05


@dataclass(frozen=True)
class Won:
    """A claim that owns its slot; `first_attempt` when no claim for the slot came before it in the log."""

    claim_id: str
    first_attempt: bool


class IdempotencyStore:
    """Tails intake.idempotency into a Ledger; writes claims, releases and answers through the publisher."""

    def __init__(self, settings: IntakeSettings, publisher: Publisher, *, topic: str = INTAKE_IDEMPOTENCY.name,
                 hop: HopMetrics | None = None) -> None:
        self.hop = hop
        self.settings = settings
        self.publisher = publisher
        self.topic = topic
        self.lease_s = settings.intake_claim_lease_s
        self.ledger = Ledger()
        self.recovered = False
        self.position = 0
        self.answers = PendingAnswers()
        self._writes: set[asyncio.Task[None]] = set()
        self._next_claim = asyncio.Event()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Begin reading the whole topic in the background; not ready until caught up."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Write the answers still on their way (bounded by the send timeout), then stop tailing."""
        self._send_waiting_answers()
        if self._writes:
            _, pending = await asyncio.wait(set(self._writes), timeout=self.publisher.send_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("idempotency_answers_not_recorded_at_stop", count=len(pending))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()

    async def _connect(self) -> tuple[AIOKafkaConsumer, TopicPartition, int]:
        tp = TopicPartition(self.topic, 0)

        async def attempt() -> tuple[AIOKafkaConsumer, TopicPartition, int]:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", client_id="schakel-intake-idempotency", fetch_max_wait_ms=200,
            )
            async with stopped_on_error(consumer):
                await consumer.start()
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                end = (await consumer.end_offsets([tp]))[tp]
            return consumer, tp, end

        return await retry_with_backoff(attempt, event="idempotency_log_not_reachable", errors=(KafkaError,))

    async def _run(self) -> None:
        consumer, tp, end = await self._connect()
        self._consumer = consumer
        started = time.perf_counter()
        applied = 0
        if end == 0:
            await self._mark_recovered(started, applied)
        while True:
            batch = await consumer.getmany(tp, timeout_ms=500)
            for record in batch.get(tp, []):
                self.ledger.apply(record.key, record.value)
                # Set with each record, no await in between: `position == n` means the ledger holds exactly
                # the records before offset n, which claim() relies on to decide without reading its own.
                self.position = record.offset + 1
                applied += 1
                self._count("consumed")
            self.answers.forget(self.ledger.done)
            self.position = max(self.position, await consumer.position(tp))
            if not self.recovered and self.position >= end:
                await self._mark_recovered(started, applied)
            async with self._changed:
                self._changed.notify_all()

    async def _mark_recovered(self, started: float, applied: int) -> None:
        self.recovered = True
        log.info("idempotency_log_recovered", records=applied, seconds=round(time.perf_counter() - started, 3))

    async def wait_for(self, predicate: Callable[[], bool], *, timeout: float) -> bool:
        """Wait until the ledger satisfies a predicate, re-checking at least every 0.25 s (for leases)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            async with self._changed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.25))
        return True

    def done(self, slot: str) -> Done | None:
        """The answer of a slot: read from the log, or given by this process and still on its way there."""
        return self.ledger.done.get(slot) or self.answers.get(slot)

    def active_claim(self, slot: str) -> Claim | None:
        """The claim that holds a slot right now, if its lease has not run out."""
        claim = self.ledger.claims.get(slot)
        if claim is None or claim.expired(time.time()):
            return None
        return claim

    async def claim(self, slot: str, *, fingerprint: str) -> Won | None:
        """Write a claim and read the log up to it; a Won when this claim owns the slot, else None."""
        claim = Claim(str(uuid.uuid4()), fingerprint, time.time(), self.lease_s)
        key, value = claim_record(slot, claim_id=claim.claim_id, fingerprint=fingerprint, at=claim.at,
                                  lease_s=claim.lease_s)
        self._send_waiting_answers()
        metadata = await self.publisher.publish(topic=self.topic, key=key, value=value, headers=list(JSON_HEADERS))
        self._count("produced")
        # Everything before the claim decides; the claim itself need not be read back (ADR 0005, point 4).
        caught_up = await self.wait_for(lambda: self.position >= metadata.offset,
                                        timeout=self.publisher.send_timeout_s)
        if not caught_up:
            raise BrokerUnavailable("the idempotency log did not catch up")
        read_past = self.position > metadata.offset
        if not claim_wins(self.ledger, slot=slot, claim=claim, read_past=read_past):
            return None
        # Counted over the log up to (and perhaps past) this claim: later claims only make it cautious.
        earlier = self.ledger.attempts.get(slot, 0) - (1 if read_past else 0)
        return Won(claim.claim_id, first_attempt=earlier <= 0)

    def complete_soon(self, slot: str, *, claim_id: str, fingerprint: str, response: dict[str, object]) -> None:
        """Record the answer in the background; this process replays it at once, the log once it is written.

        The `done` record goes out with the next claim, or after ANSWER_RIDES_WITH_NEXT_CLAIM_S without one:
        at a steady rate each answer then shares the next request's produce request (and the tailer's fetch)
        instead of costing one of its own.
        """
        self.answers.put(slot, Done(claim_id, fingerprint, dict(response)))
        task = asyncio.create_task(self._complete(slot, after=self._next_claim))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _send_waiting_answers(self) -> None:
        self._next_claim.set()
        self._next_claim = asyncio.Event()

    async def _complete(self, slot: str, *, after: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ANSWER_RIDES_WITH_NEXT_CLAIM_S):
                await after.wait()
        delay = 0.2
        while (answer := self.answers.unwritten(slot)) is not None:
            key, value = done_record(slot, claim_id=answer.claim_id, fingerprint=answer.fingerprint,
                                     response=answer.response)
            try:
                await self.publisher.publish(topic=self.topic, key=key, value=value, headers=list(JSON_HEADERS))
            except BrokerUnavailable:
                log.warning("idempotency_answer_not_recorded", signal_id=answer.response.get("signal_id"),
                            retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._count("produced")
            self.answers.written(slot)
            return

    async def release(self, slot: str, *, claim_id: str) -> None:
        """Give a slot up after a failed publish, so a retry need not wait for the lease (best effort)."""
        key, value = release_record(slot, claim_id=claim_id)
        with contextlib.suppress(BrokerUnavailable):
            await self.publisher.publish(topic=self.topic, key=key, value=value, headers=list(JSON_HEADERS))
            self._count("produced")

    def _count(self, direction: str) -> None:
        if self.hop is not None:
            counter = self.hop.consumed if direction == "consumed" else self.hop.produced
            counter.labels(topic=self.topic).inc()
