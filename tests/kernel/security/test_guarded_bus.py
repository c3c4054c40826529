"""Admitted identities against each other, with real sockets on loopback (docs/security.md).

Every identity here holds a key pair the broker admits; ``mallory`` is one of them, with an
``[acl.mallory]``. Each attack runs on a plain bus, where it works (so the test can fail),
and on a CURVE bus, where the broker's guard refuses it. Mallory is a plain pyzmq program
(with her key pair on the CURVE bus), so she can write any header she likes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from loom_kernel.bus.zeromq import Broker, BusAddress, BusClient
from loom_kernel.config import AclConfig
from loom_kernel.protocol import reserved
from loom_kernel.security import client_curve, generate_keys, server_curve
from loom_kernel.security.guard import Guard
from tests.kernel.bus.zeromq.test_client import event, raw_frames

WAIT = 5.0  # the bound of every wait for something that must happen
WINDOW = 1.0  # how long an attack is given to succeed where it must not
ACL = {
    "mallory": AclConfig(
        publish=["orders.*", "market.*"], subscribe=["market.price.*"], tools=["quote"]
    )
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    for name in ("broker", "alice", "bob", "mallory"):
        generate_keys(folder, name)
    return folder


class Bus:
    def __init__(self, broker: Broker, address: BusAddress, security: str, keys: Path):
        self.broker, self.address, self.security, self.keys = broker, address, security, keys

    @property
    def secured(self) -> bool:
        return self.security == "curve"

    async def client(self, name: str) -> BusClient:
        curve = client_curve(self.security, self.keys, name)
        client = BusClient(self.address, name=name, curve=curve)
        await client.connect(WAIT)
        return client

    @contextlib.contextmanager
    def mallory(self, kind: int) -> Iterator[zmq.Socket]:
        """A plain pyzmq socket holding mallory's key pair (on a CURVE bus)."""
        sock = zmq.Context.instance().socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        endpoint = self.address.publish if kind == zmq.PUB else self.address.subscribe
        curve = client_curve(self.security, self.keys, "mallory")
        if curve is not None:
            curve.secure(sock, endpoint)
        sock.connect(endpoint)
        try:
            yield sock
        finally:
            sock.close(0)


@pytest.fixture(params=["none", "curve"])
def bus(request: pytest.FixtureRequest, keys: Path) -> Iterator[Bus]:
    security = request.param
    curve = server_curve(security, keys, ["alice", "bob", "mallory"])
    guard = Guard(ACL, host="loom", operators=["alice"]) if curve is not None else None
    broker = Broker(
        [BusAddress.parse("tcp://127.0.0.1:0")],
        context=zmq.Context.instance(),
        curve=curve,
        guard=guard,
    )
    [address] = broker.start()
    yield Bus(broker, address, security, keys)
    broker.close()


@pytest.fixture
async def alice(bus: Bus) -> AsyncIterator[BusClient]:
    client = await bus.client("alice")
    yield client
    await client.aclose()


@pytest.fixture
async def bob(bus: Bus) -> AsyncIterator[BusClient]:
    client = await bus.client("bob")
    yield client
    await client.aclose()


async def _forged(forger: zmq.Socket, frames: Callable[[], list[bytes]], sub: Any) -> Any:
    """Send ``frames`` until ``sub`` gets an event or WINDOW passes: that event, or None."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WINDOW
    while loop.time() < deadline:
        forger.send_multipart(frames())
        with contextlib.suppress(TimeoutError):
            return await sub.get(timeout=0.02)
    return None


async def test_publishing_as_another_identitys_agent(
    bus: Bus, alice: BusClient, bob: BusClient
) -> None:
    orders = await bob.subscribe("orders.*")
    alice.publish(event("orders.new", {"qty": 1}, source="trader"))
    assert (await orders.get(timeout=WAIT)).source == "trader"
    with bus.mallory(zmq.PUB) as forger:
        forged = await _forged(
            forger, lambda: raw_frames("orders.new", {"qty": 10**6}, source="trader"), orders
        )
    assert (forged is not None) == (not bus.secured)


async def test_forging_an_agents_heartbeat(bus: Bus, alice: BusClient, bob: BusClient) -> None:
    beats = await bob.subscribe(reserved.heartbeat("trader"))
    alice.publish(event(reserved.heartbeat("trader"), {"status": "running"}, source="trader"))
    await beats.get(timeout=WAIT)
    with bus.mallory(zmq.PUB) as forger:
        failed = {"agent_id": "trader", "status": "failed"}
        frames = lambda: raw_frames(reserved.heartbeat("trader"), failed, source="m-1")  # noqa: E731
        assert (await _forged(forger, frames, beats) is not None) == (not bus.secured)


async def test_hijacking_a_reply(bus: Bus, alice: BusClient, bob: BusClient) -> None:
    requests = await bob.subscribe("secret.read")
    inbox = alice.inbox("asker")
    box = alice.expect_replies(inbox, "c-1")
    request = event("secret.read", None, type="request", correlation_id="c-1", reply_to=inbox)
    alice.publish(request)
    await requests.get(timeout=WAIT)
    loop = asyncio.get_running_loop()
    with bus.mallory(zmq.PUB) as forger:
        deadline = loop.time() + WINDOW
        while loop.time() < deadline and not box.items:
            forger.send_multipart(
                raw_frames(inbox, "forged", type="reply", correlation_id="c-1", source="m-1")
            )
            await box.wait(loop.time() + 0.02)
    hijacked = bool(box.items) and box.items[0].source == "m-1"
    assert hijacked == (not bus.secured)
    # the identity the request reached still answers
    box.items.clear()
    bob.publish(event(inbox, "genuine", type="reply", correlation_id="c-1", source="srv"))
    assert await box.wait(loop.time() + WAIT)
    assert any(reply.source == "srv" for reply in box.items)


async def test_calling_a_tool_the_acl_does_not_list(bus: Bus, bob: BusClient) -> None:
    calls = await bob.subscribe(reserved.tool_topic("secret.read"))
    quotes = await bob.subscribe(reserved.tool_topic("quote"))
    with bus.mallory(zmq.PUB) as forger:
        topic = reserved.tool_topic("secret.read")
        frames = lambda: raw_frames(topic, {}, type="request", source="m-1")  # noqa: E731
        assert (await _forged(forger, frames, calls) is not None) == (not bus.secured)
        allowed = lambda: raw_frames(reserved.tool_topic("quote"), {}, source="m-1")  # noqa: E731
        assert await _forged(forger, allowed, quotes) is not None  # what the ACL lists still works


async def test_stopping_an_agent_without_being_an_operator(
    bus: Bus, alice: BusClient, bob: BusClient
) -> None:
    control = await bob.subscribe(reserved.SUPERVISOR_CONTROL)
    with bus.mallory(zmq.PUB) as forger:
        stop = {"action": "stop", "agent": "trader"}
        frames = lambda: raw_frames(reserved.SUPERVISOR_CONTROL, stop, type="request")  # noqa: E731
        assert (await _forged(forger, frames, control) is not None) == (not bus.secured)
    # alice is an operator
    alice.publish(event(reserved.SUPERVISOR_CONTROL, stop, type="request", source="ops"))
    assert (await control.get(timeout=WAIT)).source == "ops"


async def test_subscribing_beyond_the_acl(bus: Bus, alice: BusClient) -> None:
    loop = asyncio.get_running_loop()
    with bus.mallory(zmq.SUB) as sniffer:
        sniffer.subscribe(b"orders.")
        sniffer.subscribe(b"market.price.")
        heard: set[str] = set()
        deadline = loop.time() + 2 * WINDOW
        while loop.time() < deadline and heard != {"orders.new", "market.price.AAPL"}:
            alice.publish(event("orders.new", 1, source="trader"))
            alice.publish(event("market.price.AAPL", 1, source="feed"))
            await asyncio.sleep(0.02)
            while sniffer.poll(0):
                heard.add(sniffer.recv_multipart()[0].decode())
    assert "market.price.AAPL" in heard  # what the ACL allows arrives
    assert ("orders.new" in heard) == (not bus.secured)


@pytest.mark.parametrize("bus", ["curve"], indirect=True)  # a plain bus refuses nothing
async def test_refusals_are_published_and_counted(bus: Bus, alice: BusClient) -> None:
    denied = await alice.subscribe(reserved.ALL_DENIED)
    alice.publish(event("orders.new", 1, source="trader"))
    with bus.mallory(zmq.PUB) as forger:
        forged = lambda: raw_frames("orders.new", 2, source="trader")  # noqa: E731
        report = await _forged(forger, forged, denied)
    assert report is not None
    body = json.loads(report.payload)
    assert body["identity"] == "mallory" and body["action"] == "impersonate"
    assert body["source"] == "trader" and "belongs to identity 'alice'" in body["reason"]
    assert report.source.startswith("bus-")
    assert report.topic == reserved.security_denied("mallory")
    assert bus.broker.statistics().denied >= 1


@pytest.mark.parametrize("bus", ["curve"], indirect=True)  # a plain bus refuses nothing
async def test_a_refused_request_is_answered_with_an_error_at_once(
    bus: Bus, bob: BusClient, keys: Path
) -> None:
    mallory = await bus.client("mallory")  # a Loom client holding mallory's keys
    try:
        await bob.subscribe(reserved.tool_topic("secret.read"))
        inbox = mallory.inbox("asker")
        box = mallory.expect_replies(inbox, "c-9")
        call = event(
            reserved.tool_topic("secret.read"), {}, type="request", correlation_id="c-9",
            reply_to=inbox, source="m-asker",
        )  # fmt: skip
        mallory.publish(call)
        loop = asyncio.get_running_loop()
        assert await box.wait(loop.time() + WAIT)
        [error] = box.items
        assert error.type == "error"
        body = json.loads(error.payload)
        assert body["error"] == "AccessDenied"
        assert "[acl.mallory] tools does not allow calling 'secret.read'" in body["message"]
    finally:
        await mallory.aclose()


async def test_faking_losses_with_a_forged_seq(bus: Bus, alice: BusClient, bob: BusClient) -> None:
    orders = await bob.subscribe("orders.*")
    alice.publish(event("orders.new", 1, source="trader"))
    await orders.get(timeout=WAIT)
    with bus.mallory(zmq.PUB) as forger:
        forged = lambda: raw_frames("orders.new", 2, source="trader", seq=10**6)  # noqa: E731
        await _forged(forger, forged, orders)
    # a plain bus delivers the jump: a million events counted lost that never existed
    assert (bob.statistics().lost >= 10**5) == (not bus.secured)


async def test_subscriptions_made_while_a_taking_over_broker_settles_are_kept(
    keys: Path,
) -> None:
    """A broker that takes a dead one's address over first lets the subscribers reconnect
    (``settle``); on a CURVE bus their subscriptions must go through the guard then too."""
    broker = Broker(
        [BusAddress.parse("tcp://127.0.0.1:0")],
        context=zmq.Context.instance(),
        curve=server_curve("curve", keys, ["alice", "bob"]),
        guard=Guard(host="loom"),
    )
    [address] = broker.start(settle=1.0)
    bus = Bus(broker, address, "curve", keys)
    alice, bob = await bus.client("alice"), await bus.client("bob")
    try:
        orders = await bob.subscribe("orders.*")
        alice.publish(event("orders.new", 1, source="trader"))
        assert (await orders.get(timeout=WAIT)).source == "trader"
    finally:
        await alice.aclose()
        await bob.aclose()
        broker.close()
