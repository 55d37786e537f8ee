"""Which signals to ask feedback about for a person: a directory read from `signals.lifecycle` (ADR 0017).

Per signal only its id, the body it is assigned to, the reporting organisation and the reporter's address,
from the latest lifecycle event: no data about the child. It is a list of candidates; whether a person may see
a signal, and what, feedback decides when the werkbak reads it with the person's token.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from shared.events import SignalErased, SignalLifecycleChanged, UndecodableRecord, decode_event
from shared.retry import retry_with_backoff
from shared.topics import SIGNALS_LIFECYCLE

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Entry:
    """Where a signal stands, as far as finding it goes."""

    signal_id: str
    body_id: str
    reporter_partner_id: str
    reporter_email: str
    matched_hint: bool = False


@dataclass
class Directory:
    """Signals by id, kept up to date from the lifecycle topic (read whole, no consumer group)."""

    bootstrap: str
    entries: dict[str, Entry] = field(default_factory=dict)
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, event: SignalLifecycleChanged) -> None:
        """One lifecycle event: the signal's body and reporter as they stand now."""
        self.entries[event.signal_id] = Entry(
            signal_id=event.signal_id, body_id=event.body_id, reporter_partner_id=event.reporter_partner_id,
            reporter_email=event.reporter.email.lower())

    def assigned_to(self, body_ids: set[str]) -> list[str]:
        """Signals standing with one of these bodies."""
        return [e.signal_id for e in self.entries.values() if e.body_id in body_ids]

    def reported_by(self, partner_id: str, email: str) -> list[str]:
        """Signals a person reported for their organisation."""
        wanted = email.lower()
        return [e.signal_id for e in self.entries.values()
                if e.reporter_partner_id == partner_id and e.reporter_email == wanted]

    def _decode(self, value: bytes | None) -> None:
        try:
            _, event = decode_event(value)
        except UndecodableRecord:
            return  # feedback dead-letters what it cannot read; the directory only skips it
        if isinstance(event, SignalErased):  # erased (ADR 0020): not a candidate any more, its reporter forgotten
            self.entries.pop(event.signal_id, None)
        elif isinstance(event, SignalLifecycleChanged):
            self.take(event)

    async def run(self) -> None:
        """Read the topic from the beginning, then follow it, until cancelled."""
        while True:
            consumer = await retry_with_backoff(self._start, event="kafka_not_reachable")
            try:
                tps = list(consumer.assignment())
                ends = await consumer.end_offsets(tps)
                pending = {tp for tp in tps if ends[tp] > 0}
                if not pending:
                    self.caught_up.set()
                while True:
                    batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                    for tp, records in batches.items():
                        for record in records:
                            self._decode(record.value)
                            if record.offset + 1 >= ends.get(tp, 0):
                                pending.discard(tp)
                    if not self.caught_up.is_set() and not pending:
                        self.caught_up.set()
                        log.info("directory_caught_up", signals=len(self.entries))
            except KafkaError as exc:
                log.error("directory_read_failed", error=type(exc).__name__)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _start(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    client_id="schakel-werkbak-directory")
        await consumer.start()
        try:
            tps = [TopicPartition(SIGNALS_LIFECYCLE.name, p) for p in range(SIGNALS_LIFECYCLE.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
        except BaseException:
            await consumer.stop()
            raise
        return consumer
