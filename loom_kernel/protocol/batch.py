"""Several events of one topic in one ZeroMQ message: the batch (``docs/PROTOCOL.md`` §2).

A publisher with more than one event ready on a topic sends them together::

    frame 0  topic     the events' topic (ZeroMQ subscriptions filter on it, as for one event)
    frame 1  batch     {"v":1,"sizes":[n1,n2,...]}: how many events, the bytes of each payload
    frame 2  headers   a JSON array of the events' headers (frame 1 of one event), in order
    frame 3  payloads  the payloads one after the other (n1 bytes, then n2...)

Four frames tell a batch from one event (three). The broker forwards it as it is; a
receiver decodes every header in one call and filters per event as usual.
"""

from __future__ import annotations

import msgspec

from ..errors import ProtocolError
from .envelope import (
    PROTOCOL_VERSION,
    Envelope,
    NonNegative,
    check_header,
    decode_data,
    decode_header,
    decode_topic,
)

__all__ = ["BATCH_FRAMES", "decode_batch", "encode_batch"]

BATCH_FRAMES = 4


class _Batch(msgspec.Struct):
    v: int
    sizes: list[NonNegative]


_batch_encoder = msgspec.json.Encoder()
_batch_decoder = msgspec.json.Decoder(_Batch)
_headers_decoder = msgspec.json.Decoder(list[Envelope])


def encode_batch(topic: bytes, headers: list[bytes], payloads: list[bytes]) -> list[bytes]:
    """The four frames of a batch: events on ``topic`` whose frames 1 and 2 (as
    :func:`~.envelope.encode_frames` makes them) are ``headers`` and ``payloads``."""
    sizes = [len(payload) for payload in payloads]
    return [
        topic,
        _batch_encoder.encode(_Batch(PROTOCOL_VERSION, sizes)),
        b"[" + b",".join(headers) + b"]",
        b"".join(payloads),
    ]


def decode_batch(frames: list[bytes]) -> list[Envelope]:
    """The events of a batch's four frames.

    Raises:
        ProtocolError: the frames are not a well-formed batch (the whole batch is dropped:
            a sender that gets one event wrong gets the message wrong).
    """
    if len(frames) != BATCH_FRAMES:
        raise ProtocolError(f"expected {BATCH_FRAMES} frames for a batch, got {len(frames)}")
    topic_bytes, batch_frame, headers, payloads = frames
    batch: _Batch = decode_header(batch_frame, _batch_decoder)
    if batch.v != PROTOCOL_VERSION:
        raise ProtocolError(
            f"unsupported batch version {batch.v}: this Loom speaks version {PROTOCOL_VERSION}"
        )
    envs: list[Envelope] = decode_header(headers, _headers_decoder)
    if len(envs) != len(batch.sizes) or sum(batch.sizes) != len(payloads):
        raise ProtocolError(
            f"bad batch: {len(envs)} headers and {len(batch.sizes)} sizes adding up to "
            f"{sum(batch.sizes)} bytes, for {len(payloads)} bytes of payloads"
        )
    topic = decode_topic(topic_bytes)
    start = 0
    for env, size in zip(envs, batch.sizes, strict=True):
        check_header(env)
        env.topic = topic
        env.payload = payload = payloads[start : start + size]
        start += size
        env.data = decode_data(payload, env.content_type)
    return envs
