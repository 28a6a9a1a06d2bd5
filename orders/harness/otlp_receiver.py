"""A minimal OTLP/HTTP trace receiver: what a collector or Jaeger would be, for tests and benchmarks.

It accepts `POST /v1/traces` (protobuf, as opentelemetry-exporter-otlp-proto-http sends
it), decodes each span with opentelemetry-proto and keeps it in memory. Point processes
at it with `OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint`.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver decoded it (ids in hex, times in ns since the epoch)."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    service: str
    start: int
    end: int
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = "unset"
    links: tuple[str, ...] = ()


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def decode(payload: bytes) -> list[ReceivedSpan]:
    """The spans of one OTLP export request."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(payload)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(ReceivedSpan(
                    span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), span.name,
                    KINDS.get(span.kind, "unspecified"), str(resource.get("service.name", "")),
                    span.start_time_unix_nano, span.end_time_unix_nano,
                    {a.key: _value(a.value) for a in span.attributes},
                    {0: "unset", 1: "ok", 2: "error"}.get(span.status.code, "unset"),
                    tuple(link.span_id.hex() for link in span.links)))
    return spans


class OtlpReceiver:
    """An OTLP/HTTP endpoint on 127.0.0.1 that keeps every span it receives."""

    def __init__(self, port: int = 0):
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.add(decode(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def endpoint(self) -> str:
        """The base URL for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self.spans.extend(spans)
            self.requests += 1

    def received(self) -> list[ReceivedSpan]:
        """A copy of every span received so far."""
        with self._lock:
            return list(self.spans)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
