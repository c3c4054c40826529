"""Acknowledged publishing's bookkeeping: what waits, what is sent again and when."""

from __future__ import annotations

import time

import pytest

from loom_kernel import BusError, Envelope
from loom_kernel.durability import AckTracker
from loom_kernel.protocol.envelope import new_id


def published(seq: int, epoch: str) -> Envelope:
    return Envelope(topic="orders.new", source="shop", id=f"{epoch}-{seq}", seq=seq)


def test_acked_events_are_forgotten_and_the_rest_sent_again_later_and_later() -> None:
    tracker = AckTracker(max_in_flight=100, ack_timeout=1.0)
    epoch = new_id()[:12]
    before = time.monotonic()
    for seq in range(1, 6):
        tracker.add(published(seq, epoch))
    after = time.monotonic()
    tracker.ack([("shop", "orders.new", epoch, 1, 3)])
    assert tracker.statistics() == {"in_flight": 2, "acked": 3, "resent": 0}
    # the clock is passed in: no waiting here
    assert tracker.overdue(before + 0.5) == []
    first_try = after + 1.01
    assert [env.seq for env in tracker.overdue(first_try)] == [4, 5]
    assert tracker.overdue(first_try + 1.0) == []  # the next try waits twice as long
    assert [env.seq for env in tracker.overdue(first_try + 2.01)] == [4, 5]
    assert tracker.statistics()["resent"] == 4


def test_acks_of_other_streams_or_unknown_numbers_change_nothing() -> None:
    tracker = AckTracker(max_in_flight=100, ack_timeout=1.0)
    epoch = new_id()[:12]
    tracker.add(published(1, epoch))
    tracker.ack([("shop", "orders.new", "000000000000", 1, 1), ("shop", "orders.new", epoch, 7, 9)])
    assert tracker.in_flight == 1


def test_past_max_in_flight_publishing_is_refused_with_the_fix() -> None:
    tracker = AckTracker(max_in_flight=2, ack_timeout=1.0)
    epoch = new_id()[:12]
    tracker.add(published(1, epoch))
    tracker.add(published(2, epoch))
    with pytest.raises(BusError, match=r"max_in_flight.*wait_acknowledged"):
        tracker.check_room("orders.new")


async def test_waiting_until_everything_is_acknowledged() -> None:
    tracker = AckTracker(max_in_flight=10, ack_timeout=1.0)
    assert await tracker.wait_empty(0.01)
    epoch = new_id()[:12]
    tracker.add(published(1, epoch))
    assert not await tracker.wait_empty(0.01)
    tracker.ack([("shop", "orders.new", epoch, 1, 1)])
    assert await tracker.wait_empty(0.01)
