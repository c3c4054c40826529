"""Tracing as handler middleware: a consumer span around every handler run.

The runtime puts :func:`tracing_middleware` in the middleware chain it gives every
agent's runner, like any other middleware. A handler whose spec is not ``traced`` (an
observer agent: the studio's feed, a recorder) gets no span of its own, but what it
emits still continues the trace of the event it handles.
"""

from __future__ import annotations

from time import time_ns
from typing import Any

from ..protocol import reserved
from ..protocol.envelope import Envelope
from ..protocol.handlers import Handler, HandlerSpec, Middleware
from ..protocol.spans import Span, current_span, new_span_id, new_trace_id, parse_traceparent
from .recorder import BATCH_SIZE, MAX_PENDING, SpanRecorder

__all__ = ["tracing_middleware"]


def tracing_middleware(recorder: SpanRecorder) -> Middleware:
    """The middleware that traces handlers into ``recorder``."""

    def middleware(spec: HandlerSpec, handler: Handler) -> Handler:
        if not spec.traced:
            return _carried(recorder, handler)
        return _traced(recorder, spec, handler)

    return middleware


def _carried(recorder: SpanRecorder, handler: Handler) -> Handler:
    async def carried(item: Any, ctx: Any) -> None:
        with recorder.continuing(item[0] if type(item) is list else item):
            await handler(item, ctx)

    return carried


def _traced(recorder: SpanRecorder, spec: HandlerSpec, handler: Handler) -> Handler:
    """This runs for every handled event, so it builds the span inline: a parsed
    ``traceparent``, two ids, two clock reads and a three-entry attribute dict."""
    tool = reserved.tool_name(spec.pattern)
    handler_name, agent, pending = spec.name, spec.agent, recorder.pending

    async def traced(item: Any, ctx: Any) -> None:
        event: Envelope = item[0] if type(item) is list else item
        parent = parse_traceparent(event.traceparent)
        if parent is None:
            if tool is None and reserved.is_reserved(event.topic):
                # the runtime's own reports (heartbeats, spans, stats) start no workflow:
                # an observer of everything must not trace them (its spans would be
                # reports that it observes, without end)
                await handler(item, ctx)
                return
            parent = (new_trace_id(), None, recorder.sample())
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
            service=recorder.service,
            agent=agent,
            attributes={
                "messaging.destination.name": event.topic,
                "messaging.message.id": event.id,
                "loom.handler": handler_name,
            },
            sampled=parent[2],
        )
        if type(item) is list:
            _link_batch(span, item)
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
                    if len(pending) == BATCH_SIZE:
                        recorder.wake()
                else:
                    recorder.dropped += 1

    return traced


def _link_batch(span: Span, items: list[Envelope]) -> None:
    links = (parse_traceparent(other.traceparent) for other in items[1:])
    span.links = (*span.links, *((link[0], link[1]) for link in links if link is not None))
