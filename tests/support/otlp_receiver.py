"""A real OTLP/HTTP trace receiver for tests: what ``[tracing] otlp_endpoint`` points at.

The OpenTelemetry SDK's exporter posts protobuf ``ExportTraceServiceRequest`` bodies to
``<endpoint>/v1/traces`` over TCP, exactly as it would to a collector; the receiver
decodes them with ``opentelemetry-proto`` and keeps every span as a plain dict.

Standard library only (besides the protobuf classes): a ``ThreadingHTTPServer`` in a
daemon thread on ``127.0.0.1``.

    with OTLPReceiver() as receiver:
        (project / "loom.toml").write_text(f'[tracing]\\notlp_endpoint = "{receiver.endpoint}"\\n')
        ...
        assert any(span["name"] == "a: process w.start" for span in receiver.spans)
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

__all__ = ["OTLPReceiver", "decode_request"]

TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"


class OTLPReceiver:
    """An OTLP/HTTP (protobuf) trace endpoint on ``127.0.0.1`` and a free port.

    Args:
        delay: seconds each request waits before it is answered (a slow backend).

    Attributes:
        endpoint: ``http://127.0.0.1:<port>``, the value for ``[tracing] otlp_endpoint``.
        requests: how many export requests were accepted.
        encodings: the ``Content-Encoding`` of each accepted request ("" when none).
        headers: the HTTP headers of each accepted request (names in lower case).
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.endpoint = ""
        self.delay = delay
        self.requests = 0
        self.encodings: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._spans: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: _Httpd | None = None
        self._thread: threading.Thread | None = None

    @property
    def spans(self) -> list[dict[str, Any]]:
        """A snapshot of every span received so far, in arrival order."""
        with self._lock:
            return list(self._spans)

    def named(self, name: str) -> list[dict[str, Any]]:
        """The received spans called ``name``."""
        return [span for span in self.spans if span["name"] == name]

    def _accept(self, spans: list[dict[str, Any]], encoding: str, headers: dict[str, str]) -> None:
        with self._lock:
            self._spans.extend(spans)
            self.requests += 1
            self.encodings.append(encoding)
            self.headers.append(headers)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> OTLPReceiver:
        """Bind a free port and serve in a daemon thread; returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("OTLPReceiver already started")
        self._httpd = _Httpd(("127.0.0.1", 0), _Handler, owner=self)
        port = self._httpd.server_address[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"otlp-receiver-{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type, owner: OTLPReceiver) -> None:
        self.owner = owner
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Httpd

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?", 1)[0].rstrip("/") != TRACES_PATH:
            self._answer(404, b"no such OTLP path", "text/plain")
            return
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != PROTOBUF:
            self._answer(415, b"only application/x-protobuf is supported", "text/plain")
            return
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        try:
            spans = decode_request(_inflate(body, encoding))
        except (DecodeError, OSError, zlib.error, ValueError) as exc:
            self._answer(400, f"undecodable request: {exc}".encode(), "text/plain")
            return
        if self.server.owner.delay:
            time.sleep(self.server.owner.delay)
        headers = {key.lower(): value for key, value in self.headers.items()}
        self.server.owner._accept(spans, encoding, headers)
        self._answer(200, ExportTraceServiceResponse().SerializeToString(), PROTOBUF)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _inflate(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


# -- decoding ----------------------------------------------------------------------------


def decode_request(body: bytes) -> list[dict[str, Any]]:
    """The spans of one serialized ``ExportTraceServiceRequest``, as plain dicts.

    Each dict has ``trace_id``, ``span_id``, ``parent_span_id`` (hex; the parent None
    for a root), ``name``, ``kind`` (``"PRODUCER"``, ``"CONSUMER"``...), ``attributes``,
    ``status`` (``"UNSET"``, ``"OK"``, ``"ERROR"``), ``status_message``, ``events``
    (``{"name", "attributes"}``), ``links`` (``(trace_id, span_id)`` pairs),
    ``start_ns``/``end_ns``, ``service_name``, ``resource`` and ``scope``.
    """
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(_span(span, resource, scope_spans.scope.name))
    return spans


def _span(span: Span, resource: dict[str, Any], scope: str) -> dict[str, Any]:
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex() or None,
        "name": span.name,
        "kind": Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "attributes": _attributes(span.attributes),
        "status": Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
        "status_message": span.status.message or None,
        "events": [
            {"name": event.name, "attributes": _attributes(event.attributes)}
            for event in span.events
        ],
        "links": [(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
        "service_name": resource.get("service.name"),
        "resource": resource,
        "scope": scope,
    }


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {pair.key: _value(pair.value) for pair in value.kvlist_value.values}
    return getattr(value, which)  # string, bool, int, double or bytes
