"""Metric helpers: the per-hop metrics every service has, label pre-creation, the /metrics app."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.offset_continuity import GapOutcome

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Business durations (time to acknowledge, to feedback, to close): minutes to months.
GAP_OUTCOMES = tuple(outcome.value for outcome in GapOutcome)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
DAY = 86400.0
LIFECYCLE_BUCKETS = (60.0, 600.0, 3600.0, 4 * 3600.0, DAY, 2 * DAY, 5 * DAY, 10 * DAY, 20 * DAY, 40 * DAY, 90 * DAY)
# Every code shared.record_loop.RecordLoop dead-letters with (shared.events.decode_event and decode_as, plus
# "unprocessable_record"); pass as HopMetrics(dead_letter_reasons=...) so the series exist before the first one.
RECORD_DEAD_LETTER_REASONS = (
    "empty_record", "bad_json", "bad_envelope", "unknown_event_type", "schema_violation", "unexpected_event_type",
    "unprocessable_record",
)


def precreate(metric: Any, label_sets: Iterable[Mapping[str, str]]) -> None:
    """Create every known label combination so the series exist before the first event."""
    for labels in label_sets:
        metric.labels(**labels)


def combos(**values: Sequence[str]) -> list[dict[str, str]]:
    """Every combination of the given label values."""
    result: list[dict[str, str]] = [{}]
    for name, options in values.items():
        result = [{**partial, name: option} for partial in result for option in options]
    return result


class Children:
    """A metric's children by label values, each looked up once.

    prometheus-client's `labels()` validates the values and takes a lock on every call: about 4 % of routing's
    samples when called five times per record (docs/benchmarks.md). For metrics whose series are never removed.
    """

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        """The child for these label values, in the metric's label order."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


def by_topic(topics: Iterable[str]) -> dict[str, int]:
    """How many of the records are of each topic."""
    counts: dict[str, int] = {}
    for topic in topics:
        counts[topic] = counts.get(topic, 0) + 1
    return counts


class HopMetrics:
    """Records in and out, processing time, lag, dead letters and readiness of one service."""

    def __init__(
        self, service: str, *, registry: CollectorRegistry, consumes: Sequence[str], produces: Sequence[str],
        dead_letter_reasons: Sequence[str] = (),
    ) -> None:
        self.service = service
        self.consumes = frozenset(consumes)
        # Last processed offset per (topic, partition), shared by every record loop of the service.
        self.processed: dict[tuple[str, int], int] = {}
        # For the stall watch: when a record was last finished, and how many are being handled now.
        self.last_progress = time.monotonic()
        self.busy = 0
        self.consumed = Counter(
            f"{service}_records_consumed_total", "Records read from Kafka.", ["topic"], registry=registry
        )
        self.produced = Counter(
            f"{service}_records_produced_total", "Records written to Kafka and acknowledged.", ["topic"],
            registry=registry,
        )
        self.duration = Histogram(
            f"{service}_record_processing_duration_seconds", "Time to handle one consumed record.", ["topic"],
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.lag = Gauge(
            f"{service}_consumer_lag_records", "Records not yet processed, per partition.", ["topic", "partition"],
            registry=registry,
        )
        self.dead_letters = Counter(
            f"{service}_dead_letters_total", "Records written to a dead-letter topic.", ["topic", "reason"],
            registry=registry,
        )
        self.batch_size = Histogram(
            f"{service}_batch_size_records", "Records handled together in one batch of a record loop.",
            buckets=BATCH_BUCKETS, registry=registry,
        )
        self.offset_gaps = Counter(
            f"{service}_offset_gaps_total", "Jumps in a partition's offsets: read again, or a hole proved real.",
            ["topic", "outcome"], registry=registry,
        )
        self.ready = Gauge(f"{service}_ready", "1 when connected to Kafka and tables are recovered.",
                           registry=registry)
        self.consumed_of, self.produced_of = Children(self.consumed), Children(self.produced)
        self.duration_of = Children(self.duration)
        precreate(self.consumed, combos(topic=consumes))
        precreate(self.duration, combos(topic=consumes))
        precreate(self.produced, combos(topic=produces))
        precreate(self.dead_letters, combos(topic=consumes, reason=dead_letter_reasons))
        precreate(self.offset_gaps, combos(topic=consumes, outcome=GAP_OUTCOMES))

