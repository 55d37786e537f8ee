"""Read a whole topic once, from the beginning to the end offsets it had at the start (kafka-python, no group)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

FETCH_BYTES = 32 * 1024 * 1024
STALL_TIMEOUT_S = 60.0


class HistoryError(RuntimeError):
    """The topic could not be read to its end (missing, or the broker stopped answering)."""


@dataclass(frozen=True)
class Record:
    """One record's place, value, key and headers."""

    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class History:
    """Where a topic began and ended when the read started."""

    begin: dict[int, int]
    end: dict[int, int]

    @property
    def total(self) -> int:
        """How many offsets lie between begin and end over all partitions."""
        return sum(self.end[p] - self.begin[p] for p in self.end)


def _consumer(bootstrap: str) -> KafkaConsumer:
    # A throw-away consumer: no group, nothing committed; large fetches so a year of signals comes in few
    # round trips. CRCs: the broker checks every batch when it is written; kafka-python's pure-Python CRC32C
    # would otherwise dominate a replay (crc32c is not installed), and a replay writes nothing.
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", isolation_level="read_committed",
                         max_partition_fetch_bytes=FETCH_BYTES, fetch_max_bytes=2 * FETCH_BYTES,
                         max_poll_records=10_000, check_crcs=False, request_timeout_ms=30_000)


class TopicReader:
    """Every record of a topic up to the end offsets at the start, in offset order per partition."""

    def __init__(self, bootstrap: str, topic: str, *, stall_timeout_s: float = STALL_TIMEOUT_S) -> None:
        self.topic = topic
        self.stall_timeout_s = stall_timeout_s
        self._consumer = _consumer(bootstrap)
        partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            self._consumer.close()
            raise HistoryError(f"topic {topic!r} does not exist on {bootstrap}")
        self._tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(self._tps)
        self._consumer.seek_to_beginning(*self._tps)
        begin = self._consumer.beginning_offsets(self._tps)
        end = self._consumer.end_offsets(self._tps)
        self.history = History({tp.partition: begin[tp] for tp in self._tps},
                               {tp.partition: end[tp] for tp in self._tps})

    def batches(self) -> Iterator[list[Record]]:
        """Records in batches as fetched; stops at the end offsets, fails when no progress is made for a while."""
        end = self.history.end
        open_ = set(self._tps)
        last_progress = time.monotonic()
        while open_:
            done = {tp for tp in open_ if self._consumer.position(tp) >= end[tp.partition]}
            if done:
                self._consumer.pause(*done)  # read to the end it had at the start: what came since is not history
                open_ -= done
            if not open_:
                return
            fetched = self._consumer.poll(timeout_ms=1000)
            batch: list[Record] = []
            for tp, records in fetched.items():
                stop = end[tp.partition]
                batch.extend(Record(tp.partition, r.offset, r.value, r.key, tuple(r.headers or ()))
                             for r in records if r.offset < stop)
            if batch:
                last_progress = time.monotonic()
                yield batch
            elif time.monotonic() - last_progress > self.stall_timeout_s:
                raise HistoryError(f"no records from {self.topic!r} for {self.stall_timeout_s:.0f}s, "
                                   f"{len(open_)} partition(s) not read to their end")

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
