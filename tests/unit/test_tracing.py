"""shared.tracing's header round trip and schakel.trace_sink receiving what the OpenTelemetry OTLP/HTTP exporter
sends (a real exporter posting protobuf over loopback HTTP to the sink)."""

from __future__ import annotations

from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from schakel.trace_sink import TraceSink
from shared.tracing import context_of, trace_headers, with_trace


def test_a_span_travels_in_a_traceparent_header_and_the_sink_receives_parent_and_child(tmp_path: Path) -> None:
    sink = TraceSink(path=tmp_path / "traces.jsonl").start()
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "unit"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{sink.url}/v1/traces")))
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("producer", attributes={"schakel.signal_id": "s-1"}) as parent:
            headers = with_trace((("content-type", b"x"), ("traceparent", b"00-stale-stale-01")), parent)
        assert [name for name, _ in headers] == ["content-type", "traceparent"]
        assert headers[1][1].decode().split("-")[1] == format(parent.get_span_context().trace_id, "032x")
        with tracer.start_as_current_span("consumer", context=context_of([("TraceParent", headers[1][1])])):
            pass
        provider.shutdown()
        spans = {span.name: span for span in sink.snapshot()}
        assert set(spans) == {"producer", "consumer"}
        assert spans["consumer"].trace_id == spans["producer"].trace_id
        assert spans["consumer"].parent_span_id == spans["producer"].span_id
        assert spans["producer"].service == "unit" and spans["producer"].attributes == {"schakel.signal_id": "s-1"}
        assert len((tmp_path / "traces.jsonl").read_text().splitlines()) == 2
        assert httpx.post(f"{sink.url}/v1/traces", content=b"\xff not protobuf").status_code == 400
        assert httpx.post(f"{sink.url}/v1/metrics", content=b"").status_code == 404
    finally:
        sink.stop()


def test_nothing_traced_means_no_header() -> None:
    assert trace_headers() == ()  # no span is current (and tracing is not configured in unit tests)
    assert context_of([("content-type", b"x")]) is None


def test_without_an_exporter_a_record_without_a_trace_costs_no_span_and_a_traced_one_passes_its_trace_on() -> None:
    from shared.record_loop import Publish
    from shared.tracing import handling, traced

    record = Publish("signals.assigned", b"k", b"{}", (("content-type", b"x"),))
    with handling("routing", topic="signals.received", partition=0, offset=1, headers=[("content-type", b"x")]) as a:
        assert not a.get_span_context().is_valid
        assert traced([record], a) == [record]
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with handling("routing", topic="signals.received", partition=0, offset=2,
                  headers=[("traceparent", caller.encode())]) as b:
        (forwarded,) = traced([record], b)
    assert dict(forwarded.headers)["traceparent"].decode().split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
