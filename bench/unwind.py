"""Stopping a bench with SIGTERM stops what it started."""

from __future__ import annotations

import signal


def unwind_on_sigterm() -> None:
    """Make SIGTERM unwind the bench like Ctrl-C, so every bench_system stops what it started.

    Without this, a bench stopped with SIGTERM left its broker and services running. A second SIGTERM during
    that cleanup is ignored (kill -9 still ends it).
    """
    def unwind(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, unwind)
