"""The means of a service's histograms (record handling time, batch size, SMTP hand-off) from its /metrics text."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def loop_figures(text: str) -> dict[str, Any]:
    """name{labels} → {"count", "mean"} of every histogram that observed something (mean: sum / count)."""
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
            if sample.name.endswith("_sum"):
                sums[labels] = sample.value
            elif sample.name.endswith("_count"):
                counts[labels] = sample.value
        for labels, n in counts.items():
            if n:
                key = f"{family.name}{{{labels}}}" if labels else family.name
                out[key] = {"count": int(n), "mean": round(sums.get(labels, 0.0) / n, 5)}
    return out
