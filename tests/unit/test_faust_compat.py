"""The faust changes (shared.faust_compat): what aiokafka is asked for, the order recovery resumes in, commits.

Fakes stand in for faust's consumer and app; the end-to-end proof is tests/integration/test_reliability.py.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from shared import faust_compat
from shared.kafka import create_faust_app
from shared.settings import Settings


def test_every_faust_app_of_ours_runs_with_the_changes(tmp_path: Any) -> None:
    create_faust_app("compat-check", Settings(state_dir=tmp_path))
    assert faust_compat.installed()
    assert Recovery.on_recovery_completed is faust_compat.on_recovery_completed
    assert AIOKafkaConsumerThread.getmany is faust_compat.getmany


class RecordingThread:
    """Stands in for faust's consumer thread: remembers the partitions aiokafka would be asked for."""

    def __init__(self, live: set[str]) -> None:
        self.live = live
        self.asked: list[set[str] | None] = []

    async def ask(self, partitions: set[str] | None) -> dict[str, list[int]]:
        self.live.clear()  # faust pauses partitions while aiokafka waits for records
        self.asked.append(partitions)
        return {"signals.received:0": [1]}


def run_getmany(live: set[str] | None, thread: RecordingThread) -> Any:
    original = faust_compat._original_getmany
    faust_compat._original_getmany = lambda _self, partitions, _timeout: thread.ask(partitions)  # type: ignore[assignment]
    try:
        return asyncio.run(faust_compat.getmany(object(), live, 1.0))
    finally:
        faust_compat._original_getmany = original


def test_aiokafka_gets_a_snapshot_that_pausing_cannot_empty() -> None:
    live = {"changelog:0"}
    thread = RecordingThread(live)
    run_getmany(live, thread)
    assert thread.asked == [{"changelog:0"}]  # the live set is empty now; the snapshot is not
    assert live == set()


def test_nothing_is_fetched_with_no_active_partition() -> None:
    thread = RecordingThread(set())
    assert run_getmany(set(), thread) == {}
    assert thread.asked == []  # aiokafka would read an empty set as "every partition"


def test_client_only_apps_still_fetch_everything() -> None:
    thread = RecordingThread(set())
    run_getmany(None, thread)
    assert thread.asked == [None]


class Steps:
    """Fakes of the consumer, flow control and fetcher that write down the order of calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.completed = self
        self.log = self
        self.conf = self
        self.broker_request_timeout = 1.0
        self.app = self
        self.consumer = self
        self.flow_control = self
        self._fetcher = self

    def info(self, *_: Any) -> None: ...

    def set(self) -> None:
        self.calls.append("recovery completed")

    def _is_changelog_tp(self, tp: str) -> bool:
        return tp.startswith("changelog")

    async def perform_seek(self) -> None:
        self.calls.append("seek to committed offsets")

    async def _wait(self, coro: Any, timeout: float) -> None:
        await coro

    def resume(self) -> None:
        self.calls.append("clear agent queues")

    def resume_partitions(self, tps: set[str]) -> None:
        self.calls.append(f"resume {sorted(tps)}")

    def resume_flow(self) -> None:
        self.calls.append("resume flow")

    async def maybe_start(self) -> None:
        self.calls.append("start fetcher")


def test_stream_partitions_are_resumed_only_after_the_seek_and_the_clear() -> None:
    steps = Steps()
    asyncio.run(faust_compat.resume_stream_partitions(steps, {"changelog:0", "signals.received:0"}))
    assert steps.calls == [
        "seek to committed offsets",
        "recovery completed",
        "clear agent queues",
        "resume ['signals.received:0']",
        "resume flow",
        "start fetcher",
    ]


class Message:
    """The part of a faust message a table write reads: its topic, and the partition its changelog goes to."""

    def __init__(self, partition: int) -> None:
        self.topic = "signals.assigned"
        self.partition = partition


class Event:
    def __init__(self, partition: int) -> None:
        self.message = Message(partition)


async def test_a_write_with_receipt_does_what_setitem_does_and_keeps_the_changelog_future(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_faust_app("receipt-check", Settings(state_dir=tmp_path), store="memory://")
    table = app.Table("receipts", default=None, partitions=4, key_type=bytes, value_type=bytes)
    buffered = app.producer.buffer.pending
    published: list[Any] = []

    async def publish_message(fut: Any, wait: bool = False) -> None:  # what faust's buffer task calls
        published.append(fut)

    monkeypatch.setattr(table.changelog_topic, "publish_message", publish_message)
    with faust_compat.as_current_event(Event(2)):
        table[b"by-setitem"] = b"one"
        receipt = await faust_compat.write_with_receipt(table, b"with-receipt", b"two")
    by_setitem = buffered.get_nowait()
    assert buffered.empty() and published == [receipt]  # handed to the producer at once, not via the buffer
    assert not receipt.done()  # done once the broker acknowledges that one record
    for future, key, value in ((by_setitem, b"by-setitem", b"one"), (receipt, b"with-receipt", b"two")):
        assert future.message.channel is table.changelog_topic
        assert (future.message.partition, future.message.key, future.message.value) == (2, key, value)
        assert future.message.callback == table._on_changelog_sent
        assert table[key] == value


class FakeQueue:
    def __init__(self, full: bool) -> None:
        self._full = full

    def full(self) -> bool:
        return self._full


def delivery_state(*, suspended: bool = False, flow_active: bool = True, buffered: int = 0, locked: bool = False,
                   queue_full: bool = False) -> tuple[Any, str]:
    """A faust consumer as `delivery_cannot_wait` reads it, for one partition."""
    lock = asyncio.Lock()
    if locked:
        lock._locked = True  # type: ignore[attr-defined]  # as held by another task
    tp = "signals.received:0"
    conductor = SimpleNamespace(_tp_to_callback_lock=lock,
                                _tp_index={tp: [SimpleNamespace(queue=FakeQueue(queue_full))]})
    app = SimpleNamespace(flow_control=SimpleNamespace(is_active=lambda: flow_active),
                          producer=SimpleNamespace(buffer=SimpleNamespace(size=buffered, max_messages=100)),
                          topics=conductor)
    event = asyncio.Event()
    if suspended:
        event.set()
    return SimpleNamespace(app=app, suspend_flow=event), tp


@pytest.mark.parametrize("blocked", [
    {"suspended": True}, {"flow_active": False}, {"buffered": 101}, {"locked": True}, {"queue_full": True}])
def test_the_drainer_races_the_delivery_whenever_anything_could_make_it_wait(blocked: dict[str, Any]) -> None:
    consumer, tp = delivery_state(**blocked)
    assert not faust_compat.delivery_cannot_wait(consumer, tp)


def test_the_drainer_awaits_the_delivery_directly_only_when_nothing_can_wait() -> None:
    consumer, tp = delivery_state(buffered=100)
    assert faust_compat.delivery_cannot_wait(consumer, tp)
    assert faust_compat.delivery_cannot_wait(consumer, "privacy.erasures:0")  # no channel of its own: no queue


class RecordingProducer:
    """Stands in for faust's producer: remembers each send and gives back a future the test resolves."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, int]] = []
        self.futures: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, key: bytes, value: bytes | None, *, partition: int, timestamp: Any,
                   headers: Any) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value, partition))
        self.futures.append(asyncio.get_running_loop().create_future())
        return self.futures[-1]


# Routing's tables (text keys, JSON values), and feedback's and notify's (bytes).
TABLE_KINDS = [(str, None, ["sk_a", "sk_b"], [{"n": 1}, {"n": 2}, {"n": 3}]),
               (bytes, bytes, [b"sk_a", b"sk_b"], [b"one", b"two", b"three"])]


@pytest.mark.parametrize(("key_type", "value_type", "keys", "values"), TABLE_KINDS)
async def test_a_batch_of_writes_lands_in_rocksdb_per_partition_and_its_changelog_is_faust_own(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, key_type: Any, value_type: Any, keys: list[Any],
        values: list[Any]) -> None:
    app = create_faust_app("batch-check", Settings(state_dir=tmp_path), store="rocksdb://")
    table = app.Table("subjects", default=None, partitions=4, key_type=key_type, value_type=value_type)
    producer = RecordingProducer()

    async def started() -> RecordingProducer:
        return producer

    monkeypatch.setattr(app, "maybe_start_producer", started)
    assert faust_compat.batch_writable(table)
    a, b = keys
    writes = [(table, a, values[0], Event(2)), (table, b, values[1], Event(0)), (table, a, values[2], Event(2))]
    await faust_compat.write_batch(app, writes)

    changelog = table.changelog_topic
    expected = [(changelog.get_topic_name(), changelog.prepare_key(key, None, None)[0],
                 changelog.prepare_value(value, None, None)[0], event.message.partition)
                for _, key, value, event in writes]
    assert producer.sent == expected  # the bytes and partitions faust's own `table[key] = value` would send
    with faust_compat.as_current_event(Event(2)):
        assert table[a] == values[2]  # the later write of a key wins
    with faust_compat.as_current_event(Event(0)):
        assert table[b] == values[1]
    assert table.data._db_for_partition(2).get(b"sk_b") is None  # each key in its own partition's database

    for offset, future in enumerate(producer.futures):
        topic, _, _, partition = producer.sent[offset]
        future.set_result(SimpleNamespace(topic=topic, partition=partition, offset=10 + offset))
    await asyncio.sleep(0)
    persisted = {p: table.data.persisted_offset(faust_compat.TP(changelog.get_topic_name(), p)) for p in (0, 2)}
    assert persisted == {0: 11, 2: 12}  # the last changelog record of each partition, as faust would keep


def test_a_memory_table_is_written_the_faust_way(tmp_path: Any) -> None:
    app = create_faust_app("memory-check", Settings(state_dir=tmp_path), store="memory://")
    table = app.Table("subjects", default=None, partitions=4, key_type=str, value_type=None)
    assert not faust_compat.batch_writable(table)


async def test_records_of_a_partition_paused_while_the_fetch_waited_are_read_again() -> None:
    sought: list[tuple[Any, int]] = []

    async def seek(tp: Any, offset: int) -> None:
        sought.append((tp, offset))

    kept_tp, paused_tp = faust_compat.TP("signals.assigned", 0), faust_compat.TP("signals.assigned", 2)
    revoked_tp = faust_compat.TP("signals.assigned", 3)
    changelog_tp = faust_compat.TP("schakel-notify-sent-log-changelog", 2)
    consumer = SimpleNamespace(app=SimpleNamespace(topics=SimpleNamespace(
        acks_enabled_for=lambda topic: not topic.endswith("-changelog"))), _buffered_partitions=set(), seek=seek,
        assignment=lambda: {kept_tp, paused_tp, changelog_tp})
    records = {tp: [SimpleNamespace(offset=n) for n in (61, 62)]
               for tp in (kept_tp, paused_tp, revoked_tp, changelog_tp)}
    live = {kept_tp}  # the rebalance paused partition 2 while the fetch waited

    kept = await faust_compat.keep_unpaused(consumer, records, live)
    assert kept == {kept_tp: records[kept_tp], changelog_tp: records[changelog_tp]}  # faust's own topics as before
    assert sought == [(paused_tp, 61)]  # read again from the first record the fetch returned, once resumed
    # A revoked partition is not sought: its new owner reads it from the committed offset.
