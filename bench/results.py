"""bench/results/latest.json: every bench merges its own figures into it and keeps the others' keys.

The benches run at different times, on different commits and possibly on different machines, so the file
says for each bench when, on which commit and on what machine its keys were measured (`measured_by`).
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.settings import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results" / "latest.json"


def machine() -> dict[str, Any]:
    """nproc, memory and CPU model of this machine."""
    info = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), "?")
    mem_kib = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                   if ln.startswith("MemTotal:"))
    return {"nproc": os.cpu_count(), "memory_gib": round(mem_kib / 1024 / 1024, 1), "cpu_model": model}


def git_commit() -> str:
    """The commit the bench ran on (with '+dirty' when the work tree has changes)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=False).stdout.strip()
    return head + ("+dirty" if dirty else "")


def provenance() -> dict[str, Any]:
    """When, on which commit and on what machine a bench measured."""
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "git_commit": git_commit(),
            "machine": machine()}


def merge_results(current: dict[str, Any], figures: dict[str, Any], *, bench: str,
                  measured: dict[str, Any]) -> dict[str, Any]:
    """The file's content after a bench: its keys replace theirs, and it is named as their source."""
    merged = {**current, **figures}
    # A key this bench wrote now is no longer another bench's (copies: `current` stays as it was).
    sources = {name: {**entry, "keys": [key for key in entry.get("keys", []) if key not in figures]}
               for name, entry in dict(current.get("measured_by") or {}).items() if name != bench}
    sources[bench] = {**measured, "keys": sorted(figures)}
    merged["measured_by"] = dict(sorted(sources.items()))
    return merged


def write_results(figures: dict[str, Any], *, bench: str, path: Path = RESULTS) -> Path:
    """Merge into the results file: keys computed here replace theirs, every other key stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    merged = merge_results(current, figures, bench=bench, measured=provenance())
    path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
