"""Kafka plumbing: the faust app factory and producing one record (the record loop is shared.record_loop)."""

from __future__ import annotations

import socket
from pathlib import Path

import faust

from shared import faust_compat
from shared.events import CLOUDEVENT_HEADERS, CloudEvent, encode_event
from shared.settings import Settings
from shared.tracing import trace_headers

PRODUCER_LINGER_S = 0.005
# Per partition. faust's default (16 KiB) holds about eleven `signals.assigned` records; aiokafka's `send` then
# waits until that batch is written, and it keeps one produce request in flight per broker, so a record loop
# batch of 150 records went out as about fourteen produce requests one after another (docs/benchmarks.md,
# "Produce batches of 512 KiB"). Below the broker's `message.max.bytes` (1 MiB) with room for the batch header.
PRODUCER_MAX_BATCH_BYTES = 512 * 1024


def create_faust_app(name: str, settings: Settings, *, store: str | None = None,
                     producer_linger_s: float = PRODUCER_LINGER_S) -> faust.App:
    """A faust app configured the Schakel way (RocksDB, earliest, no web server, few partitions)."""
    faust_compat.install()
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
        # The effects of records decided close together (a batch, the mails of a batch) share a produce request.
        producer_linger=producer_linger_s,
        producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        table_standby_replicas=0,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        # A crashed member is noticed within 10 s, so a restarted worker rejoins quickly.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        key_serializer="raw",
        value_serializer="raw",
        consumer_group_instance_id=group_instance_id(name, settings.worker_id),
    )


def group_instance_id(service: str, worker_id: str | None) -> str | None:
    """The static group member id of a worker (None: dynamic membership); `hostname` takes the host's name."""
    if not worker_id:
        return None
    return f"schakel-{service}-{socket.gethostname() if worker_id == 'hostname' else worker_id}"


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    """A topic of raw bytes; decoding is ours (shared.events), never faust's models."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


async def send_and_wait(
    app: faust.App, *, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None
) -> None:
    """Produce one record and wait for the broker's acknowledgement."""
    producer = await app.maybe_start_producer()
    await producer.send_and_wait(topic, key, value, partition=None, timestamp=None, headers=headers)


async def send_event_and_wait(app: faust.App, *, topic: str, key: bytes | None, event: CloudEvent) -> None:
    """Produce one CloudEvent in the binding's structured mode (content-type header) and wait for the ack."""
    await send_and_wait(app, topic=topic, key=key, value=encode_event(event),
                        headers=[*CLOUDEVENT_HEADERS, *trace_headers()])
