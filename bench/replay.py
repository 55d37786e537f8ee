"""Replay speed: `python -m bench.replay [--signals 168000] [--profile]`.

Writes two years of received signals of Gemeente Lindendam (examples/gemeente-voorbeeld.yaml: all seven partners,
children signalled by several partners, siblings with a family key, categories, urgencies, flags and postcodes
drawn per partner kind, a few redeliveries and undecodable records) to `signals.received` on a broker of its own,
then replays it with `schakel routes replay`'s code, progress bar on stderr included (drawn on a tty), under a
candidate file (police signals about home go to the OOV-overleg; a one-year match window) against the example.
Prints seconds and signals/s and merges `replay_<N/1000>k_s` into bench/results/latest.json. Not a pass/fail test
(issue 10's target: 168,000 in 60 s).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaProducer
from rich.console import Console

from bench.results import RESULTS, write_results
from bench.stack import start_broker
from schakel.replay_cli import replay_topic
from shared.events import Contact, SignalReceived, Urgency, deterministic_id, encode_event, make_event, source_urn
from shared.municipality import Municipality, load_municipality
from shared.pseudonym import family_key, subject_key
from shared.settings import REPO_ROOT
from shared.taxonomy import CATEGORIES
from shared.topics import SIGNALS_RECEIVED

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
SECRET = "bench-pseudonym-secret"
SCHOOL_CATEGORIES = ["ONT", "KLAS", "CONC", "VERZ", "EMO", "PEST", "HULP", "SOC", "GEZ", "THUIS", "HGKM"]
BY_KIND: dict[str, tuple[list[str], list[int]]] = {
    "school": (SCHOOL_CATEGORIES, [8, 10, 8, 10, 12, 10, 6, 6, 5, 20, 5]),
    "police": (["OVERL", "GROEP", "CRIM", "THUIS", "HGKM", "ACUUT"], [35, 20, 25, 12, 5, 3]),
    "wijkteam": (["THUIS", "BASIS", "HGKM", "EMO"], [50, 35, 10, 5]),
    "leerplicht": (["VERZ"], [1]),
    "municipality": (["THUIS", "BASIS", "OVERL", "ACUUT", "HGKM"], [30, 20, 20, 10, 20]),
}
PARTNERS = [("obs-de-linde", "school", "12AB"), ("cbs-het-anker", "school", "34CD"),
            ("politie-basisteam", "police", None), ("wijkteam-centrum", "wijkteam", None),
            ("wijkteam-oost", "wijkteam", None), ("leerplicht", "leerplicht", None), ("gemeente", "municipality", None)]
PARTNER_WEIGHTS = [30, 25, 20, 8, 7, 6, 4]
POSTCODES = ["3511", "3512", "3513", "3581", "3582", "3521", "3541", "3552", None]
POSTCODE_WEIGHTS = [15, 12, 10, 14, 12, 8, 6, 5, 4]


def candidate_file(directory: Path) -> Path:
    """The example with two covenant changes: police signals about home go to OOV; a one-year match window."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    routing = data["routing"]
    routing["match_window_days"] = 365
    at = next(i for i, rule in enumerate(routing["rules"]) if rule["id"] == "thuis-wijkteam")
    routing["rules"].insert(at, {
        "id": "thuis-politie", "when": {"category": ["THUIS", "BASIS"], "partner_kind": "police"}, "target": "oov",
        "description": "Zorgen over thuis die de politie meldt gaan naar het OOV-overleg", "inform": ["coordinator"],
        "handoff": ["postcode_wijkteam"]})
    path = directory / "gemeente-kandidaat.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def history(count: int, *, seed: int = 7) -> Iterator[SignalReceived]:
    """`count` signals over two years, oldest first: ~3 per child (500 children far more), siblings by family."""
    rng = random.Random(seed)
    children = max(1, count // 3)
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=730)  # the topic keeps two years (the Verwijsindex retention)
    step = (end - start) / count
    sealed = "v1." + "A" * 180  # the shape of a sealed summary; replay never opens it
    for n in range(count):
        child = rng.randrange(min(500, children)) if rng.random() < 0.05 else rng.randrange(children)
        partner, kind, brin = rng.choices(PARTNERS, PARTNER_WEIGHTS)[0]
        categories, weights = BY_KIND[kind]
        category = rng.choices(categories, weights)[0]
        urgency = CATEGORIES[category].urgency
        if rng.random() < 0.1:
            urgency = rng.choice(list(Urgency))
        flags = [f for f, p in (("SIBLING_LINK", 0.05), ("GROUP_LINK", 0.04), ("TRANSITION_VO", 0.03))
                 if rng.random() < p]
        school = brin or (rng.choice(["12AB", "34CD", None]) if kind != "police" else None)
        received_at = start + step * n
        sid = deterministic_id("bench-replay", str(seed), str(n))
        yield SignalReceived(
            signal_id=sid, reference=f"SK-{received_at.year}-{n:08d}", partner_id=partner, partner_kind=kind,
            category=category, urgency=urgency, subject_key=subject_key(secret=SECRET, bsn=f"9{child:08d}"),
            family_key=family_key(secret=SECRET, family_ref=f"gezin-{child // 2}") if child % 3 == 0 else None,
            school_brin=school, flags=flags, postcode_area=rng.choices(POSTCODES, POSTCODE_WEIGHTS)[0],
            summary_sealed=sealed, received_at=received_at,
            reporter=Contact(name="Melder", email=f"melder-{partner}@partner.example"),
            legal_basis="meldrecht", parents_informed=rng.random() < 0.6)


def write_history(bootstrap: str, count: int) -> dict[str, int]:
    """Produce the history keyed by subject key, with ~0.2 % redeliveries and a few undecodable records."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50, batch_size=1 << 20,
                             max_request_size=8 << 20)
    rng = random.Random(11)
    written = {"signals": 0, "redeliveries": 0, "undecodable": 0}
    for signal in history(count):
        value = encode_event(make_event(signal, source=source_urn("intake"), subject=signal.signal_id,
                                        event_id=deterministic_id("received", signal.signal_id)))
        key = signal.subject_key.encode()
        producer.send(SIGNALS_RECEIVED.name, key=key, value=value)
        written["signals"] += 1
        if rng.random() < 0.002:
            producer.send(SIGNALS_RECEIVED.name, key=key, value=value)
            written["redeliveries"] += 1
        if rng.random() < 0.0001:
            producer.send(SIGNALS_RECEIVED.name, key=key, value=b'{"specversion": "1.0", "not": "an event"')
            written["undecodable"] += 1
    producer.flush(timeout=300)
    producer.close()
    return written


def replay_once(bootstrap: str, *, old: Municipality, new: Municipality, profile: bool) -> Any:
    """One replay with the CLI's progress bar on stderr (optionally under cProfile, printing the top)."""
    console = Console(stderr=True)
    if not profile:
        return replay_topic(bootstrap=bootstrap, old=old, new=new, console=console)
    profiler = cProfile.Profile()
    timed = profiler.runcall(replay_topic, bootstrap=bootstrap, old=old, new=new, console=console)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    return timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--signals", type=int, default=168_000)
    parser.add_argument("--profile", action="store_true", help="run the replay under cProfile and print the top")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/latest.json")
    args = parser.parse_args(argv)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores,"
          f" {platform.processor() or platform.machine()}, Python {platform.python_version()}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="schakel-bench-replay-"))
    broker = start_broker(root / "kafka")
    try:
        old, new = load_municipality(EXAMPLE), load_municipality(candidate_file(root))
        began = time.perf_counter()
        written = write_history(broker.bootstrap, args.signals)
        print(f"wrote {written} in {time.perf_counter() - began:.1f} s", flush=True)
        timed = replay_once(broker.bootstrap, old=old, new=new, profile=args.profile)
    finally:
        broker.stop(kill=True)
        shutil.rmtree(root, ignore_errors=True)
    r = timed.replay
    rate = r.records / timed.seconds
    print(f"replayed {r.records} records ({r.signals} signals, {r.redeliveries} redeliveries,"
          f" {r.unreadable_total} undecodable) in {timed.seconds:.1f} s: {rate:.0f} signals/s")
    print(f"{r.moved_total} would go to another body, {r.same_body_other_rule} same body under another rule")
    for (old_body, new_body, rule), n in r.groups.most_common(8):
        print(f"  {old_body} -> {new_body} ({rule}): {n}")
    if not args.no_write and not args.profile:
        key = f"replay_{args.signals // 1000}k_s"
        write_results({key: round(timed.seconds, 1), f"replay_{args.signals // 1000}k_signals_per_s": round(rate)},
                      bench="bench.replay")
        print(f"{key} = {timed.seconds:.1f} written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
