"""Mailboxes: realtime, reliable, batched (SPEC Kernel 6)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import zmq

from loom_kernel.bus.qos import (
    BatchedMailbox,
    Mailbox,
    MailboxClosed,
    MailboxStatistics,
    RealtimeMailbox,
    make_mailbox,
)
from loom_kernel.bus.zeromq import Broker, BusAddress
from loom_kernel.bus.zeromq.client import BusClient
from loom_kernel.protocol.envelope import Envelope, encode_data
from tests.conftest import free_port

WAIT = 5.0


# -- realtime --------------------------------------------------------------------------


def test_realtime_drops_oldest_and_counts() -> None:
    box = make_mailbox("realtime", maxsize=3)
    assert isinstance(box, RealtimeMailbox)
    for n in range(1, 6):
        box.put_nowait(n)
    assert [box.get_nowait() for _ in range(len(box))] == [3, 4, 5]
    stats = box.statistics()
    assert (stats.received, stats.dropped, stats.max_depth, stats.depth) == (5, 2, 3, 0)
    assert stats.qos == "realtime"


def test_realtime_drops_nothing_below_its_bound() -> None:
    box = make_mailbox("realtime", maxsize=10)
    for n in range(10):
        box.put_nowait(n)
    assert box.statistics().dropped == 0
    assert len(box) == 10


# -- reliable --------------------------------------------------------------------------


async def test_reliable_keeps_everything_in_order() -> None:
    box = make_mailbox("reliable")
    assert type(box) is Mailbox
    for n in range(10_000):
        box.put_nowait(n)
    assert [await box.get() for _ in range(10_000)] == list(range(10_000))
    assert box.statistics().dropped == 0
    assert box.statistics().max_depth == 10_000


def test_reliable_overflow_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    box = make_mailbox("reliable", maxsize=2)
    with caplog.at_level(logging.ERROR, logger="loom.qos"):
        for n in range(5):
            box.put_nowait(n)
    assert box.statistics().dropped == 3
    # The bound is a safety net: what is kept is the oldest, in order.
    assert [box.get_nowait(), box.get_nowait()] == [0, 1]
    assert "reliable mailbox full" in caplog.text


async def test_get_waits_for_the_next_put() -> None:
    box = make_mailbox("reliable")
    getter = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    assert not getter.done()
    box.put_nowait("x")
    assert await asyncio.wait_for(getter, WAIT) == "x"


def test_get_nowait_on_empty_raises_index_error() -> None:
    with pytest.raises(IndexError):
        make_mailbox("reliable").get_nowait()


def test_gaps_are_recorded() -> None:
    box = make_mailbox("reliable")
    box.note_gap(3)
    box.note_gap(1)
    stats = box.statistics()
    assert (stats.gaps, stats.lost) == (2, 4)
    assert isinstance(stats, MailboxStatistics)
    assert stats.to_dict()["lost"] == 4


# -- batched ---------------------------------------------------------------------------


async def test_batched_lists_are_bounded_by_max_size() -> None:
    box = make_mailbox("batched", max_size=100, max_delay=0.01)
    assert isinstance(box, BatchedMailbox)
    for n in range(250):
        box.put_nowait(n)
    batches = [await asyncio.wait_for(box.get(), WAIT) for _ in range(3)]
    assert [len(b) for b in batches] == [100, 100, 50]
    assert [n for batch in batches for n in batch] == list(range(250))


async def test_batched_full_batch_returns_without_waiting_for_the_delay() -> None:
    box = make_mailbox("batched", max_size=3, max_delay=60)
    getter = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    for n in range(3):
        box.put_nowait(n)
    assert await asyncio.wait_for(getter, WAIT) == [0, 1, 2]


async def test_batched_flushes_a_partial_batch_after_max_delay() -> None:
    box = make_mailbox("batched", max_size=100, max_delay=0.05)
    loop = asyncio.get_running_loop()
    box.put_nowait("only")
    started = loop.time()
    assert await asyncio.wait_for(box.get(), WAIT) == ["only"]
    assert loop.time() - started >= 0.05 * 0.9  # the loop's clock may round a little


async def test_batched_waits_for_a_first_event_then_gathers() -> None:
    box = make_mailbox("batched", max_size=10, max_delay=0.05)
    getter = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    assert not getter.done()
    box.put_nowait(1)
    await asyncio.sleep(0)
    box.put_nowait(2)
    assert await asyncio.wait_for(getter, WAIT) == [1, 2]


async def test_batched_close_flushes_then_ends() -> None:
    box = make_mailbox("batched", max_size=10, max_delay=60)
    box.put_nowait(1)
    getter = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    box.close()
    assert await asyncio.wait_for(getter, WAIT) == [1]
    with pytest.raises(MailboxClosed):
        await asyncio.wait_for(box.get(), WAIT)


# -- bad settings ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fast", "", "Realtime", "best-effort"])
def test_unknown_qos_name_gives_value_error_listing_valid_ones(name: str) -> None:
    with pytest.raises(ValueError, match="use one of realtime, reliable, batched"):
        make_mailbox(name)


@pytest.mark.parametrize("qos", ["realtime", "reliable", "batched"])
@pytest.mark.parametrize("maxsize", [0, -1])
def test_mailbox_bound_below_one_gives_value_error(qos: str, maxsize: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        make_mailbox(qos, maxsize=maxsize)


@pytest.mark.parametrize(("max_size", "max_delay"), [(0, 0.1), (10, 0), (10, -1.0)])
def test_bad_batch_settings_give_value_error(max_size: int, max_delay: float) -> None:
    with pytest.raises(ValueError, match="batched QoS needs"):
        make_mailbox("batched", max_size=max_size, max_delay=max_delay)


# -- closing ---------------------------------------------------------------------------


async def test_close_ends_iteration_after_draining() -> None:
    box = make_mailbox("reliable")
    box.put_nowait(1)
    box.put_nowait(2)
    box.close()
    assert await box.get() == 1
    assert await box.get() == 2
    with pytest.raises(MailboxClosed):
        await box.get()


async def test_close_wakes_a_waiting_consumer() -> None:
    box = make_mailbox("realtime")
    getter = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    box.close()
    with pytest.raises(MailboxClosed):
        await asyncio.wait_for(getter, WAIT)


# -- through a real subscription -------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[BusClient]:
    broker = Broker([BusAddress.parse(f"tcp://127.0.0.1:{free_port()}")])
    [address] = broker.start()
    try:
        async with BusClient(address, context=zmq.Context.instance()) as client:
            yield client
    finally:
        broker.close()


def _event(topic: str, data: object) -> Envelope:
    payload, content_type = encode_data(data)
    return Envelope(topic=topic, payload=payload, content_type=content_type)


async def test_realtime_subscription_keeps_newest_under_a_burst(client: BusClient) -> None:
    realtime = await client.subscribe("burst.*", qos="realtime", maxsize=10)
    # A reliable twin sees every event: when it has the last one, so has the realtime box.
    witness = await client.subscribe("burst.*")
    for n in range(1000):
        client.publish(_event("burst.x", n))
    for n in range(1000):
        assert (await witness.get(timeout=WAIT)).data == n
    stats = realtime.statistics()
    assert (stats.received, stats.dropped, stats.depth) == (1000, 990, 10)
    assert [(await realtime.get(timeout=WAIT)).data for _ in range(10)] == list(range(990, 1000))
    [entry] = [s for s in client.statistics().subscriptions if s["qos"] == "realtime"]
    assert entry["dropped"] == 990


async def test_batched_subscription_yields_lists(client: BusClient) -> None:
    batched = await client.subscribe("batch.*", qos="batched", max_size=4, max_delay=0.01)
    witness = await client.subscribe("batch.*")
    for n in range(10):
        client.publish(_event("batch.x", n))
    for _ in range(10):
        await witness.get(timeout=WAIT)
    batches = [await batched.get(timeout=WAIT) for _ in range(3)]
    assert [[e.data for e in b] for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_closing_a_subscription_ends_its_iteration(client: BusClient) -> None:
    sub = await client.subscribe("end.*", qos="realtime")
    client.publish(_event("end.x", 1))

    async def consume() -> list[int]:
        seen = []
        async for event in sub:
            seen.append(event.data)
            await sub.aclose()
        return seen

    assert await asyncio.wait_for(consume(), WAIT) == [1]
