"""Tracing: one trace per workflow, across agents and processes.

Every runtime has a :class:`Tracing`. It records

- a **publish** span (producer) for each event an agent or the runtime emits; its W3C
  ``traceparent`` rides in the envelope;
- a **handle** span (consumer; ``serve`` for tools, server kind for requests) around
  each handler run, child of the publish span of the event it handles, so what the
  handler emits, requests, calls or asks an LLM nests under it;
- spans for requests, collaboration patterns (a fan-in links all its inputs), tool and
  MCP calls, and LLM calls (OpenTelemetry GenAI attributes), made by those layers with
  :meth:`Tracing.span`.

Spans are sampled per trace (``[tracing] sample_ratio``, decided at the root and
inherited through ``traceparent``); a span that ends in error is kept even in an
unsampled trace. Finished spans are published in batches on
``loom.trace.spans.<client id>`` (``docs/PROTOCOL.md``), where a span store collects
them (:mod:`loom_kernel.span_store`), and handed to the OTLP exporter when
``[tracing] otlp_endpoint`` is set. Spans made with the OpenTelemetry API inside a
handler join the same trace (:mod:`loom_kernel.otel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from time import time_ns
from typing import TYPE_CHECKING, Any

from .errors import LoomError
from .spans import (
    Span,
    _getrandbits,
    current_span,
    format_traceparent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
)

if TYPE_CHECKING:
    from .agent import HandlerSpec
    from .context import Context
    from .envelope import Envelope
    from .runner import Handler
    from .runtime import Runtime

__all__ = ["SPANS_TOPIC", "Tracing", "TracingStatistics"]

log = logging.getLogger("loom.tracing")
SPANS_TOPIC = "loom.trace.spans"
FLUSH_INTERVAL = 0.5  # seconds between batches on the bus
BATCH_SIZE = 256  # spans per bus message
MAX_PENDING = 50_000  # spans waiting for a flush; past this, new ones are dropped and counted
_TOOL_PREFIX = "loom.tool."
_INHERIT: Any = object()


@dataclass(frozen=True)
class TracingStatistics:
    """What the tracing layer of one runtime has done."""

    enabled: bool
    sample_ratio: float
    recorded: int
    exported: int
    dropped: int
    pending: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Tracing:
    """The spans of one runtime; ``runtime.tracing``."""

    def __init__(self, runtime: Runtime):
        settings = runtime.config.tracing
        self.runtime = runtime
        self.enabled = settings.enabled
        self.ratio = settings.sample_ratio
        self.capture_content = settings.capture_content
        self.service = ""
        self.exported = self.dropped = 0
        self._pending: list[Span | list[Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._otlp: Any = None
        self._resource: Any = None
        self._forwarding: contextlib.ExitStack | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, ctx: Context) -> None:
        if not self.enabled:
            return
        from . import otel

        self.service = otel.process_service_name()
        provider = otel.tracer_provider(self.service, self.ratio)
        self._resource = provider.resource
        endpoint = self.runtime.config.tracing.otlp_endpoint
        if endpoint:
            self._otlp = otel.otlp_processor(endpoint)
        self._forwarding = contextlib.ExitStack()
        self._forwarding.enter_context(otel.forwarding(self.record))
        self._wake = asyncio.Event()
        self._flusher = asyncio.get_running_loop().create_task(
            self._flush_loop(ctx), name="loom:tracing"
        )

    async def aclose(self, ctx: Context | None) -> None:
        """Send what is pending, then stop (idempotent)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if ctx is not None:
            self.flush(ctx)
        if self._forwarding is not None:
            self._forwarding.close()
            self._forwarding = None
        if self._otlp is not None:
            otlp, self._otlp = self._otlp, None
            await asyncio.to_thread(otlp.shutdown)

    # -- making spans ----------------------------------------------------------------

    def start_span(
        self,
        name: str,
        kind: str = "internal",
        *,
        agent: str | None = None,
        attributes: dict[str, Any] | None = None,
        parent: Span | tuple[str, str, bool] | None = _INHERIT,
    ) -> Span:
        """A started span: child of ``parent`` (default: the current span), else a new
        trace, sampled with probability ``sample_ratio``."""
        if parent is _INHERIT:
            parent = current_span.get()
        if parent is None:
            trace_id, parent_id = new_trace_id(), None
            sampled = self.ratio >= 1.0 or random.random() < self.ratio
        elif isinstance(parent, Span):
            trace_id, parent_id, sampled = parent.trace_id, parent.span_id, parent.sampled
        else:
            trace_id, parent_id, sampled = parent
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

    def end(self, span: Span) -> None:
        span.end_ns = time.time_ns()
        if span.sampled or span.status == "error":
            self.record(span)

    def record(self, span: Span) -> None:
        """Queue a finished span for export."""
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self._pending.append(span)
        if len(self._pending) >= BATCH_SIZE and self._wake is not None:
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
        """A span around a block: current while the block runs, an error if it raises.

        Yields None when tracing is off, so callers write ``if span is not None``.
        """
        if not self.enabled:
            yield None
            return
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

    # -- the two per-event spans -----------------------------------------------------

    def begin_publish(
        self, topic: str, agent: str, event_id: str, name: str | None = None
    ) -> tuple[str, list[Any] | None]:
        """Start the producer span of one emit: ``(traceparent, record)``. The caller
        sets ``record[6]`` (end time) once the event is sent; ``record`` is None when the
        trace is not sampled.

        A publish span never changes after it ends, so it is kept as a plain list laid
        out like :class:`Span` on the wire, appended now (a third of the cost of a
        ``Span`` and two method calls).
        """
        parent = current_span.get()
        if parent is None:
            ids = (_getrandbits(192) or 1).to_bytes(24, "big").hex()
            trace_id, span_id, parent_id = ids[:32], ids[32:], None
            sampled = self.ratio >= 1.0 or random.random() < self.ratio
        else:
            trace_id, parent_id, sampled = parent.trace_id, parent.span_id, parent.sampled
            span_id = new_span_id()
        traceparent = f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
        if not sampled:
            return traceparent, None
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return traceparent, None
        start = time_ns()
        record = [
            trace_id, span_id, parent_id, name or f"publish {topic}", "producer", start, start,
            "unset", None, self.service, agent,
            {"messaging.destination.name": topic, "messaging.message.id": event_id},
            [], [], True,
        ]  # fmt: skip
        self._pending.append(record)
        if len(self._pending) == BATCH_SIZE and self._wake is not None:
            self._wake.set()
        return traceparent, record

    def middleware(self, spec: HandlerSpec, handler: Handler) -> Handler:
        """Wraps a handler in its consumer span (the runtime's middleware hook).

        This runs for every handled event, so it builds the span inline: a parsed
        ``traceparent``, two ids, two clock reads and a two-entry attribute dict.
        """
        tool = spec.pattern[len(_TOOL_PREFIX) :] if spec.pattern.startswith(_TOOL_PREFIX) else None
        handler_name, service, pending = spec.name, self.service, self._pending

        async def traced(item: Any, ctx: Context) -> None:
            event: Envelope = item[0] if type(item) is list else item
            parent = parse_traceparent(event.traceparent)
            if parent is None:
                if tool is None and event.topic.startswith("loom."):
                    # the runtime's own reports (heartbeats, spans, stats) start no
                    # workflow: an observer of everything must not trace them (its spans
                    # would be reports that it observes, without end)
                    await handler(item, ctx)
                    return
                parent = self._root()
            if tool is not None:
                name, kind = f"serve {tool}", "server"
            else:
                name = f"handle {event.topic}"
                kind = "server" if event.type == "request" else "consumer"
            span = Span(
                parent[0],
                new_span_id(),
                parent[1],
                name,
                kind,
                time_ns(),
                service=service,
                agent=ctx.agent_id,
                attributes={
                    "messaging.destination.name": event.topic,
                    "messaging.message.id": event.id,
                    "loom.handler": handler_name,
                },
                sampled=parent[2],
            )
            if type(item) is list:
                self._link_batch(span, item)
            token = current_span.set(span)
            try:
                await handler(item, ctx)
            except Exception as exc:
                span.fail(exc)
                raise
            finally:
                current_span.reset(token)
                span.end_ns = time_ns()
                if span.sampled or span.status == "error":
                    if len(pending) < MAX_PENDING:
                        pending.append(span)
                        if len(pending) == BATCH_SIZE and self._wake is not None:
                            self._wake.set()
                    else:
                        self.dropped += 1

        return traced

    def untraced(self, spec: HandlerSpec, handler: Handler) -> Handler:
        """For observer agents (``traced = False``): no span of their own, but what their
        handlers emit continues the trace of the event they handle."""

        async def carried(item: Any, ctx: Context) -> None:
            with self.continuing(item[0] if type(item) is list else item):
                await handler(item, ctx)

        return carried

    def _root(self) -> tuple[str, None, bool]:
        """A new trace for an event that came without trace context."""
        return new_trace_id(), None, self.ratio >= 1.0 or random.random() < self.ratio

    @staticmethod
    def _link_batch(span: Span, items: list[Envelope]) -> None:
        for other in items[1:]:
            link = parse_traceparent(other.traceparent)
            if link is not None:
                span.add_link(link[0], link[1])

    @contextlib.contextmanager
    def continuing(self, event: Envelope) -> Iterator[None]:
        """Publish under ``event``'s trace context (e.g. an error reply sent after the
        handler's span has ended), without recording a span of its own."""
        parent = parse_traceparent(event.traceparent) if self.enabled else None
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

    @staticmethod
    def traceparent(span: Span) -> str:
        return format_traceparent(span.trace_id, span.span_id, span.sampled)

    # -- export ----------------------------------------------------------------------

    async def _flush_loop(self, ctx: Context) -> None:
        wake = self._wake
        assert wake is not None  # set by start()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), FLUSH_INTERVAL)
            wake.clear()
            try:
                self.flush(ctx)
            except LoomError as exc:  # the bus is closing: the spans are lost, counted
                log.warning("spans not exported: %s", exc)

    def flush(self, ctx: Context) -> None:
        """Publish every pending span now (batches of ``BATCH_SIZE``)."""
        if not self._pending:
            return
        # The list object stays: handler wrappers hold it.
        pending = self._pending[:]
        self._pending.clear()
        topic = f"{SPANS_TOPIC}.{ctx.client.client_id}"
        sent = 0
        try:
            for start in range(0, len(pending), BATCH_SIZE):
                batch = pending[start : start + BATCH_SIZE]
                ctx._publish(topic, batch, type="spans", count=False)
                sent += len(batch)
        finally:
            self.exported += sent
            self.dropped += len(pending) - sent
            if self._otlp is not None:
                self._to_otlp(pending)

    def _to_otlp(self, spans: list[Span | list[Any]]) -> None:
        from .otel import to_readable

        for item in spans:
            span = item if isinstance(item, Span) else Span(*item)  # a publish record
            try:
                self._otlp.on_end(to_readable(span, self._resource))
            except Exception as exc:  # a malformed id from a foreign publisher
                log.warning("span %s not sent over OTLP: %s", span.name, exc)

    def statistics(self) -> TracingStatistics:
        return TracingStatistics(
            enabled=self.enabled,
            sample_ratio=self.ratio,
            recorded=self.exported + self.dropped + len(self._pending),
            exported=self.exported,
            dropped=self.dropped,
            pending=len(self._pending),
        )
