"""The async bus client on a real broker (SPEC Kernel 1-3, 6)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import zmq

from loom_kernel.bus import BusClient, ClientStatistics, Subscription
from loom_kernel.bus.zeromq import Broker, BusAddress
from loom_kernel.errors import BusError, TopicError
from loom_kernel.protocol.envelope import Envelope, encode_data
from tests.conftest import free_port

Connect = Callable[..., Awaitable[BusClient]]
WAIT = 5.0  # seconds: the bound of every wait for an event that must arrive


@pytest.fixture(params=["tcp", "inproc"])
def bus(request: pytest.FixtureRequest) -> Iterator[BusAddress]:
    """A running broker, on a free tcp port or an inproc name; its address."""
    if request.param == "tcp":
        url = f"tcp://127.0.0.1:{free_port()}"
    else:
        url = f"inproc://test-client-{request.node.name}-{id(request):x}"
    broker = Broker([BusAddress.parse(url)], context=zmq.Context.instance())
    [address] = broker.start()
    yield address
    broker.close()


@pytest.fixture
async def connect(bus: BusAddress) -> AsyncIterator[Connect]:
    """Connect clients to ``bus``; every one is closed after the test."""
    opened: list[BusClient] = []

    async def open_client(name: str = "client") -> BusClient:
        client = BusClient(bus, name=name, context=zmq.Context.instance())
        opened.append(client)
        await client.connect(timeout=WAIT)
        return client

    yield open_client
    for client in opened:
        await client.aclose()


def event(topic: str, data: object = None, **fields: object) -> Envelope:
    """An envelope ready for ``BusClient.publish`` (which sends ``payload``, not ``data``)."""
    payload, content_type = encode_data(data)
    return Envelope(topic=topic, data=data, payload=payload, content_type=content_type, **fields)


def raw_frames(topic: bytes | str, data: object = None, **header: object) -> list[bytes]:
    """An event as a plain pyzmq program that never imports Loom would publish it."""
    if isinstance(topic, str):
        topic = topic.encode()
    payload, content_type = encode_data(data)
    fields = {"v": 1, "id": f"raw-{time.monotonic_ns()}", "content_type": content_type, **header}
    return [topic, json.dumps(fields).encode(), payload]


@contextlib.asynccontextmanager
async def raw_publisher(client: BusClient) -> AsyncIterator[zmq.Socket]:
    """A plain zmq PUB socket connected to the broker, returned once it is live."""
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(client.address.publish)
    ready = await client.subscribe("raw.ready")
    try:
        # A PUB socket drops what it sends until the broker's subscription reaches it,
        # and nothing tells it when that is: send until one arrives.
        async def until_live() -> None:
            while True:
                sock.send_multipart(raw_frames("raw.ready"))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ready.get(), 0.01)
                    return

        await asyncio.wait_for(until_live(), WAIT)
        await ready.aclose()
        yield sock
    finally:
        sock.close(0)


async def receive(sub: Subscription, count: int) -> list[Envelope]:
    return [await sub.get(timeout=WAIT) for _ in range(count)]


# -- connecting ------------------------------------------------------------------------


async def test_publish_right_after_connect_is_received(connect: Connect) -> None:
    listener = await connect("listener")
    sub = await listener.subscribe("live.connect")
    for attempt in range(20):
        publisher = await connect(f"pub{attempt}")
        publisher.publish(event("live.connect", data=attempt))
        assert (await sub.get(timeout=WAIT)).data == attempt
        await publisher.aclose()


async def test_connect_to_a_bus_that_is_not_running_raises_within_timeout() -> None:
    address = BusAddress.parse(f"tcp://127.0.0.1:{free_port()}")
    client = BusClient(address)
    started = time.monotonic()
    with pytest.raises(BusError) as caught:
        await asyncio.wait_for(client.connect(timeout=0.3), WAIT)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 2.0
    assert address.publish in str(caught.value)
    assert "loom bus" in str(caught.value)
    assert not client.connected
    with pytest.raises(BusError, match="closed"):
        client.publish(event("a"))


async def test_connect_to_an_unbound_inproc_bus_raises() -> None:
    address = BusAddress.parse(f"inproc://nobody-{id(object()):x}")
    client = BusClient(address, context=zmq.Context.instance())
    with pytest.raises(BusError, match="no bus answered"):
        await asyncio.wait_for(client.connect(timeout=0.2), WAIT)


async def test_connect_and_aclose_are_idempotent(connect: Connect) -> None:
    client = await connect()
    await client.connect()
    assert client.connected
    await client.aclose()
    await client.aclose()
    assert not client.connected
    with pytest.raises(BusError, match="closed"):
        client.publish(event("a"))


async def test_client_as_async_context_manager(bus: BusAddress) -> None:
    async with BusClient(bus, context=zmq.Context.instance()) as client:
        assert client.connected
        sub = await client.subscribe("ctx.t")
        client.publish(event("ctx.t", data="hi"))
        assert (await sub.get(timeout=WAIT)).data == "hi"
    assert not client.connected


def test_client_ids_are_unique() -> None:
    address = BusAddress.parse("inproc://never-connected")
    # Built and dropped one after another, like runtimes reopened in a notebook.
    ids = {BusClient(address).client_id for _ in range(50)}
    assert len(ids) == 50


# -- subscribing -----------------------------------------------------------------------


async def test_subscription_is_live_when_subscribe_returns(connect: Connect) -> None:
    subscriber = await connect("subscriber")
    publisher = await connect("publisher")
    for n in range(50):
        pattern = f"live.sub.{n}" if n % 2 else f"live.wild.{n}.*"
        topic = f"live.sub.{n}" if n % 2 else f"live.wild.{n}.x"
        sub = await subscriber.subscribe(pattern)
        publisher.publish(event(topic, data=n))
        assert (await sub.get(timeout=WAIT)).data == n
        await sub.aclose()


async def test_exact_subscription_filters_out_longer_byte_prefix(connect: Connect) -> None:
    subscriber = await connect()
    publisher = await connect()
    sub = await subscriber.subscribe("market.price.BTC")
    publisher.publish(event("market.price.BTCUSD", data="no"))
    publisher.publish(event("market.price.BTC.spot", data="no"))
    publisher.publish(event("market.price.BTC", data="yes"))
    assert (await sub.get(timeout=WAIT)).data == "yes"
    assert len(sub.mailbox) == 0
    stats = subscriber.statistics()
    assert stats.delivered == 1
    assert stats.received >= 3  # ZeroMQ did deliver the prefix matches


async def test_wildcard_subscription_filters_siblings_and_parent(connect: Connect) -> None:
    subscriber = await connect()
    publisher = await connect()
    sub = await subscriber.subscribe("market.price.*")
    for topic in ("market.prices.X", "market.price", "market.price.BTC", "market.price.BTC.spot"):
        publisher.publish(event(topic, data=topic))
    got = await receive(sub, 2)
    assert [e.topic for e in got] == ["market.price.BTC", "market.price.BTC.spot"]
    assert len(sub.mailbox) == 0


async def test_middle_wildcard_subscription(connect: Connect) -> None:
    subscriber = await connect()
    publisher = await connect()
    sub = await subscriber.subscribe("market.*.BTC")
    for topic in ("market.BTC", "market.a.b.BTC", "market.volume.BTC", "market.price.ETH"):
        publisher.publish(event(topic))
    publisher.publish(event("market.price.BTC"))
    got = await receive(sub, 2)
    assert [e.topic for e in got] == ["market.volume.BTC", "market.price.BTC"]
    assert len(sub.mailbox) == 0


async def test_one_event_reaches_every_matching_subscription(connect: Connect) -> None:
    subscriber = await connect()
    publisher = await connect()
    subs = [await subscriber.subscribe(p) for p in ("fan.*", "fan.out", "*.out", "fan.out.*")]
    publisher.publish(event("fan.out", data=1))
    for sub in subs[:3]:
        assert (await sub.get(timeout=WAIT)).data == 1
    assert len(subs[3].mailbox) == 0
    assert subscriber.statistics().delivered == 3


async def test_events_keep_publish_order(connect: Connect) -> None:
    subscriber = await connect()
    publisher = await connect()
    sub = await subscriber.subscribe("order.*")
    for n in range(500):
        publisher.publish(event(f"order.{n % 3}", data=n))
    assert [e.data for e in await receive(sub, 500)] == list(range(500))


async def test_bad_pattern_or_qos_fails_at_subscribe(connect: Connect) -> None:
    client = await connect()
    with pytest.raises(TopicError, match="'\\*' must be a whole segment"):
        await client.subscribe("market.pri*")
    with pytest.raises(ValueError, match="unknown qos 'fast'"):
        await client.subscribe("market.*", qos="fast")
    assert client.statistics().subscriptions == []


async def test_failed_subscribe_leaves_no_subscription_behind() -> None:
    broker_gone = BusAddress.parse(f"tcp://127.0.0.1:{free_port()}")
    broker = Broker([broker_gone])
    [address] = broker.start()
    client = BusClient(address)
    await client.connect(timeout=WAIT)
    try:
        broker.close()
        with pytest.raises(BusError, match=r"subscribe 'orphan\.\*'"):
            await client.subscribe("orphan.*", timeout=0.2)
        assert client.statistics().subscriptions == []
    finally:
        await client.aclose()


async def test_unsubscribe_stops_delivery(connect: Connect) -> None:
    subscriber = await connect()
    publisher = await connect()
    gone = await subscriber.subscribe("unsub.gone")
    kept = await subscriber.subscribe("unsub.kept")
    await gone.aclose()
    await gone.aclose()  # idempotent
    publisher.publish(event("unsub.gone", data="late"))
    publisher.publish(event("unsub.kept", data="sentinel"))
    assert (await kept.get(timeout=WAIT)).data == "sentinel"
    assert len(gone.mailbox) == 0
    assert [e async for e in gone] == []
    with pytest.raises(BusError, match="closed"):
        await gone.get(timeout=1)
    assert [s["pattern"] for s in subscriber.statistics().subscriptions] == ["unsub.kept"]


async def test_unsubscribe_keeps_other_subscriptions_on_the_same_prefix(connect: Connect) -> None:
    subscriber = await connect()
    publisher = await connect()
    first = await subscriber.subscribe("shared.*")
    second = await subscriber.subscribe("shared.*.x")
    assert first.pattern.prefix == second.pattern.prefix
    await first.aclose()
    # Another subscription round-trips after the unsubscribe: the broker has seen it.
    await subscriber.subscribe("shared.barrier")
    publisher.publish(event("shared.a.x", data=1))
    assert (await second.get(timeout=WAIT)).data == 1


async def test_iteration_ends_when_the_client_closes(connect: Connect) -> None:
    subscriber = await connect()
    publisher = await connect()
    sub = await subscriber.subscribe("iter.*")
    publisher.publish(event("iter.a", data=1))
    publisher.publish(event("iter.b", data=2))

    async def collect() -> list[int]:
        seen = []
        async for event in sub:
            seen.append(event.data)
            if len(seen) == 2:
                await subscriber.aclose()
        return seen

    assert await asyncio.wait_for(collect(), WAIT) == [1, 2]
    assert sub.closed


async def test_subscription_as_async_context_manager(connect: Connect) -> None:
    client = await connect()
    async with await client.subscribe("cm.t") as sub:
        assert "cm.t" in repr(sub)
        assert sub.qos == "reliable"
    assert sub.closed
    assert client.statistics().subscriptions == []


# -- malformed input, sequence gaps, expiry, replies ----------------------------------


async def test_malformed_frames_are_counted_and_later_events_arrive(connect: Connect) -> None:
    client = await connect()
    sub = await client.subscribe("bad.*")
    malformed = [
        [b"bad.one-frame"],
        [b"bad.two", b'{"v": 1, "id": "x"}'],
        [*raw_frames("bad.four"), b"extra"],
        [b"bad.header", b"{not json", b""],
        [b"bad.array", b"[1, 2]", b""],
        [b"bad.type", b'{"v": 1, "id": "x", "seq": "one"}', b""],
        [b"bad.noid", b'{"v": 1}', b""],
        [b"bad.nov", b'{"id": "x"}', b""],
        [b"bad..topic", *raw_frames("x")[1:]],
        [b"bad.*", *raw_frames("x")[1:]],
        raw_frames("bad.v2", v=2),
        [b"bad.\xff\xfe", *raw_frames("x")[1:]],
        [b"bad.payload", b'{"v": 1, "id": "x"}', b"{oops"],
    ]
    async with raw_publisher(client) as raw:
        for frames in malformed:
            raw.send_multipart(frames)
        raw.send_multipart(raw_frames("bad.good", {"ok": True}, source="plain-zmq", seq=1))
        good = await sub.get(timeout=WAIT)
    assert good.topic == "bad.good"
    assert good.data == {"ok": True}
    assert good.source == "plain-zmq"
    assert client.statistics().malformed == len(malformed)
    assert len(sub.mailbox) == 0


async def test_deeply_nested_frames_are_malformed_and_logged_once_not_per_frame(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    # regression: JSON nested 1,000+ levels raised RecursionError out of the decoder, past
    # the malformed counter, with a full traceback logged for every frame
    client = await connect()
    sub = await client.subscribe("deep.*")
    nested_payload = [b"deep.payload", b'{"v": 1, "id": "x"}', b"[" * 5000 + b"]" * 5000]
    nested_header = [b"deep.header", b'{"v": 1, "id": "x", "headers": ' + b"[" * 5000, b""]
    with caplog.at_level("WARNING", logger="loom.client"):
        async with raw_publisher(client) as raw:
            for _ in range(100):
                raw.send_multipart(nested_payload)
                raw.send_multipart(nested_header)
            raw.send_multipart(raw_frames("deep.good", {"ok": True}))
            good = await sub.get(timeout=WAIT)
    assert good.data == {"ok": True}
    assert client.statistics().malformed == 200
    lines = [r for r in caplog.records if r.name == "loom.client"]
    assert len(lines) == 1 and "malformed" in lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.parametrize("field", ["seq", "ttl_ms", "hops", "ts"])
async def test_a_negative_counter_in_a_header_is_malformed(connect: Connect, field: str) -> None:
    client = await connect()
    sub = await client.subscribe("neg.*")
    async with raw_publisher(client) as raw:
        raw.send_multipart(raw_frames("neg.bad", 1, **{field: -1}))
        raw.send_multipart(raw_frames("neg.good", 2))
        assert (await sub.get(timeout=WAIT)).topic == "neg.good"
    assert client.statistics().malformed == 1


async def test_an_event_over_max_message_size_is_refused_clearly_and_counted(
    bus: BusAddress,
) -> None:
    client = BusClient(bus, context=zmq.Context.instance(), max_message_size=4096)
    async with client:
        with pytest.raises(BusError, match=r"4,096 bytes: send a reference") as caught:
            client.publish(event("big.one", "x" * 5000))
        assert "[bus] max_message_size" in str(caught.value)
        client.publish(event("big.small", "x" * 100))  # the client still works
        assert client.statistics().oversized == 1
        assert client.statistics().published >= 1


async def test_a_peer_sending_an_oversized_frame_is_cut_off_and_the_bus_goes_on() -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    broker = Broker([BusAddress.parse(url)], context=zmq.Context.instance(), max_message_size=4096)
    [address] = broker.start()
    try:
        async with BusClient(address, context=zmq.Context.instance()) as client:
            sub = await client.subscribe("flood.*")
            async with raw_publisher(client) as raw:
                raw.send_multipart(raw_frames("flood.huge", "x" * 100_000))
            client.publish(event("flood.after", "ok"))
            arrived = await sub.get(timeout=WAIT)
            assert arrived.topic == "flood.after"  # the huge one never reached anyone
            assert len(sub.mailbox) == 0
    finally:
        broker.close()


async def test_sequence_gap_is_counted_as_lost(connect: Connect) -> None:
    subscriber = await connect()
    publisher = await connect()
    sub = await subscriber.subscribe("gap.*")
    other = await subscriber.subscribe("other.*")
    for seq in (1, 2, 5, 6):
        publisher.publish(event("gap.t", source="feed", seq=seq, data=seq))
    assert [e.seq for e in await receive(sub, 4)] == [1, 2, 5, 6]
    stats = subscriber.statistics()
    assert (stats.lost, stats.gaps) == (2, 1)
    assert (sub.statistics().lost, sub.statistics().gaps) == (2, 1)
    assert (other.statistics().lost, other.statistics().gaps) == (0, 0)


async def test_sequences_are_per_source_and_topic(connect: Connect) -> None:
    subscriber = await connect()
    publisher = await connect()
    sub = await subscriber.subscribe("seq.*")
    publisher.publish(event("seq.a", source="s1", seq=1))
    publisher.publish(event("seq.b", source="s1", seq=7))  # first seen: no gap
    publisher.publish(event("seq.a", source="s2", seq=9))  # first seen: no gap
    publisher.publish(event("seq.a", source="s1", seq=2))
    publisher.publish(event("seq.a", source="s2", seq=12))  # 10, 11 lost
    await receive(sub, 5)
    stats = subscriber.statistics()
    assert (stats.lost, stats.gaps) == (2, 1)


async def test_published_events_get_consecutive_sequence_numbers(connect: Connect) -> None:
    subscriber = await connect()
    publisher = await connect()
    sub = await subscriber.subscribe("auto.*")
    for _ in range(3):
        publisher.publish(event("auto.a", source="s"))
    publisher.publish(event("auto.b", source="s"))
    got = await receive(sub, 4)
    assert [(e.topic, e.seq) for e in got] == [
        ("auto.a", 1),
        ("auto.a", 2),
        ("auto.a", 3),
        ("auto.b", 1),
    ]
    assert all(e.id and e.ts for e in got)
    assert subscriber.statistics().lost == 0


async def test_events_missed_while_unsubscribed_are_not_lost(connect: Connect) -> None:
    subscriber = await connect()
    publisher = await connect()
    sub = await subscriber.subscribe("resub.t")
    publisher.publish(event("resub.t", source="feed"))
    assert (await sub.get(timeout=WAIT)).seq == 1
    await sub.aclose()
    # This subscribe round-trips after the unsubscribe, so the broker has applied it.
    barrier = await subscriber.subscribe("resub.barrier")
    for _ in range(3):
        publisher.publish(event("resub.t", source="feed"))  # seq 2..4, not ours
    # Once the barrier event is here, 2..4 have passed the broker (and were not sent to us).
    publisher.publish(event("resub.barrier"))
    await barrier.get(timeout=WAIT)
    sub = await subscriber.subscribe("resub.t")
    publisher.publish(event("resub.t", source="feed"))
    assert (await sub.get(timeout=WAIT)).seq == 5
    assert subscriber.statistics().lost == 0


async def test_expired_events_are_dropped_and_counted(connect: Connect) -> None:
    subscriber = await connect()
    publisher = await connect()
    sub = await subscriber.subscribe("ttl.t")
    old = time.time_ns() - 5_000_000_000
    publisher.publish(event("ttl.t", data="stale", ts=old, ttl_ms=1000))
    publisher.publish(event("ttl.t", data="forever", ts=old))
    publisher.publish(event("ttl.t", data="fresh", ttl_ms=60_000))
    assert [e.data for e in await receive(sub, 2)] == ["forever", "fresh"]
    assert subscriber.statistics().expired == 1
    assert len(sub.mailbox) == 0


async def test_replies_are_routed_to_their_request(connect: Connect) -> None:
    requester = await connect("requester")
    replier = await connect("replier")
    inbox = requester.inbox("agent-1")
    assert inbox.startswith(f"loom.reply.{requester.client_id}.")
    box = requester.expect_replies(inbox, "corr-1")
    replier.publish(event(inbox, type="reply", correlation_id="corr-1", data=42))
    loop = asyncio.get_running_loop()
    assert await box.wait(loop.time() + WAIT)
    assert box.items.popleft().data == 42
    assert requester.statistics().late_replies == 0


async def test_reply_box_wait_times_out() -> None:
    from loom_kernel.bus import ReplyBox

    loop = asyncio.get_running_loop()
    started = loop.time()
    assert not await ReplyBox().wait(started + 0.05)
    assert loop.time() - started >= 0.05


async def test_late_replies_are_counted(connect: Connect) -> None:
    requester = await connect("requester")
    replier = await connect("replier")
    sentinel = await requester.subscribe("late.sentinel")
    inbox = requester.inbox("agent-1")
    requester.expect_replies(inbox, "corr-done")
    requester.forget(inbox, "corr-done")
    replier.publish(event(inbox, type="reply", correlation_id="corr-done"))
    replier.publish(event(inbox, type="reply", correlation_id="never-asked"))
    replier.publish(event(inbox, type="reply"))
    replier.publish(event("late.sentinel"))
    await sentinel.get(timeout=WAIT)
    assert requester.statistics().late_replies == 3


async def test_statistics_record(connect: Connect) -> None:
    subscriber = await connect("stats")
    publisher = await connect()
    sub = await subscriber.subscribe("st.*", qos="realtime", owner="agent-7", maxsize=5)
    publisher.publish(event("st.a"))
    await sub.get(timeout=WAIT)
    stats = subscriber.statistics()
    assert isinstance(stats, ClientStatistics)
    assert stats.client_id == subscriber.client_id
    assert stats.client_id.startswith("stats-")
    assert stats.delivered == 1
    assert publisher.statistics().published >= 1
    [entry] = stats.subscriptions
    assert entry["pattern"] == "st.*"
    assert entry["owner"] == "agent-7"
    assert entry["qos"] == "realtime"
    assert entry["received"] == 1
    assert stats.to_dict()["subscriptions"] == stats.subscriptions
