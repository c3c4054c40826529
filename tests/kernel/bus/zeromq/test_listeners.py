"""Filtering at the source (issue 24): the process hosting the bus sends nothing that no
other client subscribes to, and loses nothing a subscriber elsewhere asked for.

Real sockets: a broker bound in process and on loopback, the host's client on inproc, the
other client over tcp; on a plain bus and on a CURVE bus (the guarded broker counts too).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loom_kernel import open_runtime
from loom_kernel.bus.zeromq import Broker, BusAddress, BusClient
from loom_kernel.bus.zeromq.listeners import Listeners, SourceFilter
from loom_kernel.security import ClientCurve, client_curve, generate_keys, server_curve
from loom_kernel.security.guard import Guard
from tests.conftest import free_port, wait_until
from tests.kernel.bus.zeromq.test_batching_and_local import event

WAIT = 5.0


# -- the count, alone ------------------------------------------------------------------


def test_a_prefix_is_heard_while_someone_else_subscribes_to_it() -> None:
    listeners = Listeners()
    assert not listeners.heard_elsewhere("market.price.BTC", own=set())
    listeners.record(True, b"market.")
    assert listeners.heard_elsewhere("market.price.BTC", own=set())
    assert not listeners.heard_elsewhere("market.price.BTC", own={"market."})  # only ours
    assert not listeners.heard_elsewhere("news.x", own=set())
    listeners.record(True, b"market.")  # a second subscriber
    assert listeners.heard_elsewhere("market.price.BTC", own={"market."})
    listeners.record(False, b"market.")
    listeners.record(False, b"market.")
    assert listeners.counts() == {}


def test_the_empty_prefix_hears_everything_and_the_count_never_goes_below_zero() -> None:
    listeners = Listeners()
    listeners.record(False, b"x.")  # more unsubscriptions than subscriptions: harmless
    assert listeners.counts() == {}
    listeners.record(True, b"")
    assert listeners.heard_elsewhere("anything.at.all", own=set())
    before = listeners.version
    listeners.record(False, b"")
    assert listeners.version > before and not listeners.heard_elsewhere("anything", own=set())


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.sampled_from(["", "m.", "m.p.", "n."])), max_size=30
    )
)
def test_the_count_agrees_with_who_holds_what(moves: list[tuple[str, str]]) -> None:
    """Clients a, b, c toggle prefixes; "heard beside a" is whether b or c holds a prefix of
    the topic, once a's own prefixes are confirmed."""
    listeners, held = Listeners(), {name: set() for name in "abc"}
    for name, prefix in moves:
        subscribe = prefix not in held[name]
        (held[name].add if subscribe else held[name].discard)(prefix)
        listeners.record(subscribe, prefix.encode())
    for topic in ("m.p.x", "m.q", "n.y", "z"):
        others = any(topic.startswith(p) for name in "bc" for p in held[name])
        assert listeners.heard_elsewhere(topic, own=held["a"]) == others


def test_a_client_subtracts_only_the_prefixes_a_probe_proved_counted() -> None:
    listeners = Listeners()
    mine = SourceFilter(listeners)
    listeners.record(True, b"orders.")  # someone else's, counted
    mine.subscribed("orders.")  # ours: subscribed, not yet counted by the broker
    assert mine.heard_elsewhere("orders.new")  # not subtracted: the count is someone's
    mine.subscribed("probe.1")
    mine.confirm(mine.mark("probe.1"))  # ours is counted now, beside the other's
    listeners.record(True, b"orders.")
    assert mine.heard_elsewhere("orders.new")  # two counted, one ours
    listeners.record(False, b"orders.")  # the other leaves
    assert not mine.heard_elsewhere("orders.new")
    mine.unsubscribed("orders.")  # ours goes too; the broker still counts it a while
    assert mine.heard_elsewhere("orders.new")  # someone's, as far as we know: sent
    assert SourceFilter(None).heard_elsewhere("x")  # no count: everything is sent


# -- on a real bus ---------------------------------------------------------------------


@dataclass
class Bus:
    host: BusClient  # the client of the process hosting the broker (inproc)
    other: BusClient  # a client elsewhere (tcp)
    broker: Broker
    curve: ClientCurve | None  # the key pair of the clients elsewhere, on a CURVE bus

    async def client(self, name: str) -> BusClient:
        """One more client elsewhere (tcp), with the other's key pair on a CURVE bus."""
        client = BusClient(self.broker.addresses[1], name=name, curve=self.curve)
        await client.connect(timeout=WAIT)
        return client


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    for name in ("broker", "alice"):
        generate_keys(folder, name)
    return folder


@pytest.fixture(params=["none", "curve"])
def security(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def broker(security: str, keys: Path) -> Iterator[Broker]:
    curve = server_curve(security, keys, ["alice"])
    broker = Broker(
        [
            BusAddress.parse(f"inproc://listeners-{free_port()}"),
            BusAddress.parse(f"tcp://127.0.0.1:{free_port()}"),
        ],
        curve=curve,
        guard=Guard(host="loom") if curve is not None else None,
        listeners=Listeners(),
    )
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
async def bus(broker: Broker, security: str, keys: Path) -> AsyncIterator[Bus]:
    inproc, tcp = broker.addresses
    host = BusClient(inproc, name="host", listeners=broker.listeners)
    curve = client_curve(security, keys, "alice")
    other = BusClient(tcp, name="other", curve=curve)
    for client in (host, other):
        await client.connect(timeout=WAIT)
    yield Bus(host, other, broker, curve)
    for client in (host, other):
        await client.aclose()


async def test_what_no_other_client_subscribes_to_stays_in_the_process(bus: Bus) -> None:
    mine = await bus.host.subscribe("solo.*")
    before = bus.broker.statistics().frames_in
    for n in range(100):
        bus.host.publish(event("solo.tick", {"n": n}))
    got = [await mine.get(timeout=WAIT) for _ in range(100)]
    assert [e.data["n"] for e in got] == list(range(100))
    stats = bus.host.statistics()
    assert stats.unheard == 100 and stats.local == 100
    assert bus.broker.statistics().frames_in == before  # not one frame went to the broker


async def test_a_subscriber_elsewhere_gets_what_is_published_once_its_subscribe_returns(
    bus: Bus,
) -> None:
    """No await between the subscription and the publish: the count must already hold it.
    Half the rounds the host subscribes to the same topics too (its own is subtracted)."""
    for n in range(40):
        if n % 2:
            await bus.host.subscribe(f"race{n}.*")
        theirs = await bus.other.subscribe(f"race{n}.*")
        bus.host.publish(event(f"race{n}.x", {"n": n}))
        got = await theirs.get(timeout=WAIT)
        assert got.data == {"n": n}
    assert bus.other.statistics().lost == 0


async def test_once_the_other_subscriber_leaves_the_host_stops_sending(bus: Bus) -> None:
    await bus.host.subscribe("feed.*")
    theirs = await bus.other.subscribe("feed.*")
    bus.host.publish(event("feed.a", 1))
    assert (await theirs.get(timeout=WAIT)).data == 1
    assert bus.host.statistics().unheard == 0
    await bus.other.unsubscribe(theirs)
    await wait_until(lambda: bus.broker.listeners.counts().get("feed.") == 1)  # the host's
    bus.host.publish(event("feed.b", 2))
    assert bus.host.statistics().unheard == 1


async def test_a_closed_connection_takes_its_subscriptions_off_the_count(bus: Bus) -> None:
    await bus.other.subscribe("gone.*")
    assert bus.broker.listeners.counts().get("gone.") == 1
    await bus.other.aclose()  # ZeroMQ unsubscribes each prefix of the closed connection
    await wait_until(lambda: "gone." not in bus.broker.listeners.counts())
    bus.host.publish(event("gone.x", 1))
    assert bus.host.statistics().unheard == 1


# -- in a runtime ----------------------------------------------------------------------


@pytest.mark.parametrize("filtering", [True, False])
async def test_a_runtime_hosting_its_bus_filters_at_the_source_unless_told_not_to(
    tmp_path: Path, filtering: bool
) -> None:
    (tmp_path / "loom.toml").write_text(
        f'[bus]\nmode = "auto"\nfilter_at_source = {str(filtering).lower()}\n'
        "[tracing]\nenabled = false\n"
    )
    async with open_runtime(tmp_path / "loom.toml") as rt:
        assert rt.broker is not None and (rt.broker.listeners is not None) is filtering
        mine = await rt.subscribe("solo.tick")
        before = rt.client.statistics().unheard
        for n in range(20):
            await rt.emit("solo.tick", n)
        assert [(await mine.get(timeout=WAIT)).data for _ in range(20)] == list(range(20))
        unheard = rt.client.statistics().unheard - before
        assert unheard == (20 if filtering else 0)
        async with open_runtime(tmp_path / "loom.toml") as joined:  # another client: over tcp
            theirs = await joined.subscribe("solo.tick")
            await rt.emit("solo.tick", "heard")
            assert (await theirs.get(timeout=WAIT)).data == "heard"


async def test_unsubscribing_stops_what_the_broker_sends_and_a_closed_peer_takes_nothing_else(
    bus: Bus,
) -> None:
    """After both unsubscribe, nothing of the topic reaches the host's client (the broker
    applies the other's unsubscription; the host's socket filters its own); and the
    unsubscriptions ZeroMQ makes for a closed connection leave the host's subscription."""
    mine = await bus.host.subscribe("both.*")
    theirs = await bus.other.subscribe("both.*")
    await bus.other.unsubscribe(theirs)
    await bus.host.unsubscribe(mine)
    probe = await bus.host.subscribe("mark.*")  # a subscription after both: they are applied
    before = bus.host.statistics().received
    third = await bus.client("third")
    try:
        for n in range(50):
            third.publish(event("both.x", n))  # nobody subscribes any more
        third.publish(event("mark.x", "last"))
        assert (await probe.get(timeout=WAIT)).data == "last"
        assert bus.host.statistics().received - before == 1  # only the mark reached the host
        kept = await bus.host.subscribe("kept.*")
        gone = await bus.client("gone")
        await gone.subscribe("kept.*")
        await gone.aclose()  # ZeroMQ unsubscribes it: the host's own must stay
        await wait_until(lambda: bus.broker.listeners.counts().get("kept.") == 1)
        third.publish(event("kept.x", "still"))
        assert (await kept.get(timeout=WAIT)).data == "still"
    finally:
        await third.aclose()
