"""Pure helpers of the chain bench: percentiles, the open-loop send schedule, rates from timestamps."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile by nearest rank (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))  # ceil(n·q/100), within 1..n
    return ordered[int(rank) - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """n, p50, p99 and max of latencies given in seconds, as milliseconds."""
    def ms(q: float) -> float | None:
        value = percentile(seconds, q)
        return None if value is None else round(value * 1000, 1)

    return {"n": len(seconds), "p50_ms": ms(50), "p99_ms": ms(99), "max_ms": ms(100)}


def schedule(rate: float, duration_s: float, start: float = 0.0) -> list[float]:
    """Send times of an open-loop load: one every 1/rate seconds from start, for duration_s (end excluded)."""
    if rate <= 0 or duration_s <= 0:
        return []
    count = round(rate * duration_s)
    return [start + i / rate for i in range(count)]


def rate_between(timestamps: Sequence[float]) -> float | None:
    """Items per second from the first to the last timestamp ((n - 1) intervals); None below two items."""
    if len(timestamps) < 2:
        return None
    span = max(timestamps) - min(timestamps)
    return None if span <= 0 else (len(timestamps) - 1) / span
