"""Start, watch and stop the services as separate processes (local stack and tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shared.settings import REPO_ROOT

SERVICES = ("intake", "routing", "feedback", "notify")
# Every process started here, so a test session can make sure none outlives it.
STARTED: list[ServiceProcess] = []
DEFAULT_PORTS = {"intake": 8001, "routing": 8002, "feedback": 8003, "notify": 8004}


def kill_leftovers() -> int:
    """SIGKILL every process started here that still runs; the number killed."""
    killed = 0
    for process in STARTED:
        if process.alive():
            process.kill()
            killed += 1
    STARTED.clear()
    return killed


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether a GET answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local URL
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class ServiceProcess:
    """One service (python -m services.<name>) with its own environment and log file."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    module: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Spawn the process; logs go to log_path."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "SCHAKEL_HTTP_PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        module = self.module or f"services.{self.name}"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        STARTED.append(self)

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Poll /readyz until it answers 200; fail early if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited; see {self.log_path}:\n{self.tail()}")
            if http_ok(f"{self.base_url}/readyz"):
                return
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready after {timeout}s; see {self.log_path}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        """The end of the log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        """Send a signal to the process group."""
        if self.proc is not None and self.alive():
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not go."""
        if self.proc is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
