"""The span recorder: one trace per workflow, across agents and processes.

Every runtime with tracing on has a :class:`SpanRecorder` (``rt.tracing``). It records

- a **publish** span (producer) for each event an agent or the runtime emits; its W3C
  ``traceparent`` rides in the envelope (:meth:`SpanRecorder.begin_publish`);
- a **handle** span around each handler run (the handler middleware,
  :mod:`loom_kernel.tracing.middleware`), child of the publish span of its event;
- spans for requests, collaboration patterns, tool and MCP calls and LLM calls, made by
  those layers through the :class:`~loom_kernel.tracing.tracer.Tracer` protocol.

Spans are sampled per trace (``[tracing] sample_ratio``, decided at the root and
inherited through ``traceparent``); a span that ends in error is kept even in an
unsampled trace. Finished spans go, in batches, to the ``export`` callable the runtime
gives :meth:`SpanRecorder.start` (it publishes them on ``loom.trace.spans.<client>``),
and to the OTLP exporter when ``[tracing] otlp_endpoint`` is set. Spans made with the
OpenTelemetry API inside a handler join the same traces (:mod:`.otel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from time import time_ns
from typing import TYPE_CHECKING, Any

from ..config import ENV_REFERENCE, TracingConfig
from ..errors import ConfigError, LoomError
from ..protocol.envelope import Envelope
from ..protocol.spans import (
    Span,
    current_span,
    new_root_ids,
    new_span_id,
    new_trace_id,
    parse_traceparent,
)
from .tracer import TracingStatistics

if TYPE_CHECKING:
    from .otlp import OTLPExport, OTLPStatistics

__all__ = ["BATCH_SIZE", "MAX_PENDING", "SpanRecorder"]

log = logging.getLogger("loom.tracing")
FLUSH_INTERVAL = 0.5  # seconds between batches on the bus
BATCH_SIZE = 256  # spans per bus message
MAX_PENDING = 50_000  # spans waiting for a flush; past this, new ones are dropped and counted
Export = Callable[[list[Span]], None]


class SpanRecorder:
    """Records the spans of one runtime and exports them in batches (a
    :class:`~loom_kernel.tracing.tracer.Tracer`)."""

    enabled = True

    def __init__(self, settings: TracingConfig):
        self.settings = settings
        self.ratio = settings.sample_ratio
        self.capture_content = settings.capture_content
        self.service = ""
        self.exported = self.dropped = 0
        #: Finished spans waiting for export; the handler middleware appends to it.
        self.pending: list[Span] = []
        self._export: Export | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._otlp: OTLPExport | None = None
        self._otlp_final: OTLPStatistics | None = None
        self._forwarding: contextlib.ExitStack | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, export: Export) -> None:
        """Set up the OpenTelemetry bridge and export batches through ``export`` every
        ``FLUSH_INTERVAL`` (sooner when ``BATCH_SIZE`` spans wait).

        Raises:
            ConfigError: an ``otlp_headers`` value names an unset environment variable.
        """
        from . import otel

        settings = self.settings
        self._export = export
        self.service = settings.service_name or otel.process_service_name()
        otel.tracer_provider(self.service, self.ratio)
        if settings.otlp_endpoint:
            from .otlp import OTLPExport

            exported_as = otel.resource(
                self.service, project=settings.project, attributes=settings.resource_attributes
            )
            self._otlp = OTLPExport(
                settings.otlp_endpoint,
                lambda span: otel.to_readable(span, exported_as),
                max_queue=settings.otlp_queue_size,
                headers=_expand_headers(settings.otlp_headers),
                timeout=settings.otlp_timeout_sec,
            )
        self._forwarding = contextlib.ExitStack()
        self._forwarding.enter_context(otel.forwarding(self.record))
        self._wake = asyncio.Event()
        self._flusher = asyncio.get_running_loop().create_task(
            self._flush_loop(), name="loom:tracing"
        )

    async def aclose(self) -> None:
        """Send what is pending, then stop (idempotent)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if self._export is not None:
            self.flush()
            self._export = None
        if self._forwarding is not None:
            self._forwarding.close()
            self._forwarding = None
        if self._otlp is not None:
            otlp, self._otlp = self._otlp, None
            await asyncio.to_thread(otlp.shutdown, self.settings.otlp_timeout_sec)
            self._otlp_final = otlp.statistics()

    # -- making spans ----------------------------------------------------------------

    def start_span(
        self,
        name: str,
        kind: str = "internal",
        *,
        agent: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Span:
        """A started span: child of the current span, else a new trace, sampled with
        probability ``sample_ratio``."""
        parent = current_span.get()
        if parent is None:
            trace_id, parent_id, sampled = new_trace_id(), None, self.sample()
        else:
            trace_id, parent_id, sampled = parent.trace_id, parent.span_id, parent.sampled
        return Span(
            trace_id,
            new_span_id(),
            parent_id,
            name,
            kind,
            time.time_ns(),
            service=self.service,
            agent=agent,
            attributes=attributes if attributes is not None else {},
            sampled=sampled,
        )

    def sample(self) -> bool:
        """Whether a new trace is kept."""
        return self.ratio >= 1.0 or random.random() < self.ratio

    def end(self, span: Span) -> None:
        span.end_ns = time.time_ns()
        if span.sampled or span.status == "error":
            self.record(span)

    def record(self, span: Span) -> None:
        """Queue a finished span for export."""
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self.pending.append(span)
        if len(self.pending) >= BATCH_SIZE:
            self.wake()

    def wake(self) -> None:
        """Export soon (a batch is full)."""
        if self._wake is not None:
            self._wake.set()

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        kind: str = "internal",
        *,
        agent: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Iterator[Span | None]:
        """A span around a block: current while the block runs, an error if it raises."""
        span = self.start_span(name, kind, agent=agent, attributes=attributes)
        token = current_span.set(span)
        try:
            yield span
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError | GeneratorExit):
                span.fail(exc)
            raise
        finally:
            current_span.reset(token)
            self.end(span)

    def begin_publish(
        self, topic: str, agent: str, event_id: str, name: str | None = None
    ) -> tuple[str | None, Span | None]:
        """Start the producer span of one publish: ``(traceparent, span)``. The caller
        sets ``span.end_ns`` once the event is sent; ``span`` is None when the trace is
        not sampled. A publish span never changes after it ends, so it is queued now.

        This runs for every event published, so ids come from one random draw.
        """
        parent = current_span.get()
        if parent is None:
            (trace_id, span_id), parent_id = new_root_ids(), None
            sampled = self.ratio >= 1.0 or random.random() < self.ratio
        else:
            trace_id, parent_id, sampled = parent.trace_id, parent.span_id, parent.sampled
            span_id = new_span_id()
        traceparent = f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
        if not sampled:
            return traceparent, None
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
            return traceparent, None
        start = time_ns()
        span = Span(
            trace_id, span_id, parent_id, name or f"publish {topic}", "producer", start, start,
            "unset", None, self.service, agent,
            {"messaging.destination.name": topic, "messaging.message.id": event_id},
            (), (), True,
        )  # fmt: skip
        self.pending.append(span)
        if len(self.pending) == BATCH_SIZE:
            self.wake()
        return traceparent, span

    def continuing(self, event: Envelope) -> contextlib.AbstractContextManager[None]:
        """Publish under ``event``'s trace context (e.g. an error reply sent after the
        handler's span has ended), without recording a span of its own."""
        return self.joining(event.traceparent)

    @contextlib.contextmanager
    def joining(self, traceparent: str | None) -> Iterator[None]:
        """Spans made inside are children of the span ``traceparent`` names."""
        parent = parse_traceparent(traceparent)
        if parent is None:
            yield
            return
        token = current_span.set(Span(parent[0], parent[1], None, "", sampled=parent[2]))
        try:
            yield
        finally:
            current_span.reset(token)

    @contextlib.contextmanager
    def unsampled(self) -> Iterator[None]:
        """Nothing made inside is recorded (its context says "not sampled"), unless it
        fails: for Loom's own housekeeping, like tool discovery."""
        token = current_span.set(Span(new_trace_id(), new_span_id(), None, "", sampled=False))
        try:
            yield
        finally:
            current_span.reset(token)

    # -- export ----------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        wake = self._wake
        if wake is None:
            raise LoomError("the span recorder's flush loop runs only after start()")
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), FLUSH_INTERVAL)
            wake.clear()
            try:
                self.flush()
            except LoomError as exc:  # the bus is closing: the spans are lost, counted
                log.warning("spans not exported: %s", exc)

    def flush(self) -> None:
        """Export every pending span now (batches of ``BATCH_SIZE``)."""
        if not self.pending or self._export is None:
            return
        # The list object stays: handler wrappers hold it.
        pending = self.pending[:]
        self.pending.clear()
        sent = 0
        try:
            for start in range(0, len(pending), BATCH_SIZE):
                batch = pending[start : start + BATCH_SIZE]
                self._export(batch)
                sent += len(batch)
        finally:
            self.exported += sent
            self.dropped += len(pending) - sent
            if self._otlp is not None:
                self._otlp.submit(pending)

    def statistics(self) -> TracingStatistics:
        otlp = self._otlp.statistics() if self._otlp is not None else self._otlp_final
        return TracingStatistics(
            enabled=True,
            sample_ratio=self.ratio,
            recorded=self.exported + self.dropped + len(self.pending),
            exported=self.exported,
            dropped=self.dropped,
            pending=len(self.pending),
            otlp=otlp.to_dict() if otlp is not None else None,
        )


def _expand_headers(headers: dict[str, str]) -> dict[str, str]:
    """``${VAR}`` in a header value is the environment variable's value."""

    def value(name: str, text: str) -> str:
        def lookup(match: re.Match[str]) -> str:
            found = os.environ.get(match.group(1))
            if found is None:
                raise ConfigError(
                    f"[tracing] otlp_headers {name!r} uses ${{{match.group(1)}}}, which is not "
                    f"set: `export {match.group(1)}=...` before starting"
                )
            return found

        return ENV_REFERENCE.sub(lookup, text)

    return {name: value(name, text) for name, text in headers.items()}
