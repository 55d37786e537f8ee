"""OpenTelemetry traces across every hop (ADR 0019): W3C `traceparent` in Kafka record headers, OTLP export.

One mechanism carries the trace: this module writes `traceparent` (W3C Trace Context) on the records a span
produces and reads it from the records a span handles. No instrumentation library writes its own header.
Export is off unless `SCHAKEL_OTLP_ENDPOINT` (shared.settings) names an OTLP/HTTP receiver (e.g. http://127.0.0.1:4318).
Span attributes name topics, partitions, offsets, routes, statuses and ids (signal ids are random UUIDs);
never a name, BSN, address, free text or any other personal data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()
Headers = Sequence[tuple[str, bytes]]


_exporting = False  # set once configure_tracing installed an exporter in this process


def configure_tracing(service: str, *, endpoint: str | None) -> None:
    """Send this process's spans to an OTLP/HTTP receiver (SCHAKEL_OTLP_ENDPOINT); none: spans are not recorded."""
    global _exporting  # noqa: PLW0603 - one switch per process, set once at start-up
    if not endpoint:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.namespace": "schakel"}))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces", timeout=5), schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    _exporting = True


@contextmanager
def span(name: str, *, context: Context | None, kind: SpanKind,
         attributes: Mapping[str, str | int] | None = None) -> Iterator[Span]:
    """A span, current inside the block, the child of `context`.

    When this process exports nothing and no caller's trace has to go on, it is the invalid span and costs
    nothing: opening even a no-op span costs 20-50 µs, which on every record of every hop is a measurable part
    of the fast chain (issue 10). With a caller's context it is the API's no-op span that carries it on.
    """
    if not _exporting and context is None:
        yield INVALID_SPAN
        return
    with tracer().start_as_current_span(name, context=context, kind=kind, attributes=attributes) as current:
        yield current


def tracer() -> Tracer:
    """Schakel's tracer (a no-op one while tracing is not configured)."""
    return trace.get_tracer("schakel")


def context_of(headers: Iterable[tuple[str, Any]] | None) -> Context | None:
    """The trace context a record's `traceparent` header carries, if any."""
    for name, value in headers or ():
        if name.lower() == TRACEPARENT:
            text = value.decode("ascii", errors="replace") if isinstance(value, bytes) else str(value)
            return _PROPAGATOR.extract({TRACEPARENT: text})
    return None


def trace_headers(span: Span | None = None) -> tuple[tuple[str, bytes], ...]:
    """The `traceparent` header of a span (the current one by default); none when nothing is traced."""
    span = span or trace.get_current_span()
    if not span.get_span_context().is_valid:
        return ()
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return tuple((name, value.encode()) for name, value in carrier.items())


def with_trace(headers: Headers, span: Span | None = None) -> tuple[tuple[str, bytes], ...]:
    """Record headers with the span's `traceparent` instead of any earlier one."""
    return (*[(n, v) for n, v in headers if n.lower() != TRACEPARENT], *trace_headers(span))


R = TypeVar("R")


def traced(records: list[R], span: Span) -> list[R]:
    """Records (frozen dataclasses with `headers`) that carry the span's `traceparent`."""
    if not span.get_span_context().is_valid:
        return records
    return [dataclasses.replace(r, headers=with_trace(r.headers, span)) for r in records]  # type: ignore[type-var, attr-defined]


@contextmanager
def handling(service: str, *, topic: str, partition: int, offset: int,
             headers: Iterable[tuple[str, Any]] | None) -> Iterator[Span]:
    """A consumer span for handling one record, the child of the span that produced it."""
    parent = context_of(headers)
    if not _exporting and parent is None:  # the common case, without a second context manager (see span)
        yield INVALID_SPAN
        return
    with span(f"{service} handle {topic}", context=parent, kind=SpanKind.CONSUMER,
              attributes={"messaging.system": "kafka", "messaging.destination.name": topic,
                          "messaging.kafka.destination.partition": partition, "messaging.kafka.offset": offset},
              ) as handled:
        yield handled
