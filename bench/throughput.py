"""End-to-end throughput, latency and memory: `python -m bench.throughput [--signals N] [--clients 1,4,16]`.

One system (own broker, four services, SMTP sink). For each client count, N signals are POSTed by that many
concurrent clients; figures: signals/s accepted by intake (202), time from the 202 to the assignment record
and to the reporter's receipt e-mail (p50/p95/p99), and each process's resident memory (VmRSS) afterwards.
Not a pass/fail test: it prints figures (conventions: "Speed and memory targets live in bench/").
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.collector import expected_mails, settled
from bench.load import HANDLER, Submitter
from bench.report import print_table
from bench.stack import bench_system


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))], 3)


def rss_mib(pid: int | None) -> float | None:
    """Resident memory of a process in MiB, from /proc/<pid>/status."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except FileNotFoundError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--signals", type=int, default=1000, help="signals per client count")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated concurrent client counts")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",")]
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores,"
          f" {platform.processor() or platform.machine()},"
          f" Python {platform.python_version()}", flush=True)
    rows, latency_rows = [], []
    with bench_system() as bench:
        rss_idle = {name: rss_mib(s.proc.pid if s.proc else None) for name, s in bench.system.services.items()}
        rss_idle["broker"] = rss_mib(bench.broker.pid())
        for clients in counts:
            run = f"t{clients}-{int(time.time()) % 100000}"
            submitter = Submitter(bench.system.services["intake"].base_url, run=run, clients=clients)
            began = time.time()
            result = submitter.run_all(args.signals)
            took = time.time() - began
            collected = settled(bench.broker.bootstrap, bench.system.sink, run=run, signal_ids=result.signal_ids,
                                timeout_s=600, arrival=bench.arrival, quiet_s=2)
            drained = max((t for h in collected.hops.values() for t in h.times), default=began) - began
            assigned = collected.hops["assigned"].first_at
            to_assigned = [assigned[sid] - result.accepted_at[seq] for seq, sid in result.signal_ids.items()
                           if sid in assigned]
            mails = expected_mails(run, result.signal_ids)
            receipt_of = {sid: mid for mid, sid in mails.items() if HANDLER not in mid}
            to_mail = []
            for seq, sid in result.signal_ids.items():
                mids = [mid for mid, owner in mails.items() if owner == sid]
                times = [t for mid in mids for t in bench.arrival.get(mid, [])]
                if times:
                    to_mail.append(max(times) - result.accepted_at[seq])
            del receipt_of
            rows.append({"clients": clients, "signals": args.signals, "accepted": result.accepted,
                         "answers": dict(result.statuses), "submit s": round(took, 1),
                         "accepted/s": round(result.accepted / took, 1),
                         "all e-mails out after s": round(drained, 1),
                         "end-to-end signals/s": round(result.accepted / drained, 1) if drained else None,
                         "lost": collected.lost})
            for name, values in (("202 → assignment", to_assigned), ("202 → both e-mails", to_mail)):
                latency_rows.append({"clients": clients, "latency": name, "n": len(values),
                                     "p50 s": percentile(values, 50), "p95 s": percentile(values, 95),
                                     "p99 s": percentile(values, 99), "max s": percentile(values, 100)})
        rss = {name: rss_mib(s.proc.pid if s.proc else None) for name, s in bench.system.services.items()}
        rss["broker"] = rss_mib(bench.broker.pid())
    print("\nthroughput")
    print_table(rows, indent="  ")
    print("\nlatency (wall clock; the assignment time is the record's CreateTime)")
    print_table(latency_rows, indent="  ")
    print("\nresident memory (VmRSS, MiB)")
    print_table([{"process": name, "idle after start": rss_idle.get(name), "after the run": value}
                 for name, value in rss.items()], indent="  ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
