"""The bridge between Loom's spans and the OpenTelemetry SDK.

- :func:`tracer_provider` sets up the process's SDK ``TracerProvider`` (service name and
  resource attributes) and installs it as the global one when none is set, so spans
  made with the OpenTelemetry API inside a handler become children of Loom's handler
  span and travel with Loom's spans (to the bus, the store and OTLP).
- :func:`to_readable` turns a Loom :class:`~loom_kernel.protocol.spans.Span` into the SDK's
  ``ReadableSpan`` for the SDK's exporters; :func:`from_readable` is the reverse.
- :func:`resource` is what exported spans say about where they come from; the export
  itself is :class:`~loom_kernel.tracing.otlp.OTLPExport`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from .._version import __version__
from ..protocol.spans import Span, SpanEvent, current_span
from .semconv import export_attributes, export_name

__all__ = [
    "current_traceparent",
    "from_readable",
    "process_service_name",
    "resource",
    "to_readable",
    "tracer_provider",
]

_KIND = {
    "internal": SpanKind.INTERNAL,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
    "client": SpanKind.CLIENT,
    "server": SpanKind.SERVER,
}
_KIND_NAME = {value: key for key, value in _KIND.items()}
_STATUS = {"unset": StatusCode.UNSET, "ok": StatusCode.OK, "error": StatusCode.ERROR}
_SCOPE = InstrumentationScope("loom", __version__)
_lock = threading.Lock()
_provider: TracerProvider | None = None
_sinks: list[Callable[[Span], None]] = []


def process_service_name() -> str:
    """``loom:<script or module>``, e.g. ``loom:ipykernel_launcher`` in a notebook."""
    main = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return f"loom:{os.path.splitext(main)[0] or 'python'}"


class _Forward(SpanProcessor):
    """Hands spans made with the OpenTelemetry API to the open runtimes' recorders:
    those of sampled traces, and errors of any trace (as for Loom's own spans)."""

    def on_end(self, span: ReadableSpan) -> None:
        if not _sinks:
            return
        sampled = span.get_span_context().trace_flags.sampled
        if not sampled and span.status.status_code is not StatusCode.ERROR:
            return
        record = from_readable(span)
        for sink in list(_sinks):
            sink(record)


class _RecordAll(Sampler):
    """Follows the parent's decision (the root's: ``[tracing] sample_ratio``), but an
    unsampled span is still recorded (RECORD_ONLY), so its error can be kept."""

    ratio = 1.0

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: Any = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        parent = trace_api.get_current_span(parent_context).get_span_context()
        if parent.is_valid:
            sampled = parent.trace_flags.sampled
        else:
            sampled = self.ratio >= 1.0 or random.random() < self.ratio
        decision = Decision.RECORD_AND_SAMPLE if sampled else Decision.RECORD_ONLY
        return SamplingResult(decision, attributes)

    def get_description(self) -> str:
        return f"LoomRecordAll{{{self.ratio}}}"


class _LoomTracer(trace_api.Tracer):
    """An SDK tracer whose spans default to the running Loom span as their parent."""

    def __init__(self, inner: trace_api.Tracer):
        self._inner = inner

    def start_span(self, name: str, context: Any = None, *args: Any, **kwargs: Any) -> Any:
        return self._inner.start_span(name, _parented(context), *args, **kwargs)

    @contextlib.contextmanager
    def start_as_current_span(
        self, name: str, context: Any = None, *args: Any, **kwargs: Any
    ) -> Iterator[Any]:
        with self._inner.start_as_current_span(name, _parented(context), *args, **kwargs) as span:
            yield span


class _LoomTracerProvider(TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace_api.Tracer:
        return _LoomTracer(super().get_tracer(*args, **kwargs))


def _parented(context: Any) -> Any:
    if context is not None or trace_api.get_current_span().get_span_context().is_valid:
        return context
    span = current_span.get()
    if span is None:
        return None
    parent = SpanContext(
        trace_id=int(span.trace_id, 16),
        span_id=int(span.span_id, 16),
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if span.sampled else 0),
    )
    return trace_api.set_span_in_context(NonRecordingSpan(parent))


def resource(
    service: str, *, project: str | None = None, attributes: dict[str, str] | None = None
) -> Resource:
    """The OpenTelemetry resource Loom's spans are exported under: the service name, the
    process id, the project for backends that file traces by project (Phoenix reads
    ``openinference.project.name``), and the attributes ``[tracing]`` adds."""
    values: dict[str, Any] = {"service.name": service, "loom.pid": os.getpid()}
    if project:
        values["openinference.project.name"] = project
    values.update(attributes or {})
    return Resource.create(values)


def tracer_provider(service: str, sample_ratio: float = 1.0) -> TracerProvider:
    """The process's SDK tracer provider (created once; global unless one was set).

    Root spans made with the OpenTelemetry API are sampled at the ratio of the runtime
    opened last.
    """
    global _provider
    with _lock:
        _RecordAll.ratio = sample_ratio
        if _provider is None:
            _provider = _LoomTracerProvider(resource=resource(service), sampler=_RecordAll())
            _provider.add_span_processor(_Forward())
            current = trace_api.get_tracer_provider()
            if isinstance(current, trace_api.ProxyTracerProvider):
                trace_api.set_tracer_provider(_provider)
            else:
                logging.getLogger("loom.tracing").warning(
                    "a global TracerProvider (%s) was set before Loom's: spans you make with "
                    "the OpenTelemetry API go to it, not to Loom's traces; let Loom set the "
                    "provider, or use loom_kernel.tracing.otel.tracer_provider() for your tracers",
                    type(current).__name__,
                )
        return _provider


@contextlib.contextmanager
def forwarding(sink: Callable[[Span], None]) -> Iterator[None]:
    """While open, spans made with the OpenTelemetry API are given to ``sink``."""
    _sinks.append(sink)
    try:
        yield
    finally:
        _sinks.remove(sink)


def to_readable(span: Span, resource: Resource) -> ReadableSpan:
    flags = TraceFlags(TraceFlags.SAMPLED)
    context = SpanContext(int(span.trace_id, 16), int(span.span_id, 16), False, flags)
    parent = (
        SpanContext(int(span.trace_id, 16), int(span.parent_id, 16), False, flags)
        if span.parent_id
        else None
    )
    # the conventions other backends read (messaging, GenAI agents, OpenInference kinds)
    attributes = {k: _otel_value(v) for k, v in export_attributes(span).items()}
    return ReadableSpan(
        name=export_name(span),
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes,
        events=[
            Event(e.name, {k: _otel_value(v) for k, v in e.attributes.items()}, e.ts_ns)
            for e in span.events
        ],
        links=[Link(SpanContext(int(t, 16), int(s, 16), False, flags)) for t, s in span.links],
        kind=_KIND.get(span.kind, SpanKind.INTERNAL),
        status=Status(_STATUS.get(span.status, StatusCode.UNSET), span.status_message),
        start_time=span.start_ns,
        end_time=span.end_ns,
        instrumentation_scope=_SCOPE,
    )


def from_readable(span: ReadableSpan) -> Span:
    context = span.get_span_context()
    parent = span.parent
    attributes = dict(span.attributes or {})
    agent = attributes.pop("loom.agent", None) or _agent_of_parent()
    return Span(
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_id=f"{parent.span_id:016x}" if parent is not None else None,
        name=span.name,
        kind=_KIND_NAME.get(span.kind, "internal"),
        start_ns=span.start_time or 0,
        end_ns=span.end_time or 0,
        status={StatusCode.ERROR: "error", StatusCode.OK: "ok"}.get(
            span.status.status_code, "unset"
        ),
        status_message=span.status.description,
        service=str(span.resource.attributes.get("service.name", "")),
        agent=str(agent) if agent else None,
        attributes=attributes,
        events=[SpanEvent(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events],
        links=[
            (f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}") for link in span.links
        ],
        sampled=context.trace_flags.sampled,
    )


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the OpenTelemetry API's current span (one made by a
    library, e.g. the MCP SDK's server span), None when there is none."""
    context = trace_api.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    flags = "01" if context.trace_flags.sampled else "00"
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags}"


def _agent_of_parent() -> str | None:
    span = current_span.get()
    return span.agent if span is not None else None


def _otel_value(value: Any) -> Any:
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Sequence) and all(isinstance(v, str | bool | int | float) for v in value):
        return list(value)
    return str(value)
