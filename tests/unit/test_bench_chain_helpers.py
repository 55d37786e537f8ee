"""The pure helpers of bench.chain: percentiles, the open-loop schedule, /proc parsing, sink log, HTTP heads."""

from __future__ import annotations

import itertools
import json

from kafka import TopicPartition

from bench.chain_lag import lag_of
from bench.chain_report import peer_row
from bench.loadgen import build_request, parse_head
from bench.procstat import delta, parse_rss_kib, parse_stat, per_item_ms
from bench.sink_proc import message_id_of, read_arrivals
from bench.stats import percentile, rate_between, schedule, summary_ms


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_summary_is_in_milliseconds() -> None:
    assert summary_ms([0.010, 0.020, 0.030]) == {"n": 3, "p50_ms": 20.0, "p99_ms": 30.0, "max_ms": 30.0}
    assert summary_ms([]) == {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}


def test_open_loop_schedule_is_evenly_spaced_and_ignores_answers() -> None:
    times = schedule(200, 0.05, start=10.0)
    assert len(times) == 10
    assert times[0] == 10.0
    assert all(abs((b - a) - 0.005) < 1e-9 for a, b in itertools.pairwise(times))
    assert schedule(0, 10) == []
    assert len(schedule(50, 20)) == 1000


def test_rate_between_counts_intervals() -> None:
    assert rate_between([0.0, 0.5, 1.0]) == 2.0
    assert rate_between([1.0]) is None
    assert rate_between([2.0, 2.0]) is None


def test_parse_stat_survives_a_command_with_spaces_and_parens() -> None:
    fields = ["S", "1", "2", "3", "0", "-1", "4194560", "10", "0", "0", "0", "1234", "567", "0", "0", "20"]
    text = "4242 (python -m (x) y) " + " ".join(fields) + "\n"
    assert parse_stat(text) == (1234, 567)


def test_rss_and_deltas() -> None:
    assert parse_rss_kib("Name:\tpython\nVmRSS:\t  102400 kB\nThreads: 3\n") == 102400
    assert parse_rss_kib("Name:\tzombie\n") is None
    spent = delta({"a": 1.0, "b": None, "c": 2.0}, {"a": 1.5, "b": 3.0, "c": None})
    assert spent == {"a": 0.5, "b": None, "c": None}
    assert per_item_ms({"a": 0.5, "b": None}, 100) == {"a": 5.0, "b": None}
    assert per_item_ms({"a": 0.5}, 0) == {"a": None}


def test_sink_finds_the_message_id_in_the_header_block_only() -> None:
    data = b"From: a@b\r\nmessage-id:  <x@y>\r\nSubject: s\r\n\r\nMessage-ID: <body@y>\r\n"
    assert message_id_of(data) == "<x@y>"
    assert message_id_of(b"Subject: s\r\n\r\nMessage-ID: <body@y>") == ""
    assert read_arrivals("1.5 <a@b>\n2.25 <c@d>\n3.") == [(1.5, "<a@b>"), (2.25, "<c@d>")]


def test_http_request_and_response_head() -> None:
    raw = build_request(8001, "r1", 7)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /v1/signals HTTP/1.1\r\n")
    assert b"Idempotency-Key: bench-r1-7" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body)["reporter"]["email"] == "melder-r1-7@delinde.example"
    assert parse_head(b"HTTP/1.1 202 Accepted\r\ncontent-length: 42\r\nconnection: close\r\n\r\n") == (202, 42, True)
    assert parse_head(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n") == (503, 0, False)


def test_lag_and_peer_rows() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    assert lag_of({a: 5}, {a: 7, b: 3}) == 5
    assert lag_of({a: 9}, {a: 7}) == 0
    row = peer_row({"peer": "x", "records": 10, "records_per_s": 99, "wall_records_per_s": 98})
    assert row == {"peer": "x", "rate": 99, "unit": "records/s", "details": "records=10, wall_records_per_s=98"}


def test_histogram_means_from_metrics_text() -> None:
    from bench.chain_metrics import loop_figures

    text = (
        "# HELP x_seconds Time.\n# TYPE x_seconds histogram\n"
        'x_seconds_bucket{topic="a",le="0.1"} 1.0\nx_seconds_bucket{topic="a",le="+Inf"} 4.0\n'
        'x_seconds_count{topic="a"} 4.0\nx_seconds_sum{topic="a"} 2.0\n'
        'x_seconds_bucket{topic="b",le="+Inf"} 0.0\nx_seconds_count{topic="b"} 0.0\nx_seconds_sum{topic="b"} 0.0\n'
    )
    assert loop_figures(text) == {"x_seconds{topic=a}": {"count": 4, "mean": 0.5}}


def test_the_notify_hop_is_reported_beside_the_raw_smtp_peer_of_one_connection() -> None:
    from bench.chain_report import results_json

    peers = [{"peer": "aiosmtplib → sink, 4 connection(s)", "mails": 100, "mails_per_s": 2000.0},
             {"peer": "aiosmtplib → sink, 1 connection(s)", "mails": 100, "mails_per_s": 800.0}]
    out = results_json({"windows": [], "peers": peers, "hop": None, "notify_hop": {"mails_per_s": 200}})
    assert out["notify_mails_per_s"] == 200
    assert out["notify_to_raw_smtp_ratio"] == 0.25
    assert out["chain"]["notify_hop"] == {"mails_per_s": 200}


def test_a_run_without_the_notify_hop_writes_its_keys_as_not_measured() -> None:
    from bench.chain_report import results_json

    out = results_json({"windows": [], "peers": [], "hop": None})
    assert out["notify_mails_per_s"] is None and out["notify_to_raw_smtp_ratio"] is None
