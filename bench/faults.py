"""Fault runs from docs reliability.md, with figures: `python -m bench.faults [--signals N] [--scenario NAME|all]`.

Each scenario starts its own broker, services and SMTP sink on free ports, sends test signals that each carry a
sequence number (Idempotency-Key and reporter address), injects the fault, and counts with the collector
what came out at every hop: lost, duplicated as read, duplicated after dedup by event id / Message-ID.
"""

from __future__ import annotations

import argparse
import json
import signal as signals
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.collector import Collected, end_total, settled
from bench.load import Submitter
from bench.report import print_table
from bench.stack import Bench, bench_system
from bench.unwind import unwind_on_sigterm

HOP_OF = {"routing": "signals.assigned", "feedback": "signals.lifecycle", "notify": "notifications.sent"}
MAILS_PER_SIGNAL = 2
OUTPUT_HOP = {"routing": "assigned", "feedback": "lifecycle", "notify": "email"}  # the collector's hop names


@dataclass
class Result:
    """One scenario's figures and whether its must-hold conditions held."""

    scenario: str
    figures: dict[str, Any] = field(default_factory=dict)
    hops: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(self.checks.values())


def tracebacks(bench: Bench) -> dict[str, int]:
    """How many tracebacks each service logged."""
    out = {}
    for name, service in bench.system.services.items():
        try:
            out[name] = service.log_path.read_text(errors="replace").count("Traceback")
        except FileNotFoundError:
            out[name] = 0
    return out


def log_excerpt(bench: Bench, name: str, *, needle: str = "Traceback", lines: int = 12) -> str:
    """The lines after the first match of needle in a service's log."""
    text = bench.system.services[name].log_path.read_text(errors="replace").splitlines()
    for i, line in enumerate(text):
        if needle in line:
            return "\n".join(text[i:i + lines])
    return ""


def first_after(times: list[float], instant: float) -> float | None:
    """Seconds from instant to the first output after it."""
    later = [t for t in times if t > instant]
    return round(min(later) - instant, 2) if later else None


def crash_checks(result: Result, bench: Bench) -> None:
    """Unexpected exits the watchdog saw (it restarted them, as the supervisor would)."""
    result.figures["unexpected exits (restarted by the watchdog)"] = len(bench.crashes)
    result.checks["0 unexpected exits"] = not bench.crashes
    for crash in bench.crashes:
        result.notes.append(f"{crash['service']} exited ({crash['exit']}) at {crash['at']}: {crash['log']}")


def collected_checks(result: Result, collected: Collected, *, dup_emails_allowed: int = 0) -> None:
    """Record the per-hop rows and the usual invariants: nothing lost, no duplicates after dedup."""
    result.hops = collected.rows()
    result.figures["dead letters by topic"] = {k: v for k, v in collected.dead_letters.items() if v}
    result.checks["lost 0 at every hop"] = collected.lost == 0
    hops = collected.hops
    result.checks["0 duplicate assignments after dedup"] = hops["assigned"].dup_dedup == 0
    result.checks["0 duplicate lifecycle 'assigned' after dedup"] = hops["lifecycle"].dup_dedup == 0
    result.checks[f"duplicate e-mails (same Message-ID) ≤ {dup_emails_allowed}"] = (
        hops["email"].dup_dedup <= dup_emails_allowed
    )


def start_feed(bench: Bench, *, run: str, n: int, clients: int) -> tuple[Submitter, threading.Thread]:
    """Submit n signals from a background thread."""
    submitter = Submitter(bench.system.services["intake"].base_url, run=run, clients=clients)
    feeder = threading.Thread(target=submitter.run_all, args=(n,), daemon=True)
    feeder.start()
    return submitter, feeder


def expected_output(service: str, n: int) -> int:
    """Records a service writes for n signals (notify: two e-mails each)."""
    return n * (MAILS_PER_SIGNAL if service == "notify" else 1)


def wait_for_output(bench: Bench, topic: str, count: float, *, timeout_s: float = 600) -> int:
    """Wait until a topic holds count records (or the timeout passed); the records it holds then."""
    deadline = time.monotonic() + timeout_s
    while end_total(bench.broker.bootstrap, topic) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return end_total(bench.broker.bootstrap, topic)


# -- #1 kill -9 / SIGTERM of one service at 20 / 50 / 80 % -------------------------------------------------------

def kill_during_stream(service: str, *, n: int, sig: int = signals.SIGKILL, down_s: float = 5.0,
                       points: tuple[float, ...] = (0.2, 0.5, 0.8), clients: int = 8) -> Result:
    """Stop one service (kill -9 or SIGTERM) at each point of its own output, restart after down_s."""
    how = "kill -9" if sig == signals.SIGKILL else "SIGTERM"
    result = Result(f"#1 {how} {service} at {'/'.join(f'{p:.0%}' for p in points)}")
    run = f"k{service[:2]}{int(time.time()) % 100000}"
    with bench_system() as bench:
        submitter, feeder = start_feed(bench, run=run, n=n, clients=clients)
        topic = HOP_OF[service]
        restarts: list[dict[str, Any]] = []
        for point in points:
            at_output = wait_for_output(bench, topic, point * expected_output(service, n))
            killed_at = time.time()
            bench.take_down(service, kill=sig == signals.SIGKILL)
            time.sleep(down_s)
            restarted_at = time.time()
            # Output the service wrote before it went down (a fast hop may be done before the 80 % kill lands).
            done_before = end_total(bench.broker.bootstrap, topic) >= expected_output(service, n)
            bench.bring_up(service)
            restarts.append({"at": f"{point:.0%}", "output then": at_output, "killed_at": killed_at,
                             "restarted_at": restarted_at, "ready after s": round(time.time() - restarted_at, 2),
                             "all out before the restart": done_before})
        feeder.join()
        collected = settled(bench.broker.bootstrap, bench.system.sink, run=run,
                            signal_ids=submitter.result.signal_ids, timeout_s=300, arrival=bench.arrival)
        hop = collected.hops[OUTPUT_HOP[service]]
        times = hop.times
        if service == "notify":  # next output: an e-mail that arrived after the restart
            times = [t for ts in bench.arrival.values() for t in ts]
        recoveries = []
        for r in restarts:
            r["next output after s"] = first_after(times, r["restarted_at"])
            if not r["all out before the restart"]:  # else there was nothing left to recover to
                recoveries.append(r["next output after s"])
            del r["killed_at"], r["restarted_at"]
        result.figures.update({
            "signals": n, "accepted (202)": submitter.result.accepted, "http": dict(submitter.result.statuses),
            "restarts": restarts, "tracebacks": tracebacks(bench),
        })
        # reliability #7: a kill right after the SMTP server accepted resends once, with the same Message-ID.
        collected_checks(result, collected, dup_emails_allowed=len(points) if service == "notify" else 0)
        crash_checks(result, bench)
        result.checks["recovery ≤ 30 s after restart"] = all(r is not None and r <= 30 for r in recoveries)
        result.checks["every service alive"] = all(s.alive() for s in bench.system.services.values())
    return result


# -- #2 broker stopped (or killed) during load ------------------------------------------------------------------

def broker_outage(*, n: int, down_s: float = 70.0, kill: bool = False, clients: int = 4) -> Result:
    """Stop the broker at ~30 % of a paced stream for down_s, start it again; intake must answer 503 meanwhile."""
    result = Result(f"#2 broker {'kill -9' if kill else 'stopped'} {down_s:.0f} s during load")
    run = f"b{int(time.time()) % 100000}"
    rate = max(10.0, n / 60)  # a stream of about a minute, so the outage falls inside it
    with bench_system() as bench:
        submitter = Submitter(bench.system.services["intake"].base_url, run=run, clients=clients,
                              retry_budget_s=down_s + 300)
        submitter.give_up_at = time.monotonic() + n / rate + down_s + 180
        feeder = threading.Thread(target=submitter.run_all, args=(n,), kwargs={"rate": rate}, daemon=True)
        feeder.start()
        while submitter.result.accepted < 0.3 * n:
            time.sleep(0.2)
        statuses_before = dict(submitter.result.statuses)
        bench.broker.stop(kill=kill)
        # The broker is gone only once its process exited: a controlled shutdown (SIGTERM) still
        # acknowledges writes for a few seconds, and a 202 for such a write is correct.
        stopped_at = time.time()
        time.sleep(down_s)
        statuses_during = {k: v - statuses_before.get(k, 0) for k, v in submitter.result.statuses.items()}
        accepted_during = sum(1 for t in submitter.result.accepted_at.values() if stopped_at + 2 < t < time.time())
        bench.broker.start()
        back_at = time.time()
        # A probe signal sent the moment the broker is back: time until its receipt e-mail arrives.
        probe = Submitter(bench.system.services["intake"].base_url, run=run, clients=1, retry_budget_s=180)
        probe.submit_one(n)
        feeder.join()
        ids = {**submitter.result.signal_ids, **probe.result.signal_ids}
        collected = settled(bench.broker.bootstrap, bench.system.sink, run=run, signal_ids=ids, timeout_s=300,
                            arrival=bench.arrival)
        from bench.collector import expected_mails
        probe_mails = expected_mails(run, probe.result.signal_ids)
        probe_arrivals = [t for mid in probe_mails for t in bench.arrival.get(mid, [])]
        alive = {name: s.alive() for name, s in bench.system.services.items()}
        result.figures.update({
            "signals": n + 1, "accepted (202)": len(ids), "never accepted (gave up)": len(submitter.result.failed)
            + len(probe.result.failed), "http during outage": statuses_during,
            "http total": dict(submitter.result.statuses),
            "202 while broker down (after 2 s grace)": accepted_during,
            "first end-to-end after broker back s": round(min(probe_arrivals) - back_at, 1) if probe_arrivals
            else None,
            "services alive": alive, "tracebacks": tracebacks(bench),
        })
        collected_checks(result, collected)
        crash_checks(result, bench)
        result.checks["acknowledged-but-lost 0"] = collected.hops["received"].lost == 0
        result.checks["503 while the broker is down"] = statuses_during.get("503", 0) > 0
        result.checks["no 202 without a broker"] = accepted_during == 0
        result.checks["first end-to-end ≤ 120 s"] = bool(probe_arrivals) and min(probe_arrivals) - back_at <= 120
        result.checks["every service alive"] = all(alive.values())
        result.checks["every signal accepted once the broker is back"] = len(ids) == n + 1
        if not all(alive.values()):
            for name, ok in alive.items():
                if not ok:
                    result.notes.append(f"{name} exited:\n{bench.system.services[name].tail(15)}")
    return result


# -- #3 services started before the broker ---------------------------------------------------------------------

def services_before_broker(*, wait_s: float = 60.0, n: int = 20) -> Result:
    """Start the four services against a broker that is not there yet; readiness must wait, nothing may crash."""
    import shutil
    import tempfile
    from pathlib import Path

    from bench.stack import BENCH_ENV
    from schakel.kafka_broker import Broker, free_port
    from schakel.processes import SERVICES, ServiceProcess, http_ok
    from schakel.topics_admin import ensure_topics
    from tests.harness import System

    result = Result(f"#3 services started {wait_s:.0f} s before the broker")
    root = Path(tempfile.mkdtemp(prefix="schakel-bench-"))
    broker = Broker(root / "kafka", port=free_port(), controller_port=free_port())
    system = System(broker=broker, root=root, extra_env=dict(BENCH_ENV))
    bench = Bench(root, broker, system)
    system.sink.on_accept = bench.hook
    run = f"s{int(time.time()) % 100000}"
    try:
        system.sink.start()
        for name in SERVICES:
            system.services[name] = ServiceProcess(name=name, port=free_port(), env={},
                                                   log_path=root / "logs" / f"{name}.log")
        for name in SERVICES:
            system.services[name].env = system.env()
            system.services[name].start()
        pids = {name: s.proc.pid for name, s in system.services.items() if s.proc}
        ready_early: dict[str, int] = {name: 0 for name in SERVICES}
        healthy: dict[str, int] = {name: 0 for name in SERVICES}
        polls = 0
        deadline = time.monotonic() + wait_s
        exits: dict[str, int] = {name: 0 for name in SERVICES}
        first_exit: dict[str, str] = {}
        while time.monotonic() < deadline:
            polls += 1
            for name, service in system.services.items():
                if service.alive():
                    ready_early[name] += http_ok(f"{service.base_url}/readyz")
                    healthy[name] += http_ok(f"{service.base_url}/healthz")
                else:  # what the supervisor does: note the exit and start it again
                    exits[name] += 1
                    if name not in first_exit:
                        lines = [ln for ln in service.tail(60).splitlines() if "Error" in ln or "failed" in ln]
                        first_exit[name] = f"exit {service.proc.returncode if service.proc else '?'}: " + \
                            " | ".join(ln[-300:] for ln in lines[-2:])
                    service.start()
            time.sleep(1.0)
        exited = {name: n > 0 for name, n in exits.items()}
        broker.start()
        ensure_topics(broker.bootstrap)
        broker_up = time.time()
        ready_after: dict[str, float | None] = {}
        for name, service in system.services.items():
            try:
                service.wait_ready(timeout=120)
                ready_after[name] = round(time.time() - broker_up, 1)
            except (RuntimeError, TimeoutError):
                ready_after[name] = None
        same_pid = {name: (s.proc.pid if s.proc else None) == pids.get(name) and s.alive()
                    for name, s in system.services.items()}
        for name, text in first_exit.items():
            result.notes.append(f"{name} {text}")
        submitter = Submitter(system.services["intake"].base_url, run=run, clients=4)
        submitter.run_all(n)
        collected = settled(broker.bootstrap, system.sink, run=run, signal_ids=submitter.result.signal_ids,
                            timeout_s=120, arrival=bench.arrival)
        result.figures.update({
            "polls while waiting": polls, "exits while waiting (restarted each time)": exits,
            "/readyz 200 before broker": ready_early,
            "/healthz 200 before broker": healthy, "exited while waiting": exited,
            "ready after broker up s": ready_after, "same process throughout": same_pid,
            "tracebacks": tracebacks(bench), "signals after": n,
        })
        collected_checks(result, collected)
        result.checks["0 crashes"] = not any(exited.values()) and all(same_pid.values())
        result.checks["/readyz not ready until connected"] = not any(ready_early.values())
        result.checks["ready once the broker is up"] = all(v is not None for v in ready_after.values())
    finally:
        for service in system.services.values():
            service.stop(timeout=15)
        system.sink.stop()
        broker.stop(kill=True)
        if result.passed:
            shutil.rmtree(root, ignore_errors=True)
        else:
            result.notes.append(f"logs kept in {root / 'logs'}")
    return result


# -- #4 malformed records over HTTP and on signals.inbound ------------------------------------------------------

def malformed(*, n: int, bad_share: float = 0.1) -> Result:
    """Good and bad records interleaved over HTTP and signals.inbound; 4xx + dead letters = bad, 0 good lost."""
    from bench.malformed import run_malformed

    return run_malformed(n=n, bad_share=bad_share, result=Result("#4 malformed records (HTTP + signals.inbound)"),
                         checks=collected_checks)


# -- #8 idempotency ---------------------------------------------------------------------------------------------

def idempotency() -> Result:
    """The same Idempotency-Key 5× in a row, 10× concurrently, after an intake restart; another body → 409."""
    from bench.idempotency import run_idempotency

    return run_idempotency(Result("#8 idempotency (same key 5×, 10× concurrent, after restart, other body)"))


# -- #10 a second worker joins mid-stream ------------------------------------------------------------------------

HANDLED_LINE = {"routing": '"signal_routed"', "feedback": '"signal_lifecycle_started"', "notify": '"email_sent"'}
STREAM_SERVICES = ("routing", "feedback", "notify")


def scale_change(service: str, *, n: int, change: str, at: float = 0.5, clients: int = 4,
                 others: int = 2) -> Result:
    """`others` workers of every other stream service; at `at` of the service's output one joins or one leaves.

    `change`: "join" (the service starts with one worker and a second joins), "leave" (one of two stops with
    SIGTERM) or "leave-kill" (kill -9). The leaving worker is not started again.
    """
    how = {"join": "a second worker joins", "leave": "one of two leaves (SIGTERM)",
           "leave-kill": "one of two is killed (kill -9)"}[change]
    result = Result(f"#10 {service}: {how} at {at:.0%}, {others} worker(s) of every other stream service")
    run = f"s{service[:2]}{change[-4:]}{int(time.time()) % 100000}"
    with bench_system() as bench:
        for other in STREAM_SERVICES:
            if (other == service and change != "join") or (other != service and others > 1):
                bench.add_worker(other)
        submitter, feeder = start_feed(bench, run=run, n=n, clients=clients)
        output_then = wait_for_output(bench, HOP_OF[service], at * expected_output(service, n))
        changed_at = time.time()
        if change == "join":
            changed = bench.add_worker(service)
        else:
            changed = bench.system.services[service]
            bench.take_down(service, kill=change == "leave-kill")
        done_at = time.time()
        feeder.join()
        collected = settled(bench.broker.bootstrap, bench.system.sink, run=run,
                            signal_ids=submitter.result.signal_ids, timeout_s=300, arrival=bench.arrival)
        hop = collected.hops[OUTPUT_HOP[service]]
        times = sorted(hop.times)
        if service == "notify":
            times = sorted(t for ts in bench.arrival.values() for t in ts)
        after = [t for t in times if t > changed_at]
        gaps = [b - a for a, b in zip([changed_at, *after], after, strict=False)]
        staying = [s for name, s in bench.system.services.items() if name != service and name.startswith(service)]
        result.figures.update({
            "signals": n, "accepted (202)": submitter.result.accepted, "http": dict(submitter.result.statuses),
            "output when the change came": output_then, "change took s": round(done_at - changed_at, 2),
            "waited for the output after the feed s": collected.waited_s,
            "next output after the change s": first_after(times, changed_at),
            "longest pause in the output after the change s": round(max(gaps), 2) if gaps else None,
            "records handled by the joining worker" if change == "join" else "records handled by the one that stays":
                (changed if change == "join" else staying[0]).log_path.read_text(errors="replace").count(
                    HANDLED_LINE[service]),
            "tracebacks": tracebacks(bench),
        })
        resent = 1 if service == "notify" and change != "join" else 0  # a mail in flight when it stopped
        collected_checks(result, collected, dup_emails_allowed=resent)
        crash_checks(result, bench)
        result.checks["next output after the change ≤ 10 s"] = (
            result.figures["next output after the change s"] is not None
            and result.figures["next output after the change s"] <= 10)
        result.checks["every service alive"] = all(
            s.alive() for name, s in bench.system.services.items() if change == "join" or name != service)
    return result


def _scale_scenario(service: str, change: str) -> Callable[[argparse.Namespace], Result]:
    return lambda args: scale_change(service, n=args.signals, change=change)


# -- #11 a consumer group that never ran ------------------------------------------------------------------------

def fresh_groups(*, n: int = 100) -> Result:
    """Queue n signals with only intake running; then start routing, feedback, notify for the first time."""
    result = Result(f"#11 {n} records queued, then consumer groups that never ran start")
    run = f"g{int(time.time()) % 100000}"
    with bench_system(services=("intake",)) as bench:
        submitter = Submitter(bench.system.services["intake"].base_url, run=run, clients=4)
        submitter.run_all(n)
        queued = end_total(bench.broker.bootstrap, "signals.received")
        assigned_before = end_total(bench.broker.bootstrap, "signals.assigned")
        started = time.time()
        bench.system.start(["routing", "feedback", "notify"])
        collected = settled(bench.broker.bootstrap, bench.system.sink, run=run,
                            signal_ids=submitter.result.signal_ids, timeout_s=120, arrival=bench.arrival)
        result.figures.update({
            "queued on signals.received": queued, "assigned before start": assigned_before,
            "processed (assigned)": collected.hops["assigned"].seen,
            "all e-mails in s": round(max((t for ts in bench.arrival.values() for t in ts), default=started)
                                      - started, 1),
        })
        collected_checks(result, collected)
        crash_checks(result, bench)
        result.checks[f"processed {n}"] = collected.hops["assigned"].seen == n
    return result


SCENARIOS: dict[str, Callable[[argparse.Namespace], Result]] = {
    "kill-routing": lambda a: kill_during_stream("routing", n=a.signals),
    "kill-feedback": lambda a: kill_during_stream("feedback", n=a.signals),
    "kill-notify": lambda a: kill_during_stream("notify", n=a.signals),
    "term-routing": lambda a: kill_during_stream("routing", n=a.signals, sig=signals.SIGTERM),
    "term-feedback": lambda a: kill_during_stream("feedback", n=a.signals, sig=signals.SIGTERM),
    "term-notify": lambda a: kill_during_stream("notify", n=a.signals, sig=signals.SIGTERM),
    "broker-stop": lambda a: broker_outage(n=min(a.signals, 1200), down_s=a.outage),
    "broker-kill": lambda a: broker_outage(n=min(a.signals, 1200), down_s=min(a.outage, 20), kill=True),
    "before-broker": lambda a: services_before_broker(wait_s=a.wait),
    "malformed": lambda a: malformed(n=a.signals),
    "idempotency": lambda a: idempotency(),
    "fresh-group": lambda a: fresh_groups(),
    "join-routing": lambda a: scale_change("routing", n=a.signals, change="join", others=1),
    "join-notify": lambda a: scale_change("notify", n=a.signals, change="join", others=1),
    **{f"scale-{change}-{service}": _scale_scenario(service, change)
       for service in STREAM_SERVICES for change in ("join", "leave", "leave-kill")},
}
DEFAULT_ALL = ("kill-routing", "kill-feedback", "kill-notify", "broker-stop", "before-broker", "malformed",
               "idempotency", "fresh-group", "join-routing")


def report(result: Result) -> None:
    """Print one scenario's figures and checks."""
    print(f"\n=== {result.scenario} — {'PASS' if result.passed else 'FAIL'}", flush=True)
    for key, value in result.figures.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            print(f"{key}:")
            print_table(value, indent="  ")
        else:
            print(f"{key}: {value}")
    if result.hops:
        print_table(result.hops, indent="  ")
    for check, ok in result.checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {check}")
    for note in result.notes:
        print(f"  note: {note}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument("--signals", type=int, default=2000, help="signals per stream (reliability.md: 10000)")
    parser.add_argument("--scenario", default="all", help=f"one of {', '.join(SCENARIOS)}, or all")
    parser.add_argument("--outage", type=float, default=70.0, help="broker outage in seconds (#2)")
    parser.add_argument("--wait", type=float, default=60.0, help="services wait this long for the broker (#3)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    unwind_on_sigterm()
    names = DEFAULT_ALL if args.scenario == "all" else tuple(args.scenario.split(","))
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown}; choose from {', '.join(SCENARIOS)}")
    results = []
    for name in names:
        started = time.monotonic()
        try:
            result = SCENARIOS[name](args)
        except Exception as exc:  # a scenario that could not run is a figure too
            result = Result(name, checks={"scenario ran": False}, notes=[f"{type(exc).__name__}: {exc}"])
        result.figures["scenario took s"] = round(time.monotonic() - started, 1)
        report(result)
        results.append(result)
    print("\n=== summary")
    print_table([{"scenario": r.scenario, "result": "PASS" if r.passed else "FAIL",
                  "lost": sum(h["lost"] for h in r.hops), "dup after dedup": sum(h["dup after dedup"] for h in r.hops),
                  "took s": r.figures.get("scenario took s")} for r in results])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([r.__dict__ | {"passed": r.passed} for r in results], handle, indent=2, default=str)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
