"""The batch message: several events of one topic in four frames (docs/PROTOCOL.md §2)."""

from __future__ import annotations

import gc
import json

import pytest

from loom_kernel.errors import ProtocolError
from loom_kernel.protocol.batch import decode_batch, encode_batch
from loom_kernel.protocol.envelope import Envelope, encode_data, encode_frames


def frames_of(*data: object, topic: str = "market.price.btc") -> list[list[bytes]]:
    out = []
    for seq, value in enumerate(data, start=1):
        payload, content_type = encode_data(value)
        env = Envelope(topic=topic, id=f"abc-{seq}", source="feed", seq=seq, ts=seq,
                       payload=payload, content_type=content_type)  # fmt: skip
        out.append(encode_frames(env))
    return out


def batch_of(singles: list[list[bytes]]) -> list[bytes]:
    return encode_batch(singles[0][0], [f[1] for f in singles], [f[2] for f in singles])


def test_a_batch_decodes_to_the_events_it_was_made_of() -> None:
    singles = frames_of({"p": 1}, b"\x00\x01raw", None, [1, 2, 3])
    events = decode_batch(batch_of(singles))
    assert [e.data for e in events] == [{"p": 1}, b"\x00\x01raw", None, [1, 2, 3]]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert {e.topic for e in events} == {"market.price.btc"} and events[0].v == 1
    assert [e.payload for e in events] == [f[2] for f in singles]


def test_the_frames_are_what_the_protocol_document_says() -> None:
    """What a plain pyzmq program reads from a batch, without Loom."""
    topic, batch, headers, payloads = batch_of(frames_of({"p": 1}, {"p": 22}))
    assert topic == b"market.price.btc"
    sizes = json.loads(batch)["sizes"]
    assert json.loads(batch)["v"] == 1 and sizes == [7, 8]
    assert [h["id"] for h in json.loads(headers)] == ["abc-1", "abc-2"]
    assert [json.loads(payloads[:7]), json.loads(payloads[7:])] == [{"p": 1}, {"p": 22}]


@pytest.mark.parametrize(
    ("frame", "value", "error"),
    [
        (1, b'{"v":2,"sizes":[8,9]}', "unsupported batch version 2"),
        (1, b'{"v":1,"sizes":[8]}', "2 headers and 1 sizes"),
        (1, b'{"v":1,"sizes":[8,10]}', "adding up to 18 bytes, for 15"),
        (1, b"not json", "bad header"),
        (2, b'[{"v":1,"id":"a"},{"v":1}]', "missing required field 'id'"),
        (2, b"{}", "bad header"),
        (0, b"bad..topic", "bad topic frame"),
    ],
)
def test_a_malformed_batch_is_refused_whole(frame: int, value: bytes, error: str) -> None:
    frames = batch_of(frames_of({"p": 1}, {"p": 22}))
    frames[frame] = value
    with pytest.raises(ProtocolError, match=error):
        decode_batch(frames)


def test_three_frames_are_not_a_batch() -> None:
    with pytest.raises(ProtocolError, match="expected 4 frames"):
        decode_batch(frames_of({"p": 1})[0])


def test_decoded_events_are_not_tracked_by_the_garbage_collector() -> None:
    """A backlog of envelopes must not make every collection walk it: received events
    are values (``Envelope`` is ``gc=False``), even when their data is a dict or list."""
    events = decode_batch(batch_of(frames_of({"p": 1.5}, [1, 2], "text")))
    assert [gc.is_tracked(e) for e in events] == [False, False, False]
    built = Envelope(topic="a.b", data={"nested": [1]})
    assert not gc.is_tracked(built)
