"""A small OTLP/HTTP trace receiver for the local stack and the tests (ADR 0019).

It speaks the OTLP/HTTP protocol as the OpenTelemetry exporters send it: `POST /v1/traces` with an
`ExportTraceServiceRequest` in protobuf (the official opentelemetry-proto messages), answered with an
`ExportTraceServiceResponse`. Every span it receives is kept in memory (and, with `path`, appended to a file
as one JSON line), so a test or an operator can follow one signal's trace across the services.
"""

from __future__ import annotations

import gzip
import json
import threading
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as exported: its service, ids, name and attributes."""

    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any] = field(default_factory=dict)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


def decode_spans(body: bytes) -> list[ReceivedSpan]:
    """The spans of one OTLP/HTTP protobuf export request."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(ReceivedSpan(
                    service=str(resource.get("service.name", "")), trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(), parent_span_id=span.parent_span_id.hex(), name=span.name,
                    kind=span.kind, attributes={kv.key: _value(kv.value) for kv in span.attributes},
                    resource=resource))
    return spans


class TraceSink:
    """An OTLP/HTTP receiver on 127.0.0.1 (port 0: a free one), in a thread of its own."""

    def __init__(self, *, port: int = 0, path: Path | None = None) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._path = path
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                try:
                    spans = decode_spans(body)
                except Exception:
                    self.send_error(400)
                    return
                sink.add(spans)
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="trace-sink", daemon=True)

    @property
    def url(self) -> str:
        """The base URL an OTLP/HTTP exporter is given (it posts to /v1/traces)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> TraceSink:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def add(self, spans: list[ReceivedSpan]) -> None:
        """Keep spans (and append them to the file, if any)."""
        with self._lock:
            self.requests += 1
            self.spans.extend(spans)
            if self._path is not None:
                with self._path.open("a", encoding="utf-8") as out:
                    for span in spans:
                        out.write(json.dumps(asdict(span)) + "\n")

    def snapshot(self) -> list[ReceivedSpan]:
        """The spans received so far."""
        with self._lock:
            return list(self.spans)
