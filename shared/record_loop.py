"""The record loop every stream agent runs: a batch of ready records, a pure decision per record, the I/O together.

A handler gets one decoded record and a read-only view of the service's tables and returns `Effects`: the
records to publish, the table writes, and what to do once the batch is done (count, log, answer a waiting
HTTP request). The loop takes what is ready (up to `max_batch`), decides record by record — each handler
sees the table writes of the records before it in the batch — then carries the batch out:

  0. records read before a rebalance that is now under way or done are dropped, not acked: the partition's
     owner reads them again from the committed offset (faust does not stop an agent at a rebalance),
  1. an optional stage (notify: the e-mails, in parallel) that turns decisions into more effects,
  2. every publish of the batch sent without awaiting each one, then all awaited together,
  3. the table writes (after the records they describe were acknowledged by the broker), for the records that
     still belong to this worker (a rebalance may have come meanwhile),
  4. the answers (`answers`: records for requests another worker waits on), once the tables show them,
  5. the acks, and then the `after` callbacks.

Nothing is acked before its effects were confirmed, so a crash anywhere means the batch is read again;
handlers are idempotent (deterministic event ids, tables that remember what was done). Per-key order holds:
records are decided in offset order and sent in that order on one producer. A record that cannot be
decoded, or that breaks a downstream contract, becomes a dead letter with provenance (per record); any
other exception is a bug or a broken dependency and stops the worker (its batch is not acked).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
import structlog
from pydantic import ValidationError

from shared import faust_compat
from shared.events import (
    CLOUDEVENT_HEADERS,
    CloudEvent,
    Contract,
    UndecodableRecord,
    content_type_of,
    decode_event,
    encode_event,
)
from shared.metrics import HopMetrics, by_topic
from shared.tracing import handling, traced

log = structlog.get_logger(__name__)
MAX_BATCH = 500
LINGER_S = 0.005  # how long a batch that is not full waits once for more records (shared.faust_compat)


@dataclass(frozen=True)
class Publish:
    """A record to write to Kafka."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def event(cls, topic: str, *, key: str, event: CloudEvent) -> Publish:
        """A CloudEvent keyed by a text key, in the structured mode of the CloudEvents Kafka binding."""
        return cls(topic, key.encode(), encode_event(event), CLOUDEVENT_HEADERS)


@dataclass(frozen=True)
class TableWrite:
    """A value to store in one of the service's tables, by table name."""

    table: str
    key: Any
    value: Any


@dataclass
class Effects:
    """What handling a record requires; carried out by the loop."""

    publish: list[Publish] = field(default_factory=list)
    writes: list[TableWrite] = field(default_factory=list)
    answers: list[Publish] = field(default_factory=list)  # published once the tables are written
    after: list[Callable[[], None]] = field(default_factory=list)
    work: list[Any] = field(default_factory=list)  # for the loop's stage (notify: the e-mails to send)
    span: Any = None  # the span that handled the record (set by the loop; the stage's spans are its children)

    def add(self, other: Effects) -> Effects:
        """These effects followed by another's."""
        self.publish.extend(other.publish)
        self.writes.extend(other.writes)
        self.answers.extend(other.answers)
        self.after.extend(other.after)
        self.work.extend(other.work)
        return self


@dataclass(frozen=True)
class Incoming:
    """One decoded record."""

    envelope: CloudEvent
    data: Contract
    key: bytes | None
    topic: str


class TableView:
    """The service's tables as the handlers see them: the batch's pending writes first."""

    def __init__(self, tables: Mapping[str, Any]) -> None:
        self._tables = tables
        self._pending: dict[tuple[str, Any], Any] = {}

    def get(self, table: str, key: Any) -> Any:
        """The value a key has once the writes decided so far are made."""
        slot = (table, key)
        if slot in self._pending:
            return self._pending[slot]
        return self._tables[table].get(key)

    def stage(self, writes: list[TableWrite]) -> None:
        """Writes decided for a record, visible to the records after it."""
        for write in writes:
            self._pending[(write.table, write.key)] = write.value

    def clear(self) -> None:
        """The batch is done: its writes are in the tables."""
        self._pending.clear()


Handler = Callable[[Incoming, TableView], Effects]
Planned = list[tuple[Any, Effects]]
Stage = Callable[[Planned], Awaitable[None]]


def fatal(exc: BaseException) -> None:
    """A bug or a broken dependency: stop the process so the supervisor restarts it.

    The records being processed are not acknowledged, so they are read again after the restart.
    """
    log.critical("fatal_error_stopping_worker", error=type(exc).__name__, exc_info=exc)
    os._exit(70)


def provenance_headers(*, topic: str, partition: int, offset: int, code: str, service: str,
                       content_type: str | None = None) -> list[tuple[str, bytes]]:
    """Headers that say where a dead letter came from and why, and what its value is (the original's type)."""
    return [
        ("content-type", (content_type or "application/octet-stream").encode()),
        ("schakel-original-topic", topic.encode()),
        ("schakel-original-partition", str(partition).encode()),
        ("schakel-original-offset", str(offset).encode()),
        ("schakel-error-code", code.encode()),
        ("schakel-dead-lettered-by", service.encode()),
    ]


async def produce_all(app: faust.App, records: list[Publish]) -> None:
    """Send every record without awaiting each, then wait until the broker acknowledged them all."""
    if not records:
        return
    producer = await app.maybe_start_producer()
    pending = [await producer.send(r.topic, r.key, r.value, partition=None, timestamp=None,
                                   headers=list(r.headers) or None) for r in records]
    faust_compat.send_now(app)
    await asyncio.gather(*pending)


async def write_table(table: Any, key: Any, value: Any) -> None:
    """`table[key] = value` with its changelog record handed to the producer at once, not to faust's buffer.

    faust's buffer is drained by a task of its own, one record at a time, and while it holds more than 100
    records every delivery to a stream waits for it (`ProducerBuffer.wait_until_ebb`); a batch of 300 writes
    did that every batch. Call it in the context of the event the write belongs to (`as_current_event`).
    """
    await faust_compat.write_with_receipt(table, key, value)


async def write_tables(app: faust.App, writes: list[tuple[Any, Any, Any, Any]]) -> None:
    """Each `(table, key, value, event)` write of a batch, in order: batched per partition where faust's store
    allows (`faust_compat.write_batch`, RocksDB), else one `write_table` each in the event's context."""
    writable = {id(table): faust_compat.batch_writable(table) for table, *_ in writes}
    await faust_compat.write_batch(app, [write for write in writes if writable[id(write[0])]])
    for table, key, value, event in writes:
        if not writable[id(table)]:
            with faust_compat.as_current_event(event):
                await write_table(table, key, value)


class RecordLoop:
    """Reads a stream in batches: decide per record, carry out the batch's effects, then ack."""

    def __init__(self, app: faust.App, *, service: str, metrics: HopMetrics, dlq_topic: str,
                 tables: Mapping[str, Any] | None = None, stage: Stage | None = None,
                 max_batch: int = MAX_BATCH, linger_s: float = LINGER_S) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics
        self.dlq_topic = dlq_topic
        self.tables = dict(tables or {})
        self.stage = stage
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.processed = metrics.processed

    async def run(self, stream: Any, handler: Handler) -> None:
        """Consume until the stream ends; never lets a bad record stop or skip silently.

        Acks are manual: a record counts as handled (and its offset may be committed) only after its batch's
        effects were confirmed. faust's own stream would ack the current record when the agent is stopped in
        the middle of it (a SIGTERM during an SMTP retry), and the shutdown commit would skip it.
        """
        manual = stream.noack()
        async for events in faust_compat.ready_batches(manual, max_records=self.max_batch, linger_s=self.linger_s):
            await self.run_batch(manual, events, handler)

    async def run_batch(self, stream: Any, events: list[Any], handler: Handler) -> None:
        """Decide, carry out and ack one batch of events."""
        started = time.perf_counter()
        self.metrics.busy += 1
        try:
            view = TableView(self.tables)
            planned: Planned = []
            topics = by_topic(event.message.topic for event in events)
            for topic, count in topics.items():
                self.metrics.consumed_of(topic).inc(count)
            for event in events:
                effects = self._decide(event, handler, view)
                view.stage(effects.writes)
                planned.append((event, effects))
            await self._carry_out(planned)
            view.clear()
        except Exception as exc:  # a bug or a dependency: crash, do not skip
            fatal(exc)
        finally:
            self.metrics.busy -= 1
        for event, _ in planned:
            await stream.ack(event)
        for event, effects in planned:
            for callback in effects.after:
                callback()
            message = event.message
            self.processed[(message.topic, message.partition)] = message.offset
        self.metrics.last_progress = time.monotonic()
        elapsed = time.perf_counter() - started
        self.metrics.batch_size.observe(len(events))
        for topic, count in topics.items():
            duration = self.metrics.duration_of(topic)
            for _ in range(count):
                duration.observe(elapsed / len(events))

    def _decide(self, event: Any, handler: Handler, view: TableView) -> Effects:
        message = event.message
        headers = getattr(message, "headers", None)
        with handling(self.service, topic=message.topic, partition=message.partition, offset=message.offset,
                      headers=headers) as span:
            try:
                envelope, data = decode_event(event.value, content_type=content_type_of(headers))
                if envelope.subject:  # a signal id (ADR 0018): what an operator follows through the hops
                    span.set_attribute("schakel.signal_id", envelope.subject)
                with faust_compat.as_current_event(event):
                    effects = handler(Incoming(envelope, data, event.key, message.topic), view)
            except UndecodableRecord as exc:
                effects = self.dead_letter(message, exc.code)
            except ValidationError:
                # The record parsed but its values break a downstream contract: bad data, not a bug.
                effects = self.dead_letter(message, "unprocessable_record")
            # The records this one caused carry its span's traceparent (ADR 0019).
            effects.publish, effects.answers, effects.span = traced(effects.publish, span), traced(
                effects.answers, span), span
            return effects

    def _still_ours(self, planned: Planned) -> Planned:
        kept = [(event, effects) for event, effects in planned if faust_compat.is_current(self.app, event)]
        if len(kept) < len(planned):
            log.info("records_left_to_their_new_owner", records=len(planned) - len(kept))
        return kept

    async def _carry_out(self, planned: Planned) -> None:
        planned[:] = self._still_ours(planned)
        if self.stage is not None and any(effects.work for _, effects in planned):
            await self.stage(planned)
        await self._produce([record for _, effects in planned for record in effects.publish])
        planned[:] = self._still_ours(planned)
        await write_tables(self.app, [(self.tables[write.table], write.key, write.value, event)
                                      for event, effects in planned for write in effects.writes])
        await self._produce([record for _, effects in planned for record in effects.answers])

    async def _produce(self, records: list[Publish]) -> None:
        await produce_all(self.app, records)
        for topic, count in by_topic(record.topic for record in records).items():
            self.metrics.produced_of(topic).inc(count)

    def dead_letter(self, message: Any, code: str) -> Effects:
        """The original record with provenance for the dead-letter topic, counted once it is written."""
        headers = provenance_headers(topic=message.topic, partition=message.partition, offset=message.offset,
                                     code=code, service=self.service,
                                     content_type=content_type_of(getattr(message, "headers", None)))
        record = Publish(self.dlq_topic, message.key, message.value or b"", tuple(headers))

        def counted() -> None:
            self.metrics.dead_letters.labels(topic=message.topic, reason=code).inc()
            log.warning("record_dead_lettered", topic=message.topic, partition=message.partition,
                        offset=message.offset, code=code)

        return Effects(publish=[record], after=[counted])
