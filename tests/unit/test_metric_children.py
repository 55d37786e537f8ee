"""shared.metrics.Children and by_topic: the cached children count into the same series as labels()."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from shared.metrics import Children, by_topic


def test_a_cached_child_is_the_series_labels_gives() -> None:
    registry = CollectorRegistry()
    counter = Counter("x_total", "x", ["route", "rule"], registry=registry)
    children = Children(counter)
    children("zat", "r1").inc()
    children("zat", "r1").inc(2)
    children("wijkteam", "r1").inc()
    assert children("zat", "r1") is counter.labels(route="zat", rule="r1")
    assert registry.get_sample_value("x_total", {"route": "zat", "rule": "r1"}) == 3
    assert registry.get_sample_value("x_total", {"route": "wijkteam", "rule": "r1"}) == 1


def test_by_topic_counts_records_per_topic_in_first_seen_order() -> None:
    assert by_topic(["b", "a", "b", "b"]) == {"b": 3, "a": 1}
    assert list(by_topic(["b", "a", "b"])) == ["b", "a"]
    assert by_topic([]) == {}
