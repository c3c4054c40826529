"""An envelope as a NATS message, and back.

The subject is the topic, the message's data the payload, and the envelope's header (the
JSON object of ``docs/PROTOCOL.md``'s second frame) travels in the NATS header
``Loom-Envelope``. Two more headers are for NATS's own tools: ``Nats-Msg-Id`` (the event
id: JetStream drops a message it already stored under that id) and ``traceparent`` (W3C
trace context, when the event has one).

A request's NATS reply subject is its ``reply_to`` inbox followed by its correlation id
(``loom.reply.<client>.<owner>.<correlation id>``): a Loom responder replies on the inbox
as always, and a plain NATS program's ``msg.respond`` lands under it, where the client reads
the correlation id back (:func:`answered`).

A message without ``Loom-Envelope`` comes from a NATS program that knows nothing of Loom:
it is taken as an event whose source is ``nats``, whose content type is its
``Content-Type`` header (raw bytes without one), and which has no sequence number. A
plain NATS request (``nats req``) is a request whose ``reply_to`` is the requester's reply
subject.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

from ...protocol.envelope import CONTENT_BYTES, Envelope, decode_data, decode_frames, encode_frames
from .subjects import subject_topic

__all__ = [
    "ENVELOPE_HEADER",
    "FOREIGN_SOURCE",
    "MSG_ID_HEADER",
    "answered",
    "decode_message",
    "encode_message",
    "reply_subject",
]

ENVELOPE_HEADER = "Loom-Envelope"
MSG_ID_HEADER = "Nats-Msg-Id"
#: The source of an event a plain NATS program published.
FOREIGN_SOURCE = "nats"


def encode_message(env: Envelope) -> tuple[str, bytes, dict[str, str]]:
    """``(subject, data, headers)`` of an envelope whose ``id`` is set."""
    topic, header, payload = encode_frames(env)
    headers = {ENVELOPE_HEADER: header.decode(), MSG_ID_HEADER: env.id}
    if env.traceparent:
        headers["traceparent"] = env.traceparent
    return topic.decode(), payload, headers


_SEGMENT = re.compile(r"[A-Za-z0-9_\-:@/]+\Z")


def reply_subject(env: Envelope) -> str:
    """The NATS reply subject of an event: none, its inbox, or (a request) its inbox and
    correlation id."""
    if not env.reply_to:
        return ""
    cid = env.correlation_id
    if env.type == "request" and cid and _SEGMENT.match(cid):
        return f"{env.reply_to}.{cid}"
    return env.reply_to


def answered(env: Envelope) -> None:
    """A reply that came to ``<inbox>.<correlation id>`` (a plain NATS program's
    ``msg.respond``, which also echoes the request's headers): the reply it is, on the inbox
    (``loom.reply.<client>.<owner>``: four segments, ids have no dots)."""
    parts = env.topic.split(".")
    if len(parts) == 5:
        env.topic, env.correlation_id = ".".join(parts[:4]), parts[4]
        env.type, env.reply_to = "reply", None


def decode_message(
    subject: str, data: bytes, headers: Mapping[str, str] | None, reply: str = ""
) -> Envelope:
    """The envelope a NATS message carries; ``reply``, the NATS reply subject of a plain
    NATS request (``nats req``), becomes its ``reply_to``: a Loom handler's reply goes there.

    Raises:
        ProtocolError: a malformed Loom header or payload.
        TopicError: the subject is not a Loom topic (a plain NATS publisher's).
    """
    header = headers.get(ENVELOPE_HEADER) if headers else None
    if header is not None:
        return decode_frames([subject.encode(), header.encode(), data])
    content_type = (headers or {}).get("Content-Type", CONTENT_BYTES)
    return Envelope(
        topic=subject_topic(subject),
        source=FOREIGN_SOURCE,
        id=(headers or {}).get(MSG_ID_HEADER, ""),
        type="request" if reply else "event",
        reply_to=subject_topic(reply) if reply else None,
        ts=time.time_ns(),
        payload=data,
        content_type=content_type,
        data=decode_data(data, content_type),
    )
