"""Stopping a process by the pid this project saved when it started it (never by name)."""

from __future__ import annotations

import os
import signal
import time


def stop_pid(pid: int, *, sig: int = signal.SIGTERM, timeout: float = 10.0, poll_s: float = 0.1) -> None:
    """Send `sig` to `pid`, wait until it is gone (reaping it if it is our child), SIGKILL after `timeout`."""
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                return
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(poll_s)
    os.kill(pid, signal.SIGKILL)
