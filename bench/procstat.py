"""CPU seconds (utime + stime) and resident memory of processes, from /proc/<pid>/stat and /proc/<pid>/status."""

from __future__ import annotations

import os
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def parse_stat(text: str) -> tuple[int, int]:
    """(utime, stime) in clock ticks from the text of /proc/<pid>/stat (the command may hold spaces or parens)."""
    fields = text[text.rindex(")") + 2:].split()
    # After "pid (comm) ": field 3 (state) is fields[0]; utime is field 14, stime field 15.
    return int(fields[11]), int(fields[12])


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a live process in seconds (all its threads); None when it is gone."""
    if pid is None:
        return None
    try:
        utime, stime = parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return (utime + stime) / TICKS_PER_S


def parse_rss_kib(status_text: str) -> int | None:
    """VmRSS in KiB from the text of /proc/<pid>/status."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def rss_mib(pid: int | None) -> float | None:
    """Resident memory of a live process in MiB."""
    if pid is None:
        return None
    try:
        kib = parse_rss_kib(Path(f"/proc/{pid}/status").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if kib is None else round(kib / 1024, 1)


def sample(pids: dict[str, int | None]) -> dict[str, float | None]:
    """CPU seconds of each named process now."""
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def delta(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float | None]:
    """CPU seconds each process spent between two samples (None where either sample is missing)."""
    out: dict[str, float | None] = {}
    for name, end in after.items():
        start = before.get(name)
        out[name] = None if start is None or end is None else round(end - start, 3)
    return out


def per_item_ms(spent: dict[str, float | None], items: int) -> dict[str, float | None]:
    """CPU milliseconds per item for each process."""
    return {name: (None if s is None or items <= 0 else round(1000 * s / items, 2)) for name, s in spent.items()}
