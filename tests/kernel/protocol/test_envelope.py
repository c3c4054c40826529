"""The envelope and its three-frame wire encoding (SPEC Kernel 3)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings

import msgspec
import pydantic
import pytest

from loom_kernel.errors import ProtocolError
from loom_kernel.protocol.envelope import (
    CONTENT_BYTES,
    CONTENT_JSON,
    CONTENT_MSGPACK,
    CONTENT_TEXT,
    PROTOCOL_VERSION,
    Envelope,
    decode_data,
    decode_frames,
    encode_data,
    encode_frames,
    new_id,
)


def _full_envelope(data: object) -> Envelope:
    payload, content_type = encode_data(data)
    return Envelope(
        topic="market.price.BTC",
        data=data,
        payload=payload,
        id=new_id(),
        type="request",
        source="data-agent",
        ts=time.time_ns(),
        correlation_id="corr-1",
        thread_id="thread-7",
        reply_to="loom.reply.rt-1.planner",
        ttl_ms=1500,
        hops=3,
        seq=42,
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        tracestate="vendor=value",
        content_type=content_type,
        headers={"tenant": "acme", "priority": "high"},
    )


def _header(**fields: object) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, "id": "e-1", **fields}).encode()


# -- round trips -----------------------------------------------------------------------


def test_round_trip_keeps_every_field() -> None:
    env = _full_envelope({"price": 64000.5, "tags": ["spot"], "ok": True, "none": None})
    decoded = decode_frames(encode_frames(env))
    assert decoded.v == PROTOCOL_VERSION  # the version of the header it arrived in
    for field in msgspec.structs.fields(Envelope):
        if field.name != "v":
            assert getattr(decoded, field.name) == getattr(env, field.name), field.name


def test_frames_are_topic_header_payload() -> None:
    env = _full_envelope([1, 2, 3])
    topic, header, payload = encode_frames(env)
    assert topic == b"market.price.BTC"
    assert payload == b"[1,2,3]"
    fields = json.loads(header)
    assert fields["v"] == PROTOCOL_VERSION
    assert fields["id"] == env.id
    assert fields["seq"] == 42
    assert "topic" not in fields and "payload" not in fields and "data" not in fields


def test_defaults_are_left_out_of_the_header() -> None:
    header = json.loads(encode_frames(Envelope(topic="a", id="x"))[1])
    assert header == {"v": PROTOCOL_VERSION, "id": "x"}


def test_minimal_envelope_round_trips_with_defaults() -> None:
    decoded = decode_frames([b"a.b", _header(), b""])
    assert decoded.topic == "a.b"
    assert decoded.id == "e-1"
    assert decoded.type == "event"
    assert decoded.data is None
    assert decoded.seq == 0
    assert decoded.headers is None
    assert decoded.content_type == CONTENT_JSON


def test_bytes_payload_travels_as_octet_stream() -> None:
    raw = bytes(range(256))
    for value in (raw, bytearray(raw), memoryview(raw)):
        payload, content_type = encode_data(value)
        assert (payload, content_type) == (raw, CONTENT_BYTES)
    env = Envelope(topic="blob", id=new_id(), payload=raw, content_type=CONTENT_BYTES)
    decoded = decode_frames(encode_frames(env))
    assert decoded.data == raw
    assert decoded.payload == raw


def test_text_and_msgpack_payloads_decode_by_content_type() -> None:
    assert decode_data("héllo".encode(), CONTENT_TEXT) == "héllo"
    assert decode_data(msgspec.msgpack.encode({"a": [1]}), CONTENT_MSGPACK) == {"a": [1]}
    assert decode_data(b"\x00raw", "application/x-custom") == b"\x00raw"


class Quote(pydantic.BaseModel):
    symbol: str
    price: float
    venues: list[str]


@dataclasses.dataclass
class Trade:
    symbol: str
    qty: int
    side: str = "buy"


def test_pydantic_model_data_is_encoded_as_json_object() -> None:
    payload, content_type = encode_data(Quote(symbol="BTC", price=1.5, venues=["x"]))
    assert content_type == CONTENT_JSON
    env = Envelope(topic="q", id=new_id(), payload=payload)
    assert decode_frames(encode_frames(env)).data == {
        "symbol": "BTC",
        "price": 1.5,
        "venues": ["x"],
    }


def test_dataclass_data_is_encoded_as_json_object() -> None:
    payload, content_type = encode_data(Trade("ETH", 3))
    assert content_type == CONTENT_JSON
    assert msgspec.json.decode(payload) == {"symbol": "ETH", "qty": 3, "side": "buy"}


def test_nested_models_and_sets_are_encoded() -> None:
    payload, _ = encode_data({"trade": Trade("ETH", 1), "tags": {"a"}})
    assert msgspec.json.decode(payload) == {
        "trade": {"symbol": "ETH", "qty": 1, "side": "buy"},
        "tags": ["a"],
    }


class Opaque:
    pass


@pytest.mark.parametrize(
    ("data", "type_name"),
    [
        (Opaque(), "Opaque"),
        ({"nested": [Opaque()]}, "Opaque"),
        (1j, "complex"),
        (object(), "object"),
    ],
)
def test_unencodable_data_gives_type_error_naming_the_type(data: object, type_name: str) -> None:
    with pytest.raises(TypeError, match=rf"cannot encode {type_name}\b"):
        encode_data(data)


# -- malformed frames ------------------------------------------------------------------

MALFORMED = {
    "no frames": [],
    "one frame": [b"a.b"],
    "two frames": [b"a.b", _header()],
    "four frames": [b"a.b", _header(), b"", b"extra"],
    "header not JSON": [b"a.b", b"{not json", b""],
    "header empty": [b"a.b", b"", b""],
    "header JSON array": [b"a.b", b"[1, 2]", b""],
    "header JSON string": [b"a.b", b'"v1"', b""],
    "header JSON number": [b"a.b", b"1", b""],
    "seq not an int": [b"a.b", _header(seq="three"), b""],
    "ts not an int": [b"a.b", _header(ts=1.5), b""],
    "id not a str": [b"a.b", _header(id=7), b""],
    "headers not str values": [b"a.b", _header(headers={"k": 1}), b""],
    "v not an int": [b"a.b", _header(v="1"), b""],
    "missing id": [b"a.b", json.dumps({"v": PROTOCOL_VERSION}).encode(), b""],
    "missing v": [b"a.b", b'{"id": "e-1"}', b""],
    "empty id": [b"a.b", _header(id=""), b""],
    "version 2": [b"a.b", _header(v=2), b""],
    "version 0": [b"a.b", _header(v=0), b""],
    "topic not UTF-8": [b"a.\xff\xfe", _header(), b""],
    "topic with empty segment": [b"a..b", _header(), b""],
    "topic with wildcard": [b"a.*", _header(), b""],
    "topic empty": [b"", _header(), b""],
    "payload not JSON": [b"a.b", _header(), b"{oops"],
    "payload truncated JSON": [b"a.b", _header(), b'{"a": 1'],
    "text payload not UTF-8": [b"a.b", _header(content_type=CONTENT_TEXT), b"\xff"],
    "msgpack payload garbage": [b"a.b", _header(content_type=CONTENT_MSGPACK), b"\xc1"],
}


@pytest.mark.parametrize("frames", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_frames_give_protocol_error(frames: list[bytes]) -> None:
    with pytest.raises(ProtocolError):
        decode_frames(frames)


def test_wrong_frame_count_message_names_the_count() -> None:
    with pytest.raises(ProtocolError, match=r"expected 3 frames .* got 2"):
        decode_frames([b"a", _header()])


def test_unsupported_version_message_names_both_versions() -> None:
    with pytest.raises(ProtocolError, match=f"unsupported protocol version 2.*{PROTOCOL_VERSION}"):
        decode_frames([b"a", _header(v=2), b""])


def test_missing_id_message_names_the_field() -> None:
    with pytest.raises(ProtocolError, match="'id'"):
        decode_frames([b"a", b'{"v": 1}', b""])


def test_protocol_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_frames([])


def test_unknown_header_fields_are_ignored_for_forward_compatibility() -> None:
    env = decode_frames([b"a.b", _header(future_field={"x": 1}), b"1"])
    assert env.data == 1


# -- expiry ----------------------------------------------------------------------------


def test_ttl_expiry() -> None:
    now = time.time_ns()
    assert not Envelope(ts=now, ttl_ms=0).expired
    assert not Envelope(ts=now - 10**12, ttl_ms=0).expired
    assert not Envelope(ts=now, ttl_ms=60_000).expired
    assert Envelope(ts=now - 2_000_000_000, ttl_ms=1000).expired
    assert Envelope(ts=now - 2_000_000_000).age_ms >= 2000


# -- ids -------------------------------------------------------------------------------


def test_new_ids_are_unique() -> None:
    ids = [new_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)


def test_new_id_shape() -> None:
    prefix, _, counter = new_id().partition("-")
    assert len(prefix) == 12
    int(prefix, 16)
    int(counter, 16)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_new_ids_are_unique_across_forked_processes() -> None:
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # fork() in a process that has threads (other tests' brokers) warns; the child
        # only computes ids and writes them to a pipe.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child
        try:
            os.write(write_end, " ".join(new_id() for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_ids = set(pipe.read().decode().split())
    os.waitpid(pid, 0)
    parent_ids = {new_id() for _ in range(100)}
    assert len(child_ids) == 100
    assert not child_ids & parent_ids, "a forked child repeats its parent's ids"


# -- hostile frames ----------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "application/msgpack"])
def test_a_payload_nested_thousands_of_levels_is_malformed_not_a_recursion_error(
    content_type: str,
) -> None:
    deep = (
        b"[" * 5000 + b"]" * 5000
        if content_type == "application/json"
        else b"\x91" * 5000 + b"\xc0"  # msgpack: 5,000 nested one-element arrays
    )
    header = json.dumps({"v": 1, "id": "x", "content_type": content_type}).encode()
    with pytest.raises(ProtocolError, match=r"nested too deeply|not valid"):
        decode_frames([b"a.b", header, deep])


def test_a_header_nested_thousands_of_levels_is_malformed() -> None:
    header = b'{"v": 1, "id": "x", "headers": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(ProtocolError, match="bad header"):
        decode_frames([b"a.b", header, b""])


@pytest.mark.parametrize("field", ["seq", "ttl_ms", "hops", "ts"])
def test_negative_counters_in_a_header_are_malformed(field: str) -> None:
    header = json.dumps({"v": 1, "id": "x", field: -5}).encode()
    with pytest.raises(ProtocolError, match=rf"bad header: .*{field}"):
        decode_frames([b"a.b", header, b""])
