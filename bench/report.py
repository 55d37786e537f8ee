"""Plain-text tables for bench output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def print_table(rows: Sequence[dict[str, Any]], *, indent: str = "") -> None:
    """Print rows (dicts with the same keys) as an aligned table."""
    if not rows:
        return
    columns = list(rows[0])
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print(indent + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print(indent + "  ".join("-" * w for w in widths))
    for row in cells:
        print(indent + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
