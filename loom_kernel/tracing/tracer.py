"""The tracer seam: what the layers above ask of tracing.

Layers above (the endpoint, collaboration, tools, LLM calls, the runner) depend on this
small :class:`Tracer` protocol, never on the recorder: a runtime with ``[tracing]
enabled = false`` gets :data:`NO_TRACER`, which records nothing and costs one attribute
read per event; a unit test can pass either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..protocol.envelope import Envelope
from ..protocol.spans import Span, format_traceparent

__all__ = ["NO_TRACER", "NoopTracer", "Tracer", "TracingStatistics", "traceparent_of"]


@dataclass(frozen=True)
class TracingStatistics:
    """What the tracing layer of one runtime has done."""

    enabled: bool
    sample_ratio: float
    recorded: int
    exported: int
    dropped: int
    pending: int
    #: The OTLP backend's share (``OTLPStatistics``: queued, exported, dropped, failed),
    #: None without ``[tracing] otlp_endpoint``.
    otlp: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Tracer(Protocol):
    """Makes spans. :class:`~loom_kernel.tracing.recorder.SpanRecorder` records them;
    :class:`NoopTracer` does not."""

    #: False: nothing is recorded; callers may skip building attributes.
    enabled: bool
    #: Record LLM prompts and completions (``[tracing] capture_content``).
    capture_content: bool

    def begin_publish(
        self, topic: str, agent: str, event_id: str, name: str | None = None
    ) -> tuple[str | None, Span | None]:
        """The producer span of one publish: ``(traceparent, span)``; the caller sets
        ``span.end_ns`` once the event is sent. ``span`` is None when not recorded."""
        ...

    def start_span(
        self,
        name: str,
        kind: str = "internal",
        *,
        agent: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Span:
        """A started span, child of the current one (else a new trace)."""
        ...

    def end(self, span: Span) -> None:
        """End a span from :meth:`start_span` and keep it if sampled (or failed)."""
        ...

    def span(
        self,
        name: str,
        kind: str = "internal",
        *,
        agent: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> contextlib.AbstractContextManager[Span | None]:
        """A span around a block (None when tracing is off): current while the block
        runs, failed if it raises."""
        ...

    def continuing(self, event: Envelope) -> contextlib.AbstractContextManager[None]:
        """Publish under ``event``'s trace context without a span of one's own."""
        ...

    def joining(self, traceparent: str | None) -> contextlib.AbstractContextManager[None]:
        """Spans made inside are children of the span a W3C ``traceparent`` names (one
        made outside Loom: an MCP client's request, an HTTP call); no-op for None."""
        ...

    def unsampled(self) -> contextlib.AbstractContextManager[None]:
        """Nothing made inside is recorded, unless it fails (housekeeping)."""
        ...

    def statistics(self) -> TracingStatistics: ...


class NoopTracer:
    """A :class:`Tracer` that records nothing (``[tracing] enabled = false``)."""

    enabled = False
    capture_content = False

    def begin_publish(
        self, topic: str, agent: str, event_id: str, name: str | None = None
    ) -> tuple[str | None, Span | None]:
        return None, None

    def start_span(
        self,
        name: str,
        kind: str = "internal",
        *,
        agent: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Span:
        return Span("0" * 32, "0" * 16, None, name, kind, agent=agent, sampled=False)

    def end(self, span: Span) -> None:
        return None

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        kind: str = "internal",
        *,
        agent: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Iterator[Span | None]:
        yield None

    @contextlib.contextmanager
    def continuing(self, event: Envelope) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def joining(self, traceparent: str | None) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def unsampled(self) -> Iterator[None]:
        yield

    def statistics(self) -> TracingStatistics:
        return TracingStatistics(False, 0.0, 0, 0, 0, 0)


#: The shared do-nothing tracer.
NO_TRACER = NoopTracer()


def traceparent_of(span: Span) -> str:
    """The W3C ``traceparent`` that makes a remote span a child of ``span``."""
    return format_traceparent(span.trace_id, span.span_id, span.sampled)
