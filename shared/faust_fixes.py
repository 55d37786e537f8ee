"""Fixes for two record-losing races in faust-streaming 0.15.3 (found by our kill -9 tests).

1. The fetcher hands aiokafka the consumer's *live* set of active partitions. aiokafka's
   `fetched_records(partitions)` may wait, and treats an empty set as "every partition". When faust
   pauses the changelogs at the end of recovery, the set becomes empty while aiokafka waits, and
   aiokafka returns records of the (still paused) stream partitions. faust skips them as
   inactive, but aiokafka's position has moved past them: they are never handled by this worker.
   Fix: aiokafka gets a snapshot of the set, and nothing is fetched with an empty one.

2. When table recovery ends (faust-streaming #596, open), faust resumes the stream partitions while
   the fetcher is already running, awaits `perform_seek()` — meanwhile the fetcher delivers stream
   records into the agents' queues and moves its read offsets past them — and then calls
   `app.flow_control.resume()`, which *clears* every agent queue. Fetched again, those records are
   older than the read offset and are dropped ("DROPPED MESSAGE ROFF").
   Fix: the same steps in another order — seek and clear while the stream partitions are still
   paused, resume them last — so nothing is delivered into a queue that is about to be cleared and
   the read offsets start at the committed offsets.

Neither loses a committed record (nothing is committed past them), but the running worker never
handles them: signals wait until the next restart. Our kill -9 test (300 signals) lost 20-150
records at routing or notify this way in about half of the runs. See docs/decisions/0011.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

FIXED_VERSION = "0.15.3"


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


_original_getmany = AIOKafkaConsumerThread.getmany


async def getmany(self: Any, active_partitions: set[Any] | None, timeout: float) -> Any:
    """faust's `AIOKafkaConsumerThread.getmany` with a snapshot of the active partitions (fix 1)."""
    if active_partitions is None:
        return await _original_getmany(self, None, timeout)
    snapshot = set(active_partitions)
    if not snapshot:
        return {}
    return await _original_getmany(self, snapshot, timeout)


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


def install() -> None:
    """Replace the three faust methods; refuses a faust version the fixes were not written against."""
    if faust.__version__ != FIXED_VERSION:
        raise RuntimeError(f"shared.faust_fixes targets faust-streaming {FIXED_VERSION}, found "
                           f"{faust.__version__}: check faust-streaming #596 and docs/decisions/0011")
    AIOKafkaConsumerThread.getmany = getmany  # type: ignore[method-assign]
    Recovery.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign]
    Recovery._resume_streams = _resume_streams  # type: ignore[method-assign]


def installed() -> bool:
    """Whether faust runs with this fix."""
    return Recovery.on_recovery_completed is on_recovery_completed and AIOKafkaConsumerThread.getmany is getmany
