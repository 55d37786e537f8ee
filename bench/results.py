"""bench/results/latest.json: every bench merges its own figures into it and keeps the others' keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.settings import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results" / "latest.json"


def write_results(figures: dict[str, Any], path: Path = RESULTS) -> Path:
    """Merge into the results file: keys computed here replace theirs, every other key stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    current.update(figures)
    path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
