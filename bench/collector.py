"""Read every output topic (read_committed, from the beginning, no group) and the SMTP sink; count lost and duplicated.

A hop's figures, for the signals the submitter had accepted (202):
  lost         sent in, never came out at this hop
  dup_raw      extra records beyond one per signal (or per Message-ID), as read
  dup_dedup    extra records left after deduplicating by CloudEvents id (what a consumer idempotent by event
               id would still see twice) — for e-mails: extra copies of one Message-ID
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from bench.load import HANDLER, reporter_email
from schakel.mail_sink import SmtpSink
from shared.events import deterministic_id
from shared.settings import Settings

MAIL_DOMAIN = Settings().mail_from.rsplit("@", 1)[1].rstrip(">").strip().lower()
DLQ_TOPICS = ("signals.inbound.dlq", "signals.received.dlq", "signals.lifecycle.dlq", "notifications.dlq")


def read_all(bootstrap: str, topic: str, *, timeout_s: float = 60.0) -> list[Any]:
    """Every committed record on a topic, all partitions, up to the end offsets seen at the start."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             auto_offset_reset="earliest", isolation_level="read_committed",
                             max_partition_fetch_bytes=4 * 1024 * 1024)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300, max_records=5000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def end_total(bootstrap: str, topic: str) -> int:
    """The sum of a topic's end offsets (a cheap progress counter; includes aborted and control records)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        return sum(consumer.end_offsets(tps).values()) if tps else 0
    finally:
        consumer.close()


def message_id(event_id: str, recipient: str) -> str:
    """The deterministic Message-ID notify gives one event's e-mail to one recipient (rendering.message_id_for)."""
    from services.notify.rendering import message_id_for

    return message_id_for(event_id=event_id, recipient=recipient, domain=MAIL_DOMAIN)


def expected_mails(run: str, signal_ids: dict[int, str]) -> dict[str, str]:
    """Message-ID → signal id of every e-mail the first assignment calls for: wijkteam intake + reporter receipt."""
    out: dict[str, str] = {}
    for seq, sid in signal_ids.items():
        event_id = deterministic_id("assigned", sid, "1")
        for recipient in (HANDLER, reporter_email(run, seq)):
            out[message_id(event_id, recipient)] = sid
    return out


@dataclass
class Hop:
    """One hop's counts for the expected keys (signal ids or Message-IDs)."""

    name: str
    expected: int
    seen: int = 0
    lost: int = 0
    dup_raw: int = 0
    dup_dedup: int = 0
    records: int = 0
    first_at: dict[str, float] = field(default_factory=dict)  # key → time of its first output (s, epoch)
    times: list[float] = field(default_factory=list)  # every output's time (s, epoch)
    per_key: dict[str, int] = field(default_factory=dict)  # key → records as read
    owner: dict[str, str] = field(default_factory=dict)  # Message-ID → signal id (e-mail hops)

    def row(self) -> dict[str, Any]:
        return {"hop": self.name, "expected": self.expected, "out": self.seen, "lost": self.lost,
                "dup raw": self.dup_raw, "dup after dedup": self.dup_dedup}


def count(name: str, expected: Iterable[str], items: Iterable[tuple[str, str, float]]) -> Hop:
    """Count (key, event id, time) items against the expected keys."""
    wanted = set(expected)
    raw: dict[str, int] = defaultdict(int)
    ids: dict[str, set[str]] = defaultdict(set)
    hop = Hop(name, len(wanted))
    for key, event_id, at in items:
        if key not in wanted:
            continue
        hop.records += 1
        raw[key] += 1
        ids[key].add(event_id)
        hop.times.append(at)
        hop.first_at[key] = min(at, hop.first_at.get(key, at))
    hop.seen = len(raw)
    hop.per_key = dict(raw)
    hop.lost = len(wanted - set(raw))
    hop.dup_raw = sum(n - 1 for n in raw.values())
    hop.dup_dedup = sum(len(s) - 1 for s in ids.values())
    return hop


@dataclass
class Collected:
    """Every hop of one run, plus the dead letters."""

    hops: dict[str, Hop]
    dead_letters: dict[str, int]
    waited_s: float = 0.0  # how long settled() waited for the output before this count

    @property
    def lost(self) -> int:
        return sum(h.lost for h in self.hops.values())

    def rows(self) -> list[dict[str, Any]]:
        return [h.row() for h in self.hops.values()]


def _events(bootstrap: str, topic: str) -> list[tuple[dict[str, Any], float]]:
    out = []
    for record in read_all(bootstrap, topic):
        try:
            out.append((json.loads(record.value), record.timestamp / 1000))
        except (TypeError, ValueError):
            continue
    return out


def sink_mails(sink: SmtpSink, arrival: dict[str, list[float]] | None = None) -> list[tuple[str, str, float]]:
    """(Message-ID, copy id, arrival time) of every accepted message (arrival from a hook, else 0)."""
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    out = []
    seen: dict[str, int] = defaultdict(int)
    for mail in sink.messages:
        mid = str(parser.parsebytes(mail.data).get("Message-ID", "")).strip()
        times = (arrival or {}).get(mid, [])
        at = times[seen[mid]] if seen[mid] < len(times) else 0.0
        out.append((mid, f"{mid}#{seen[mid]}", at))  # every copy counts: dedup by Message-ID is the test
        seen[mid] += 1
    return out


def collect(bootstrap: str, sink: SmtpSink, *, run: str, signal_ids: dict[int, str],
            arrival: dict[str, list[float]] | None = None) -> Collected:
    """Read everything and count per hop for the accepted signals."""
    sids = set(signal_ids.values())
    received = _events(bootstrap, "signals.received")
    assigned = [(e, t) for e, t in _events(bootstrap, "signals.assigned") if e["data"].get("attempt", 1) == 1]
    lifecycle = [(e, t) for e, t in _events(bootstrap, "signals.lifecycle")
                 if e["data"].get("change") == "assigned" and e["data"].get("attempt", 1) == 1]
    sent = _events(bootstrap, "notifications.sent")
    mails = expected_mails(run, signal_ids)
    hops = {
        "received": count("signals.received", sids, ((e["data"]["signal_id"], e["id"], t) for e, t in received)),
        "assigned": count("signals.assigned", sids, ((e["data"]["signal_id"], e["id"], t) for e, t in assigned)),
        "lifecycle": count("signals.lifecycle", sids, ((e["data"]["signal_id"], e["id"], t) for e, t in lifecycle)),
        "sent": count("notifications.sent", mails, ((e["data"]["message_id"], e["id"], t) for e, t in sent)),
        "email": count("e-mail (sink)", mails, sink_mails(sink, arrival)),
    }
    hops["sent"].owner = hops["email"].owner = mails
    dead = {topic: len(read_all(bootstrap, topic, timeout_s=10)) for topic in DLQ_TOPICS}
    return Collected(hops, dead)


OUTPUT_TOPICS = ("signals.received", "signals.assigned", "signals.lifecycle", "notifications.sent")


def progress(bootstrap: str, sink: SmtpSink) -> int:
    """A cheap counter that grows while any hop still produces: the output topics' end offsets plus the mails."""
    return sum(end_total(bootstrap, topic) for topic in OUTPUT_TOPICS) + len(sink.messages)


@dataclass
class _Progress:
    """Watches the cheap progress counter: is the output still growing, or should the wait end?"""

    bootstrap: str
    sink: SmtpSink
    deadline: float
    cap: float
    stall_s: float
    last: int = -1
    moved_at: float = field(default_factory=time.monotonic)

    def moves_until(self, until: float) -> bool:
        """Watch until `until`; False once past the cap, or past the deadline with nothing moved for stall_s."""
        while time.monotonic() < until:
            time.sleep(2.0)
            now_progress, now = progress(self.bootstrap, self.sink), time.monotonic()
            if now_progress != self.last:
                self.last, self.moved_at = now_progress, now
            if now > self.cap or (now > self.deadline and now - self.moved_at > self.stall_s):
                return False
        return True


def settled(bootstrap: str, sink: SmtpSink, *, run: str, signal_ids: dict[int, str], timeout_s: float,
            arrival: dict[str, list[float]] | None = None, quiet_s: float = 6.0, stall_s: float = 30.0) -> Collected:
    """Poll until every hop has everything, then collect.

    After `timeout_s` it goes on waiting for as long as the output still grows (on a loaded machine a hop can be
    late, and late is not lost), up to three times `timeout_s` more; it gives up once nothing moved for
    `stall_s`. A full count reads every topic from the beginning, which on a big run costs seconds of CPU the
    services need, so between full counts it watches only the cheap progress counter.
    """
    started = time.monotonic()
    watch = _Progress(bootstrap, sink, deadline=started + timeout_s, cap=started + 4 * timeout_s, stall_s=stall_s)
    while True:
        count_started = time.monotonic()
        result = collect(bootstrap, sink, run=run, signal_ids=signal_ids, arrival=arrival)
        count_took = time.monotonic() - count_started
        if result.lost == 0 or not watch.moves_until(time.monotonic() + max(2.0, 3 * count_took)):
            break
    waited = time.monotonic() - started
    # Let late duplicates (redeliveries after a restart) land before the final count.
    time.sleep(min(quiet_s, 2.0 + len(signal_ids) / 1000))
    final = collect(bootstrap, sink, run=run, signal_ids=signal_ids, arrival=arrival)
    final.waited_s = round(waited, 1)
    return final

