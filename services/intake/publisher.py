"""Publishing to Kafka: connect in the background, wait for every ack, BrokerUnavailable while the broker is away."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata

from services.intake.settings import IntakeSettings
from shared.retry import retry_with_backoff, stopped_on_error

log = structlog.get_logger(__name__)
LINGER_MS = 2


class BrokerUnavailable(RuntimeError):
    """Kafka did not acknowledge the write in time; nothing may be reported as accepted."""


class Publisher:
    """An idempotent acks=all producer that (re)connects by itself."""

    def __init__(self, settings: IntakeSettings, *, send_timeout_s: float | None = None) -> None:
        self.settings = settings
        self.send_timeout_s = send_timeout_s or settings.intake_send_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        """Whether a producer is connected."""
        return self._producer is not None

    async def start(self) -> None:
        """Begin connecting in the background; HTTP is served meanwhile."""
        self._task = asyncio.create_task(self._connect_forever())

    def _create(self) -> AIOKafkaProducer:
        # The producer gives up on a batch about when we stop waiting for it, so a record answered
        # with 503 is rarely written afterwards (a retry with the same Idempotency-Key is safe anyway).
        timeout_ms = int(self.send_timeout_s * 1000)
        # A short linger puts the claims, signals and answers of concurrent requests into one produce request.
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, enable_idempotence=True, acks="all",
            request_timeout_ms=max(timeout_ms, 1000), retry_backoff_ms=200, client_id="schakel-intake",
            linger_ms=LINGER_MS,
        )

    async def _connect_forever(self) -> None:
        self._producer = await retry_with_backoff(self._start_producer, event="kafka_not_reachable",
                                                  errors=(KafkaError,))
        log.info("kafka_producer_connected")

    async def _start_producer(self) -> AIOKafkaProducer:
        async with stopped_on_error(self._create()) as producer:
            await producer.start()
        return producer

    async def stop(self) -> None:
        """Flush and close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), timeout=self.send_timeout_s)

    async def publish(
        self, *, topic: str, key: str | bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> RecordMetadata:
        """Write one record and wait for the broker's ack; BrokerUnavailable otherwise."""
        if self._producer is None:
            raise BrokerUnavailable("not connected to Kafka yet")
        raw_key = key.encode() if isinstance(key, str) else key
        producer = self._producer
        try:
            return await asyncio.wait_for(
                producer.send_and_wait(topic, value=value, key=raw_key, headers=headers),
                timeout=self.send_timeout_s,
            )
        except (TimeoutError, KafkaError) as exc:
            log.warning("kafka_write_failed", topic=topic, error=type(exc).__name__)
            self._replace(producer)
            raise BrokerUnavailable(type(exc).__name__) from exc

    def _replace(self, failed: AIOKafkaProducer) -> None:
        """Drop a producer whose write failed and connect a fresh one.

        After a timed-out write the idempotent producer's sequence numbers can run ahead of the broker's
        (OutOfOrderSequenceNumber for every later write); a new producer gets a new producer id.
        """
        if self._producer is not failed:
            return
        self._producer = None
        closing = asyncio.create_task(self._close_quietly(failed))
        self._background.add(closing)
        closing.add_done_callback(self._background.discard)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._connect_forever())

    async def _close_quietly(self, producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), timeout=self.send_timeout_s)
