"""`schakel routes replay` (and `config diff --replay`): route the history of `signals.received` again, compare.

Both sides are replayed from the same records: the candidate file against the current one (SCHAKEL_CONFIG, or
`--against OLD`). `signals.assigned` is not the baseline on purpose: it holds whatever rules were live when each
signal came in (and hand-offs after rejections), so it would mix earlier rule changes into this one, and reading
it would double the I/O. Nothing is written to Kafka.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from schakel.replay import DEFAULT_LIMIT, Replay
from shared.municipality import Municipality
from shared.settings import Settings
from shared.topics import SIGNALS_RECEIVED

if TYPE_CHECKING:  # rich and kafka are imported when a replay runs, so the CLI starts light
    from rich.console import Console


@dataclass(frozen=True)
class Timed:
    """A finished replay and how long reading and routing took."""

    replay: Replay
    seconds: float


def replay_topic(*, bootstrap: str, old: Municipality, new: Municipality, topic: str = SIGNALS_RECEIVED.name,
                 limit: int = DEFAULT_LIMIT, since: datetime | None = None,
                 console: Console | None = None) -> Timed:
    """Read the topic to its end offsets at the start and replay every record under both files."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from schakel.replay import Fold
    from schakel.replay_kafka import TopicReader

    began = time.perf_counter()
    replay = Replay(Fold(old), Fold(new), limit=limit, since=since)
    with TopicReader(bootstrap, topic) as reader:
        progress = Progress(TextColumn("replaying {task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console or Console(stderr=True), transient=True,
                            disable=console is None)
        with progress:
            task = progress.add_task(topic, total=reader.history.total)
            for batch in reader.batches():
                for record in batch:
                    replay.feed(record.value, partition=record.partition, offset=record.offset)
                progress.advance(task, len(batch))
    return Timed(replay, time.perf_counter() - began)


def _load(path: Path, console: Console) -> Municipality | None:
    from shared.municipality import ConfigError, load_municipality

    try:
        return load_municipality(path)
    except ConfigError as exc:
        console.print(str(exc), markup=False, highlight=False)
        return None


def report(timed: Timed, *, old: Path, new: Path, topic: str, console: Console) -> None:
    """The summary, the unreadable records, the table of moves and the capped list of moved signals."""
    from rich.table import Table

    r = timed.replay
    rate = r.records / timed.seconds if timed.seconds else 0.0
    console.print(f"{topic}: {r.records} records in {timed.seconds:.1f} s ({rate:.0f}/s); {old} -> {new}",
                  markup=False, highlight=False)
    lines = [f"{r.signals} signals routed under both files, {r.moved_total} would go to another body, "
             f"{r.same_body_other_rule} to the same body under another rule"]
    if r.since is not None:
        lines.append(f"{r.before_period} signals before {r.since:%Y-%m-%d} folded for the match state only")
    if r.redeliveries:
        lines.append(f"{r.redeliveries} redelivered signals skipped, as routing skips them"
                     + (f" ({r.redelivery_mismatches} skipped under one file only)" if r.redelivery_mismatches else ""))
    for line in lines:
        console.print(f"  {line}", markup=False, highlight=False)
    if r.unreadable_total:
        codes = ", ".join(f"{code} {count}" for code, count in r.unreadable_by_code.most_common())
        records = "record" if r.unreadable_total == 1 else "records"
        console.print(f"  {r.unreadable_total} {records} could not be read as received signals ({codes}):",
                      style="bold red", markup=False, highlight=False)
        for u in r.unreadable:
            console.print(f"    partition {u.partition} offset {u.offset}: {u.code}", markup=False, highlight=False)
    if not r.moved_total:
        return
    groups = Table(title="Signals that would go to another body")
    for column in ("from body", "to body", "rule deciding now", "signals"):
        groups.add_column(column, justify="right" if column == "signals" else "left")
    for (old_body, new_body, rule), count in r.groups.most_common():
        groups.add_row(old_body, new_body, rule, str(count))
    console.print(groups)
    listed = Table(title=f"Moved signals ({len(r.moved)} of {r.moved_total}; --limit for more)")
    for column in ("reference", "signal id", "partition:offset", "now", "under the candidate", "why"):
        listed.add_column(column)
    for m in r.moved:
        listed.add_row(m.reference, m.signal_id, f"{m.partition}:{m.offset}", f"{m.old.body_id} ({m.old.rule_id})",
                       m.new.body_id, f"{m.new.rule_id}: {m.new.description}")
    console.print(listed)


def run(*, old_path: Path, new_path: Path, bootstrap: str, topic: str = SIGNALS_RECEIVED.name,
        limit: int = DEFAULT_LIMIT, days: int | None = None, console: Console | None = None) -> int:
    """Replay and report: 0 when nothing would move, 1 when something would, 2 when it could not replay."""
    from rich.console import Console

    from schakel.replay_kafka import HistoryError
    from shared.events import utcnow

    if console is None:
        console = Console()
        if not console.is_terminal:  # a pipe or a log: wide enough that references are never folded
            console = Console(width=200)
    old, new = _load(old_path, console), _load(new_path, console)
    if old is None or new is None:
        return 2
    since = utcnow() - timedelta(days=days) if days else None
    try:
        timed = replay_topic(bootstrap=bootstrap, old=old, new=new, topic=topic, limit=limit, since=since,
                             console=Console(stderr=True))
    except HistoryError as exc:
        console.print(f"cannot replay: {exc}", markup=False, highlight=False)
        return 2
    report(timed, old=old_path, new=new_path, topic=topic, console=console)
    return 1 if timed.replay.moved_total else 0


def add_arguments(parser: argparse.ArgumentParser, *, days: int | None) -> None:
    """The options replay shares between `routes replay` and `config diff --replay`."""
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: SCHAKEL_KAFKA_BOOTSTRAP)")
    parser.add_argument("--topic", default=SIGNALS_RECEIVED.name, help="the history to replay")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="how many moved signals to list")
    parser.add_argument("--days", type=int, default=days,
                        help="report only signals of the last DAYS days (earlier ones still count for matching)"
                             + (f"; default {days}" if days else "; default: the whole history"))


def from_args(args: argparse.Namespace, *, old: str | None, new: str | None) -> int:
    """Run a replay from parsed arguments; a missing file means SCHAKEL_CONFIG."""
    settings = Settings()
    return run(old_path=Path(old) if old else settings.config, new_path=Path(new) if new else settings.config,
               bootstrap=args.bootstrap or settings.kafka_bootstrap, topic=args.topic, limit=args.limit,
               days=args.days)


def _replay(args: argparse.Namespace) -> int:
    return from_args(args, old=args.against, new=args.candidate)


def add_parser(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `schakel routes replay` under `schakel routes`."""
    replay = actions.add_parser("replay", help="route the history of signals.received again under a candidate file "
                                                "and list the signals that would go to another body (writes nothing)")
    replay.add_argument("candidate", nargs="?", help="candidate municipality file (default: SCHAKEL_CONFIG)")
    replay.add_argument("--against", help="compare with this file instead of SCHAKEL_CONFIG")
    add_arguments(replay, days=None)
    replay.set_defaults(func=_replay)
