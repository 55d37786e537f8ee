"""One measured window of the chain: a load run, the e-mails it causes, per-stage latencies, CPU and RSS."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kafka import KafkaConsumer, TopicPartition

from bench import procstat
from bench.collector import expected_mails, read_all
from bench.driver import Load
from bench.stats import rate_between, summary_ms
from schakel.mail_sink import SmtpSink

STAGES = ("202", "assigned", "lifecycle", "both e-mails", "both sent-records")


class Arrivals(Protocol):
    """Where e-mail arrival times come from: the sink's log (Tail) or notifications.sent (SentTail)."""

    first: dict[str, float]

    def poll(self) -> None: ...


class ExternalSink(SmtpSink):
    """Stands in for tests.harness.System's in-process sink: the real one (bench.sink_proc) runs elsewhere."""

    @property
    def running(self) -> bool:
        return True

    def stop(self) -> None:
        return None


@dataclass
class Tail:
    """Reads the sink's arrival log incrementally: Message-ID → first arrival (epoch)."""

    path: Path
    offset: int = 0
    first: dict[str, float] = field(default_factory=dict)

    def poll(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        cut = chunk.rfind(b"\n") + 1
        self.offset += cut
        for line in chunk[:cut].decode().splitlines():
            at, _, mid = line.partition(" ")
            self.first.setdefault(mid, float(at))


class SentTail:
    """Follows notifications.sent from its end: Message-ID → CreateTime of its first sent-record (epoch).

    notify writes that record after the SMTP server accepted the message, so it is the arrival time plus
    notify's produce; used when the sink (postfix's smtp-sink) keeps no log of its own.
    """

    def __init__(self, bootstrap: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                      isolation_level="read_committed")
        tps = [TopicPartition("notifications.sent", p)
               for p in sorted(self.consumer.partitions_for_topic("notifications.sent") or set())]
        self.consumer.assign(tps)
        self.consumer.seek_to_end(*tps)
        for tp in tps:
            self.consumer.position(tp)
        self.first: dict[str, float] = {}

    def poll(self) -> None:
        for batch in self.consumer.poll(timeout_ms=100, max_records=20000).values():
            for record in batch:
                with contextlib.suppress(TypeError, ValueError, KeyError):
                    mid = json.loads(record.value)["data"]["message_id"]
                    self.first.setdefault(mid, record.timestamp / 1000)


def sent_times(bootstrap: str, mids: set[str]) -> dict[str, float]:
    """Message-ID → CreateTime of its first record on notifications.sent."""
    out: dict[str, float] = {}
    for record in read_all(bootstrap, "notifications.sent", timeout_s=120):
        with contextlib.suppress(TypeError, ValueError, KeyError):
            mid = json.loads(record.value)["data"]["message_id"]
            if mid in mids:
                out[mid] = min(record.timestamp / 1000, out.get(mid, float("inf")))
    return out


def topic_times(bootstrap: str, topic: str, sids: set[str], *, change: str | None = None) -> dict[str, float]:
    """signal id → CreateTime (epoch s) of its first first-attempt record on a topic (lifecycle: of `change`)."""
    out: dict[str, float] = {}
    for record in read_all(bootstrap, topic, timeout_s=120):
        try:
            data = json.loads(record.value)["data"]
        except (TypeError, ValueError, KeyError):
            continue
        sid = data.get("signal_id")
        if sid not in sids or data.get("attempt", 1) != 1 or (change and data.get("change") != change):
            continue
        out[sid] = min(record.timestamp / 1000, out.get(sid, float("inf")))
    return out


@dataclass
class Window:
    """What one load run measured."""

    name: str
    offered: str
    sent: int
    accepted: int
    statuses: dict[str, int]
    completed: int
    lost: int
    seconds: float
    latency: dict[str, dict[str, Any]]
    cpu_s: dict[str, float | None]
    rss_mib: dict[str, float | None]
    connections: int
    resent: int
    eventually: int | None  # of the lost: how many had both e-mails once the backlog drained (None: not looked)
    completed_per_s: float | None  # between the first and the last completion (both e-mails)
    first_send_to_last_mail_per_s: float | None  # completions / (last completion - first scheduled send)
    accepted_per_s: float | None

    def cpu_ms_per_signal(self) -> dict[str, float | None]:
        return procstat.per_item_ms(self.cpu_s, self.accepted)


def both_of(mails: dict[str, str], first: dict[str, float]) -> dict[str, float]:
    """signal id → time its later e-mail arrived, for signals with both (mails: Message-ID → signal id)."""
    per_signal: dict[str, list[float]] = {}
    for mid, sid in mails.items():
        if mid in first:
            per_signal.setdefault(sid, []).append(first[mid])
    return {sid: max(ts) for sid, ts in per_signal.items() if len(ts) == 2}


def measure(*, name: str, offered: str, load: Load, run: str, pids: dict[str, int | None], bootstrap: str,
            tail: Arrivals, timeout_s: float) -> tuple[Window, dict[str, str]]:
    """Run the load, wait until every accepted signal has both e-mails (or timeout_s after the last answer).

    Returns the window and the Message-IDs it expects (→ signal id), to look for late ones after a drain.
    """
    before = procstat.sample(pids)
    load.go()
    result = load.wait()
    due, done, statuses, sid_of = result["due"], result["done"], result["status"], result["signal_id"]
    signal_ids = {seq: sid for seq, sid in enumerate(sid_of) if sid}
    mails = expected_mails(run, signal_ids)
    deadline = time.monotonic() + timeout_s
    while True:
        tail.poll()
        missing = sum(1 for mid in mails if mid not in tail.first)
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    after = procstat.sample(pids)
    spent = procstat.delta(before, after)
    spent["load generator"] = load.cpu_s
    rss = {n: procstat.rss_mib(p) for n, p in pids.items()}
    rss["load generator"] = load.rss_mib
    sids = set(signal_ids.values())
    assigned = topic_times(bootstrap, "signals.assigned", sids)
    lifecycle = topic_times(bootstrap, "signals.lifecycle", sids, change="assigned")
    mail_done = both_of(mails, tail.first)
    sent_done = both_of(mails, sent_times(bootstrap, set(mails)))
    lat: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for seq, sid in signal_ids.items():
        lat["202"].append(done[seq] - due[seq])
        for stage, times in (("assigned", assigned), ("lifecycle", lifecycle), ("both e-mails", mail_done),
                             ("both sent-records", sent_done)):
            if sid in times:
                lat[stage].append(times[sid] - due[seq])
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    finished = sorted(mail_done.values())
    span = (max(finished) - min(due)) if finished and due else 0.0
    steady = rate_between(finished)
    accepted_span = max(done) - min(due) if done and due else 0.0
    window = Window(name=name, offered=offered, sent=len(due), accepted=len(signal_ids), statuses=counts,
                  completed=len(mail_done), lost=len(signal_ids) - len(mail_done),
                  seconds=round(span, 2), latency={stage: summary_ms(v) for stage, v in lat.items()},
                  cpu_s=spent, rss_mib=rss, connections=int(result.get("connections", 0)),
                  resent=int(result.get("resent", 0)),
                  completed_per_s=round(steady, 1) if steady else None,
                  first_send_to_last_mail_per_s=round(len(mail_done) / span, 1) if span else None,
                  accepted_per_s=round(len(signal_ids) / accepted_span, 1) if accepted_span else None,
                  eventually=None)
    return window, mails
