"""The routing hop alone: pre-fill signals.received with N signals, start routing by itself, time its output."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench import procstat
from bench.chain_metrics import loop_figures
from bench.stats import rate_between
from schakel.processes import ServiceProcess
from shared.events import Contact, SignalReceived, Urgency, deterministic_id, encode_event, make_event, source_urn
from shared.pseudonym import subject_key
from shared.topics import SIGNALS_RECEIVED

ASSIGNED = "signals.assigned"


def signals(count: int, tag: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of `count` THUIS signals from OBS De Linde for postcode 3511, one child each."""
    out = []
    for n in range(count):
        sid = deterministic_id("bench-routing-hop", tag, str(n))
        signal = SignalReceived(
            signal_id=sid, reference=f"SK-2026-{n:08d}", partner_id="obs-de-linde", partner_kind="school",
            category="THUIS", urgency=Urgency.U2, subject_key=subject_key(secret="bench", bsn=f"8{n:08d}"),
            school_brin="12AB", flags=[], postcode_area="3511", summary_sealed="v1." + "A" * 180,
            received_at=datetime.now(UTC),
            reporter=Contact(name="Juf", email=f"melder-hop-{n}@delinde.example"), legal_basis="meldrecht",
            parents_informed=True)
        value = encode_event(make_event(signal, source=source_urn("intake"), subject=sid,
                                        event_id=deterministic_id("received", sid)))
        out.append((signal.subject_key.encode(), value))
    return out


def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """The topic's end offset per partition."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        return dict(consumer.end_offsets(tps))
    finally:
        consumer.close()


def timestamps_after(bootstrap: str, topic: str, start: dict[TopicPartition, int], want: int,
                     timeout_s: float) -> tuple[list[float], float]:
    """CreateTimes (epoch s) of records after `start` until `want` were read; and when the last one was read."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed")
    stamps: list[float] = []
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        while len(stamps) < want and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200, max_records=5000).values():
                stamps.extend(r.timestamp / 1000 for r in batch)
        return stamps, time.time()
    finally:
        consumer.close()


def routing_hop(bootstrap: str, routing: ServiceProcess, *, count: int, timeout_s: float = 300) -> dict[str, Any]:
    """With routing stopped, write `count` signals; start routing alone; its records/s and CPU per record."""
    routing.stop(timeout=15)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=1 << 20)
    for key, value in signals(count, str(int(time.time()))):
        producer.send(SIGNALS_RECEIVED.name, key=key, value=value)
    producer.flush(timeout=120)
    producer.close()
    start = end_offsets(bootstrap, ASSIGNED)
    started = time.time()
    routing.start()
    pid = routing.proc.pid if routing.proc else None
    stamps, read_at = timestamps_after(bootstrap, ASSIGNED, start, count, timeout_s)
    cpu = procstat.cpu_seconds(pid)
    rate = rate_between(stamps)
    metrics: dict[str, Any] = {}
    with contextlib.suppress(httpx.HTTPError):
        metrics = loop_figures(httpx.get(f"{routing.base_url}/metrics", timeout=10).text)
    return {"records": count, "assigned": len(stamps), "records_per_s": round(rate) if rate else None,
            "first_output_after_start_s": round(min(stamps) - started, 1) if stamps else None,
            "all_out_after_start_s": round(max(stamps) - started, 1) if stamps else None,
            "read_after_start_s": round(read_at - started, 1),
            "routing_cpu_s_incl_startup": cpu, "routing_rss_mib": procstat.rss_mib(pid), "metrics": metrics}
