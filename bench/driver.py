"""Child processes of the chain bench: the SMTP sink and the load generator, each in a process of its own."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench import procstat
from schakel.kafka_broker import port_open
from shared.settings import REPO_ROOT


def _readline(stream: IO[str] | None, want: str) -> None:
    """Block until the child prints the line `want`; fail if it exits first."""
    assert stream is not None
    for line in stream:
        if line.strip() == want:
            return
    raise RuntimeError(f"child exited before printing {want!r}")


def spawn(module: str, *args: str, log: Path) -> subprocess.Popen[str]:
    """python -m module args…, stdin and stdout as pipes, stderr to a log file."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err:
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO_ROOT, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)


@dataclass
class Sink:
    """bench.sink_proc running on a port, logging arrivals to a file."""

    port: int
    log: Path
    proc: subprocess.Popen[str]

    @classmethod
    def start(cls, port: int, root: Path) -> Sink:
        log = root / "sink-arrivals.log"
        proc = spawn("bench.sink_proc", "--port", str(port), "--log", str(log), log=root / "logs" / "sink.log")
        _readline(proc.stdout, "ready")
        return cls(port, log, proc)

    def arrivals(self) -> list[tuple[float, str]]:
        """Every (epoch, Message-ID) logged so far."""
        from bench.sink_proc import read_arrivals

        return read_arrivals(self.log.read_text(encoding="utf-8")) if self.log.exists() else []

    def stop(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.proc.poll() is None:
            self.proc.kill()


@dataclass
class PostfixSink:
    """Postfix's smtp-sink (C) on a port: accepts and discards; arrival times then come from notifications.sent."""

    port: int
    proc: subprocess.Popen[str]
    log: Path | None = None

    @classmethod
    def start(cls, port: int, root: Path) -> PostfixSink:
        binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        (root / "logs").mkdir(parents=True, exist_ok=True)
        with open(root / "logs" / "smtp-sink.log", "ab") as err:
            proc = subprocess.Popen([binary, "-u", "nobody", f"127.0.0.1:{port}", "1024"], text=True,
                                    stdout=err, stderr=err)
        deadline = time.monotonic() + 10
        while not port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"smtp-sink did not listen on {port}; see {root / 'logs' / 'smtp-sink.log'}")
            time.sleep(0.1)
        return cls(port, proc)

    def stop(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


class Load:
    """One bench.loadgen run: start it, let it build its requests, then go; its CPU is sampled around the sends."""

    def __init__(self, root: Path, name: str, *args: str) -> None:
        self.out = root / f"load-{name}.json"
        self.proc = spawn("bench.loadgen", "--out", str(self.out), *args, log=root / "logs" / f"load-{name}.log")
        _readline(self.proc.stdout, "ready")
        self.cpu_before: float | None = None
        self.cpu_after: float | None = None
        self.rss_mib: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def go(self) -> None:
        """Start sending."""
        self.cpu_before = procstat.cpu_seconds(self.proc.pid)
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def wait(self) -> dict[str, Any]:
        """Wait until every request was answered; sample CPU and RSS, let the process exit, return its results."""
        _readline(self.proc.stdout, "done")
        self.cpu_after = procstat.cpu_seconds(self.proc.pid)
        self.rss_mib = procstat.rss_mib(self.proc.pid)
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        result: dict[str, Any] = json.loads(self.out.read_text(encoding="utf-8"))
        return result

    @property
    def cpu_s(self) -> float | None:
        if self.cpu_before is None or self.cpu_after is None:
            return None
        return round(self.cpu_after - self.cpu_before, 3)
