"""Everything Schakel takes from faust-streaming's private API, in one place, behind a version gate.

The rest of the code uses faust's public API only. `install()` (called by `shared.kafka.create_faust_app`)
refuses any faust other than the one these changes were written and tested against; an upgrade must
re-run tests/unit/test_faust_compat.py and tests/integration/test_reliability.py and re-check the issues
named below. What is changed (docs/decisions/0011, 0014):

1. Fetch with a snapshot of the active partitions. faust hands aiokafka its *live* set; aiokafka may wait
   and reads an empty set as "every partition". When recovery pauses the changelogs the set empties and
   aiokafka returns records of paused stream partitions, which faust skips while aiokafka moves on. A
   partition paused while a fetch waited (a rebalance) is sought back to the first record the fetch returned
   for it, which faust would skip the same way (`keep_unpaused`).
2. Recovery seeks and clears the agents' queues before it resumes the stream partitions (faust-streaming
   #596): otherwise records delivered during the seek are cleared from the queues and then dropped as
   older than the read offset.
3. Never commit past a record that was not handled (faust-streaming #606, PR #707). On Schakel's own
   topics every offset holds a record (shared.offset_continuity): a jump is sought back and counted, not
   taken for a compaction gap; the commit never passes the committed offset's record unless it was acked
   (faust's guard `> 1` let a run starting one past it through); acks of a message from an earlier
   consumer generation (skipped by the stream after a rebalance, read again after the seek) do not count.

4. Stream consumers wait at most STREAM_FETCH_MAX_WAIT_MS (50 ms) for a fetch, not faust's fixed 1,500 ms.
   aiokafka keeps one fetch in flight per broker and leaves partitions with unconsumed records out of it;
   when only idle partitions were left in it (under load, every busy partition still had records buffered),
   the broker held that fetch for the whole wait and every busy partition behind it stalled: notify took
   records 1.5 s late in bursts, p99 of the e-mails 2.7 s at 100 signals/s (docs/benchmarks.md). Within that
   wait a fetch gathers up to STREAM_FETCH_MIN_BYTES (64 KiB) instead of returning with the first record:
   at 50 signals/s a fetch per record or two cost the services a quarter of their CPU (ADR 0024).

5. The drainer hands a record to the stream's queue directly when nothing can make it wait. faust's
   `Consumer._drain_messages` races every record's delivery against `suspend_flow` with `wait_first`: four
   tasks and an `asyncio.wait` per record, and the queue fills only while the record loop awaits, so batches
   held 66–101 records (docs/benchmarks.md, "Where routing's record loop waits"). When flow is active and not
   suspended, the producer buffer below its limit, the conductor's lock free and no queue of the partition
   full, the delivery (`Conductor.on_message`) cannot suspend, and it is awaited as is; otherwise as faust
   does. The records delivered and their order are the same (ADR 0026).

Also here, because they read faust's internals: the current event for table writes made after a batch
(faust picks a changelog partition from it), a table write that hands its changelog record to the producer at
once and gives back its future (notify waits for a mail's 'sent' mark before the next mail's content), a
batch's table writes as one RocksDB write per partition with their changelog records (ADR 0027), the
batch of ready events, the consumer's state for diagnostics, and readiness.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any

import faust
import structlog
from faust.streams import _current_event
from faust.tables.recovery import Recovery
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP
from faust.utils.functional import consecutive_numbers
from rocksdict import WriteBatch as _WriteBatch

from shared.offset_continuity import Gap, GapOutcome, OffsetContinuity

log = structlog.get_logger(__name__)
STREAM_FETCH_MAX_WAIT_MS = 50
STREAM_FETCH_MIN_BYTES = 64 * 1024
_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer
FAUST_VERSION = "0.15.3"
GapListener = Callable[[Gap], None]
_gap_listeners: dict[str, list[GapListener]] = {}
_revocation_drains: dict[str, list[tuple[Callable[[], Awaitable[None]], float]]] = {}


# -- 1. fetch with a snapshot; 3. deliver only continuous offsets ---------------------------------------

_original_getmany = AIOKafkaConsumerThread.getmany


async def getmany(self: Any, active_partitions: set[Any] | None, timeout: float) -> Any:
    """faust's `AIOKafkaConsumerThread.getmany` with a snapshot of the active partitions and continuity."""
    if active_partitions is None:
        records = await _original_getmany(self, None, timeout)
    else:
        snapshot = set(active_partitions)
        if not snapshot:
            return {}
        records = await _original_getmany(self, snapshot, timeout)
    consumer = getattr(self, "consumer", None)
    if consumer is None or not records:
        return records
    if active_partitions is not None:
        records = await keep_unpaused(consumer, records, active_partitions)
    return await keep_continuous(consumer, records)


async def keep_unpaused(consumer: Any, records: Mapping[Any, list[Any]], live: set[Any]) -> dict[Any, list[Any]]:
    """Records of partitions still active; a partition paused while the fetch waited is sought back.

    A fetch may wait up to a second for the partitions active when it began. If a rebalance pauses one of them
    meanwhile, aiokafka's position has moved past what the fetch returns, and faust's `Consumer.getmany`
    drops those records (it keeps only partitions in the live active set): nothing reads them again unless a
    seek to the committed offset happens to come later. A notify worker that kept its partitions through a
    join lost the e-mails of three signals that way (CI of 3c19275). Here they are not delivered, and the
    partition is sought back to the first of them, so they are read once it is resumed.
    """
    buffered: set[Any] = getattr(consumer, "_buffered_partitions", set())
    kept: dict[Any, list[Any]] = {}
    for tp, batch in records.items():
        if tp in live or tp in buffered or not batch or not watched(consumer, tp.topic):
            kept[tp] = batch
            continue
        if tp not in consumer.assignment():
            continue  # revoked: its new owner reads it from the committed offset
        log.info("fetched_while_paused_read_again", topic=tp.topic, partition=tp.partition,
                 offset=batch[0].offset, records=len(batch))
        await _seek(consumer, TP(tp.topic, tp.partition), batch[0].offset)
    return kept


def continuity_of(consumer: Any) -> OffsetContinuity:
    """The offset continuity a faust consumer keeps (created on first use)."""
    continuity = getattr(consumer, "_schakel_continuity", None)
    if continuity is None:
        continuity = OffsetContinuity()
        consumer._schakel_continuity = continuity
    return continuity


def watched(consumer: Any, topic: str) -> bool:
    """Schakel's own stream topics (acks on); faust's changelogs are compacted and not acked."""
    return bool(consumer.app.topics.acks_enabled_for(topic))


async def keep_continuous(consumer: Any, records: Mapping[Any, list[Any]]) -> dict[Any, list[Any]]:
    """Drop what follows a jump in offsets and seek back to the first record not delivered."""
    continuity = continuity_of(consumer)
    kept: dict[Any, list[Any]] = {}
    for tp, batch in records.items():
        if not watched(consumer, tp.topic):
            kept[tp] = batch
            continue
        key = (tp.topic, tp.partition)
        decision = continuity.check(key, [record.offset for record in batch])
        if decision.keep_to > decision.keep_from:
            kept[tp] = batch[decision.keep_from:decision.keep_to]
        for gap in decision.gaps:
            if gap.outcome is GapOutcome.ACCEPTED_HOLE:
                consumer._gap[TP(tp.topic, tp.partition)].addi(gap.first_missing, gap.next_delivered)
            report_gap(consumer, gap)
        if decision.seek_to is not None:
            sought_back = decision.gaps[-1]
            await _seek(consumer, TP(tp.topic, tp.partition), decision.seek_to)
            continuity.sought_back(key, offset=decision.seek_to, answered_with=sought_back.next_delivered)
    return kept


async def _seek(consumer: Any, tp: TP, offset: int) -> None:
    try:
        await consumer.seek(tp, offset)
    except Exception as exc:  # the partition was revoked meanwhile: its new owner reads from the commit
        log.warning("offset_gap_seek_failed", topic=tp.topic, partition=tp.partition, offset=offset,
                    error=type(exc).__name__)


def report_gap(consumer: Any, gap: Gap) -> None:
    """Log a jump in offsets and tell the app's listeners (the service's metrics)."""
    log.warning("offset_gap", topic=gap.topic, partition=gap.partition, first_missing=gap.first_missing,
                next_delivered=gap.next_delivered, outcome=gap.outcome.value)
    for listener in _gap_listeners.get(consumer.app.conf.id, ()):
        listener(gap)


def on_offset_gap(app: faust.App, listener: GapListener) -> None:
    """Call `listener` for every jump in offsets the app's consumer finds."""
    _gap_listeners.setdefault(app.conf.id, []).append(listener)


_original_seek = Consumer.seek
_original_on_partitions_revoked = Consumer.on_partitions_revoked
_original_add_gap = Consumer._add_gap


async def seek(self: Any, partition: TP, offset: int) -> None:
    """faust's `Consumer.seek`, which also moves the expected offset."""
    await _original_seek(self, partition, offset)
    continuity_of(self).sought((partition.topic, partition.partition), offset)


async def perform_seek(self: Any) -> None:
    """faust's `Consumer.perform_seek` (seek every partition to its committed offset), tracking continuity."""
    committed = await self.seek_to_committed()
    self._read_offset.update({tp: offset if offset is not None and offset >= 0 else None
                              for tp, offset in committed.items()})
    self._committed_offset.update({TP(tp.topic, tp.partition): offset if offset else None
                                   for tp, offset in committed.items() if offset is not None})
    continuity = continuity_of(self)
    for tp, offset in committed.items():
        continuity.sought((tp.topic, tp.partition), offset if offset is not None and offset >= 0 else None)


async def on_partitions_revoked(self: Any, revoked: set[TP]) -> None:
    """faust's `Consumer.on_partitions_revoked`; revoked partitions are no longer expected to continue.

    Before faust flushes the producer and lets the group hand the partitions on, the work registered with
    `before_revocation` may finish (bounded): notify's SMTP transactions already under way, so their sent-log
    writes reach the changelog the new owner recovers from, and it does not send the same mail again.
    """
    continuity_of(self).forget([(tp.topic, tp.partition) for tp in revoked])
    self.app._schakel_revoked_generation = self.app.consumer_generation_id  # its records are no longer ours
    for drain, timeout_s in _revocation_drains.get(self.app.conf.id, ()):
        try:
            await asyncio.wait_for(drain(), timeout_s)
        except TimeoutError:
            log.warning("revocation_drain_timed_out", timeout_s=timeout_s)
    await _original_on_partitions_revoked(self, revoked)


def before_revocation(app: faust.App, drain: Callable[[], Awaitable[None]], *, timeout_s: float) -> None:
    """Await `drain` (at most `timeout_s`) when partitions are revoked, once their records stopped counting as
    this worker's and before the producer is flushed and the partitions move (see on_partitions_revoked)."""
    _revocation_drains.setdefault(app.conf.id, []).append((drain, timeout_s))


async def add_gap(self: Any, tp: TP, offset_from: int, offset_to: int) -> None:
    """faust's compaction-gap bookkeeping, for faust's own topics only: ours never have gaps (see 3)."""
    if watched(self, tp.topic):
        return
    await _original_add_gap(self, tp, offset_from, offset_to)


def new_offset(self: Any, tp: TP) -> int | None:
    """faust's `Consumer._new_offset` with a strict head: never commit past the committed offset's record."""
    acked = self._acked[tp]
    if not acked:
        return None
    gaps = self._gap[tp]
    if gaps:
        max_offset = max(acked)
        candidates = sorted(gaps.overlap(0, max_offset), key=lambda interval: interval.begin)
        if candidates:
            filled = [offset for interval in candidates for offset in range(interval.begin, interval.end)]
            acked.extend(offset for offset in filled if offset not in self._acked_index[tp])
            gaps.chop(0, max(filled[-1], max_offset + 1))
    acked.sort()
    committed = self._committed_offset[tp]
    if committed is not None and min(acked) > committed:
        return None  # the record at the committed offset was not handled yet
    batch = next(consecutive_numbers(acked))
    acked[: len(batch)] = []
    self._acked_index[tp].difference_update(batch)
    return int(batch[-1]) + 1


_original_ack = Consumer.ack


def ack(self: Any, message: Any) -> bool:
    """faust's `Consumer.ack`, except for a message of an earlier consumer generation (read again)."""
    generation = getattr(message, "generation_id", None)
    if generation is not None and generation != self.app.consumer_generation_id and watched(self, message.topic):
        return False
    return bool(_original_ack(self, message))


# -- 2. recovery: seek and clear before resuming the stream partitions ------------------------------------

def stream_partitions(recovery: Any, assignment: set[Any]) -> set[Any]:
    """The assigned partitions that feed agents (not table changelogs)."""
    return {tp for tp in assignment if not recovery._is_changelog_tp(tp)}


async def resume_stream_partitions(recovery: Any, assignment: set[Any]) -> None:
    """Seek to the committed offsets and clear the queues before any stream record can be delivered."""
    app = recovery.app
    consumer = app.consumer
    if assignment:
        recovery.log.info("Seek stream partitions to committed offsets.")
        await recovery._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
    recovery.completed.set()
    app.flow_control.resume()  # clears the agents' queues: nothing of the stream partitions is in them
    consumer.resume_partitions(stream_partitions(recovery, assignment))
    consumer.resume_flow()
    await app._fetcher.maybe_start()


async def on_recovery_completed(self: Any, generation_id: int = 0) -> None:
    """faust's `Recovery.on_recovery_completed`, with the stream partitions resumed last."""
    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callbacks = [
        asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table],
                                                          self.standbys_for_table[table]))
        for table in self.tables.values()
    ]
    if callbacks:
        await asyncio.wait(callbacks)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(f"Recovery rebalancing again app id {self.app.consumer_generation_id} "
                         f"param {generation_id}")
        return
    await resume_stream_partitions(self, assignment)
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


async def _resume_streams(self: Any, generation_id: int = 0) -> None:
    """faust's `Recovery._resume_streams` (no table to recover), with the stream partitions resumed last."""
    app = self.app
    await app.on_rebalance_complete.send()
    assignment = app.consumer.assignment()
    if app.consumer_generation_id != generation_id:
        self.log.warning("Recovery rebalancing again")
        return
    if not assignment:
        self.log.info("Resuming streams with empty assignment")
    await resume_stream_partitions(self, assignment)
    self.tables.on_actives_ready()
    self.tables.on_standbys_ready()
    app.on_rebalance_end()
    self.log.info("Worker ready")


def create_worker_consumer(self: Any, transport: Any) -> Any:
    """faust's stream consumer: fetches that gather a few milliseconds of records, never wait behind idle ones."""
    consumer = _create_worker_consumer(self, transport)
    consumer._fetch_max_wait_ms = STREAM_FETCH_MAX_WAIT_MS
    consumer._fetch_min_bytes = STREAM_FETCH_MIN_BYTES
    return consumer


# -- 5. the drainer: no task per record when delivery cannot wait -----------------------------------------

def delivery_cannot_wait(consumer: Any, tp: TP) -> bool:
    """Whether faust's delivery of a record of `tp` (`Conductor.on_message`) completes without suspending.

    It awaits flow control (`FlowControlEvent.acquire`), the producer buffer's ebb (`wait_until_ebb`), the
    conductor's lock and, for a full queue, `Channel.put`; the decode awaits only for a decode error, which
    is not a wait. When none of them can wait, racing the delivery against `suspend_flow` decides nothing.
    """
    app = consumer.app
    if consumer.suspend_flow.is_set() or not app.flow_control.is_active():
        return False
    buffer = app.producer.buffer
    if buffer.size > buffer.max_messages:
        return False
    conductor = app.topics
    if conductor._tp_to_callback_lock.locked():
        return False
    return not any(channel.queue.full() for channel in conductor._tp_index.get(tp, ()))


async def drain_messages(self: Any, fetcher: Any) -> None:
    """faust's `Consumer._drain_messages` (faust 0.15.3, transport/consumer.py) with the fast path of 5."""
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            self.diag.set_flag(CONSUMER_FETCHING)
            fetched = self.getmany(timeout=1.0)
            await self.sleep(0)  # getmany may be called in a loop that never yields otherwise
            if not self.should_stop:
                await _deliver_fetched(self, fetched)
            self.diag.unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        self.diag.unset_flag(CONSUMER_FETCHING)


async def _deliver_fetched(self: Any, fetched: AsyncIterator[tuple[TP, Any]]) -> None:
    """Hand each fetched record past the read offset to the conductor, as faust's drainer does."""
    callback = self.callback
    read_offset = self._read_offset
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    since_yield = 0
    async for tp, message in fetched:
        since_yield += 1
        if since_yield > 100:
            await asyncio.sleep(0)
            since_yield = 0
        offset = message.offset
        r_offset = read_offset[tp]
        if r_offset is not None and offset < r_offset:
            continue  # faust drops what is behind the read offset (a record read again before a seek took)
        if offset - (r_offset or 0) > 1 and r_offset and acks_enabled_for(message.topic):
            await self._add_gap(tp, r_offset + 1, offset)
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()
        if delivery_cannot_wait(self, tp):
            await callback(message)
        else:
            await self.wait_first(callback(message), self.suspend_flow.wait())
        read_offset[tp] = offset


_REPLACED: tuple[tuple[Any, str, Any], ...] = (
    (AIOKafkaConsumerThread, "getmany", getmany),
    (AIOKafkaConsumerThread, "_create_worker_consumer", create_worker_consumer),
    (Recovery, "on_recovery_completed", on_recovery_completed),
    (Recovery, "_resume_streams", _resume_streams),
    (Consumer, "seek", seek),
    (Consumer, "perform_seek", perform_seek),
    (Consumer, "on_partitions_revoked", on_partitions_revoked),
    (Consumer, "_add_gap", add_gap),
    (Consumer, "_new_offset", new_offset),
    (Consumer, "ack", ack),
    (Consumer, "_drain_messages", drain_messages),
)


def install() -> None:
    """Replace faust's methods named above; refuses a faust version they were not written against."""
    if faust.__version__ != FAUST_VERSION:
        raise RuntimeError(f"shared.faust_compat targets faust-streaming {FAUST_VERSION}, found {faust.__version__}: "
                           "check faust-streaming #596 and #606 and docs/decisions/0011 and 0014")
    for owner, name, replacement in _REPLACED:
        setattr(owner, name, replacement)


def installed() -> bool:
    """Whether faust runs with every change of this module."""
    return all(getattr(owner, name) is replacement for owner, name, replacement in _REPLACED)


# -- reading faust's state -------------------------------------------------------------------------------

def is_current(app: Any, event: Any) -> bool:
    """Whether an event still belongs to this worker: read in the current consumer generation, not a revoked one.

    faust does not stop an agent when the group rebalances; a batch read before it would otherwise be carried
    out while the partition's new owner handles the same records from the committed offset. Records of the
    new generation (read after the seek to the committed offset) are current even while faust still calls
    the app `rebalancing` (until recovery ends): dropping those would drop them for good, as nothing seeks
    back to them.
    """
    generation = getattr(event.message, "generation_id", None)
    if generation is None:
        return True
    if generation == getattr(app, "_schakel_revoked_generation", None):
        return False
    current = getattr(app, "consumer_generation_id", None)
    return current is None or generation == current


@contextmanager
def as_current_event(event: Any) -> Iterator[None]:
    """Make `event` faust's current event (tables write their changelog to its partition)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


async def write_with_receipt(table: Any, key: Any, value: Any) -> asyncio.Future[Any]:
    """`table[key] = value`, returning the future of its changelog record: done once the broker has it.

    faust's `Table.__setitem__` (mode's `ManagedUserDict.__setitem__` → `Table.on_key_set`) builds the changelog
    record, puts it into the producer's buffer for a task of faust's to send later, and drops its future. These
    are the same steps, except that the record goes to the producer at once (`Topic.publish_message`, what that
    task would call): no turn of the event loop waits between the write and the produce request, and the
    future is kept. Call it in the context of the event the write belongs to (`as_current_event`): the
    changelog partition is the event's.
    """
    topic = table.changelog_topic
    receipt = topic.as_future_message(key=key, value=value, partition=table.partition_for_key(key),
                                      key_serializer=table.key_serializer, value_serializer=table.value_serializer,
                                      callback=table._on_changelog_sent, eager_partitioning=True)
    table._maybe_set_key_ttl(key, receipt.message.partition)
    table._sensor_on_set(table, key, value)
    table.data[key] = value
    await topic.publish_message(receipt)
    return receipt


def batch_writable(table: Any) -> bool:
    """Whether `write_batch` can write to this table: a RocksDB store, no transactions, no windowed expiry."""
    store = getattr(table, "data", None)
    return (hasattr(store, "_db_for_partition") and hasattr(store, "_key_index") and not table.app.in_transaction
            and not table.use_partitioner and not table._should_expire_keys())


async def write_batch(app: faust.App, writes: list[tuple[Any, Any, Any, Any]]) -> None:
    """`table[key] = value` for each `(table, key, value, event)`: one RocksDB write per partition, not per key.

    Per key, faust's `Store._set` is a RocksDB `put` (a write to its log each) and `Table.on_key_set` a changelog
    record that the topic encodes again. Here each key and value is encoded once (`Store._encode_key`,
    `_encode_value`, the serializers the changelog topic uses too); the values of a partition go into one
    `WriteBatch` in order (the last write of a key wins, as with puts), as faust's own recovery writes the
    changelog (`apply_changelog_batch`), and the same bytes go to the event's changelog partition through the
    producer at once, in order. The persisted changelog offset (`set_persisted_offset`, what faust's
    `_on_changelog_sent` keeps per record) is set once per partition, from the batch's last record there.
    Nothing here waits for the broker: faust's commit flushes the producer before it commits the input
    offsets, so no input is committed before its changelog records are written (ADR 0027). Only for tables
    `batch_writable` accepts.
    """
    if not writes:
        return
    partitions: dict[tuple[int, int], _PartitionWrites] = {}  # by (id(table), partition): tables are unhashable
    changelog: list[tuple[_PartitionWrites, bytes, bytes | None]] = []
    for table, key, value, event in writes:
        partition = event.message.partition
        pending = partitions.get((id(table), partition))
        if pending is None:
            pending = partitions[(id(table), partition)] = _PartitionWrites(table, partition)
        store = table.data
        key_bytes, value_bytes = store._encode_key(key), store._encode_value(value)
        pending.batch.put(key_bytes, value_bytes)
        changelog.append((pending, key_bytes, value_bytes))
        store._key_index[key_bytes] = partition
        table._sensor_on_set(table, key, value)
    for pending in partitions.values():
        pending.table.data._db_for_partition(pending.partition).write(pending.batch)
    producer = await app.maybe_start_producer()
    for pending, key_bytes, value_bytes in changelog:  # in the order of the writes
        pending.last_sent = await producer.send(pending.topic, key_bytes, value_bytes, partition=pending.partition,
                                                timestamp=None, headers=None)
    for pending in partitions.values():
        pending.last_sent.add_done_callback(partial(_persist_changelog_offset, pending.table))


class _PartitionWrites:
    """A batch's writes to one partition of one table: its RocksDB batch, its changelog topic, its last send."""

    def __init__(self, table: Any, partition: int) -> None:
        self.table = table
        self.partition = partition
        self.topic: str = table.changelog_topic.get_topic_name()
        self.batch = _WriteBatch(raw_mode=True)
        self.last_sent: Any = None


def _persist_changelog_offset(table: Any, sent: asyncio.Future[Any]) -> None:
    if sent.cancelled() or sent.exception() is not None:
        return  # the producer's error reaches faust's commit, which then does not commit
    written = sent.result()
    table.data.set_persisted_offset(TP(written.topic, written.partition), written.offset)


def send_now(app: faust.App) -> None:
    """Close the producer's open batches and wake its sender: what was sent goes out without the linger.

    The record loop sends a whole batch and then awaits it, so a linger would be spent waiting (docs/benchmarks.md,
    "Where routing's record loop waits"); other senders in the process (faust's changelog buffer) keep theirs.
    aiokafka's `flush_for_commit` does the same before it waits.
    """
    aiokafka_producer = getattr(app.producer, "_producer", None)
    accumulator = getattr(aiokafka_producer, "_message_accumulator", None)
    if accumulator is None:
        return
    for batches in accumulator._batches.values():
        for batch in batches:
            batch._builder.close()
    waiter = accumulator._waiter_future
    if not waiter.done():
        waiter.set_result(None)


async def ready_batches(manual: Any, *, max_records: int, linger_s: float = 0.0) -> AsyncIterator[list[Any]]:
    """Batches of events of a stream without acks (`stream.noack()`): waits for one, then takes what is queued.

    With `linger_s`, a batch that is not full after the first take waits that long once and takes again: a few
    milliseconds per hop buy one produce request for several records instead of one each.
    """
    events = manual.events().__aiter__()
    queue = manual.channel.queue
    app = manual.app
    while True:
        try:
            batch = [await events.__anext__()]
        except StopAsyncIteration:
            return
        _take_queued(app, queue, batch, max_records)
        if linger_s > 0 and len(batch) < max_records:
            await asyncio.sleep(linger_s)
            _take_queued(app, queue, batch, max_records)
        yield batch


def _take_queued(app: Any, queue: Any, batch: list[Any], max_records: int) -> None:
    while len(batch) < max_records and queue.qsize() > 0:
        event = _take_ready(app, queue.get_nowait())
        if event is not None:
            batch.append(event)


def _take_ready(app: Any, event: Any) -> Any:
    """What faust's stream does with a queued event before it yields it (streams.py, `_py_aiter`)."""
    message = event.message
    if not app.flow_control.is_active() or message.generation_id != app.consumer_generation_id:
        return None  # from before a rebalance: read again after the seek to the committed offset
    if message.topic in app.topics.acking_topics and not message.tracked:
        message.tracked = True
        app.consumer.track_message(message)
    return event


def faust_ready(app: faust.App) -> bool:
    """Started, assigned, not rebalancing, and tables recovered."""
    try:
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]  # faust: not on TableManagerT
    except Exception:  # not built yet
        return False
    return bool(app.started and not app.rebalancing and recovered)


def _tp_names(tps: Iterable[Any] | None) -> list[str]:
    return sorted(f"{tp.topic}:{tp.partition}" for tp in (tps or ()))


def _by_tp(offsets: dict[Any, Any]) -> dict[str, Any]:
    return {f"{tp.topic}:{tp.partition}": offset for tp, offset in offsets.items()}


def committed_offsets(app: faust.App) -> dict[Any, int | None]:
    """The offsets faust believes committed, per partition."""
    consumer = getattr(app, "_consumer", None)
    return dict(getattr(consumer, "_committed_offset", {})) if consumer is not None else {}


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
