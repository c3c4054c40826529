"""Spans as Loom records them: lean structs, W3C trace context, the wire encoding.

The OpenTelemetry SDK spends 10-20 µs on a span; the bus spends about 5 µs on an
event. Loom therefore records its own per-event spans (publish, handle, request,
tool, LLM...) as :class:`Span` structs (about 1 µs), ships them over the bus in
batches, and hands them to the SDK's exporters (OTLP) as ``ReadableSpan`` only when
one is configured. Spans made with the OpenTelemetry API join the same traces (see
:mod:`loom_kernel.tracing`).

On the bus a batch of spans is a JSON array of span arrays (``docs/PROTOCOL.md``)::

    [trace_id, span_id, parent_id, name, kind, start_ns, end_ns, status,
     status_message, service, agent, attributes, events, links, sampled]
"""

from __future__ import annotations

import random
import time
import traceback
from contextvars import ContextVar
from typing import Any

import msgspec

__all__ = [
    "KINDS",
    "Span",
    "SpanEvent",
    "current_span",
    "format_traceparent",
    "new_root_ids",
    "new_span_id",
    "new_trace_id",
    "parse_traceparent",
]

KINDS = ("internal", "producer", "consumer", "client", "server")
_getrandbits = random.getrandbits  # reseeded in forked children by the random module


def new_trace_id() -> str:
    """32 hex digits, never all zero."""
    return (_getrandbits(128) or 1).to_bytes(16, "big").hex()


def new_span_id() -> str:
    """16 hex digits, never all zero."""
    return (_getrandbits(64) or 1).to_bytes(8, "big").hex()


def new_root_ids() -> tuple[str, str]:
    """A new trace id and span id from one random draw (the publish hot path's root)."""
    ids = (_getrandbits(192) or 1).to_bytes(24, "big").hex()
    return ids[:32], ids[32:]


def format_traceparent(trace_id: str, span_id: str, sampled: bool) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_SAMPLED_DIGITS = frozenset("13579bdfBDF")


def parse_traceparent(value: str | None) -> tuple[str, str, bool] | None:
    """``(trace_id, span_id, sampled)`` of a W3C ``traceparent``, or None if malformed.

    The flags are a bit field (the SDK writes ``03`` for random + sampled): an odd last
    digit means sampled. This runs once per handled event, so it checks the shape only;
    the ids are checked as hex when spans leave Loom (the store, OTLP).
    """
    if not value or len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    trace_id, span_id = value[3:35], value[36:52]
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, value[54] in _SAMPLED_DIGITS


def valid_ids(trace_id: str, span_id: str | None = None) -> bool:
    """Whether ids are hex (checked when spans leave Loom, not per event)."""
    return _hex(trace_id) and (span_id is None or _hex(span_id))


def _hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


class SpanEvent(msgspec.Struct, array_like=True, gc=False):
    """Something that happened during a span (an exception, a log line...)."""

    name: str
    ts_ns: int
    attributes: dict[str, Any] = {}


class Span(msgspec.Struct, array_like=True, gc=False):
    """One span. Created by the tracing layer; ended with :meth:`end`.

    A span is exported when its trace is sampled, or when it ends in error (errors
    are always kept: then ``sampled`` is false on the wire).
    """

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str = "internal"
    start_ns: int = 0
    end_ns: int = 0
    status: str = "unset"
    status_message: str | None = None
    service: str = ""
    agent: str | None = None
    attributes: dict[str, Any] = {}
    # Tuples, not lists: an empty tuple is not tracked by the garbage collector, and a
    # traced handler makes one span per event (two empty lists each cost a collection
    # every few hundred events).
    events: tuple[SpanEvent, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    sampled: bool = True

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def traceparent(self) -> str:
        return format_traceparent(self.trace_id, self.span_id, True)

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        self.events = (*self.events, SpanEvent(name, time.time_ns(), attributes or {}))

    def add_link(self, trace_id: str, span_id: str) -> None:
        self.links = (*self.links, (trace_id, span_id))

    def fail(self, exc: BaseException) -> None:
        """Mark the span as an error, recording the exception as OpenTelemetry does."""
        self.status = "error"
        self.status_message = f"{type(exc).__name__}: {exc}"
        self.add_event(
            "exception",
            {
                "exception.type": type(exc).__name__,
                "exception.message": str(exc),
                "exception.stacktrace": "".join(traceback.format_exception(exc))[-4000:],
            },
        )


#: The span of the handler (or tool call, LLM call...) running now, if any.
current_span: ContextVar[Span | None] = ContextVar("loom_current_span", default=None)
