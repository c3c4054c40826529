"""What subscribers, publishers and the event log say to each other on the bus.

Every message rides in an ordinary envelope on a reserved topic
(:mod:`loom_kernel.protocol.reserved`), its payload one of the structs below in
MessagePack, tagged by ``kind`` (content type :data:`CONTENT_TYPE`). ``docs/PROTOCOL.md``
section 12 describes them for other languages.

A *stream* is what sequence numbers count: one publisher run's events on one topic,
``(source, topic, epoch)``. The epoch is the process prefix of Loom's event ids
(``<12 hex digits>-<counter>``), so a publisher that restarts (and counts from 1 again)
starts new streams instead of repeating old sequence numbers; events with other ids
have the epoch ``""``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from ..errors import ProtocolError
from ..protocol.envelope import Envelope, decode_frames, encode_frames

__all__ = [
    "ACK_HEADER",
    "CONTENT_TYPE",
    "Ack",
    "Commit",
    "Fetch",
    "Fetched",
    "Message",
    "Position",
    "Range",
    "Record",
    "Resume",
    "Resumed",
    "Store",
    "Stream",
    "decode",
    "encode",
    "envelope_of",
    "epoch_of",
    "record_of",
    "stream_of",
]

#: The payload's content type: receivers that do not know it keep the bytes as they are.
CONTENT_TYPE = "application/vnd.loom.eventlog+msgpack"
#: Header of an event on a reliable topic: the publishing client, where acks go.
ACK_HEADER = "loom-ack"

Stream = tuple[str, str, str]  # (source, topic, epoch)
_LOOM_HEAD = re.compile(r"[0-9a-f]{12}-\Z")
_EPOCHS: dict[str, str] = {}  # an id's first 13 characters -> its epoch


def epoch_of(event_id: str) -> str:
    """The publisher run an event id belongs to (``""`` for ids not made by Loom)."""
    head = event_id[:13]
    epoch = _EPOCHS.get(head)
    if epoch is None:
        epoch = head[:12] if _LOOM_HEAD.match(head) else ""
        if len(_EPOCHS) >= 10_000:  # ids of other programs may all differ here
            _EPOCHS.clear()
        _EPOCHS[head] = epoch
    return epoch


def stream_of(env: Envelope) -> Stream:
    return (env.source, env.topic, epoch_of(env.id))


class Position(msgspec.Struct, array_like=True, frozen=True):
    """A stream and a sequence number in it."""

    source: str
    topic: str
    epoch: str
    seq: int


class Range(msgspec.Struct, array_like=True):
    """Events of one stream with ``after < seq < before`` (``before`` 0: no end), logged
    after log position ``after_pos``."""

    source: str
    topic: str
    epoch: str
    after: int
    before: int = 0
    after_pos: int = 0


class Record(msgspec.Struct, array_like=True):
    """One logged event: its log position, the epoch of the range it answers (of its
    stream, see :class:`Range`) and its frames as they travelled."""

    pos: int
    topic: str
    epoch: str
    header: bytes
    payload: bytes


class Resume(msgspec.Struct, tag="resume", tag_field="kind"):
    """Request: the cursor ``name`` (created now if new) and what it has not handled."""

    cursor: str
    pattern: str


class Resumed(msgspec.Struct, tag="resumed", tag_field="kind"):
    """Reply to :class:`Resume`: where the cursor is, and the ranges to fetch."""

    created: bool
    positions: list[Position]
    ranges: list[Range]


class Fetch(msgspec.Struct, tag="fetch", tag_field="kind"):
    """Request: logged events of some ranges, at most ``limit`` of them."""

    ranges: list[Range]
    limit: int = 5000


class Fetched(msgspec.Struct, tag="fetched", tag_field="kind"):
    """Reply to :class:`Fetch`: events in log order (each stream's in sequence order);
    ``more`` when the limit cut the answer short."""

    events: list[Record]
    more: bool


class Commit(msgspec.Struct, tag="commit", tag_field="kind"):
    """A cursor moves on: every event of ``positions``' streams up to ``seq`` is handled.
    ``close``: the subscriber stopped cleanly (sent as a request, answered when stored)."""

    cursor: str
    pattern: str
    positions: list[Position]
    close: bool = False


class Store(msgspec.Struct, tag="store", tag_field="kind"):
    """Events sent again by their publisher (no ack came): frames as they travelled."""

    events: list[tuple[str, bytes, bytes]]


class Ack(msgspec.Struct, tag="ack", tag_field="kind"):
    """The log has these events of a publisher: ``(source, topic, epoch, first, last)``."""

    ranges: list[tuple[str, str, str, int, int]]


Message = Resume | Resumed | Fetch | Fetched | Commit | Store | Ack
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def decode(payload: bytes, expected: type[Any]) -> Any:
    """Decode a payload that must be an ``expected`` message.

    Raises:
        ProtocolError: it is not MessagePack, not a known message, or another kind.
    """
    try:
        message = _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"bad event-log message: {exc}") from None
    if not isinstance(message, expected):
        raise ProtocolError(
            f"expected an event-log {expected.__name__} message, got {type(message).__name__}"
        )
    return message


def record_of(pos: int, env: Envelope) -> Record:
    _, header, payload = encode_frames(env)
    return Record(pos, env.topic, epoch_of(env.id), header, payload)


def envelope_of(record: Record) -> Envelope:
    """The event a record holds, decoded as it arrived (raises ``ProtocolError``)."""
    return decode_frames([record.topic.encode(), record.header, record.payload])
