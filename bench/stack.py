"""A whole system for a bench run: its own broker on free ports, the four services, the SMTP sink."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from schakel.kafka_broker import Broker, free_port
from schakel.mail_sink import ReceivedMail
from schakel.processes import ServiceProcess
from schakel.topics_admin import ensure_topics
from tests.harness import System

# intake's per-partner rate limit would otherwise answer 429 to a load test; notify retries fast.
BENCH_ENV = {
    "SCHAKEL_INTAKE_RATE_PER_MINUTE": "6000000", "SCHAKEL_INTAKE_RATE_BURST": "100000",
    "SCHAKEL_NOTIFY_RETRY_BASE_S": "0.2", "SCHAKEL_NOTIFY_RETRY_MAX_S": "2.0",
}


def start_broker(home: Path) -> Broker:
    """A fresh single-node broker on free ports with every registered topic."""
    broker = Broker(home, port=free_port(), controller_port=free_port())
    broker.start()
    ensure_topics(broker.bootstrap)
    return broker


@dataclass
class Bench:
    """Broker + System, and the arrival time of every e-mail by Message-ID."""

    root: Path
    broker: Broker
    system: System
    arrival: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # The supervisor's part: a service that exits without being told to is noted and started again.
    deliberately_down: set[str] = field(default_factory=set)
    crashes: list[dict[str, str]] = field(default_factory=list)
    _watching: bool = False

    def watch(self) -> None:
        """Start the watchdog thread (after the services are up)."""
        self._watching = True
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while self._watching:
            for name, service in list(self.system.services.items()):
                if name in self.deliberately_down or service.proc is None or service.alive():
                    continue
                with self._lock:
                    if name in self.deliberately_down or service.alive():
                        continue
                    lines = [ln for ln in service.tail(400).splitlines() if '"critical"' in ln or '"error"' in ln]
                    self.crashes.append({"service": name, "at": time.strftime("%H:%M:%S"),
                                         "exit": str(service.proc.returncode),
                                         "log": (lines[-1] if lines else service.tail(3))[:1500]})
                    service.start()
            time.sleep(0.5)

    def stop_watching(self) -> None:
        self._watching = False

    def take_down(self, name: str, *, kill: bool = True) -> None:
        """Stop a service on purpose (kill -9 or SIGTERM); the watchdog leaves it down."""
        with self._lock:
            self.deliberately_down.add(name)
        service = self.system.services[name]
        service.kill() if kill else service.stop()

    def bring_up(self, name: str) -> None:
        """Start a service that was taken down and wait until it is ready."""
        service = self.system.services[name]
        service.start()
        with self._lock:
            self.deliberately_down.discard(name)
        service.wait_ready(timeout=120)

    def add_worker(self, service: str) -> ServiceProcess:
        """Start one more worker of a service (same group, own port and state directory); wait until ready."""
        with self._lock:
            worker = self.system.add_worker(service, wait=False)
        worker.wait_ready(timeout=120)
        return worker

    def hook(self, mail: ReceivedMail) -> None:
        """Sink hook: note when each Message-ID arrived."""
        mid = ""
        for line in mail.data.split(b"\r\n\r\n", 1)[0].splitlines():
            if line.lower().startswith(b"message-id:"):
                mid = line.split(b":", 1)[1].strip().decode()
                break
        with self._lock:
            self.arrival[mid].append(time.time())


@contextlib.contextmanager
def bench_system(*, services: tuple[str, ...] = ("intake", "routing", "feedback", "notify"),
                 keep: bool = False, extra_env: dict[str, str] | None = None,
                 root: Path | None = None) -> Iterator[Bench]:
    """Start broker, sink and services in a temporary directory; stop (and remove) everything afterwards.

    With `keep` or SCHAKEL_BENCH_KEEP=1 the directory (every service's log) stays, for a run that failed.
    """
    root = root or Path(tempfile.mkdtemp(prefix="schakel-bench-"))
    broker = start_broker(root / "kafka")
    system = System(broker=broker, root=root, extra_env={**BENCH_ENV, **(extra_env or {})})
    bench = Bench(root, broker, system)
    system.sink.on_accept = bench.hook
    try:
        system.start(services)
        bench.watch()
        yield bench
    finally:
        bench.stop_watching()
        for service in system.services.values():
            with contextlib.suppress(Exception):
                service.stop(timeout=15)
        system.sink.stop()
        broker.stop(kill=True)
        if keep or os.environ.get("SCHAKEL_BENCH_KEEP") == "1":
            print(f"kept the run's logs and state in {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
