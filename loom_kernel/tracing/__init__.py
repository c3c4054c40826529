"""The tracing layer: spans for every workflow, and where they are kept.

- :mod:`.tracer`: the :class:`Tracer` protocol the layers above use, and
  :data:`NO_TRACER` (tracing off);
- :mod:`.recorder`: :class:`SpanRecorder`, which records and exports spans in batches;
- :mod:`.middleware`: the handler middleware that opens a span per handled event;
- :mod:`.otel`: the OpenTelemetry SDK bridge (API spans in, OTLP out);
- :mod:`.store` and :mod:`.collector`: the SQLite span store and what fills it.

Imports only the bus and protocol layers below it.
"""

from .collector import SpanCollector
from .middleware import tracing_middleware
from .otlp import export_loss
from .recorder import SpanRecorder
from .store import SpanStore, StoreStatistics, TraceSummary
from .tracer import NO_TRACER, NoopTracer, Tracer, TracingStatistics, traceparent_of

__all__ = [
    "NO_TRACER",
    "NoopTracer",
    "SpanCollector",
    "SpanRecorder",
    "SpanStore",
    "StoreStatistics",
    "TraceSummary",
    "Tracer",
    "TracingStatistics",
    "export_loss",
    "traceparent_of",
    "tracing_middleware",
]
