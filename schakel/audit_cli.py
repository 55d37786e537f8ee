"""`schakel audit export`: the municipality's copy of the audit trail (topic audit.log) as JSON lines.

    schakel audit export --since 2026-01-01T00:00:00+01:00 [--until ...] [--signal <id>] > audit.jsonl

One line per access: time, who (partner id), in what capacity, what, the outcome, which signal.
The records carry no personal data. Reads the topic from the first offset at or after --since up to
its end at the moment the export starts (a throw-away consumer, no group, nothing committed). The
export itself is audit-logged too (action `export`, actor `operator`), as privacy rule 5 asks.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from schakel.progress import progress_bar
from shared.settings import Settings

TOPIC = "audit.log"


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def read_audit(bootstrap: str, *, since: datetime | None, until: datetime | None, signal_id: str | None = None,
               on_progress: Callable[[int, int], None] = lambda read, total: None) -> Iterator[dict[str, Any]]:
    """Audit records from `since` (inclusive) to `until` (exclusive), oldest first per partition.

    `on_progress(read, total)` hears after each fetched batch how many of the records to read were read.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                             consumer_timeout_ms=2000)
    try:
        partitions = [TopicPartition(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC) or ())]
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        if since is not None:
            starts = consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
            for tp in partitions:
                found = starts.get(tp)
                consumer.seek(tp, found.offset if found is not None else ends[tp])
        else:
            consumer.seek_to_beginning(*partitions)
        remaining = {tp for tp in partitions if consumer.position(tp) < ends[tp]}
        total = sum(ends[tp] - consumer.position(tp) for tp in remaining)
        read = 0
        while remaining:
            batch = consumer.poll(timeout_ms=2000)
            if not batch:
                break
            read += sum(1 for tp, records in batch.items() for record in records if record.offset < ends[tp])
            on_progress(min(read, total), total)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        remaining.discard(tp)
                        break
                    line = _line(record.value)
                    if line is None or (until is not None and _instant(line["time"]) >= until):
                        continue
                    if signal_id is None or line.get("signal_id") == signal_id:
                        yield line
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()


def _line(raw: bytes | None) -> dict[str, Any] | None:
    """One export line: the envelope's id and time with the audit fields."""
    try:
        event = json.loads(raw or b"")
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("type") != "nl.schakel.audit.recorded.v1":
        return None
    return {"id": event["id"], "time": event["time"], **event["data"]}


def export(args: argparse.Namespace) -> int:
    """Write the selected audit records as JSON lines and audit the export itself."""
    out = sys.stdout  # looked up when called: pytest and callers may have redirected it
    settings = Settings()
    since = _instant(args.since) if args.since else None
    until = _instant(args.until) if args.until else None
    count = 0
    with progress_bar("exporting") as progress:
        task = progress.add_task("audit.log", total=None)

        def advanced(read: int, total: int) -> None:
            progress.update(task, completed=read, total=total)

        for line in read_audit(settings.kafka_bootstrap, since=since, until=until, signal_id=args.signal,
                               on_progress=advanced):
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            count += 1
    _record_export(settings.kafka_bootstrap, signal_id=args.signal)
    print(f"exported {count} audit records", file=sys.stderr)
    return 0


def _record_export(bootstrap: str, *, signal_id: str | None) -> None:
    """Log the export on audit.log (who: the operator at this machine, no name)."""
    from kafka import KafkaProducer

    from shared.events import CLOUDEVENT_HEADERS, AuditRecorded, encode_event, make_event, source_urn, utcnow

    record = AuditRecorded(audit_id=str(uuid.uuid4()), signal_id=signal_id, actor_partner_id="operator",
                           on_behalf_of="operator", action="export", outcome="allowed", service="schakel-cli",
                           at=utcnow())
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        event = make_event(record, source=source_urn("cli"), subject=signal_id, event_id=record.audit_id)
        producer.send(TOPIC, key=(signal_id or "").encode(), value=encode_event(event),
                      headers=list(CLOUDEVENT_HEADERS)).get(timeout=10)
    finally:
        producer.close()


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `schakel audit export`."""
    audit = sub.add_parser("audit", help="the audit trail of every read and write of a signal")
    actions = audit.add_subparsers(dest="audit_action", required=True)
    exp = actions.add_parser("export", help="write audit records as JSON lines to standard output")
    exp.add_argument("--since", help="ISO 8601 instant, inclusive (default: the beginning)")
    exp.add_argument("--until", help="ISO 8601 instant, exclusive (default: now)")
    exp.add_argument("--signal", help="only this signal id")
    exp.set_defaults(func=export)
