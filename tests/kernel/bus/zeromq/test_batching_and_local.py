"""Batches on the wire and in-process delivery, on a real broker (issue 24).

- a burst leaves as batch messages, in order, and arrives as the events it was made of;
- a lone event leaves at once, as a plain three-frame message a plain pyzmq program reads;
- a client's own subscriptions get its events in process, decoded afresh, once;
- another client in the same process still gets them through the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import zmq
import zmq.asyncio

from loom_kernel.bus import BusClient
from loom_kernel.bus.zeromq import Broker, BusAddress
from loom_kernel.protocol.envelope import Envelope, encode_data
from tests.conftest import free_port

WAIT = 5.0


@pytest.fixture
def bus() -> Iterator[BusAddress]:
    broker = Broker([BusAddress.parse(f"tcp://127.0.0.1:{free_port()}")])
    [address] = broker.start()
    yield address
    broker.close()


@pytest.fixture
async def clients(bus: BusAddress) -> AsyncIterator[list[BusClient]]:
    opened = [BusClient(bus, name=name) for name in ("pub", "sub")]
    for client in opened:
        await client.connect(timeout=WAIT)
    yield opened
    for client in opened:
        await client.aclose()


def event(topic: str, data: object) -> Envelope:
    payload, content_type = encode_data(data)
    return Envelope(topic=topic, data=data, payload=payload, content_type=content_type)


async def test_a_burst_leaves_in_batches_and_arrives_whole_and_in_order(
    clients: list[BusClient],
) -> None:
    pub, other = clients
    sub = await other.subscribe("burst.*")
    topics = ["burst.a"] * 300 + ["burst.b"] * 5 + ["burst.a"] * 200  # three runs
    for n, topic in enumerate(topics):
        pub.publish(event(topic, {"n": n}))
    got = [await sub.get(timeout=WAIT) for _ in topics]
    assert [e.data["n"] for e in got] == list(range(len(topics)))  # the publish order
    assert [e.topic for e in got] == topics
    a = [e.seq for e in got if e.topic == "burst.a"]
    assert a == list(range(1, 501))
    stats = pub.statistics()
    assert stats.batches >= 3  # the first event alone, then one batch per run
    assert other.statistics().lost == 0 and other.statistics().malformed == 0


async def test_a_lone_event_is_a_plain_message_for_a_plain_pyzmq_subscriber(
    bus: BusAddress, clients: list[BusClient]
) -> None:
    pub = clients[0]
    ctx = zmq.asyncio.Context.instance()
    raw = ctx.socket(zmq.SUB)
    raw.setsockopt(zmq.SUBSCRIBE, b"lone.")
    raw.connect(bus.subscribe)
    try:
        frames: list[bytes] = []
        for _ in range(200):  # until the subscription reached the broker
            pub.publish(event("lone.x", {"hello": 1}))
            if await raw.poll(20):
                frames = await raw.recv_multipart()
                break
            await asyncio.sleep(0.01)  # a new turn of the loop: each event leaves alone
        assert len(frames) == 3 and frames[0] == b"lone.x" and frames[2] == b'{"hello":1}'
    finally:
        raw.close(0)


async def test_own_subscriptions_get_their_events_in_process_once(
    clients: list[BusClient],
) -> None:
    pub, other = clients
    mine, theirs = await pub.subscribe("here.*"), await other.subscribe("here.*")
    data = {"tags": ("a", "b")}
    pub.publish(event("here.x", data))
    got = mine.mailbox.get_nowait()  # there already: no trip through the broker
    assert got.data == {"tags": ["a", "b"]} and got.data is not data  # as received elsewhere
    assert got.v == 1 and got.seq == 1
    far = await theirs.get(timeout=WAIT)
    assert far.id == got.id and far.data == got.data
    pub.publish(event("here.x", {"n": 2}))  # the echo of the first comes back meanwhile
    assert (await mine.get(timeout=WAIT)).data == {"n": 2}
    await asyncio.sleep(0.1)
    assert len(mine.mailbox) == 0  # the echoes were dropped, unread
    stats = pub.statistics()
    assert stats.local == 2 and stats.echoes >= 1 and stats.lost == 0


async def test_requests_and_replies_between_owners_of_one_client(
    clients: list[BusClient],
) -> None:
    pub = clients[0]
    box = pub.expect_replies(pub.inbox("asker"), "c-1")
    reply = event(pub.inbox("asker"), {"ok": True})
    reply.correlation_id = "c-1"
    pub.publish(reply)
    assert [e.data for e in box.items] == [{"ok": True}]  # at once, in process
    await asyncio.sleep(0.1)
    assert len(box.items) == 1 and pub.statistics().late_replies == 0  # the echo: dropped
