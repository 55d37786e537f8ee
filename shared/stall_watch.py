"""The stall watch: lag per partition, and an exit (to be restarted) when records wait and nothing moves."""

from __future__ import annotations

import os
import time

import faust
import structlog

from shared.faust_compat import committed_offsets, consumer_state, faust_ready
from shared.metrics import HopMetrics

log = structlog.get_logger(__name__)


def update_lag(app: faust.App, metrics: HopMetrics) -> int:
    """Lag per partition of every topic the service consumes (not faust's changelogs); returns the total."""
    total = 0
    consumer = getattr(app, "_consumer", None)
    if consumer is None:
        return total
    committed = committed_offsets(app)
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
