"""`schakel repair handoffs`: hand on the signals whose rejection came without the facts routing needs (ADR 0023).

    schakel repair handoffs --dry-run     # what would happen, nothing written
    schakel repair handoffs               # republish every stranded rejection whose assignment is found

Reads signals.lifecycle for rejections without facts (those an old feedback worker wrote, dead-lettered by
routing as `rejection_without_assignment` or parked by the release before) and what followed them,
privacy.erasures for erased signals, then signals.assigned for the assignments they rejected (throw-away
consumers, no group, nothing committed), and publishes each rejection that was not handed on, erased or taken
up since again on signals.lifecycle, in its own partition, with the assignment's facts
(schakel.handoff_repair). Running it twice is harmless: a copy already on the topic is listed as pending and a
signal handed on since as such, and neither is published again. Each republished rejection is audited (action
`repair_handoff`, actor `operator`, an audit id derived from the rejection's event id). Exit code: 0 when
nothing is left to do by hand, 1 when a rejection's assignment is no longer on signals.assigned or names
another body (the coordinator takes that signal up), 2 when the topics could not be read or written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from schakel.handoff_repair import Assignments, Lifecycle, Repair, Verdict, decide
from schakel.progress import progress_bar
from schakel.replay_kafka import HistoryError, Record, TopicReader
from shared.events import (
    CLOUDEVENT_HEADERS,
    AuditRecorded,
    deterministic_id,
    encode_event,
    make_event,
    source_urn,
    utcnow,
)
from shared.settings import Settings
from shared.topics import AUDIT_LOG, PRIVACY_ERASURES, SIGNALS_ASSIGNED, SIGNALS_LIFECYCLE

if TYPE_CHECKING:
    from rich.progress import Progress

BY_HAND = frozenset({Verdict.NO_ASSIGNMENT, Verdict.BODY_MISMATCH})

SEND_TIMEOUT_S = 30.0


def _read(bootstrap: str, topic: str, progress: Progress, add: Callable[[Record], None]) -> None:
    """Hand every record of a topic to `add`, with a progress bar of its own."""
    with TopicReader(bootstrap, topic) as reader:
        task = progress.add_task(topic, total=reader.history.total)
        for batch in reader.batches():
            for record in batch:
                add(record)
            progress.advance(task, len(batch))


def find_repairs(bootstrap: str) -> list[Repair]:
    """The verdict on every rejection without facts on signals.lifecycle (reads three topics, writes nothing)."""
    lifecycle = Lifecycle()
    with progress_bar("reading") as progress:
        _read(bootstrap, SIGNALS_LIFECYCLE.name, progress, lifecycle.add)
        if not lifecycle.stranded:
            return []
        _read(bootstrap, PRIVACY_ERASURES.name, progress, lifecycle.add_erasure)
        assignments = Assignments(wanted=lifecycle.signal_ids)
        _read(bootstrap, SIGNALS_ASSIGNED.name, progress, assignments.add)
    return decide(lifecycle, assignments)


def republish(bootstrap: str, repairs: list[Repair]) -> int:
    """Publish the repaired rejections and their audit records; wait until the broker has every one."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5)
    try:
        sent = []
        for repair in repairs:
            if repair.value is None:
                continue
            key = repair.signal_id.encode()
            sent.append(producer.send(SIGNALS_LIFECYCLE.name, key=key, value=repair.value,
                                      partition=repair.stranded.partition, headers=list(CLOUDEVENT_HEADERS)))
            audit_id = deterministic_id("repair-handoff", repair.stranded.envelope.id)
            audit = AuditRecorded(audit_id=audit_id, signal_id=repair.signal_id, actor_partner_id="operator",
                                  on_behalf_of="operator", action="repair_handoff", outcome="allowed",
                                  service="schakel-cli", at=utcnow())
            event = make_event(audit, source=source_urn("cli"), subject=repair.signal_id, event_id=audit.audit_id)
            sent.append(producer.send(AUDIT_LOG.name, key=key, value=encode_event(event),
                                      headers=list(CLOUDEVENT_HEADERS)))
        for future in sent:
            future.get(timeout=SEND_TIMEOUT_S)
        return sum(1 for r in repairs if r.value is not None)
    finally:
        producer.close()


def report(repairs: list[Repair], *, dry_run: bool, out: TextIO) -> None:
    """One line per stranded rejection (ids and bodies only: nothing about the child), then the counts."""
    done = {Verdict.REPUBLISH: "would republish" if dry_run else "republished", Verdict.HANDED_ON: "handed on already",
            Verdict.ERASED: "erased", Verdict.PENDING: "republished before, routing has yet to hand it on",
            Verdict.MOVED_ON: "taken up since: left alone",
            Verdict.NO_ASSIGNMENT: "NO ASSIGNMENT: take it up by hand",
            Verdict.BODY_MISMATCH: "ASSIGNMENT NAMES ANOTHER BODY: take it up by hand"}
    for repair in repairs:
        r = repair.stranded.rejection
        out.write(f"{r.signal_id}  attempt {r.attempt}  rejected by {r.body_id}  (signals.lifecycle "
                  f"{repair.stranded.partition}:{repair.stranded.offset})  {done[repair.verdict]}\n")
    counts = {verdict: sum(1 for r in repairs if r.verdict is verdict) for verdict in Verdict}
    out.write(f"rejections without facts: {len(repairs)}; {counts[Verdict.REPUBLISH]} {done[Verdict.REPUBLISH]}, "
              f"{counts[Verdict.HANDED_ON]} handed on already, {counts[Verdict.PENDING]} pending, "
              f"{counts[Verdict.ERASED]} erased, {counts[Verdict.MOVED_ON]} taken up since, "
              f"{counts[Verdict.NO_ASSIGNMENT] + counts[Verdict.BODY_MISMATCH]} to take up by hand\n")


def handoffs(args: argparse.Namespace) -> int:
    """Find, report and (unless --dry-run) republish; the exit code says what is left."""
    from kafka.errors import KafkaError

    bootstrap = args.bootstrap or Settings().kafka_bootstrap
    try:
        repairs = find_repairs(bootstrap)
        if not args.dry_run:
            republish(bootstrap, repairs)
    except (HistoryError, KafkaError, OSError) as exc:
        print(f"cannot repair: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    report(repairs, dry_run=args.dry_run, out=sys.stdout)
    return 1 if any(r.verdict in BY_HAND for r in repairs) else 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `schakel repair handoffs`."""
    repair = sub.add_parser("repair", help="mend what an upgrade left behind")
    actions = repair.add_subparsers(dest="repair_action", required=True)
    hand = actions.add_parser("handoffs", help="republish rejections that came without the facts routing needs "
                                               "(dead letters rejection_without_assignment), with them (ADR 0023)")
    hand.add_argument("--bootstrap", help="Kafka bootstrap servers (default: SCHAKEL_KAFKA_BOOTSTRAP)")
    hand.add_argument("--dry-run", action="store_true", help="report only; write nothing")
    hand.set_defaults(func=handoffs)
