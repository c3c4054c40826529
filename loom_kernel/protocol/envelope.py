"""The envelope every event travels in, and its wire encoding.

This module is the one place that turns envelopes into ZeroMQ frames and back.
The layout is documented in ``docs/PROTOCOL.md``:

    frame 0  topic    UTF-8 topic name (ZeroMQ subscriptions filter on its bytes)
    frame 1  header   JSON object: {"v": 1, "id": ..., "type": ..., ...}
    frame 2  payload  bytes, interpreted by the header's ``content_type``
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Annotated, Any

import msgspec

from ..errors import ProtocolError, TopicError
from .topics import validate_topic

__all__ = [
    "CONTENT_BYTES",
    "CONTENT_JSON",
    "CONTENT_TEXT",
    "PROTOCOL_VERSION",
    "Envelope",
    "decode_frames",
    "encode_data",
    "encode_frames",
    "new_id",
]

PROTOCOL_VERSION = 1
CONTENT_JSON = "application/json"
CONTENT_BYTES = "application/octet-stream"
CONTENT_TEXT = "text/plain"
CONTENT_MSGPACK = "application/msgpack"

# Unique without a syscall per id: 12 random hex digits per process, then a counter.
_ID_PREFIX = os.urandom(6).hex()
_id_counter = itertools.count(1)


def _reseed_ids() -> None:
    global _ID_PREFIX, _id_counter
    _ID_PREFIX = os.urandom(6).hex()
    _id_counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed_ids)  # a forked child must not repeat its parent's ids


def new_id() -> str:
    """A new id, unique across processes: ``<12 random hex digits>-<hex counter>``."""
    return f"{_ID_PREFIX}-{next(_id_counter):x}"


#: Counters and times are never negative: a header saying otherwise is malformed.
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class Envelope(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One event on the bus.

    Handlers receive an ``Envelope``; ``event.data`` is the decoded payload.

    Attributes:
        topic: dotted topic name, e.g. ``market.price.BTC``.
        data: the payload decoded according to ``content_type``.
        payload: the payload bytes as they travel.
        id: unique event id.
        type: ``event``, ``request``, ``reply``, ``error``, ``cfp``, ``bid``,
            ``award``, ``reject``, ``heartbeat``, ``stats``...
        source: id of the agent (or client) that published it.
        ts: publish time, nanoseconds since the Unix epoch.
        correlation_id: ties replies (and bids, awards) to their request.
        thread_id: the conversation/workflow this event belongs to.
        reply_to: topic where replies go.
        ttl_ms: time to live in milliseconds after ``ts``; 0 means forever.
        hops: how many handlers this causal chain has crossed.
        seq: per-(source, topic) sequence number, 1, 2, 3... (0: not sequenced).
        traceparent / tracestate: W3C trace context.
        content_type: how ``payload`` is encoded.
        headers: free-form string headers for extensions.
        v: protocol version of the header it arrived in (0: built locally, not received).

    Envelopes are values: the garbage collector does not track them (``gc=False``), so a
    backlog of received events costs no collection time. Do not make one part of a
    reference cycle (an envelope whose ``data`` refers back to it): it would never be freed.
    """

    topic: str = ""
    data: Any = None
    v: int = 0
    payload: bytes = b""
    id: str = ""
    type: str = "event"
    source: str = ""
    ts: NonNegative = 0
    correlation_id: str | None = None
    thread_id: str | None = None
    reply_to: str | None = None
    ttl_ms: NonNegative = 0
    hops: NonNegative = 0
    seq: NonNegative = 0
    traceparent: str | None = None
    tracestate: str | None = None
    content_type: str = CONTENT_JSON
    headers: dict[str, str] | None = None

    @property
    def age_ms(self) -> float:
        """Milliseconds since the event was published (by this machine's clock)."""
        return (time.time_ns() - self.ts) / 1e6

    @property
    def expired(self) -> bool:
        """True when the event's TTL has run out."""
        return (
            self.ttl_ms > 0 and self.ts > 0 and time.time_ns() > self.ts + self.ttl_ms * 1_000_000
        )


class _Header(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Frame 1 on the wire: the envelope without topic and payload."""

    v: int
    id: str
    type: str = "event"
    source: str = ""
    ts: int = 0
    correlation_id: str | None = None
    thread_id: str | None = None
    reply_to: str | None = None
    ttl_ms: int = 0
    hops: int = 0
    seq: int = 0
    traceparent: str | None = None
    tracestate: str | None = None
    content_type: str = CONTENT_JSON
    headers: dict[str, str] | None = None


def _enc_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)  # pydantic models
    if callable(dump):
        return dump(mode="json")
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise NotImplementedError(
        f"cannot encode {type(obj).__name__} as event data: pass JSON-compatible values "
        "(dict, list, str, int, float, bool, None), a dataclass, a pydantic model, or bytes"
    )


_json_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_json_decoder = msgspec.json.Decoder()
_header_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(Envelope)
_msgpack_decoder = msgspec.msgpack.Decoder()


_BINARY = (bytes, bytearray, memoryview)


def encode_data(data: Any) -> tuple[bytes, str]:
    """Encode event data to ``(payload, content_type)``.

    ``bytes`` travel as ``application/octet-stream``; anything else as JSON.
    Raises ``TypeError`` naming the value that cannot be encoded.
    """
    if isinstance(data, _BINARY):  # a tuple: `bytes | bytearray` builds a union per call
        return bytes(data), CONTENT_BYTES
    try:
        return _json_encoder.encode(data), CONTENT_JSON
    except NotImplementedError as exc:
        raise TypeError(str(exc)) from None
    except (TypeError, OverflowError) as exc:
        raise TypeError(f"cannot encode event data: {exc}") from None


def decode_data(payload: bytes, content_type: str) -> Any:
    """Decode a payload by its content type; raises :class:`ProtocolError` if malformed."""
    try:
        if content_type == CONTENT_JSON:
            # An empty payload is "no data" (probes, bare signals).
            return _json_decoder.decode(payload) if payload else None
        if content_type == CONTENT_TEXT:
            return payload.decode("utf-8")
        if content_type == CONTENT_MSGPACK:
            return _msgpack_decoder.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"payload is not valid {content_type}: {exc}") from None
    except RecursionError:
        raise ProtocolError(
            f"payload is {content_type} nested too deeply to decode (thousands of levels)"
        ) from None
    return payload


def encode_frames(env: Envelope) -> list[bytes]:
    """The three frames of ``env`` (see ``docs/PROTOCOL.md``)."""
    header = _Header(
        v=PROTOCOL_VERSION,
        id=env.id,
        type=env.type,
        source=env.source,
        ts=env.ts,
        correlation_id=env.correlation_id,
        thread_id=env.thread_id,
        reply_to=env.reply_to,
        ttl_ms=env.ttl_ms,
        hops=env.hops,
        seq=env.seq,
        traceparent=env.traceparent,
        tracestate=env.tracestate,
        content_type=env.content_type,
        headers=env.headers,
    )
    return [env.topic.encode(), _header_encoder.encode(header), env.payload]


def decode_frames(frames: list[bytes]) -> Envelope:
    """Decode frames received from the bus into an :class:`Envelope`.

    Raises :class:`ProtocolError` when the frames do not follow the protocol: wrong
    frame count, a header that is not a JSON object of the right shape, an
    unsupported version, or a payload that does not match its content type.
    """
    if len(frames) != 3:
        raise ProtocolError(f"expected 3 frames (topic, header, payload), got {len(frames)}")
    topic_bytes, header, payload = frames
    env = decode_header(header, _envelope_decoder)
    check_header(env)
    env.topic = decode_topic(topic_bytes)
    env.payload = payload
    env.data = decode_data(payload, env.content_type)
    return env


def decode_header(header: bytes, decoder: msgspec.json.Decoder) -> Any:
    """A header (or a batch's array of headers) decoded; ProtocolError when malformed."""
    try:
        return decoder.decode(header)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"bad header: {exc}") from None
    except RecursionError:
        raise ProtocolError("bad header: nested too deeply to decode") from None


def check_header(env: Envelope) -> None:
    """Raise :class:`ProtocolError` unless a received header has its version and id."""
    if env.v != PROTOCOL_VERSION:
        if env.v == 0:
            raise ProtocolError('bad header: missing required field "v" (the protocol version, 1)')
        raise ProtocolError(
            f"unsupported protocol version {env.v}: this Loom speaks version {PROTOCOL_VERSION}"
        )
    if not env.id:
        raise ProtocolError("bad header: missing required field 'id'")


def decode_topic(topic_bytes: bytes) -> str:
    """Frame 0 as a valid topic; ProtocolError when it is not one."""
    try:
        return validate_topic(topic_bytes.decode())
    except UnicodeDecodeError:
        raise ProtocolError("topic frame is not UTF-8") from None
    except TopicError as exc:
        raise ProtocolError(f"bad topic frame: {exc}") from None
