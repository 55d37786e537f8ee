"""Intake alone: CPU ms per keyed POST /v1/signals (from /proc/<pid>/stat) and requests/s, K concurrent clients."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from bench.load import TOKEN, idempotency_key, signal_body
from bench.stack import BENCH_ENV, start_broker
from schakel.kafka_broker import free_port
from schakel.processes import ServiceProcess
from tests.harness import EXAMPLE_CONFIG

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Figures:
    """What one run measured."""

    requests: int
    clients: int
    seconds: float
    requests_per_s: float
    intake_cpu_ms_per_request: float
    broker_cpu_ms_per_request: float
    latency_p50_ms: float
    latency_p99_ms: float
    statuses: dict[str, int]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


async def post_all(url: str, *, run: str, first: int, count: int, clients: int) -> tuple[list[float], list[int]]:
    """Post `count` keyed signals from `clients` concurrent clients; latencies (s) and statuses."""
    seqs = iter(range(first, first + count))
    latencies: list[float] = []
    statuses: list[int] = []
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    async def client() -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            for seq in seqs:
                body = json.dumps(signal_body(run, seq)).encode()
                started = time.perf_counter()
                response = await http.post(url, content=body,
                                           headers={**headers, "Idempotency-Key": idempotency_key(run, seq)})
                latencies.append(time.perf_counter() - started)
                statuses.append(response.status_code)

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, statuses


def measure(intake: ServiceProcess, broker_pid: int, *, requests: int, clients: int, warmup: int) -> Figures:
    """Warm up, then post `requests` signals and read both processes' CPU before and after."""
    assert intake.proc is not None
    url = f"{intake.base_url}/v1/signals"
    run = f"cpu{int(time.time()) % 100000}"
    asyncio.run(post_all(url, run=run, first=0, count=warmup, clients=clients))
    intake_before, broker_before = cpu_seconds(intake.proc.pid), cpu_seconds(broker_pid)
    started = time.perf_counter()
    latencies, statuses = asyncio.run(post_all(url, run=run, first=warmup, count=requests, clients=clients))
    seconds = time.perf_counter() - started
    intake_cpu = cpu_seconds(intake.proc.pid) - intake_before
    broker_cpu = cpu_seconds(broker_pid) - broker_before
    ordered = sorted(latencies)
    return Figures(
        requests=requests, clients=clients, seconds=round(seconds, 2),
        requests_per_s=round(requests / seconds, 1),
        intake_cpu_ms_per_request=round(1000 * intake_cpu / requests, 2),
        broker_cpu_ms_per_request=round(1000 * broker_cpu / requests, 2),
        latency_p50_ms=round(1000 * statistics.median(ordered), 1),
        latency_p99_ms=round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1),
        statuses={str(s): statuses.count(s) for s in sorted(set(statuses))},
    )


def run(*, requests: int, clients: int, warmup: int) -> Figures:
    """A fresh broker and one intake process in a temporary directory; measure; stop everything."""
    root = Path(tempfile.mkdtemp(prefix="schakel-intake-cpu-"))
    broker = start_broker(root / "kafka")
    env = {**BENCH_ENV, "SCHAKEL_KAFKA_BOOTSTRAP": broker.bootstrap, "SCHAKEL_CONFIG": str(EXAMPLE_CONFIG),
           "SCHAKEL_STATE_DIR": str(root / "state"), "SCHAKEL_LOG_FORMAT": "json"}
    intake = ServiceProcess("intake", free_port(), env, root / "intake.log")
    try:
        intake.start()
        intake.wait_ready(timeout=90)
        broker_pid = broker.pid()
        assert broker_pid is not None
        return measure(intake, broker_pid, requests=requests, clients=clients, warmup=warmup)
    finally:
        intake.stop(timeout=15)
        broker.stop(kill=True)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    """python -m bench.intake_cpu --requests 2000 --clients 8"""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    figures = run(requests=args.requests, clients=args.clients, warmup=args.warmup)
    print(json.dumps(asdict(figures), indent=2))


if __name__ == "__main__":
    main()
