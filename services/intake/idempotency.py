"""Durable idempotency across restarts and processes (ADR 0005): claim on a compacted topic, first claim wins."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.intake.ledger import Claim, Done, Ledger, claim_record, done_record, release_record
from services.intake.publisher import BrokerUnavailable, Publisher
from shared.metrics import HopMetrics
from shared.retry import retry_with_backoff, stopped_on_error
from shared.settings import Settings
from shared.topics import INTAKE_IDEMPOTENCY

log = structlog.get_logger(__name__)


class IdempotencyStore:
    """Tails intake.idempotency into a Ledger; writes claims, releases and answers through the publisher."""

    def __init__(self, settings: Settings, publisher: Publisher, *, topic: str = INTAKE_IDEMPOTENCY.name,
                 hop: HopMetrics | None = None) -> None:
        self.hop = hop
        self.settings = settings
        self.publisher = publisher
        self.topic = topic
        self.lease_s = settings.intake_claim_lease_s
        self.ledger = Ledger()
        self.recovered = False
        self.position = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Begin reading the whole topic in the background; not ready until caught up."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop tailing."""
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
                applied += 1
                self._count("consumed")
            self.position = await consumer.position(tp)
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
        """The recorded answer of a slot."""
        return self.ledger.done.get(slot)

    def active_claim(self, slot: str) -> Claim | None:
        """The claim that holds a slot right now, if its lease has not run out."""
        claim = self.ledger.claims.get(slot)
        if claim is None or claim.expired(time.time()):
            return None
        return claim

    async def claim(self, slot: str, *, fingerprint: str) -> str | None:
        """Write a claim and read the log up to it; the claim id when this claim owns the slot, else None."""
        claim_id = str(uuid.uuid4())
        key, value = claim_record(slot, claim_id=claim_id, fingerprint=fingerprint, at=time.time(),
                                  lease_s=self.lease_s)
        metadata = await self.publisher.publish(topic=self.topic, key=key, value=value)
        self._count("produced")
        caught_up = await self.wait_for(lambda: self.position > metadata.offset,
                                        timeout=self.publisher.send_timeout_s)
        if not caught_up:
            raise BrokerUnavailable("the idempotency log did not catch up")
        owner = self.ledger.claims.get(slot)
        won = owner is not None and owner.claim_id == claim_id and slot not in self.ledger.done
        return claim_id if won else None

    async def complete(self, slot: str, *, claim_id: str, fingerprint: str, response: dict[str, object]) -> None:
        """Record the answer so every later request under the key replays it."""
        key, value = done_record(slot, claim_id=claim_id, fingerprint=fingerprint, response=response)
        await self.publisher.publish(topic=self.topic, key=key, value=value)
        self._count("produced")

    async def release(self, slot: str, *, claim_id: str) -> None:
        """Give a slot up after a failed publish, so a retry need not wait for the lease (best effort)."""
        key, value = release_record(slot, claim_id=claim_id)
        with contextlib.suppress(BrokerUnavailable):
            await self.publisher.publish(topic=self.topic, key=key, value=value)
            self._count("produced")

    def _count(self, direction: str) -> None:
        if self.hop is not None:
            counter = self.hop.consumed if direction == "consumed" else self.hop.produced
            counter.labels(topic=self.topic).inc()
