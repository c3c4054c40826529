"""The bus seen through the Transport seam, on both backends: Loom's ZeroMQ broker and a
real nats-server (SPEC Kernel 1-3; issue 25: the same API on NATS)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import zmq

from loom_kernel.bus import BusClient, Subscription, Transport
from loom_kernel.bus.nats import NatsClient, NatsOptions
from loom_kernel.bus.nats.server import local_cluster
from loom_kernel.bus.zeromq import Broker, BusAddress
from loom_kernel.errors import BusError, TopicError
from loom_kernel.protocol.envelope import Envelope, encode_data
from tests.conftest import free_port, wait_until
from tests.kernel.protocol.test_topics import MATCHES, NON_MATCHES

Connect = Callable[..., Awaitable[Any]]
WAIT = 5.0
pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def zeromq_bus(folder: Path) -> AsyncIterator[Callable[[str], Transport]]:
    broker = Broker([BusAddress.parse(f"tcp://127.0.0.1:{free_port()}")])
    [address] = broker.start()
    try:
        yield lambda name: BusClient(address, name=name, context=zmq.Context.instance())
    finally:
        broker.close()


@contextlib.asynccontextmanager
async def nats_bus(folder: Path) -> AsyncIterator[Callable[[str], Transport]]:
    async with local_cluster(1, folder / "nats") as server:
        yield lambda name: NatsClient(NatsOptions(servers=server.urls), name=name)


BACKENDS = {"zeromq": zeromq_bus, "nats": nats_bus}


@pytest.fixture(params=sorted(BACKENDS))
async def connect(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Connect]:
    """Connect clients of one backend to a bus private to the test; closed after it."""
    opened: list[Any] = []
    async with BACKENDS[request.param](tmp_path) as make:

        async def open_client(name: str = "client") -> Any:
            client = make(name)
            opened.append(client)
            await client.connect(timeout=WAIT)
            return client

        yield open_client
        for client in opened:
            await client.aclose()


def event(topic: str, data: object = None, **fields: Any) -> Envelope:
    payload, content_type = encode_data(data)
    return Envelope(topic=topic, data=data, payload=payload, content_type=content_type, **fields)


async def drain(sub: Subscription, settle: float = 0.3) -> list[Envelope]:
    """Everything the subscription holds once ``settle`` seconds pass without a new event."""
    got = []
    while True:
        try:
            got.append(await sub.get(timeout=settle))
        except TimeoutError:
            return got


# -- the topic-semantics table, over the real bus -------------------------------------


async def test_the_wildcard_table_holds_on_the_bus(connect: Connect) -> None:
    listener, publisher = await connect("listener"), await connect("publisher")
    patterns = sorted({p for p, _ in MATCHES + NON_MATCHES})
    subs = {p: await listener.subscribe(p) for p in patterns}
    topics = sorted({t for _, t in MATCHES + NON_MATCHES})
    for topic in topics:
        publisher.publish(event(topic, topic, source="publisher"))
    marker = "zz.end"  # the last event: once it arrives, everything before it has
    end = await listener.subscribe(marker)
    publisher.publish(event(marker, source="publisher"))
    await end.get(timeout=WAIT)
    for pattern, sub in subs.items():
        got = [e.topic for e in await drain(sub, 0.05)]
        assert len(got) == len(set(got)), (pattern, got)  # once each
        for _, topic in [m for m in MATCHES if m[0] == pattern]:
            assert topic in got, (pattern, topic)
        for _, topic in [m for m in NON_MATCHES if m[0] == pattern]:
            assert topic not in got, (pattern, topic)


async def test_overlapping_subscriptions_of_one_client_get_an_event_once_each(
    connect: Connect,
) -> None:
    listener, publisher = await connect("listener"), await connect("publisher")
    wide, narrow = await listener.subscribe("market.*"), await listener.subscribe("market.price.*")
    publisher.publish(event("market.price.BTC", 1, source="p"))
    assert (await wide.get(timeout=WAIT)).data == 1
    assert (await narrow.get(timeout=WAIT)).data == 1
    assert await drain(wide, 0.2) == [] and await drain(narrow, 0.05) == []


async def test_a_client_gets_its_own_events_once(connect: Connect) -> None:
    client = await connect("self")
    sub = await client.subscribe("echo.*")
    client.publish(event("echo.x", "me", source="self"))
    assert (await sub.get(timeout=WAIT)).data == "me"
    assert await drain(sub, 0.3) == []


async def test_events_keep_their_publish_order(connect: Connect) -> None:
    listener, publisher = await connect("listener"), await connect("publisher")
    sub = await listener.subscribe("seq.*")
    for n in range(500):
        publisher.publish(event("seq.n", n, source="p"))
    got = [(await sub.get(timeout=WAIT)).data for _ in range(500)]
    assert got == list(range(500))


async def test_a_subscription_is_live_when_subscribe_returns(connect: Connect) -> None:
    listener, publisher = await connect("listener"), await connect("publisher")
    for n in range(20):
        sub = await listener.subscribe(f"live.{n}")
        publisher.publish(event(f"live.{n}", n, source="p"))
        assert (await sub.get(timeout=WAIT)).data == n
        await sub.aclose()


async def test_unsubscribe_stops_delivery_and_keeps_the_others(connect: Connect) -> None:
    listener, publisher = await connect("listener"), await connect("publisher")
    gone, kept = await listener.subscribe("u.*"), await listener.subscribe("u.*")
    await gone.aclose()
    publisher.publish(event("u.x", 1, source="p"))
    assert (await kept.get(timeout=WAIT)).data == 1
    with pytest.raises(BusError, match="closed"):
        await gone.get(timeout=0.2)


async def test_replies_reach_their_request_and_late_ones_are_counted(connect: Connect) -> None:
    asker, answerer = await connect("asker"), await connect("answerer")
    requests = await answerer.subscribe("svc.echo")
    inbox = asker.inbox("me")
    box = asker.expect_replies(inbox, "c1")
    asker.publish(event("svc.echo", "hi", source="me", type="request", reply_to=inbox,
                        correlation_id="c1"))  # fmt: skip
    request = await requests.get(timeout=WAIT)
    assert request.reply_to == inbox
    answerer.publish(event(inbox, "hi back", source="answerer", type="reply", correlation_id="c1"))
    loop = asyncio.get_running_loop()
    assert await box.wait(loop.time() + WAIT)
    assert box.items[0].data == "hi back"
    asker.forget(inbox, "c1")
    answerer.publish(event(inbox, "late", source="answerer", type="reply", correlation_id="c1"))
    await wait_until(lambda: asker.statistics().late_replies >= 1, timeout=WAIT)
    assert asker.statistics().late_replies == 1


async def test_a_sequence_gap_is_counted_as_lost(connect: Connect) -> None:
    listener, publisher = await connect("listener"), await connect("publisher")
    sub = await listener.subscribe("g.*")
    for seq in (1, 2, 5):
        publisher.publish(event("g.x", seq, source="p", seq=seq))
    assert [(await sub.get(timeout=WAIT)).data for _ in range(3)] == [1, 2, 5]
    assert listener.statistics().lost == 2
    assert sub.statistics().lost == 2


async def test_an_expired_event_is_dropped_and_counted(connect: Connect) -> None:
    listener, publisher = await connect("listener"), await connect("publisher")
    sub = await listener.subscribe("ttl.*")
    publisher.publish(event("ttl.x", "old", source="p", ttl_ms=1, ts=1))
    publisher.publish(event("ttl.x", "new", source="p"))
    assert (await sub.get(timeout=WAIT)).data == "new"
    assert listener.statistics().expired == 1


async def test_an_oversized_event_is_refused_clearly(connect: Connect) -> None:
    client = await connect("big")
    client.max_message_size = 1024
    with pytest.raises(BusError, match="max_message_size"):
        client.publish(event("big.x", "x" * 2000, source="big"))
    assert client.statistics().oversized == 1


async def test_a_bad_pattern_fails_at_subscribe(connect: Connect) -> None:
    client = await connect("bad")
    with pytest.raises(TopicError):
        await client.subscribe("a..b")
    with pytest.raises(ValueError, match="qos"):
        await client.subscribe("a.b", qos="sometimes")


async def test_statistics_count_both_sides(connect: Connect) -> None:
    listener, publisher = await connect("listener"), await connect("publisher")
    sub = await listener.subscribe("s.*")
    for n in range(10):
        publisher.publish(event("s.x", n, source="p"))
    for _ in range(10):
        await sub.get(timeout=WAIT)
    assert publisher.statistics().published >= 10  # ZeroMQ counts its probes too
    stats = listener.statistics()
    assert stats.delivered >= 10 and stats.subscriptions[-1]["pattern"] in ("s.*",)
