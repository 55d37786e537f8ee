"""The fast chain side by side: `python -m bench.chain [--rates 50,100,200,400] [--duration 20] …`.

One broker for everything. First the raw peers (aiokafka passthrough batched and per record, a bare
produce-only FastAPI endpoint, aiosmtplib straight to the sink), then the four services under open-loop load
at fixed rates and closed-loop at their maximum, then the routing hop alone. The SMTP sink (bench.sink_proc)
and the load generator (bench.loadgen) are processes of their own; every process's CPU (/proc/<pid>/stat) and
RSS is reported. Prints tables and merges the figures into bench/results/latest.json (other keys are kept).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import peers, procstat
from bench.chain_report import print_all, results_json
from bench.chain_run import Arrivals, ExternalSink, SentTail, Tail, Window, both_of, measure
from bench.driver import Load, PostfixSink, Sink
from bench.notify_hop import notify_hop
from bench.results import write_results
from bench.routing_hop import routing_hop
from bench.stack import BENCH_ENV, start_broker
from bench.unwind import unwind_on_sigterm
from schakel.kafka_broker import free_port
from tests.harness import System


def run_peers(bootstrap: str, root: Path, sink: Sink | PostfixSink, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The raw peers, one after another, nothing else running."""
    rows = [peers.kafka_passthrough(bootstrap, count=args.passthrough_records, per_record=False),
            peers.kafka_passthrough(bootstrap, count=args.sendwait_records, per_record=True),
            peers.bare_endpoint(bootstrap, root, clients=args.clients, count=args.bare_requests)]
    for connections in (1, 4):
        before = procstat.cpu_seconds(sink.proc.pid)
        row = peers.smtp_straight(sink.port, count=args.smtp_mails, connections=connections)
        after = procstat.cpu_seconds(sink.proc.pid)
        if before is not None and after is not None:
            row["sink_cpu_ms_per_mail"] = round(1000 * (after - before) / args.smtp_mails, 2)
        rows.append(row)
    for row in rows:
        print(f"  peer: {row}", flush=True)
    return rows


def run_chain(system: System, sink: Sink | PostfixSink, root: Path, args: argparse.Namespace,
              pids: dict[str, int | None]) -> list[Window]:
    """Warm up, then each fixed rate open loop, then the maximum closed loop."""
    intake_port = str(system.services["intake"].port)
    bootstrap = system.broker.bootstrap
    tail: Arrivals = Tail(sink.log) if sink.log is not None else SentTail(bootstrap)
    windows: list[Window] = []
    stamp = int(time.time()) % 100000
    # A fresh broker's JIT compiles for its first minute of load (up to a core of C2 compiler threads),
    # so the warm-up runs long enough that the windows measure the broker as it runs for days.
    plan: list[tuple[str, str, list[str]]] = [("warm-up", f"{args.warmup_rate:g}/s open loop",
                                               ["--rate", f"{args.warmup_rate:g}", "--duration", f"{args.warmup:g}"])]
    for rate in args.rates:
        plan.append((f"{rate:g}/s", f"{rate:g}/s open loop", ["--rate", f"{rate:g}", "--duration",
                                                              f"{args.duration:g}"]))
    if args.max_signals:
        plan.append(("max", f"closed loop, {args.clients} clients",
                     ["--clients", str(args.clients), "--count", str(args.max_signals)]))
    for name, offered, load_args in plan:
        run = f"c{stamp}-{name.replace('/', '').replace('-', '')}"
        load = Load(root, run, "--port", intake_port, "--run", run, *load_args)
        window, mails = measure(name=name, offered=offered, load=load, run=run, pids=pids, bootstrap=bootstrap,
                         tail=tail, timeout_s=args.timeout)
        down = [n for n, s in system.services.items() if not s.alive()]
        print(f"  {name}: accepted {window.accepted}/{window.sent}, completed {window.completed},"
              f" lost {window.lost}, {window.completed_per_s} signals/s e2e,"
              f" p99 both e-mails {window.latency['both e-mails']['p99_ms']} ms"
              f"{', DOWN: ' + ','.join(down) if down else ''}", flush=True)
        if name != "warm-up":
            windows.append(window)
        if window.lost:  # a queue is left: let it drain before the next window, so windows do not overlap
            drain_deadline = time.monotonic() + args.drain_cap
            while time.monotonic() < drain_deadline and _backlog(system):
                time.sleep(2)
            time.sleep(3)
            tail.poll()
            window.eventually = len(both_of(mails, tail.first)) - window.completed
            print(f"  {name}: after the drain {window.eventually} of the {window.lost} lost had both e-mails",
                  flush=True)
    return windows


def _backlog(system: System) -> bool:
    """Whether notify still has records to handle (its consumer group lags on signals.assigned)."""
    from bench.chain_lag import group_lag

    return group_lag(system.broker.bootstrap, "schakel-notify", "signals.assigned") > 0


def idle_cpu(pids: dict[str, int | None], seconds: float) -> dict[str, float | None]:
    """CPU ms per second of each process while no signal arrives (the services' fixed cost)."""
    time.sleep(5)  # let start-up work settle
    before = procstat.sample(pids)
    time.sleep(seconds)
    return {n: None if v is None else round(1000 * v / seconds, 1)
            for n, v in procstat.delta(before, procstat.sample(pids)).items()}


def save_metrics(system: System, root: Path) -> dict[str, Any]:
    """Each service's /metrics after the windows, saved under root; the record loops' batch and stage figures."""
    from bench.chain_metrics import loop_figures

    out: dict[str, Any] = {}
    for name, service in system.services.items():
        with contextlib.suppress(httpx.HTTPError):
            text = httpx.get(f"{service.base_url}/metrics", timeout=10).text
            (root / f"metrics-{name}.txt").write_text(text, encoding="utf-8")
            out[name] = loop_figures(text)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chain", description=__doc__)
    parser.add_argument("--rates", type=lambda s: [float(r) for r in s.split(",") if r], default=[50, 100, 200, 400])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per fixed rate")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of unmeasured load before the windows")
    parser.add_argument("--warmup-rate", type=float, default=50.0, help="signals/s of the warm-up")
    parser.add_argument("--clients", type=int, default=32, help="closed loop clients (maximum, bare endpoint)")
    parser.add_argument("--max-signals", type=int, default=4000, help="closed-loop signals (0: skip)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="after the last answer: a signal without both e-mails by then is lost")
    parser.add_argument("--drain-cap", type=float, default=300.0, help="longest wait for a backlog to drain")
    parser.add_argument("--passthrough-records", type=int, default=50_000)
    parser.add_argument("--sendwait-records", type=int, default=3_000)
    parser.add_argument("--bare-requests", type=int, default=6_000)
    parser.add_argument("--smtp-mails", type=int, default=3_000)
    parser.add_argument("--hop-records", type=int, default=10_000, help="routing hop alone (0: skip)")
    parser.add_argument("--sink", choices=("python", "postfix"), default="python",
                        help="python: bench.sink_proc (aiosmtpd, logs each arrival); postfix: smtp-sink (C), arrival"
                             " from notifications.sent")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of CPU measured with no load (0: skip)")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--skip-notify-hop", action="store_true",
                        help="after the routing hop, do not time notify alone on its assignments")
    parser.add_argument("--no-write", action="store_true", help="do not touch bench/results/latest.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    unwind_on_sigterm()
    root = Path(tempfile.mkdtemp(prefix="schakel-chain-"))
    print(f"working in {root}", flush=True)
    broker = start_broker(root / "kafka")
    sink = (PostfixSink if args.sink == "postfix" else Sink).start(free_port(), root)
    system = System(broker=broker, root=root, extra_env=dict(BENCH_ENV))
    system.sink = ExternalSink(port=sink.port)
    figures: dict[str, Any] = {"peers": [], "windows": [], "hop": None, "sink": args.sink}
    try:
        if not args.skip_peers:
            figures["peers"] = run_peers(broker.bootstrap, root, sink, args)
        system.start()
        pids: dict[str, int | None] = {n: (s.proc.pid if s.proc else None) for n, s in system.services.items()}
        pids.update({"broker": broker.pid(), "SMTP sink": sink.proc.pid, "bench (orchestrator)": os.getpid()})
        figures["rss_idle"] = {n: procstat.rss_mib(p) for n, p in pids.items()}
        if args.idle:
            figures["idle_cpu_ms_per_s"] = idle_cpu(pids, args.idle)
            print(f"  idle: CPU ms per second {figures['idle_cpu_ms_per_s']}", flush=True)
        figures["windows"] = run_chain(system, sink, root, args, pids)
        figures["service_metrics"] = save_metrics(system, root)
        if args.hop_records:
            for name in ("intake", "feedback", "notify"):
                system.services[name].stop(timeout=15)
            figures["hop"] = routing_hop(broker.bootstrap, system.services["routing"], count=args.hop_records)
            print(f"  routing hop: {figures['hop']}", flush=True)
            if not args.skip_notify_hop:
                # The routing hop's assignments wait for notify: two e-mails each (MAILS_PER_ASSIGNMENT).
                try:
                    figures["notify_hop"] = notify_hop(broker.bootstrap, system.services["notify"],
                                                       assignments=figures["hop"]["assigned"])
                except Exception as exc:  # the windows and the routing hop are still reported
                    figures["notify_hop"] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"  notify hop: {figures['notify_hop']}", flush=True)
    finally:
        for service in system.services.values():
            with contextlib.suppress(Exception):
                service.stop(timeout=15)
        sink.stop()
        broker.stop(kill=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print_all(figures)
    if not args.no_write:
        path = write_results(results_json(figures), bench="bench.chain")
        print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
