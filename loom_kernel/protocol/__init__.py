"""The protocol layer: what travels on the bus, independent of any transport.

- :mod:`.envelope`: the :class:`Envelope` and its three-frame wire encoding;
- :mod:`.topics`: topic names and wildcard patterns;
- :mod:`.reserved`: Loom's own topics (``loom.…``), spelled in one place;
- :mod:`.spans`: span records and W3C trace context;
- :mod:`.handlers`: the handler and middleware contract.

Imports nothing from the other layers (only :mod:`loom_kernel.errors`).
"""

from . import reserved
from .envelope import (
    CONTENT_BYTES,
    CONTENT_JSON,
    CONTENT_TEXT,
    PROTOCOL_VERSION,
    Envelope,
    decode_frames,
    encode_data,
    encode_frames,
    new_id,
)
from .handlers import Handler, HandlerSpec, Middleware
from .spans import (
    Span,
    SpanEvent,
    current_span,
    format_traceparent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
)
from .topics import Pattern, compile_pattern, topic_matches, validate_topic

__all__ = [
    "CONTENT_BYTES",
    "CONTENT_JSON",
    "CONTENT_TEXT",
    "PROTOCOL_VERSION",
    "Envelope",
    "Handler",
    "HandlerSpec",
    "Middleware",
    "Pattern",
    "Span",
    "SpanEvent",
    "compile_pattern",
    "current_span",
    "decode_frames",
    "encode_data",
    "encode_frames",
    "format_traceparent",
    "new_id",
    "new_span_id",
    "new_trace_id",
    "parse_traceparent",
    "reserved",
    "topic_matches",
    "validate_topic",
]
