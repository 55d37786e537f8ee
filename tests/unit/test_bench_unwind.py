"""A bench stopped with SIGTERM stops what it started (bench.unwind.unwind_on_sigterm)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.harness import wait_until

SCRIPT = """
import sys, time
from pathlib import Path
from bench.unwind import unwind_on_sigterm

unwind_on_sigterm()
marker = Path(sys.argv[1])
try:
    marker.write_text("running")
    time.sleep(60)
finally:
    marker.write_text("stopped what it started")
"""


def test_sigterm_runs_the_cleanup_of_a_running_bench(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(marker)], cwd=Path(__file__).parents[2])
    try:
        wait_until(marker.exists, timeout=30, interval=0.05, what="the bench to start")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM
        assert time.monotonic() - started < 10
        assert marker.read_text() == "stopped what it started"
    finally:
        if proc.poll() is None:
            proc.kill()
