"""The event log's messages: round trips, and bad payloads refused clearly."""

from __future__ import annotations

import pytest

from loom_kernel.durability import epoch_of
from loom_kernel.durability.wire import Commit, Fetch, Position, Range, Resume, decode, encode
from loom_kernel.errors import ProtocolError
from loom_kernel.protocol.envelope import new_id


def test_messages_round_trip() -> None:
    commit = Commit("sink:o.*", "o.*", [Position("pub", "o.n", "abc", 4)], close=True)
    assert decode(encode(commit), Commit) == commit
    fetch = Fetch([Range("pub", "o.n", "abc", 4, 9)], 10)
    assert decode(encode(fetch), Fetch) == fetch


def test_a_payload_of_another_kind_or_not_msgpack_is_refused() -> None:
    with pytest.raises(ProtocolError, match="expected an event-log Commit"):
        decode(encode(Resume("c", "o.*")), Commit)
    with pytest.raises(ProtocolError, match="bad event-log message"):
        decode(b"\xc1 not msgpack", Commit)


def test_the_epoch_is_the_publisher_run_of_loom_ids_only() -> None:
    loom_id = new_id()
    assert epoch_of(loom_id) == loom_id[:12] and len(epoch_of(loom_id)) == 12
    assert epoch_of("some-other-id") == ""
