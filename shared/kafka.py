"""Kafka plumbing: the faust app factory, the per-record loop with dead letters, producers."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import faust
import structlog
from pydantic import ValidationError

from shared import faust_fixes
from shared.events import CloudEvent, Contract, UndecodableRecord, decode_event, encode_event
from shared.metrics import HopMetrics
from shared.settings import Settings

log = structlog.get_logger(__name__)

Handler = Callable[[CloudEvent, Contract, bytes | None], Awaitable[None]]


def create_faust_app(name: str, settings: Settings, *, store: str | None = None) -> faust.App:
    """A faust app configured the Schakel way (RocksDB, earliest, no web server, few partitions)."""
    faust_fixes.install()
    datadir: Path = settings.service_state_dir(name) / "faust"
    return faust.App(
        f"schakel-{name}",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=store or "rocksdb://",
        datadir=str(datadir),
        web_enabled=False,
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        table_standby_replicas=0,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        # A crashed member is noticed within 10 s, so a restarted worker rejoins quickly.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        key_serializer="raw",
        value_serializer="raw",
    )


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    """A topic of raw bytes; decoding is ours (shared.events), never faust's models."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def provenance_headers(*, topic: str, partition: int, offset: int, code: str, service: str) -> list[tuple[str, bytes]]:
    """Headers that say where a dead letter came from and why."""
    return [
        ("schakel-original-topic", topic.encode()),
        ("schakel-original-partition", str(partition).encode()),
        ("schakel-original-offset", str(offset).encode()),
        ("schakel-error-code", code.encode()),
        ("schakel-dead-lettered-by", service.encode()),
    ]


async def send_and_wait(
    app: faust.App, *, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None
) -> None:
    """Produce one record and wait for the broker's acknowledgement."""
    producer = await app.maybe_start_producer()
    await producer.send_and_wait(topic, key, value, partition=None, timestamp=None, headers=headers)


async def publish(app: faust.App, metrics: HopMetrics, *, topic: str, key: str, event: CloudEvent) -> None:
    """Send an event, wait for the ack, count it."""
    await send_and_wait(app, topic=topic, key=key.encode(), value=encode_event(event))
    metrics.produced.labels(topic=topic).inc()


def fatal(exc: BaseException) -> None:
    """A bug or a broken dependency: stop the process so the supervisor restarts it.

    The record being processed is not acknowledged, so it is read again after the restart.
    """
    log.critical("fatal_error_stopping_worker", error=type(exc).__name__, exc_info=exc)
    os._exit(70)


class RecordLoop:
    """Reads a stream record by record: decode, handle, dead-letter the bad ones, count."""

    def __init__(self, app: faust.App, *, service: str, metrics: HopMetrics, dlq_topic: str) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics
        self.dlq_topic = dlq_topic
        self.processed = metrics.processed

    async def run(self, stream: Any, handler: Handler) -> None:
        """Consume until the stream ends; never lets a bad record stop or skip silently.

        Acks are manual: a record counts as handled (and its offset may be committed) only after its handler
        finished. faust's own stream acks the current record when the agent is stopped in the middle of it
        (a SIGTERM during an SMTP retry), and the shutdown commit would then skip a record never handled.
        """
        manual = stream.noack()
        async for event in manual.events():
            message = event.message
            started = time.perf_counter()
            self.metrics.consumed.labels(topic=message.topic).inc()
            self.metrics.busy += 1
            try:
                await self._handle(event, handler)
            finally:
                self.metrics.busy -= 1
            await manual.ack(event)
            self.metrics.last_progress = time.monotonic()
            self.processed[(message.topic, message.partition)] = message.offset
            self.metrics.duration.labels(topic=message.topic).observe(time.perf_counter() - started)

    async def _handle(self, event: Any, handler: Handler) -> None:
        message = event.message
        try:
            envelope, data = decode_event(event.value)
        except UndecodableRecord as exc:
            await self.dead_letter(message, exc.code)
            return
        try:
            await handler(envelope, data, event.key)
        except UndecodableRecord as exc:
            await self.dead_letter(message, exc.code)
        except ValidationError:
            # The record parsed but its values break a downstream contract: bad data, not a bug.
            await self.dead_letter(message, "unprocessable_record")
        except Exception as exc:  # a bug or a dependency: crash, do not skip
            fatal(exc)

    async def dead_letter(self, message: Any, code: str) -> None:
        """Write the original record with provenance to the dead-letter topic, awaited."""
        headers = provenance_headers(
            topic=message.topic, partition=message.partition, offset=message.offset, code=code, service=self.service
        )
        await send_and_wait(self.app, topic=self.dlq_topic, key=message.key, value=message.value or b"",
                            headers=headers)
        self.metrics.dead_letters.labels(topic=message.topic, reason=code).inc()
        self.metrics.produced.labels(topic=self.dlq_topic).inc()
        log.warning("record_dead_lettered", topic=message.topic, partition=message.partition,
                    offset=message.offset, code=code)


def update_lag(app: faust.App, metrics: HopMetrics) -> int:
    """Lag per partition of every topic the service consumes (not faust's changelogs); returns the total."""
    total = 0
    consumer = getattr(app, "_consumer", None)
    if consumer is None:
        return total
    committed = getattr(consumer, "_committed_offset", {})
    for tp in consumer.assignment():
        if tp.topic not in metrics.consumes:
            continue
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        done = metrics.processed.get((tp.topic, tp.partition))
        next_offset = done + 1 if done is not None else committed.get(tp)
        if next_offset is None:
            next_offset = 0  # a group that never committed reads from the earliest offset
        lag = max(highwater - next_offset, 0)
        metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
        total += lag
    return total


def is_stalled(*, busy: bool, ready: bool, lag: int, idle_s: float, after_s: float) -> bool:
    """Records wait, no handler runs, the app is ready, and nothing was finished for `after_s` seconds."""
    return not busy and ready and lag > 0 and idle_s > after_s


def check_stalled(app: faust.App, metrics: HopMetrics, *, lag: int, after_s: float) -> None:
    """Exit (to be restarted) when the consumer stopped delivering while records wait.

    faust can stop delivering records after a rebalance or recovery without any error (faust-streaming
    #629, #651). A record being handled (e.g. an e-mail waiting for SMTP) is progress, not a stall.
    """
    now = time.monotonic()
    ready = faust_ready(app)
    if metrics.busy or not ready:
        metrics.last_progress = now
        return
    idle_s = now - metrics.last_progress
    if lag > 0 and idle_s > after_s / 4:
        log.warning("consumer_idle_with_lag", lag=lag, idle_s=round(idle_s, 1), **consumer_state(app))
    if is_stalled(busy=bool(metrics.busy), ready=ready, lag=lag, idle_s=idle_s, after_s=after_s):
        log.critical("consumer_stalled", lag=lag, idle_s=round(idle_s, 1))
        os._exit(75)


def _tp_names(tps: Iterable[Any] | None) -> list[str]:
    return sorted(f"{tp.topic}:{tp.partition}" for tp in (tps or ()))


def _by_tp(offsets: dict[Any, Any]) -> dict[str, Any]:
    return {f"{tp.topic}:{tp.partition}": offset for tp, offset in offsets.items()}


def consumer_state(app: faust.App) -> dict[str, Any]:
    """What faust's consumer and aiokafka believe about each partition, for diagnosing a stall."""
    try:
        consumer: Any = app.consumer
        state: dict[str, Any] = {
            "flow_active": consumer.flow_active,
            "in_recovery": app.in_recovery,
            "active": _tp_names(consumer._active_partitions),
            "paused": _tp_names(consumer._paused_partitions),
            "buffered": _tp_names(consumer._buffered_partitions),
            "unacked": len(consumer._unacked_messages),
            "read_offset": _by_tp(consumer._read_offset),
            "committed": _by_tp(consumer._committed_offset),
        }
        inner = consumer._thread._consumer
        if inner is not None:
            state["aiokafka_paused"] = _tp_names(inner.paused())
            state["positions"] = _by_tp({tp: inner._subscription.subscription.assignment.state_value(tp).position
                                         for tp in inner.assignment()})
    except Exception as exc:  # diagnostics must never break the watch
        return {"state_error": repr(exc)}
    return state


def faust_internal_topics(app: faust.App) -> list[tuple[str, int, dict[str, str]]]:
    """faust's own topics (table changelogs, internal repartition topics): name, partitions, config."""
    default = app.conf.topic_partitions
    topics = [
        (f"{app.conf.id}-{table.name}-changelog", table.partitions or default, {"cleanup.policy": "compact"})
        for table in app.tables.values()
    ]
    for agent in app.agents.values():
        channel = agent.channel
        if getattr(channel, "internal", False):
            for name in channel.topics:
                topics.append((name, channel.partitions or default, {}))
    return topics


def create_missing_topics(
    bootstrap: str, topics: Iterable[tuple[str, int, dict[str, str]]], *, client_id: str
) -> list[str]:
    """Create the topics (name, partitions, config) that do not exist yet; return the names created.

    Idempotent: a topic another process created meanwhile counts as done.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t[0] not in existing]
        for name, partitions, config in missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config)])
        return [name for name, _, _ in missing]
    finally:
        admin.close()


def ensure_faust_topics(app: faust.App, bootstrap: str) -> list[str]:
    """Create faust's topics before faust starts, so their metadata is complete from the first fetch.

    Without this faust creates a changelog topic while starting and its consumer may still see it with
    0 partitions at the first table write, which raises PartitionsMismatch and stops the worker.
    """
    return create_missing_topics(bootstrap, faust_internal_topics(app), client_id=f"{app.conf.id}-bootstrap")


def faust_ready(app: faust.App) -> bool:
    """Started, assigned, not rebalancing, and tables recovered."""
    try:
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]  # faust: not on TableManagerT
    except Exception:  # not built yet
        return False
    return bool(app.started and not app.rebalancing and recovered)

