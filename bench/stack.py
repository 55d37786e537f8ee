"""A whole system for a bench run: its own broker on free ports, the four services, the SMTP sink."""

from __future__ import annotations

import contextlib
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
    """Start broker, sink and services in a temporary directory; stop (and remove) everything afterwards."""
    root = root or Path(tempfile.mkdtemp(prefix="schakel-bench-"))
    broker = start_broker(root / "kafka")
    system = System(broker=broker, root=root, extra_env={**BENCH_ENV, **(extra_env or {})})
    bench = Bench(root, broker, system)
    system.sink.on_accept = bench.hook
    try:
        system.start(services)
        yield bench
    finally:
        for service in system.services.values():
            with contextlib.suppress(Exception):
                service.stop(timeout=15)
        system.sink.stop()
        broker.stop(kill=True)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
